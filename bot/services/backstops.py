"""A Re-evaluate's backstop: the timer that takes a stage's verdict should the click not save
it.

Re-evaluate saves the stage evaluating, then saves the gate's verdict: two saves. A replica
that dies between them (or before the first), a database blink on either, or other replicas
winning each of its tries would leave the verdict untaken. The backstop is written before the
first save. On a held stage (its window's own timer fired long ago) it is a window timer that
fires as the window's own would (`bot.services.window_ends`). On a stage whose window still
runs (only a failing verdict acts there: `bot.domain.controls.reevaluation`) it is an early
gate (`EARLY_GATE_TIMER`): it runs the gate again and takes only a failing verdict, so a lost
roll back is not left until the window's end, and no PASS ends the window early. On a stage
decided meanwhile, either changes nothing (`bot.domain.rollout.window_ended`,
`early_gate_stands`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain import rollout as machine
from bot.domain.errors import ConcurrentChange
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout, Stage
from bot.services.effects import WINDOW_TIMER, EffectRunner
from bot.services.records import NewTimer

REEVALUATE_BACKSTOP = timedelta(minutes=5)
"""How long after a Re-evaluate its backstop runs the gate again: a verdict saved by then (in
seconds, as a rule) leaves it nothing to do."""


@dataclass(frozen=True)
class Backstop:
    """A Re-evaluate's backstop, written (`write_backstop`)."""

    due: datetime
    """When it fires."""
    runs_until: datetime | None = None
    """An early gate's (it takes only a failing verdict): the end of the window that runs on
    should the figures not fail then. None: a window timer, which takes any verdict."""


async def write_backstop(
    effects: EffectRunner, rollout: Rollout, plan: RolloutPlan, *, track: str, stage: Stage
) -> Backstop | None:
    """Write the backstop of a Re-evaluate about to save `stage` evaluating; returns it.
    None: no window timer could decide it (no window). A stage whose window has not
    ended (observed, or left evaluating by a failing verdict whose save was lost) keeps its
    window's own timer, which ends the window when the card says, and gets an early gate: a
    window timer would end it early, and a PASS of its first minutes would hold or promote it."""
    ends = stage.window_ends_at
    if ends is None:
        return None
    now = effects.clock()
    due = now + REEVALUATE_BACKSTOP
    if machine.window_runs(stage, now, plan.track(track).metrics):
        kind = machine.EARLY_GATE_TIMER
        key = machine.early_gate_timer_key(rollout.id, track, stage.key, ends, asked_at=now)
    else:
        kind = WINDOW_TIMER
        key = machine.backstop_timer_key(rollout.id, track, stage.key, ends, asked_at=now)
    payload = machine.window_timer_payload(track, stage.key, ends)
    await effects.window_timer(rollout, NewTimer(key, kind, due, payload))
    return Backstop(due, ends if kind == machine.EARLY_GATE_TIMER else None)


def verdict_unsaved(
    effects: EffectRunner,
    plan: RolloutPlan,
    *,
    track: str,
    stage: str,
    backstop: Backstop | None,
    lost: ConcurrentChange,
) -> ConcurrentChange:
    """The answer to a Re-evaluate that saved the stage evaluating, then lost each try to save
    its verdict to other replicas' saves (`lost`): not "this action changed nothing"; of an
    early gate, that it acts only on figures still failing."""
    plan_track = plan.track(track)
    label = plan_track.stage(stage).label
    at = effects.words.slack_time
    again = f" at {at(backstop.due)}" if backstop is not None else ""
    if backstop is not None and backstop.runs_until is not None:
        again += (
            ", and acts then only if its figures still fail; else the window runs on until "
            f"{at(backstop.runs_until)}, when the gate decides"
        )
    return ConcurrentChange(
        f"Re-evaluate saved *{label}* ({plan_track.label}) evaluating, but other replicas saved "
        "the rollout before each try to save its verdict, so no verdict is saved yet. The gate "
        f"runs again on its own{again}; Re-evaluate runs it now.",
        rollout_id=lost.rollout_id,
    )
