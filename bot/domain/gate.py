"""The rollback gates, exactly as the runbook states them (SPEC section 1, "Gate semantics").

Standard library only: the `gate` command imports this and must start fast. Figures are
`Decimal` and every product is computed exactly, so a rate equal to its limit is a PASS
(0.1 x 3 is 0.3 here; in floats it is not).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from bot.domain.clocks import clocks_apart
from bot.domain.rates import (
    BaselineOrigin,
    unusable_baseline,
    unusable_error_threshold,
    unusable_limit,
)
from bot.domain.rates import exact_product as exact_product
from bot.domain.rates import format_rate as format_rate

DEFAULT_CRASH_MULTIPLIER = Decimal("2.0")
DEFAULT_ERROR_THRESHOLD = Decimal("0.01")


class GateKind(StrEnum):
    """Which gate: the relay's (error rate and crash ratio) or the desktop rings' (crash ratio)."""

    RELAY = "relay"
    DESKTOP = "desktop"


class Verdict(StrEnum):
    PASS = "PASS"  # noqa: S105 (a verdict, not a password)
    ROLLBACK = "ROLLBACK"
    KILL_SWITCH = "KILL_SWITCH"
    INCONCLUSIVE = "INCONCLUSIVE"


class GateReason(StrEnum):
    """Why a gate did not pass."""

    ERROR_RATE = "error_rate"
    ZERO_BASELINE = "zero_baseline"
    CRASH_RATE = "crash_rate"
    INSUFFICIENT_SAMPLE = "insufficient_sample"
    NO_DATA = "no_data"
    UNUSABLE_THRESHOLD = "unusable_threshold"
    """The rollout's saved plan has a threshold no gate can decide on (`held_on_unusable`)."""
    CLOCK_SKEW = "clock_skew"
    """The metrics source's clock is too far from the bot's: no figure was read."""
    UNREACHABLE_LIMIT = "unreachable_limit"
    """A baseline read live sets a crash limit of 1 or more: no crash rate exceeds it."""


_REASON_WORDS = {
    GateReason.ERROR_RATE: "error rate",
    GateReason.ZERO_BASELINE: "crashes on a zero baseline",
    GateReason.CRASH_RATE: "crash rate",
    GateReason.INSUFFICIENT_SAMPLE: "not enough data",
    GateReason.NO_DATA: "no data",
    GateReason.UNUSABLE_THRESHOLD: "a threshold or baseline no gate can use",
    GateReason.CLOCK_SKEW: "the metrics source's clock differs from the bot's",
    GateReason.UNREACHABLE_LIMIT: "the live baseline sets a limit no crash rate exceeds",
}


def gate_reason_words(reason: GateReason | None) -> str:
    """A gate's reason in a few words (`failed` when a failing verdict names none)."""
    return "failed" if reason is None else _REASON_WORDS[reason]


