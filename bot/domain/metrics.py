"""Figures a gate is decided on: the rates observed over a window and the sample behind them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from bot.domain.gate import GateVerdict, clock_skewed
from bot.domain.late_gate import LateGate
from bot.domain.plan import Track
from bot.domain.rollout import Rollout, StageState
from bot.domain.service import DEFAULT_SERVICE


@dataclass(frozen=True)
class Figures:
    """Rates observed over a stage's window (fractions: 0.01 is 1%)."""

    crash_rate: Decimal | None
    error_rate: Decimal | None = None
    sample: int | None = None
    """How many requests or sessions the rates come from; None when the source cannot tell."""


@dataclass(frozen=True)
class MetricReading:
    """One metric as a live source read it, for the gate card and the chart."""

    name: str
    """`error_rate` or `crash_rate`."""
    value: Decimal | None
    sample: int | None = None
    baseline: Decimal | None = None
    baseline_live: bool = False
    """The baseline was read live (a query), not the plan's fixed number."""
    baseline_sample: int | None = None
    """The requests or sessions behind a baseline read live; None when not counted, or when
    its count could not be read (`baseline_counted`)."""
    baseline_counted: bool = False
    """A query counts the baseline's requests or sessions (a Prometheus `baseline_sample`,
    Sentry's baseline sessions): then a `baseline_sample` of None is unreadable, not uncounted."""
    value_counted: bool = True
    """The value's own requests or sessions were counted (a `sample` query, Sentry's sessions);
    False: `sample` is the baseline's count alone (a `baseline_sample` without a `sample`)."""
    problem: str | None = None
    """Why the value, its sample or its baseline is missing (no series, NaN, an error)."""
    link: str | None = None
    """Where a person sees the query (a Prometheus graph URL, a Sentry release page)."""
    series: tuple[tuple[datetime, float], ...] = ()
    """The metric over the rollout so far, for the chart."""


@dataclass(frozen=True)
class Reading:
    """What a metrics source read for one stage: its figures and the track's baseline."""

    baseline_crash: Decimal | None
    figures: Figures
    source: str
    metrics: tuple[MetricReading, ...] = ()
    """Per metric detail, from live sources (empty for static figures)."""
    window: tuple[datetime, datetime] | None = None
    """The time range the figures cover."""
    clock_offset: int | None = None
    """Seconds the source's clock was found ahead of the bot's (negative: behind), when more
    than `MAX_CLOCK_SKEW` (`bot.domain.clocks`): then no figure was read."""
    late: LateGate | None = None
    """Set on the reading that decided a late gate (`judge_late`)."""

    @property
    def baseline_sample_only(self) -> bool:
        """The gate's sample is a baseline's count alone: no query counted the canary's own
        requests (a plan with `baseline_sample` and no `sample`, allowed with `min_sample: 0`)."""
        counted = [metric for metric in self.metrics if metric.sample is not None]
        return bool(counted) and not any(metric.value_counted for metric in counted)


def baseline_sample_detail(reading: Reading | None) -> dict[str, int | str]:
    """For a gate's audit entry: the sample behind a baseline read live, or that it was not
    counted (then the entry's `sample` is the canary's alone), or that its count could not be
    read; nothing for a fixed baseline."""
    live = [m for m in reading.metrics if m.baseline_live] if reading is not None else []
    if not live:
        return {}
    counted = live[0].baseline_sample
    if counted is not None:
        return {"baseline_sample": counted}
    return {"baseline_sample": "unreadable" if live[0].baseline_counted else "not counted"}


def judge(track: Track, reading: Reading) -> GateVerdict:
    """The track's gate on what a source read: INCONCLUSIVE, whatever the figures, when the
    source's clock was too far from the bot's for them to be the window's."""
    verdict = track.evaluate_gate(
        baseline_crash=reading.baseline_crash,
        current_crash=reading.figures.crash_rate,
        current_error=reading.figures.error_rate,
        sample=reading.figures.sample,
    )
    if reading.baseline_sample_only:
        verdict = replace(verdict, baseline_sample_only=True)
    if reading.clock_offset is None:
        return verdict
    return clock_skewed(verdict, reading.clock_offset)


