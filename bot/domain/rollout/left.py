"""The tracks a stop leaves as they are: what a Roll back, a Kill-switch or a failed gate did
not stop, and why, so the thread never lets a stop of some tracks read as a stop of all."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from bot.domain.gate import GateKind
from bot.domain.plan import RolloutPlan
from bot.domain.rollout.state import Rollout, StageState, TrackState


class Left(StrEnum):
    """Why a track of the stopped gate was left as it is."""

    COMPLETED = "completed"
    """It reached its last stage: that release stays deployed there."""
    LANDING = "landing"
    """Its last stage was approved and is deploying: GitHub cannot stop that job."""
    ENDED = "ended"
    """It had already stopped (rolled back, halted, failed, cancelled) or is stopping."""
    RUNNING = "running"
    """Another track of the gate, still running: a failed gate stops its own track only."""


@dataclass(frozen=True)
class TrackLeft:
    """One track a stop left as it is (labels as the reader knows them)."""

    name: str
    """The track's name in the plan (the audit trail's)."""
    track: str
    """The track's label."""
    why: Left
    state: TrackState
    reached: str | None
    """The label of the last stage its release reached, None before any."""
    redeploy: bool
    """Its card offers Roll back to the previous release… (a completed relay-gated track)."""


def tracks_left(
    rollout: Rollout, plan: RolloutPlan, *, gate: GateKind, stopping: Collection[str]
) -> tuple[TrackLeft, ...]:
    """Every track of `gate` that the stop of `stopping` (track names) leaves as it is, in the
    plan's order."""
    left = []
    for name, plan_track in plan.tracks.items():
        if plan_track.gate is not gate or name in stopping:
            continue
        track = rollout.track(name)
        current = track.current
        final = plan_track.stages[-1].key
        if track.state is TrackState.COMPLETED:
            why = Left.COMPLETED
        elif track.state is not TrackState.ACTIVE:
            why = Left.ENDED
        elif current is not None and current.key == final and current.state is StageState.DEPLOYING:
            why = Left.LANDING
        else:
            why = Left.RUNNING
        reached = track.reached
        left.append(
            TrackLeft(
                name=name,
                track=plan_track.label,
                why=why,
                state=track.state,
                reached=None if reached is None else plan_track.stage(reached.key).label,
                redeploy=why is Left.COMPLETED and gate is GateKind.RELAY,
            )
        )
    return tuple(left)