@dataclass(frozen=True)
class GateVerdict:
    """A gate's verdict with every figure it was decided on."""

    gate: GateKind
    verdict: Verdict
    reason: GateReason | None
    current_crash: Decimal | None
    baseline_crash: Decimal | None
    crash_multiplier: Decimal
    crash_limit: Decimal | None
    """baseline x multiplier, exact; None when the baseline is missing."""
    current_error: Decimal | None = None
    error_threshold: Decimal | None = None
    sample: int | None = None
    min_sample: int = 0
    clock_offset: int | None = None
    """With CLOCK_SKEW: the seconds the metrics source's clock is ahead of the bot's
    (negative: behind)."""
    baseline_origin: BaselineOrigin = "plan"
    baseline_sample_only: bool = False
    """`sample` is the count behind a baseline read live alone: no query counted the canary's
    own requests (a plan with `baseline_sample` and no `sample`, with `min_sample: 0`)."""

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS

    @property
    def sample_too_small(self) -> bool:
        """Below the minimum (an unknown sample is below any positive one), or zero: a window
        that saw no request or session tested nothing, whatever the minimum. A negative count
        is no count (a source's bug, a counter gone wrong): below any minimum, 0 included."""
        if self.sample is not None and self.sample <= 0:
            return True
        return self.min_sample > 0 and (self.sample is None or self.sample < self.min_sample)

    @property
    def summary(self) -> str:
        """One line naming the figures, e.g. `crash rate 0.005 exceeds 2x baseline 0.001 ...`."""
        if self.reason is GateReason.NO_DATA:
            return "; ".join(self.missing()) + ": no verdict without data"
        if self.reason is GateReason.CLOCK_SKEW:
            return clocks_apart(self.clock_offset or 0, whose="the metrics source's")
        if self.reason is GateReason.UNUSABLE_THRESHOLD:
            return self._unusable_clause()
        if self.reason is GateReason.UNREACHABLE_LIMIT:
            limit = _fmt(None if self.crash_limit is None else self.crash_limit * 100)
            return (
                f"the baseline crash rate {_fmt(self.baseline_crash)} read live times "
                f"{_fmt(self.crash_multiplier)} is a limit of {limit}%: no crash rate exceeds it "
                f"(crash rate {_fmt(self.current_crash)}); check that the baseline query gives a "
                "fraction (0.01 = 1%)"
            )
        if self.reason is GateReason.INSUFFICIENT_SAMPLE:
            if self.sample is not None and self.sample < 0:
                return f"sample {self.sample} is negative: no count of requests or sessions"
            if self.sample == 0 and self.min_sample == 0 and self.baseline_sample_only:
                return "baseline sample 0: the baseline read live counted nothing"
            if self.sample == 0 and self.min_sample == 0:
                return "sample 0: nothing was observed in the window"
            seen = "unknown" if self.sample is None else str(self.sample)
            return f"sample {seen} is below the minimum of {self.min_sample}"
        if self.reason is GateReason.ERROR_RATE:
            parts = [
                f"error rate {_fmt(self.current_error)} exceeds "
                f"the threshold {_fmt(self.error_threshold)}"
            ]
            return "; ".join(parts + self.missing())
        parts = [self._crash_clause(), *self.missing()]
        if self.gate is GateKind.RELAY and self.reason is None:
            parts.append(
                f"error rate {_fmt(self.current_error)} within "
                f"the threshold {_fmt(self.error_threshold)}"
            )
        if self.sample is not None and self.baseline_sample_only:
            parts.append(f"baseline sample {self.sample} (the canary's not counted)")
        elif self.sample is not None:
            parts.append(f"sample {self.sample}")
        return "; ".join(parts)

    def _crash_clause(self) -> str:
        crash, baseline = _fmt(self.current_crash), _fmt(self.baseline_crash)
        if self.reason is GateReason.ZERO_BASELINE:
            return f"crash rate {crash} while the baseline crash rate is {baseline}"
        if self.baseline_crash is not None and self.baseline_crash <= 0:
            return f"crash rate {crash} and baseline crash rate {baseline}"
        relation = "exceeds" if self.reason is GateReason.CRASH_RATE else "within"
        return (
            f"crash rate {crash} {relation} {_fmt(self.crash_multiplier)}x "
            f"baseline {baseline} (limit {_fmt(self.crash_limit)})"
        )

    def _unusable_clause(self) -> str:
        threshold, baseline = self.error_threshold, self.baseline_crash
        if threshold is not None and unusable_error_threshold(threshold):
            what = f"error_threshold {format_rate(threshold)}"
            why = (
                "is negative"
                if threshold.is_signed()
                else f"is {format_rate(threshold * 100)}%: an error rate never exceeds it"
            )
        elif baseline is not None and unusable_baseline(baseline):
            what = f"baseline_crash_rate {format_rate(baseline)}"
            why = f"is {format_rate(baseline * 100)}%: no crash rate reaches a limit drawn from it"
        elif baseline is not None and unusable_limit(baseline, multiplier := self.crash_multiplier):
            limit = format_rate(exact_product(baseline, multiplier.copy_abs()) * 100)
            what = f"baseline_crash_rate {format_rate(baseline)}"
            why = f"times crash_multiplier {format_rate(multiplier)} is a limit of {limit}%"
            why += ": no crash rate exceeds it"
        else:
            what, why = f"crash_multiplier {format_rate(self.crash_multiplier)}", "is negative"
        holder, mend = "the plan this rollout was saved with", "the plan"
        then = "for the next rollouts, and"
        if what.startswith("baseline") and self.baseline_origin == "figures file":
            holder, mend, then = "the figures file", "it", "and Re-evaluate now, or"
        return (
            f"{holder} has {what}, which {why}: no verdict on it; fix {mend} (rates are "
            f"fractions: 0.01 = 1%) {then} decide this one by hand"
        )

    def missing(self) -> list[str]:
        """The figures the gate could not use, each with what it was given."""
        figures = [
            ("current crash rate", self.current_crash),
            ("baseline crash rate", self.baseline_crash),
        ]
        if self.gate is GateKind.RELAY:
            figures.append(("current error rate", self.current_error))
        return [f"{name} {_describe(value)}" for name, value in figures if not _usable(value)]


