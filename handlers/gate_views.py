"""The gate card: a verdict a release engineer reads in two seconds, then every figure behind it.

For each metric: its value, baseline, limit, ratio to the limit, sample, window and a link to
the query. Pure functions of the verdict and the reading; `plain_text` is the same card for a
terminal (`rollout-bot metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bot.domain.durations import format_duration
from bot.domain.gate import GateKind, GateReason, GateVerdict, Verdict, format_rate
from bot.domain.metrics import MetricReading, Reading
from bot.domain.rollout import slack_time
from handlers.views import Block

MAX_PROBLEM = 300
MAX_LINK = 2500
_NAMES = {"error_rate": "Error rate", "crash_rate": "Crash rate"}
_EMOJI = {
    Verdict.PASS: ":large_green_circle:",
    Verdict.INCONCLUSIVE: ":large_yellow_circle:",
    Verdict.ROLLBACK: ":red_circle:",
    Verdict.KILL_SWITCH: ":red_circle:",
}
_SOURCE_NAMES = {"prometheus": "Prometheus", "sentry": "Sentry"}


@dataclass(frozen=True)
class MetricRow:
    """One gated metric as the card shows it."""

    metric: str
    value: Decimal | None
    baseline: Decimal | None
    limit: Decimal | None
    rule: str
    """How the limit is set: `threshold` or `2x baseline`."""
    sample: int | None
    problem: str | None
    link: str | None

    @property
    def name(self) -> str:
        return _NAMES.get(self.metric, self.metric)

    @property
    def ratio(self) -> Decimal | None:
        """value / limit: above 1 fails the gate (None when either is missing or the limit 0)."""
        if self.value is None or self.limit is None or self.limit <= 0:
            return None
        return self.value / self.limit


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
                sample=detail.sample if detail is not None else verdict.sample,
                problem=_problem(detail),
                link=detail.link if detail is not None else None,
            )
        )
    return rows


def headline(verdict: GateVerdict, stage_label: str) -> str:
    """The verdict in words, with the one figure that decided it."""
    rows = metric_rows(verdict, None)
    return _headline(verdict, stage_label, rows)


def _headline(verdict: GateVerdict, stage_label: str, rows: list[MetricRow]) -> str:
    lead = f"{_EMOJI[verdict.verdict]} *{stage_label} gate: {verdict.verdict}*."
    by_metric = {row.metric: row for row in rows}
    reason = verdict.reason
    if verdict.verdict is Verdict.PASS:
        seen = f" on a sample of {verdict.sample:,}" if verdict.sample is not None else ""
        return f"{lead} Every metric is within its limit{seen}."
    if reason is GateReason.INSUFFICIENT_SAMPLE:
        seen = "an unknown sample" if verdict.sample is None else f"a sample of {verdict.sample:,}"
        return f"{lead} Too little data: {seen}, the gate needs {verdict.min_sample:,}."
    if reason is GateReason.NO_DATA:
        missing = next((row for row in rows if row.value is None), None)
        if missing is None:
            return f"{lead} No data: the baseline is missing."
        why = f": {missing.problem}" if missing.problem else ""
        return f"{lead} No data for the {missing.name.lower()}{why}."
    action = "Rolling back." if verdict.verdict is Verdict.ROLLBACK else "Kill-switch tripped."
    if reason is GateReason.ERROR_RATE:
        row = by_metric["error_rate"]
        return (
            f"{lead} Error rate {percent(row.value)} is {_ratio(row.ratio)} its "
            f"{percent(row.limit)} limit. {action}"
        )
    if reason is GateReason.ZERO_BASELINE:
        return (
            f"{lead} Crashes ({percent(verdict.current_crash)}) against a zero baseline. {action}"
        )
    row = by_metric["crash_rate"]
    return (
        f"{lead} Crash rate {percent(row.value)} is {_ratio(row.ratio)} its limit of "
        f"{percent(row.limit)} ({row.rule} {percent(row.baseline)}). {action}"
    )


def gate_card(
    *,
    verdict: GateVerdict,
    reading: Reading | None,
    stage_label: str,
    track_label: str,
    window: tuple[datetime, datetime] | None,
    chart_note: str | None = None,
) -> list[Block]:
    """The card posted in the rollout's thread when a gate is evaluated."""
    rows = metric_rows(verdict, reading)
    blocks: list[Block] = [_section(_headline(verdict, stage_label, rows))]
    where = _window_slack(window)
    for row in rows:
        baseline = f"baseline {percent(row.baseline)} · " if row.metric != "error_rate" else ""
        sample = "—" if row.sample is None else f"{row.sample:,}"
        blocks.append(
            _section(
                f"*{row.name}* ({track_label}): *{percent(row.value)}*, {_versus(row)}\n"
                f"{baseline}sample {sample} · window {where}"
            )
        )
        notes = []
        if row.link is not None and len(row.link) <= MAX_LINK:
            source = _SOURCE_NAMES.get(reading.source if reading else "", "the source")
            notes.append(f"<{row.link}|Open the query in {source}>")
        if row.problem:
            notes.append(f":warning: {row.problem}")
        if notes:
            blocks.append(_context(" · ".join(notes)))
    source = reading.source if reading is not None else "entered by hand"
    footer = [f"Figures: {source}"]
    if chart_note:
        footer.append(chart_note)
    blocks.append(_context(" · ".join(footer)))
    return blocks


