"""An approval GitHub refused the bot on its own path (a stage promoting itself, a failure
job): the stage was saved as deploying, and the thread told "Approved", before GitHub was
asked. A definite refusal is told once, and the rollout remembers it while the job still
waits, so that the card does not say the stage deploys; the bot asks again at each look.
The same for a stopping track's rejection of its next stage (a failed gate, a stop): saved as
rejected, told "Rejected", while GitHub still holds it and the failure job cannot start.
A review GitHub keeps failing without refusing it (a 5xx, no answer) is told once it has not
been taken for a while (`review_failed`), remembered the same way."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from bot.domain.plan import RolloutPlan
from bot.domain.rollout.effects import Announce, Decision, Review
from bot.domain.rollout.events import ApprovalRefused, ReviewUnanswered
from bot.domain.rollout.state import Rollout
from bot.domain.run import JobStatus, RunSnapshot


def approval_refused(
    rollout: Rollout, plan: RolloutPlan, review: Review, cause: str, *, by_rule: bool = False
) -> Decision:
    """GitHub refused the bot's approval or rejection `review`, answering `cause` (`by_rule`:
    to the App's protection rule): the thread is told once per environment while its job
    waits (nothing else changes)."""
    wanted = review.environment.casefold()
    told_before = _told(rollout, wanted)
    # Told it was not answered (`review_failed`): the refusal is news, someone must act.
    if told_before and _unreviewed(rollout, wanted) is None:
        return Decision(rollout)
    rejected = not review.approve
    run_url = rollout.run_url
    told = ApprovalRefused(*about(plan, review), cause, run_url, rejected, by_rule)
    kept = rollout.refused_approvals
    refused = kept if told_before else (*kept, review.environment)
    answered = replace(_without(rollout, wanted), refused_approvals=refused)
    return Decision(answered, (Announce(told, failure=True),))


def review_failed(
    rollout: Rollout,
    plan: RolloutPlan,
    review: Review,
    cause: str,
    *,
    now: datetime,
    after: timedelta,
    by_rule: bool = False,
) -> Decision:
    """GitHub failed the bot's review `review` at `now` without refusing it (`cause`: its
    answer in words; `by_rule`: to the App's protection rule): the first such failure is
    remembered; once GitHub has not taken the review for `after`, the thread is told once
    (nothing else changes)."""
    wanted = review.environment.casefold()
    if _told(rollout, wanted):  # told already: refused, or not answered
        return Decision(rollout)
    since = _unreviewed(rollout, wanted)
    if since is None:
        unreviewed = (*rollout.unreviewed_since, (review.environment, now))
        return Decision(replace(rollout, unreviewed_since=unreviewed))
    if now - since < after:
        return Decision(rollout)
    rejected = not review.approve
    told = ReviewUnanswered(*about(plan, review), cause, since, rollout.run_url, rejected, by_rule)
    refused = (*rollout.refused_approvals, review.environment)
    return Decision(replace(rollout, refused_approvals=refused), (Announce(told, failure=True),))


def about(plan: RolloutPlan, review: Review) -> tuple[str, str]:
    """The track's label, and the stage's (or the failure job) that `review` reviews."""
    wanted = review.environment.casefold()
    plan_track = plan.track(review.track)
    what = next(
        (s.label for s in plan_track.stages if s.environment.casefold() == wanted),
        plan_track.on_failure.job,
    )
    return plan_track.label, what


def _told(rollout: Rollout, wanted: str) -> bool:
    return any(name.casefold() == wanted for name in rollout.refused_approvals)


def _unreviewed(rollout: Rollout, wanted: str) -> datetime | None:
    return next((at for name, at in rollout.unreviewed_since if name.casefold() == wanted), None)


def _without(rollout: Rollout, wanted: str) -> Rollout:
    """The rollout without a failed review of the environment `wanted` (casefolded) kept."""
    kept = tuple(entry for entry in rollout.unreviewed_since if entry[0].casefold() != wanted)
    return rollout if kept == rollout.unreviewed_since else replace(rollout, unreviewed_since=kept)


def rejecting(rollout: Rollout, environment: str) -> Rollout:
    """The rollout once a stopping track rejects its stage at `environment`: a refusal kept
    there was of the bot's approval (told as such), so that the rejection's own refusal, if
    GitHub refuses it too, is told (the kill-switch or rollback job cannot start)."""
    wanted = environment.casefold()
    kept = tuple(name for name in rollout.refused_approvals if name.casefold() != wanted)
    rollout = _without(rollout, wanted)
    return (
        rollout if kept == rollout.refused_approvals else replace(rollout, refused_approvals=kept)
    )


def still_refused(rollout: Rollout, plan: RolloutPlan, snapshot: RunSnapshot) -> Rollout:
    """The rollout without the refused (or failed) reviews whose job no longer waits (GitHub
    took a review, a person's or the bot's asked again, or the job was cancelled or skipped)."""

    def waits(environment: str) -> bool:
        return any(
            (job := snapshot.job(name)) is not None and job.status is JobStatus.WAITING
            for name in jobs_at(plan, environment)
        )

    kept = tuple(environment for environment in rollout.refused_approvals if waits(environment))
    failed = tuple(entry for entry in rollout.unreviewed_since if waits(entry[0]))
    if kept == rollout.refused_approvals and failed == rollout.unreviewed_since:
        return rollout
    return replace(rollout, refused_approvals=kept, unreviewed_since=failed)


def jobs_at(plan: RolloutPlan, environment: str) -> list[str]:
    """The jobs of the plan that deploy to `environment` (a stage's, a failure job's)."""
    wanted = environment.casefold()
    at: list[tuple[str, str]] = []
    for track in plan.tracks.values():
        at.extend((stage.environment, stage.job) for stage in track.stages)
        at.append((track.on_failure.environment, track.on_failure.job))
    return [job for name, job in at if name.casefold() == wanted]
