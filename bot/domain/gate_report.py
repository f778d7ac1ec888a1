"""A gate's verdict as people read it, whatever the surface (the Slack card, the terminal of
`rollout-bot metrics`): a row per gated metric (value, baseline, limit, ratio, sample, problem,
query link) and the sentence that says why. Plain text: each surface adds its own markup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from bot.domain.durations import format_duration
from bot.domain.gate import GateKind, GateReason, GateVerdict, Verdict, format_rate
from bot.domain.metrics import MetricReading, Reading

MAX_PROBLEM = 300
_NAMES = {"error_rate": "Error rate", "crash_rate": "Crash rate"}


@dataclass(frozen=True)
class MetricRow:
    """One gated metric as a gate card shows it."""

    metric: str
    value: Decimal | None
    baseline: Decimal | None
    limit: Decimal | None
    rule: str
    """How the limit is set: `threshold` or `2x baseline`."""
    sample: int | None
    problem: str | None
    link: str | None
    baseline_note: str | None = None
    """How a baseline read live was counted: `read live, sample 12,000`, `read live, its
    sample not counted` (then the row's sample is the canary's alone), or `read live, its
    sample unreadable` (its count's query failed)."""

    @property
    def name(self) -> str:
        return metric_name(self.metric)

    @property
    def baseline_shown(self) -> str:
        """The baseline as people read it: `0.1%`, `0.08% (read live, sample 12)`."""
        return percent(self.baseline) + (f" ({self.baseline_note})" if self.baseline_note else "")

    @property
    def ratio(self) -> Decimal | None:
        """value / limit: above 1 fails the gate (None when either is missing or the limit 0)."""
        if self.value is None or self.limit is None or self.limit <= 0:
            return None
        ratio = self.value / self.limit
        if ratio == 1 and self.value != self.limit:
            # Rounded to 1 at Decimal's 28 digits: keep the side of the limit the value is on.
            return ratio.next_plus() if self.value > self.limit else ratio.next_minus()
        return ratio


def metric_name(metric: str) -> str:
    """A gated metric as people name it: `Error rate`."""
    return _NAMES.get(metric, metric)


def metric_rows(verdict: GateVerdict, reading: Reading | None) -> list[MetricRow]:
    """The gated metrics: from the reading's detail when a live source read them, otherwise
    from the verdict's figures (static figures, or figures typed by a person)."""
    details = {m.name: m for m in reading.metrics} if reading is not None else {}
    names = ["error_rate", "crash_rate"] if verdict.gate is GateKind.RELAY else ["crash_rate"]
    rows = []
    for name in names:
        detail = details.get(name)
        if name == "error_rate":
            value, baseline, limit, rule = (
                verdict.current_error,
                None,
                verdict.error_threshold,
                "threshold",
            )
        else:
            value, baseline, limit = (
                verdict.current_crash,
                verdict.baseline_crash,
                verdict.crash_limit,
            )
            rule = f"{format_rate(verdict.crash_multiplier)}x baseline"
        rows.append(
            MetricRow(
                metric=name,
                value=value,
                baseline=baseline,
                limit=limit,
                rule=rule,
                sample=_sample(detail, verdict),
                problem=_problem(detail),
                link=detail.link if detail is not None else None,
                baseline_note=_baseline_note(detail),
            )
        )
    return rows


def verdict_reason(verdict: GateVerdict, rows: list[MetricRow], *, acted: bool = True) -> str:
    """Why the gate said what it said, with the one figure that decided it. `acted`: the
    verdict was applied (the thread's gate card); False for a reading that only looks
    (`rollout-bot metrics`), which says what the gate would do."""
    by_metric = {row.metric: row for row in rows}
    reason = verdict.reason
    if verdict.verdict is Verdict.PASS:
        seen = f" on a sample of {verdict.sample:,}" if verdict.sample is not None else ""
        if seen and verdict.baseline_sample_only:
            seen = f" on the baseline's sample of {verdict.sample:,} (the canary's not counted)"
        elif seen and any(row.baseline_note == _UNCOUNTED for row in rows):
            seen += " (the baseline read live: its sample not counted)"
        return f"Every metric is within its limit{seen}."
    if reason is GateReason.INSUFFICIENT_SAMPLE and verdict.sample is not None:
        if verdict.sample < 0:
            return f"No data: the sample read is negative ({verdict.sample:,}), no count at all."
        if verdict.sample == 0 and verdict.baseline_sample_only:
            return "No data: the baseline read live counted nothing (a sample of 0)."
        if verdict.sample == 0:
            return "No data: nothing was observed in the window (a sample of 0)."
    if reason is GateReason.INSUFFICIENT_SAMPLE:
        seen = "an unknown sample" if verdict.sample is None else f"a sample of {verdict.sample:,}"
        return f"Too little data: {seen}, the gate needs {verdict.min_sample:,}."
    if reason in (GateReason.CLOCK_SKEW, GateReason.UNREACHABLE_LIMIT):
        return f"No verdict: {verdict.summary}."
    if reason is GateReason.NO_DATA:
        missing = next((row for row in rows if row.value is None), None)
        if missing is None:
            return "No data: the baseline is missing."
        why = f": {missing.problem}" if missing.problem else ""
        return f"No data for the {missing.name.lower()}{why}."
    if reason is GateReason.UNUSABLE_THRESHOLD:
        return f"Holding: {verdict.summary}."
    relay = verdict.verdict is Verdict.ROLLBACK
    if acted:
        action = "Rolling back." if relay else "Kill-switch tripped."
    else:
        action = f"The gate would {'roll back' if relay else 'trip the kill-switch'}."
    if reason is GateReason.ERROR_RATE:
        row = by_metric["error_rate"]
        return (
            f"Error rate {percent(row.value)} is {times(row.ratio)} its "
            f"{percent(row.limit)} limit. {action}"
        )
    if reason is GateReason.ZERO_BASELINE:
        return f"Crashes ({percent(verdict.current_crash)}) against a zero baseline. {action}"
    row = by_metric["crash_rate"]
    return (
        f"Crash rate {percent(row.value)} is {times(row.ratio)} its limit of "
        f"{percent(row.limit)} ({row.rule} {percent(row.baseline)}). {action}"
    )


def percent(rate: Decimal | None) -> str:
    """A rate as a percentage with three significant digits: `3.01%`, `0.1%`."""
    if rate is None:
        return "missing"
    return f"{float(rate) * 100:.3g}%"


def times(ratio: Decimal | None) -> str:
    """A ratio to a limit as people say it: `3.01x`. Rounded away from 1, the limit: a ratio
    above it (a failing figure) never reads `1.00x`, one within it never reads more."""
    if ratio is None:
        return "n/a"
    if ratio >= 100:  # far from the limit; quantizing would need more digits than Decimal's 28
        return f"{float(ratio):.2f}x"
    rounding = ROUND_CEILING if ratio > 1 else ROUND_FLOOR
    return f"{ratio.quantize(Decimal('0.01'), rounding=rounding)}x"


def window_length(start: datetime, end: datetime) -> str:
    """How long a gate's window was, in whole seconds: `30m`."""
    return format_duration(timedelta(seconds=max(0, int((end - start).total_seconds()))))


_UNCOUNTED = "read live, its sample not counted"


def _baseline_note(detail: MetricReading | None) -> str | None:
    if detail is None or not detail.baseline_live:
        return None
    counted = detail.baseline_sample
    if counted is None:
        return "read live, its sample unreadable" if detail.baseline_counted else _UNCOUNTED
    return f"read live, sample {counted:,}"


def _sample(detail: MetricReading | None, verdict: GateVerdict) -> int | None:
    """A row's sample: its value's own count (a baseline's alone is the baseline's note)."""
    if detail is None:
        return verdict.sample
    return detail.sample if detail.value_counted else None


def _problem(detail: MetricReading | None) -> str | None:
    if detail is None or not detail.problem:
        return None
    problem = detail.problem
    return problem if len(problem) <= MAX_PROBLEM else problem[: MAX_PROBLEM - 3] + "..."