def evaluate_relay(
    *,
    baseline_crash: Decimal | None,
    current_crash: Decimal | None,
    current_error: Decimal | None,
    crash_multiplier: Decimal = DEFAULT_CRASH_MULTIPLIER,
    error_threshold: Decimal = DEFAULT_ERROR_THRESHOLD,
    sample: int | None = None,
    min_sample: int = 0,
) -> GateVerdict:
    """The relay gate: error rate first, then the zero-baseline rule, then the crash ratio.

    A sample below `min_sample` (an unknown sample counts as below any positive minimum), or
    a sample of zero, is INCONCLUSIVE. So is a missing or unusable rate (None, NaN, infinite,
    negative), unless the rates it has already break a rule: never PASS without every figure.
    """
    _check_threshold("error_threshold", error_threshold)
    return _evaluate(
        GateKind.RELAY,
        baseline_crash,
        current_crash,
        crash_multiplier,
        sample,
        min_sample,
        current_error,
        error_threshold,
    )


def evaluate_desktop(
    *,
    baseline_crash: Decimal | None,
    current_crash: Decimal | None,
    crash_multiplier: Decimal = DEFAULT_CRASH_MULTIPLIER,
    sample: int | None = None,
    min_sample: int = 0,
) -> GateVerdict:
    """The desktop/CLI ring gate: the relay gate's crash rules alone, failing as KILL_SWITCH."""
    return _evaluate(
        GateKind.DESKTOP, baseline_crash, current_crash, crash_multiplier, sample, min_sample
    )


def clock_skewed(verdict: GateVerdict, offset: int) -> GateVerdict:
    """No verdict when the metrics source's clock is `offset` seconds from the bot's, beyond
    `MAX_CLOCK_SKEW`: its figures cover other seconds than the window's (`bot.domain.clocks`)."""
    return replace(
        verdict, verdict=Verdict.INCONCLUSIVE, reason=GateReason.CLOCK_SKEW, clock_offset=offset
    )


def evaluate_track(
    gate: GateKind,
    *,
    baseline_crash: Decimal | None,
    current_crash: Decimal | None,
    current_error: Decimal | None,
    crash_multiplier: Decimal,
    error_threshold: Decimal | None,
    sample: int | None = None,
    min_sample: int = 0,
    baseline_origin: BaselineOrigin = "live",
) -> GateVerdict:
    """A plan track's gate. A plan saved before plan files refused an error threshold of 1
    or more and -0, or a baseline crash rate above 1, may hold them: a rule on such a figure is
    not applied (1 is 100%, which no error rate exceeds; -0 is no limit a person meant; a
    baseline of 2 makes a limit no crash rate reaches), the others are, and when none of them
    fails the gate holds, INCONCLUSIVE for UNUSABLE_THRESHOLD: never a PASS, never a crash of
    the gate. So is a baseline not read live (the plan's or its figures file's) whose limit is 1
    or more (`1` or `0.5` meant as percentages). A baseline read live with such a limit (a control
    crashing 60%, a query giving percent) never PASSes either: INCONCLUSIVE, UNREACHABLE_LIMIT."""
    bad_multiplier = crash_multiplier.is_signed()
    bad_error = error_threshold is not None and unusable_error_threshold(error_threshold)
    bad_limit = baseline_origin != "live" and unusable_limit(baseline_crash, crash_multiplier)
    bad_baseline = unusable_baseline(baseline_crash) or bad_limit
    multiplier = crash_multiplier.copy_abs()
    if gate is GateKind.RELAY:
        assert error_threshold is not None  # required for relay gates
        verdict = evaluate_relay(
            baseline_crash=None if bad_baseline else baseline_crash,
            current_crash=current_crash,
            current_error=None if bad_error else current_error,
            crash_multiplier=multiplier,
            error_threshold=error_threshold.copy_abs(),
            sample=sample,
            min_sample=min_sample,
        )
    else:
        verdict = evaluate_desktop(
            baseline_crash=None if bad_baseline else baseline_crash,
            current_crash=current_crash,
            crash_multiplier=multiplier,
            sample=sample,
            min_sample=min_sample,
        )
    verdict = replace(verdict, baseline_origin=baseline_origin)
    if not (bad_multiplier or bad_error or bad_baseline):
        if verdict.passed and unusable_limit(baseline_crash, crash_multiplier):
            return replace(
                verdict, verdict=Verdict.INCONCLUSIVE, reason=GateReason.UNREACHABLE_LIMIT
            )
        return verdict
    shown = replace(
        verdict,
        crash_multiplier=crash_multiplier,
        error_threshold=error_threshold,
        current_error=current_error,
        baseline_crash=baseline_crash,
    )
    failed = verdict.verdict in (Verdict.ROLLBACK, Verdict.KILL_SWITCH)
    if failed and not (bad_multiplier and verdict.reason is GateReason.CRASH_RATE):
        return shown  # a rule on usable figures failed: rolling back is always safe
    return replace(shown, verdict=Verdict.INCONCLUSIVE, reason=GateReason.UNUSABLE_THRESHOLD)


