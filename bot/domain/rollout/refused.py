"""An approval GitHub refused the bot on its own path (a stage promoting itself, a failure
job): the stage was saved as deploying, and the thread told "Approved", before GitHub was
asked. A definite refusal is told once, and the rollout remembers it while the job still
waits, so that the card does not say the stage deploys; the bot asks again at each look.
The same for a stopping track's rejection of its next stage (a failed gate, a stop): saved as
rejected, told "Rejected", while GitHub still holds it and the failure job cannot start."""

from __future__ import annotations

from dataclasses import replace

from bot.domain.plan import RolloutPlan
from bot.domain.rollout.effects import Announce, Decision, Review
from bot.domain.rollout.events import ApprovalRefused
from bot.domain.rollout.state import Rollout
from bot.domain.run import JobStatus, RunSnapshot


def approval_refused(rollout: Rollout, plan: RolloutPlan, review: Review, cause: str) -> Decision:
    """GitHub refused the bot's approval or rejection `review`, answering `cause`: the thread
    is told once per environment while its job waits (nothing else changes)."""
    wanted = review.environment.casefold()
    if any(name.casefold() == wanted for name in rollout.refused_approvals):
        return Decision(rollout)
    plan_track = plan.track(review.track)
    what = next(
        (s.label for s in plan_track.stages if s.environment.casefold() == wanted),
        plan_track.on_failure.job,
    )
    rejected = not review.approve
    told = ApprovalRefused(plan_track.label, what, cause, rollout.run_url, rejected=rejected)
    refused = (*rollout.refused_approvals, review.environment)
    return Decision(replace(rollout, refused_approvals=refused), (Announce(told, failure=True),))


def rejecting(rollout: Rollout, environment: str) -> Rollout:
    """The rollout once a stopping track rejects its stage at `environment`: a refusal kept
    there was of the bot's approval (told as such), so that the rejection's own refusal, if
    GitHub refuses it too, is told (the kill-switch or rollback job cannot start)."""
    wanted = environment.casefold()
    kept = tuple(name for name in rollout.refused_approvals if name.casefold() != wanted)
    return (
        rollout if kept == rollout.refused_approvals else replace(rollout, refused_approvals=kept)
    )


def still_refused(rollout: Rollout, plan: RolloutPlan, snapshot: RunSnapshot) -> Rollout:
    """The rollout without the refused reviews whose job no longer waits (GitHub took a
    review, a person's or the bot's asked again, or the job was cancelled or skipped)."""
    kept = tuple(
        environment
        for environment in rollout.refused_approvals
        if any(
            (job := snapshot.job(name)) is not None and job.status is JobStatus.WAITING
            for name in _jobs_at(plan, environment)
        )
    )
    return (
        rollout if kept == rollout.refused_approvals else replace(rollout, refused_approvals=kept)
    )


def _jobs_at(plan: RolloutPlan, environment: str) -> list[str]:
    wanted = environment.casefold()
    at: list[tuple[str, str]] = []
    for track in plan.tracks.values():
        at.extend((stage.environment, stage.job) for stage in track.stages)
        at.append((track.on_failure.environment, track.on_failure.job))
    return [job for name, job in at if name.casefold() == wanted]
