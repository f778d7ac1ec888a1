"""Re-run rollback (or kill-switch): a track whose failure job failed on GitHub goes back to
stopping, following the run's next attempt, in which GitHub runs that job again.

GitHub re-runs one job of a run that has ended (`POST .../actions/jobs/{job_id}/rerun`) as a
new attempt: the job and the jobs that need it run again, the others keep their results. The
track then stops as it did the first time (its failure job's environment is approved again by
`reconcile_aborting`) and ends rolled back, halted, or failed again. The rollout follows the
new attempt from the moment it asks for it, so the bot's own re-run is never taken for a re-run
it did not see coming (`reconcile`'s `RerunNotFollowed`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bot.domain.gate import GateKind
from bot.domain.plan import RolloutPlan
from bot.domain.rollout.effects import Announce, Decision
from bot.domain.rollout.events import FailureJobRerun, RerunUnconfirmed
from bot.domain.rollout.state import (
    InvalidTransition,
    Phase,
    Rollout,
    StopKind,
    StopReason,
    TrackState,
)
from bot.domain.rollout.work import reached_label


def rerun_refusal(rollout: Rollout, plan: RolloutPlan, *, track: str) -> str | None:
    """Why the failure job of `track` cannot be re-run now (the answer to the click), or None
    when it can: only a failure job that ran and failed (not one GitHub skipped) of a run the
    rollout follows to its end; GitHub re-runs a job only once its run has ended, and the bot
    follows one attempt at a time, so the rollout must have ended (seen every track end)."""
    plan_track = plan.track(track)
    job = plan_track.on_failure.job
    ended = rollout.track(track)
    reason = ended.ended_reason
    if (
        ended.state is not TrackState.FAILED
        or reason is None
        or reason.kind is not StopKind.FAILURE_JOB_FAILED
        or reason.outcome in (None, "skipped")
        or reason.detail
    ):
        return (
            f"{job} of {plan_track.label} did not fail on GitHub in `{rollout.tag}`: there is "
            "nothing to re-run."
        )
    if rollout.run_id is None or rollout.attempt is None:
        return f"`{rollout.tag}` does not know the run attempt it follows: nothing to re-run."
    if rollout.phase is not Phase.ENDED:
        going = [
            plan.track(t.name).label for t in rollout.tracks if t.state is not TrackState.FAILED
        ]
        still = " and ".join(g for g in going if g != plan_track.label) or "another track"
        return (
            f"The run of `{rollout.tag}` is still going ({still} not over): GitHub re-runs "
            f"{job} only once its run has ended. Click again once the rollout has ended."
        )
    return None


def rerun_failure_job(
    rollout: Rollout,
    plan: RolloutPlan,
    *,
    track: str,
    attempt: int,
    actor: str,
    sent_before: bool = False,
) -> Decision:
    """The failure job of `track` was re-run on GitHub as the run's `attempt`: the track stops
    again as the stop that started its failure job meant (its reason's `cause`: rolled back or
    halted, or failed when a stage's own job had failed), the rollout runs again and follows
    `attempt`. `sent_before`: `actor`'s earlier click sent that re-run, and its outcome was
    never recorded (the bot died, or could not save, after GitHub took it)."""
    refusal = rerun_refusal(rollout, plan, track=track)
    if refusal is not None:
        raise InvalidTransition(refusal)
    plan_track = plan.track(track)
    ended = rollout.track(track)
    assert ended.ended_reason is not None  # checked by rerun_refusal
    cause = ended.ended_reason.cause
    relay = plan_track.gate is GateKind.RELAY
    ending = TrackState.ROLLED_BACK if relay else TrackState.HALTED
    if cause is not None and cause.kind is StopKind.JOB_FAILED:
        ending = TrackState.FAILED  # a stage's own job failed: the track fails, rolled back
    if cause is None:  # a reason stored as text before reasons were data
        kind = StopKind.ROLLED_BACK if relay else StopKind.KILL_SWITCH
        cause = StopReason(kind, actor=actor)
    stopping = replace(
        ended, state=TrackState.ABORTING, ending=ending, ended_reason=cause, ended_at=None
    )
    reopened = replace(
        rollout.with_track(stopping), phase=Phase.RUNNING, ended_at=None, attempt=attempt
    )
    told = rerun_told(rollout, plan, track, attempt, actor, sent_before=sent_before)
    return Decision(reopened, (Announce(told, failure=True),))


def rerun_told(
    rollout: Rollout,
    plan: RolloutPlan,
    track: str,
    attempt: int,
    actor: str,
    lane_taken_by: str = "",
    *,
    sent_before: bool = False,
) -> FailureJobRerun:
    """What the thread is told of `actor`'s re-run of the failure job of `track` as the run's
    `attempt`: followed (`sent_before`: only now, its earlier click's outcome never recorded),
    or (`lane_taken_by`, the tag that took the lane meanwhile) not."""
    plan_track = plan.track(track)
    return FailureJobRerun(
        actor,
        plan_track.label,
        plan_track.on_failure.job,
        attempt,
        rollout.run_url,
        reached_label(plan_track, rollout.track(track)),
        desktop=plan_track.gate is not GateKind.RELAY,
        lane_taken_by=lane_taken_by,
        sent_before=sent_before,
    )


def rerun_unconfirmed(
    rollout: Rollout,
    plan: RolloutPlan,
    track: str,
    *,
    actor: str,
    why: str,
    again_after: datetime | None,
) -> RerunUnconfirmed:
    """What the thread is told when the bot does not know whether GitHub took `actor`'s re-run
    of the failure job of `track` (`RerunUnconfirmed`'s `why`): the rollout still follows the
    attempt the job failed in."""
    plan_track = plan.track(track)
    return RerunUnconfirmed(
        actor,
        plan_track.label,
        plan_track.on_failure.job,
        rollout.attempt or 0,
        rollout.run_url,
        why,
        again_after,
        reached_label(plan_track, rollout.track(track)),
        desktop=plan_track.gate is not GateKind.RELAY,
    )