def gate_card_text(verdict: GateVerdict, stage_label: str) -> str:
    """The notification fallback: the headline without mrkdwn."""
    return headline(verdict, stage_label).replace("*", "")


def plain_text(
    *,
    verdict: GateVerdict,
    reading: Reading | None,
    stage_label: str,
    track_label: str,
    window: tuple[datetime, datetime] | None,
) -> str:
    """The card for a terminal: the verdict line, then a line per metric and its query."""
    rows = metric_rows(verdict, reading)
    head = _headline(verdict, stage_label, rows).split(" ", 1)[1].replace("*", "")
    lines = [f"{track_label}: {head}", f"  window: {_window_text(window)}"]
    for row in rows:
        baseline = f"   baseline {percent(row.baseline)}" if row.metric != "error_rate" else ""
        sample = "unknown" if row.sample is None else f"{row.sample:,}"
        lines.append(
            f"  {row.name.lower():<10}  {percent(row.value):>9}{baseline}   "
            f"limit {percent(row.limit)} ({row.rule})   {_ratio(row.ratio)} the limit   "
            f"sample {sample}"
        )
        if row.problem:
            lines.append(f"    problem: {row.problem}")
        if row.link:
            lines.append(f"    query: {row.link}")
    return "\n".join(lines) + "\n"


def percent(rate: Decimal | None) -> str:
    """A rate as a percentage with three significant digits: `3.01%`, `0.1%`."""
    if rate is None:
        return "missing"
    return f"{float(rate) * 100:.3g}%"


def _versus(row: MetricRow) -> str:
    limit = f"{percent(row.limit)} ({row.rule})"
    return f"limit {limit}" if row.ratio is None else f"*{_ratio(row.ratio)}* its limit of {limit}"


def _ratio(ratio: Decimal | None) -> str:
    return "n/a" if ratio is None else f"{float(ratio):.2f}x"


def _problem(detail: MetricReading | None) -> str | None:
    if detail is None or not detail.problem:
        return None
    problem = detail.problem
    return problem if len(problem) <= MAX_PROBLEM else problem[: MAX_PROBLEM - 3] + "..."


def _window_slack(window: tuple[datetime, datetime] | None) -> str:
    if window is None:
        return "unknown"
    start, end = window
    length = format_duration(_whole(end - start))
    return f"{length} ending {slack_time(end)}"


def _window_text(window: tuple[datetime, datetime] | None) -> str:
    if window is None:
        return "unknown"
    start, end = window
    length = format_duration(_whole(end - start))
    return (
        f"{length}, {start.astimezone(UTC):%Y-%m-%d %H:%M:%S} to {end.astimezone(UTC):%H:%M:%S} UTC"
    )


def _whole(delta: timedelta) -> timedelta:
    return timedelta(seconds=max(0, int(delta.total_seconds())))


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}
