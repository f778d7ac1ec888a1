"""A Re-evaluate's backstop: the window timer that takes a held stage's verdict should the
click not save it.

Re-evaluate saves a held stage evaluating, then saves the gate's verdict: two saves. The
window's own timer fired long ago, so a replica that dies between them, a database blink on
the second, or other replicas winning each of its tries would leave the stage evaluating with
nothing to decide it. The backstop is written before the first save; it fires as the window's
own timer would (`bot.services.window_ends`), and on a stage decided meanwhile, or never saved
evaluating, it changes nothing (`bot.domain.rollout.window_ended`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.domain import rollout as machine
from bot.domain.errors import ConcurrentChange
from bot.domain.plan import RolloutPlan, settle_of
from bot.domain.rollout import Rollout, Stage, StageState
from bot.services.effects import EffectRunner

REEVALUATE_BACKSTOP = timedelta(minutes=5)
"""How long after a Re-evaluate its backstop runs the gate again: a verdict saved by then (in
seconds, as a rule) leaves it nothing to do."""


async def write_backstop(
    effects: EffectRunner, rollout: Rollout, plan: RolloutPlan, *, track: str, stage: Stage
) -> datetime | None:
    """Write the backstop of a Re-evaluate about to save `stage` evaluating; returns when it
    fires. None: the stage needs none, or no window timer could decide it. A stage whose
    window has not ended (observed, or left evaluating by a failing verdict whose save was
    lost) keeps its window's own timer, which ends the window when the card says: a backstop
    would end it early, and a PASS of its first minutes would hold or promote it."""
    ends = stage.window_ends_at
    if stage.state is StageState.OBSERVING or ends is None:
        return None
    now = effects.clock()
    if now < ends + settle_of(plan.track(track).metrics):  # its own timer is still to fire
        return None
    due = now + REEVALUATE_BACKSTOP
    key = machine.backstop_timer_key(rollout.id, track, stage.key, ends, asked_at=now)
    await effects.window_timer(rollout, key=key, track=track, stage=stage.key, ends=ends, due=due)
    return due


def verdict_unsaved(
    effects: EffectRunner,
    plan: RolloutPlan,
    *,
    track: str,
    stage: str,
    backstop: datetime | None,
    lost: ConcurrentChange,
) -> ConcurrentChange:
    """The answer to a Re-evaluate that saved the stage evaluating, then lost each try to save
    its verdict to other replicas' saves (`lost`): not "this action changed nothing"."""
    plan_track = plan.track(track)
    label = plan_track.stage(stage).label
    again = f" at {effects.words.slack_time(backstop)}" if backstop is not None else ""
    return ConcurrentChange(
        f"Re-evaluate saved *{label}* ({plan_track.label}) evaluating, but other replicas saved "
        "the rollout before each try to save its verdict, so no verdict is saved yet. The gate "
        f"runs again on its own{again}; Re-evaluate runs it now.",
        rollout_id=lost.rollout_id,
    )
