"""Backtest a plan: replay its gates over past metrics, window after window, to see how often
each stage's gate would have said PASS, ROLLBACK or INCONCLUSIVE, and when (Kayenta's
retrospective analysis, on the plan's own gate code).

Each stage with an observation window is replayed in consecutive windows of that length from
the start of the range; each window is read through the track's metrics source exactly as a
live gate reads it at the end of its window (`WindowMetrics.measure`), and judged by the
track's own gate (`Track.evaluate_gate`); an INCONCLUSIVE window is given the stage's
`inconclusive_extension` and judged again, as the live gate does.
"""

from __future__ import annotations

import asyncio
import string
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.domain.durations import format_duration
from bot.domain.errors import RolloutError
from bot.domain.gate import GateReason, GateVerdict, Verdict
from bot.domain.metrics import QueryWindow, Reading, judge
from bot.domain.plan import PrometheusMetrics, RolloutPlan, Stage, Track, settle_of
from bot.domain.service import DEFAULT_SERVICE
from bot.services.ports import WindowMetrics

MAX_WINDOWS = 10_000
"""At most this many windows in one run (a month of 30m windows is 1,440): a year by mistake
would send Prometheus tens of thousands of queries."""
READS_AT_ONCE = 4
"""Windows read concurrently; each reading sends a few queries per metric at once."""
BACKTEST_TAG = "backtest"
"""What `$tag` stands for when no `--tag` is given (past data spans several releases)."""


class InvalidBacktest(RolloutError):
    """The range, the track or the stage cannot be replayed; the message says why."""

    code = "invalid_backtest"


@dataclass(frozen=True)
class Replay:
    """What to replay: the range and, optionally, one track and one stage."""

    start: datetime
    end: datetime
    track: str | None = None
    stage: str | None = None
    tag: str | None = None
    service: str = DEFAULT_SERVICE
    """What `$service` stands for, as the bot fills it when it releases that service."""


@dataclass(frozen=True)
class JudgedWindow:
    """One replayed window: its figures and the verdict the gate gives on them."""

    start: datetime
    end: datetime
    verdict: GateVerdict
    reading: Reading


@dataclass(frozen=True)
class StageBacktest:
    """Every window of one stage, in time order."""

    track: str
    track_label: str
    stage: str
    stage_label: str
    window: timedelta
    windows: tuple[JudgedWindow, ...]

    def counts(self) -> Counter[Verdict]:
        return Counter(judged.verdict.verdict for judged in self.windows)

    def reasons(self, verdict: Verdict) -> Counter[GateReason]:
        """How many windows of `verdict` had each reason, most frequent first."""
        return Counter(
            judged.verdict.reason
            for judged in self.windows
            if judged.verdict.verdict is verdict and judged.verdict.reason is not None
        )

    def not_passed(self) -> list[JudgedWindow]:
        return [judged for judged in self.windows if not judged.verdict.passed]


@dataclass(frozen=True)
class StagePlan:
    """One stage's windows, ready to be read."""

    track: str
    plan_track: Track
    metrics: PrometheusMetrics
    stage: Stage
    windows: tuple[QueryWindow, ...]
    until: datetime
    """Where its windows (and an INCONCLUSIVE one's extension) end by: the range's end, and
    the track's `settle` before now at the latest, as a live gate reads no sooner."""


@dataclass(frozen=True)
class PreparedBacktest:
    """A replay checked and cut into windows, before anything is read."""

    start: datetime
    end: datetime
    stages: tuple[StagePlan, ...]
    skipped: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Backtest:
    """The replay of a plan over a range."""

    start: datetime
    end: datetime
    """The end of the range as asked (or now, when the range reaches into the future)."""
    stages: tuple[StageBacktest, ...]
    skipped: tuple[tuple[str, str], ...]
    """Tracks not replayed, with their metrics source (only Prometheus data can be replayed)."""


def stages_to_replay(
    plan: RolloutPlan, *, track: str | None, stage: str | None
) -> tuple[list[tuple[str, Track, Stage]], list[tuple[str, str]]]:
    """The (track, stage) pairs a replay covers, and the tracks left out for their source.

    Raises InvalidBacktest for an unknown track or stage, a stage without a window, or
    nothing that reads Prometheus."""
    if track is not None and track not in plan.tracks:
        raise InvalidBacktest(f"no track {track!r} in the plan (tracks: {', '.join(plan.tracks)})")
    tracks = {name: t for name, t in plan.tracks.items() if track in (None, name)}
    if stage is not None and not any(s.key == stage for t in tracks.values() for s in t.stages):
        known = "; ".join(
            f"{name}: {', '.join(s.key for s in t.stages)}" for name, t in tracks.items()
        )
        raise InvalidBacktest(f"no stage {stage!r} in the plan ({known})")
    replayed: list[tuple[str, Track, Stage]] = []
    skipped: list[tuple[str, str]] = []
    for name, plan_track in tracks.items():
        wanted = [s for s in plan_track.stages if stage in (None, s.key)]
        if not wanted:
            continue
        if not isinstance(plan_track.metrics, PrometheusMetrics):
            skipped.append((name, plan_track.metrics.source))
            continue
        gated = [s for s in wanted if s.window is not None]
        if not gated:
            raise InvalidBacktest(
                f"{plan_track.label} {wanted[0].label} has no observation window, so no gate"
            )
        replayed += [(name, plan_track, s) for s in gated]
    if not replayed:
        sources = ", ".join(f"the {name} track from {source}" for name, source in skipped)
        raise InvalidBacktest(f"only Prometheus data can be replayed, and the plan reads {sources}")
    return replayed, skipped