@dataclass(frozen=True)
class QueryWindow:
    """The time a gate's figures cover, and the values a query template's placeholders take."""

    tag: str
    track: str
    stage: str
    start: datetime
    end: datetime
    rollout_start: datetime
    """When the rollout was dispatched: `$since_start` reaches back to it."""
    service: str = DEFAULT_SERVICE
    """The service released (`$service`)."""

    @property
    def length(self) -> timedelta:
        """The window's length in whole seconds, at least one (PromQL has no empty range)."""
        return timedelta(seconds=max(1, int((self.end - self.start).total_seconds())))

    def placeholders(self) -> dict[str, str]:
        since = max(1, int((self.end - self.rollout_start).total_seconds()))
        return {
            "window": f"{int(self.length.total_seconds())}s",
            "since_start": f"{since}s",
            "tag": self.tag,
            "stage": self.stage,
            "track": self.track,
            "service": self.service,
        }


def window_ending(
    end: datetime, length: timedelta, *, tag: str, track: str, stage: str, service: str
) -> QueryWindow:
    """A window of `length` ending at `end`, of no rollout (its `$since_start` is its length):
    what `rollout-bot metrics` and the doctor read."""
    start = end - length
    return QueryWindow(tag, track, stage, start, end, rollout_start=start, service=service)


def stage_window(
    rollout: Rollout, *, track: str, stage: str, now: datetime, settle: timedelta = timedelta(0)
) -> QueryWindow:
    """The window a stage's gate reads: from the stage job's completion to the window's end
    (or now, if that is earlier), so a gate evaluated late still reads its own window (and the
    latest stretch too: `gate_windows`). A held stage (re-evaluated: it is still deployed,
    waiting for a Promote) reads the latest window of the length it was observed for, ending
    now: its closed window's figures, hours old maybe, would pass a canary that has failed
    since, and so would hours of good figures diluting the last window's failing ones. With a
    `settle` (`settle_of`), that latest window ends `settle` before now, as its gate's did: the
    figures of the last minutes are not all in yet (a crash reported at the app's next start),
    and a PASS on them promotes a `promote: auto` stage. A window opened again after it closed
    reads from where it was opened again (`reopened_from`), for the same reason."""
    observed = rollout.track(track).stage(stage)
    rollout_start = rollout.dispatched_at or rollout.created_at
    start = observed.observed_since or rollout_start
    if observed.state is StageState.HOLDING:
        observed_for = (observed.window_ends_at or now) - start
        end = now - settle
        start = max(start, end - observed_for)
    else:
        end = min(observed.window_ends_at or now, now)
    return QueryWindow(
        tag=rollout.tag,
        track=track,
        stage=stage,
        start=start,
        end=max(end, start),
        rollout_start=min(rollout_start, start),
        service=rollout.service,
    )


LATE_GATE = timedelta(minutes=1)
"""How long after its window's end a gate still reads that window alone. Window ends are
judged within a second (docs/benchmarks.md: p99 0.58 s; 57 s on a machine far past its
capacity); later, the bot was down or its timers behind, and a canary may have been failing
unseen since the end: a minute is past any on-time gate and a small share of any real window."""


def gate_windows(
    rollout: Rollout,
    *,
    track: str,
    stage: str,
    now: datetime,
    settle: timedelta = timedelta(0),
) -> tuple[QueryWindow, ...]:
    """The windows a stage's gate reads now: its own (`stage_window`), and, when it ended more
    than `LATE_GATE` ago (after the `settle` its track waits for late figures: `settle_of`),
    also the latest stretch of the same length whose figures have settled (ending `settle`
    before now, as a held stage's re-evaluation reads): a late gate judged on the window's old
    figures alone would pass a canary that has failed since, and so would one judged on a
    stretch whose last crashes are not reported yet."""
    window = stage_window(rollout, track=track, stage=stage, now=now, settle=settle)
    if now - window.end <= LATE_GATE + settle:
        return (window,)
    end = now - settle
    return (window, replace(window, start=end - (window.end - window.start), end=end))


def judge_late(
    track: Track, own: tuple[QueryWindow, Reading], latest: tuple[QueryWindow, Reading]
) -> tuple[GateVerdict, Reading]:
    """A late gate's verdict: the worse of its window's and the latest stretch's (a failure
    over INCONCLUSIVE over PASS; on a tie, the window's), so it never passes a canary its
    latest figures fail and still stops one that failed in its window. The deciding reading
    carries both (`Reading.late`), for the card."""
    (own_window, own_reading), (latest_window, latest_reading) = own, latest
    own_verdict, latest_verdict = judge(track, own_reading), judge(track, latest_reading)
    late = LateGate(
        (own_window.start, own_window.end),
        own_verdict.verdict,
        (latest_window.start, latest_window.end),
        latest_verdict.verdict,
    )
    if late.latest_decided:
        return latest_verdict, replace(latest_reading, late=late)
    return own_verdict, replace(own_reading, late=late)
