"""Building a decision step by step: the rollout as it changes and the effects asked for."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bot.domain.clocks import MAX_CLOCK_SKEW
from bot.domain.plan import Stage as PlanStage
from bot.domain.plan import Track as PlanTrack
from bot.domain.rollout.effects import (
    CancelWindow,
    Decision,
    Effect,
)
from bot.domain.rollout.state import Rollout, Stage, StageState, Track


class Work:
    """Accumulates a decision: the rollout as it changes, and the effects asked for."""

    def __init__(self, rollout: Rollout) -> None:
        self.rollout = rollout
        self.effects: list[Effect] = []

    def set_track(self, track: Track) -> None:
        self.rollout = self.rollout.with_track(track)

    def track(self, name: str) -> Track:
        return self.rollout.track(name)

    def decision(self) -> Decision:
        return Decision(self.rollout, tuple(self.effects))


def cancel_window(track: str, stage: Stage) -> CancelWindow:
    assert stage.window_ends_at is not None  # every observed stage has a window end
    return CancelWindow(track, stage.key, stage.window_ends_at)


def advance(work: Work, track: str, passed_stage: Stage, following: PlanStage) -> None:
    current = work.track(track)
    moved = current.with_stage(replace(passed_stage, state=StageState.PASSED))
    nxt = moved.stage(following.key)
    work.set_track(moved.with_stage(replace(nxt, state=StageState.APPROVING)))


def reached_label(plan_track: PlanTrack, track: Track) -> str | None:
    """The label of the last stage the release reached on `track`, None before any."""
    reached = track.reached
    return None if reached is None else plan_track.stage(reached.key).label


def ended_by_job(
    rollout: Rollout, track: Track, completed_at: datetime | None, now: datetime
) -> datetime:
    """When a track that a job's completion ended did end: GitHub's `completed_at` (the bot
    may have been down when it happened), unless that lies outside what the bot knows of the
    track (GitHub's clock ahead of the bot's, or behind it: before the dispatch, or before a
    stage of `track` was approved or deployed on the bot's clock, which a failure job needing
    every job of its track follows): then `now`, when the bot saw it."""
    known = [m for s in track.stages for m in (s.cleared_at, s.window_started_at) if m]
    began = max([rollout.dispatched_at or rollout.created_at, *known])
    if completed_at is None or not began <= completed_at <= now:
        return now
    return completed_at


def cleared_from(rollout: Rollout, track: Track, stage: Stage) -> datetime:
    """The earliest moment, on the bot's clock, `stage`'s job can have deployed: the bot's
    approval of its environment, else (promoted on GitHub, approved there while the bot was
    down) the deploy of the stage before it, else the dispatch (a track's first stage)."""
    if stage.cleared_at is not None:
        return stage.cleared_at
    keys = [s.key for s in track.stages]
    before = track.stages[keys.index(stage.key) - 1] if keys.index(stage.key) > 0 else None
    if before is not None and before.window_started_at is not None:
        return before.window_started_at
    return rollout.dispatched_at or rollout.created_at


def deployed_at(
    rollout: Rollout, track: Track, stage: Stage, completed_at: datetime | None, now: datetime
) -> tuple[datetime, datetime | None]:
    """When `stage` deployed, and GitHub's `completed_at` when it was set aside. GitHub's time
    when it lies between the moment the stage could deploy (`cleared_from`) and the bot's `now`
    (the bot may have been down when the job ended); else `now`, when the bot saw it: GitHub's
    clock far behind the bot's would open a window over as soon as it starts, its figures from
    before the deploy (a PASS that never saw the release); far ahead, one that starts later.
    Within `MAX_CLOCK_SKEW` (the doctor's tolerance) outside that span, no clock is set aside:
    GitHub dates a job in whole seconds, so a stage deployed within the second of its approval
    is dated before it (the window opens at the approval, the earliest the release was out),
    and a webhook is seen within the second of a completion a little ahead (`now`)."""
    if completed_at is None:
        return now, None
    earliest = cleared_from(rollout, track, stage)
    if earliest <= completed_at <= now:
        return completed_at, None
    if earliest - MAX_CLOCK_SKEW <= completed_at < earliest <= now:
        return earliest, None
    if now < completed_at <= now + MAX_CLOCK_SKEW:
        return now, None
    return now, completed_at


def utc_minute(moment: datetime) -> str:
    """A moment in words for a refusal: `2025-06-02 09:35 UTC`."""
    return f"{moment:%Y-%m-%d %H:%M} UTC"