def prepare(plan: RolloutPlan, replay: Replay, *, now: datetime) -> PreparedBacktest:
    """The windows `replay` covers. Raises InvalidBacktest for a range that cannot be replayed
    (backwards, in the future, too long, shorter than a window) or a track or stage that
    cannot (see `stages_to_replay`). A range reaching past `now` ends at `now`, and a track
    with a `settle` replays no window that ends within its settle before `now`: its figures
    are not all in yet, and the live gate would not have read it."""
    if replay.end <= replay.start:
        raise InvalidBacktest(
            f"the range ends ({_moment(replay.end)}) before it starts ({_moment(replay.start)})"
        )
    if replay.start >= now:
        raise InvalidBacktest(f"the range starts in the future ({_moment(replay.start)})")
    end = min(replay.end, now)
    chosen, skipped = stages_to_replay(plan, track=replay.track, stage=replay.stage)
    _check_tag(chosen, replay.tag)
    ends = [min(end, now - settle_of(track.metrics)) for _, track, _ in chosen]
    for (_, track, stage), until in zip(chosen, ends, strict=True):
        if replay.start + _length(stage) > until:
            settled = f" (its figures settle {format_duration(settle_of(track.metrics))})"
            raise InvalidBacktest(
                f"no whole {format_duration(_length(stage))} window of {track.label} "
                f"{stage.label} fits between {_moment(replay.start)} and {_moment(until)}"
                + (settled if until < end else "")
            )
    total = sum(
        (until - replay.start) // _length(stage)
        for (*_, stage), until in zip(chosen, ends, strict=True)
    )
    if total > MAX_WINDOWS:
        raise InvalidBacktest(
            f"the range holds {total:,} windows, more than {MAX_WINDOWS:,}: "
            "shorten it or choose a --track and --stage"
        )
    stages = []
    for (name, track, stage), until in zip(chosen, ends, strict=True):
        assert isinstance(track.metrics, PrometheusMetrics)  # stages_to_replay chose these
        windows = tuple(_windows(replay, name, stage, until))
        stages.append(StagePlan(name, track, track.metrics, stage, windows, until))
    return PreparedBacktest(replay.start, end, tuple(stages), tuple(skipped))


async def backtest(
    prepared: PreparedBacktest, *, sources: Callable[[PrometheusMetrics], WindowMetrics]
) -> Backtest:
    """Read every window and judge it with its track's gate. Raises InvalidBacktest when not
    one window of the range had data."""
    limit = asyncio.Semaphore(READS_AT_ONCE)
    results = []
    for planned in prepared.stages:
        source = sources(planned.metrics)
        extension = planned.stage.observe.inconclusive_extension if planned.stage.observe else None
        judged = await asyncio.gather(
            *(
                _judge(source, planned.plan_track, window, limit, extension, planned.until)
                for window in planned.windows
            )
        )
        stage = planned.stage
        results.append(
            StageBacktest(
                track=planned.track,
                track_label=planned.plan_track.label,
                stage=stage.key,
                stage_label=stage.label,
                window=_length(stage),
                windows=tuple(judged),
            )
        )
    if all(judged.verdict.reason is GateReason.NO_DATA for r in results for judged in r.windows):
        raise InvalidBacktest(
            f"no data between {_moment(prepared.start)} and {_moment(prepared.end)}: "
            "check the range and the plan's queries"
        )
    return Backtest(prepared.start, prepared.end, tuple(results), prepared.skipped)


def _windows(replay: Replay, track: str, stage: Stage, end: datetime) -> Iterator[QueryWindow]:
    """Consecutive whole windows of the stage's length from the range's start, the last
    ending by `end`. Each starts a rollout of its own: `$since_start` is the window's length,
    so a baseline query `offset $since_start` reads the window just before it."""
    length = _length(stage)
    at = replay.start
    while at + length <= end:
        yield QueryWindow(
            tag=replay.tag or BACKTEST_TAG,
            track=track,
            stage=stage.key,
            start=at,
            end=at + length,
            rollout_start=at,
            service=replay.service,
        )
        at += length


async def _judge(
    source: WindowMetrics,
    track: Track,
    window: QueryWindow,
    limit: asyncio.Semaphore,
    extension: timedelta | None,
    until: datetime,
) -> JudgedWindow:
    """The window's verdict as the live gate reaches it: an INCONCLUSIVE one, on a stage with
    `observe.inconclusive_extension`, is read again over the window extended once by it (when
    that still ends by `until`), and that verdict stands (`bot.domain.rollout.gating`)."""
    async with limit:
        judged = await _read_and_judge(source, track, window)
        longer = replace(window, end=window.end + extension) if extension else None
        if judged.verdict.verdict is Verdict.INCONCLUSIVE and longer and longer.end <= until:
            judged = await _read_and_judge(source, track, longer)
    return judged


async def _read_and_judge(source: WindowMetrics, track: Track, window: QueryWindow) -> JudgedWindow:
    reading = await source.measure(window)
    verdict = judge(track, reading)
    return JudgedWindow(window.start, window.end, verdict, reading)


def _check_tag(chosen: list[tuple[str, Track, Stage]], tag: str | None) -> None:
    """A query that names `$tag` reads one release: replaying it needs the release's tag."""
    if tag is not None:
        return
    for name, track, _ in chosen:
        assert isinstance(track.metrics, PrometheusMetrics)
        queries = [track.metrics.crash_rate, track.metrics.error_rate]
        texts = [
            text
            for query in queries
            if query is not None
            for text in (query.query, query.sample, query.baseline)
            if text
        ]
        if any("tag" in string.Template(text).get_identifiers() for text in texts):
            raise InvalidBacktest(
                f"the {name} track's queries name $tag: give the release's tag with --tag"
            )


def _length(stage: Stage) -> timedelta:
    assert stage.window is not None  # stages_to_replay keeps gated stages only
    return stage.window


def _moment(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