def _evaluate(
    gate: GateKind,
    baseline_crash: Decimal | None,
    current_crash: Decimal | None,
    crash_multiplier: Decimal,
    sample: int | None,
    min_sample: int,
    current_error: Decimal | None = None,
    error_threshold: Decimal | None = None,
) -> GateVerdict:
    """The gate's figures with SPEC's verdict on them, after the sample's check."""
    _check_threshold("crash_multiplier", crash_multiplier)
    figures = GateVerdict(
        gate=gate,
        verdict=Verdict.INCONCLUSIVE,
        reason=None,
        current_crash=current_crash,
        baseline_crash=baseline_crash,
        crash_multiplier=crash_multiplier,
        crash_limit=_limit(baseline_crash, crash_multiplier),
        current_error=current_error,
        error_threshold=error_threshold,
        sample=sample,
        min_sample=min_sample,
    )
    if figures.sample_too_small:
        reason = GateReason.NO_DATA if figures.missing() else GateReason.INSUFFICIENT_SAMPLE
        return replace(figures, reason=reason)
    failed = _first_failure(figures)
    if failed is not None:
        failure = Verdict.ROLLBACK if figures.gate is GateKind.RELAY else Verdict.KILL_SWITCH
        return replace(figures, verdict=failure, reason=failed)
    if figures.missing():
        return replace(figures, reason=GateReason.NO_DATA)
    return replace(figures, verdict=Verdict.PASS)


def _first_failure(figures: GateVerdict) -> GateReason | None:
    """The first of SPEC's rules, in its order, that the figures break. A rule whose figures
    are missing breaks nothing, and one that holds on the figures it has is enough: an error
    rate over its threshold rolls back whatever the crash rate's query gave."""
    error, threshold = figures.current_error, figures.error_threshold
    if figures.gate is GateKind.RELAY and _usable(error):
        assert error is not None and threshold is not None
        if error > threshold:
            return GateReason.ERROR_RATE
    baseline, current = figures.baseline_crash, figures.current_crash
    if not (_usable(baseline) and _usable(current)):
        return None
    assert baseline is not None and current is not None and figures.crash_limit is not None
    if baseline <= 0:
        return GateReason.ZERO_BASELINE if current > 0 else None
    return GateReason.CRASH_RATE if current > figures.crash_limit else None


def _limit(baseline: Decimal | None, multiplier: Decimal) -> Decimal | None:
    if not (_usable(baseline) and _usable(multiplier)):
        return None
    assert baseline is not None
    return exact_product(baseline, multiplier)


def _usable(rate: Decimal | None) -> bool:
    return rate is not None and rate.is_finite() and not rate.is_signed()


def _check_threshold(name: str, value: Decimal) -> None:
    if not _usable(value):
        raise ValueError(f"{name} must be a finite non-negative decimal, not {value}")


def _fmt(value: Decimal | None) -> str:
    return "missing" if value is None else format_rate(value)


def _describe(value: Decimal | None) -> str:
    return "missing" if value is None else f"unusable ({value})"
