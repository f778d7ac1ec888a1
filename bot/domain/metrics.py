"""Figures a gate is decided on: the rates observed over a window and the sample behind them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from bot.domain.gate import GateVerdict, clock_skewed
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


def judge(track: Track, reading: Reading) -> GateVerdict:
    """The track's gate on what a source read: INCONCLUSIVE, whatever the figures, when the
    source's clock was too far from the bot's for them to be the window's."""
    verdict = track.evaluate_gate(
        baseline_crash=reading.baseline_crash,
        current_crash=reading.figures.crash_rate,
        current_error=reading.figures.error_rate,
        sample=reading.figures.sample,
    )
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


def stage_window(rollout: Rollout, *, track: str, stage: str, now: datetime) -> QueryWindow:
    """The window a stage's gate reads: from the stage job's completion to the window's end
    (or now, if that is earlier), so a gate evaluated late still reads its own window. A held
    stage (re-evaluated: it is still deployed, waiting for a Promote) reads the latest window
    of the length it was observed for, ending now: its closed window's figures, hours old maybe,
    would pass a canary that has failed since, and so would hours of good figures diluting the
    last window's failing ones. A window opened again after it closed reads from where it was
    opened again (`reopened_from`), for the same reason."""
    observed = rollout.track(track).stage(stage)
    rollout_start = rollout.dispatched_at or rollout.created_at
    start = observed.observed_since or rollout_start
    if observed.state is StageState.HOLDING:
        observed_for = (observed.window_ends_at or now) - start
        start, end = max(start, now - observed_for), now
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
