"""An approval a re-run overtook on its way: the bot read the attempt it follows just before
it sent its approval of a stage, a person re-ran the run meanwhile, and GitHub took the
approval, whose review names no attempt: it may have approved the same environment on the new
attempt, which the bot never watched nor gated. The rollout ends as a re-run not followed
(`reconcile`), its thread told that instead of "nothing approves the new attempt"."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bot.domain.plan import RolloutPlan
from bot.domain.rollout.effects import Announce, Decision, Effect, Review
from bot.domain.rollout.events import ApprovalOvertaken, RerunNotFollowed
from bot.domain.rollout.reconcile import rerun_since, rerun_unseen
from bot.domain.rollout.refused import about, jobs_at
from bot.domain.rollout.state import Phase, Rollout
from bot.domain.run import RunSnapshot


def approval_overtaken(
    rollout: Rollout, plan: RolloutPlan, snapshot: RunSnapshot, now: datetime, review: Review
) -> Decision:
    """GitHub took the bot's approval `review`, decided on the attempt `rollout` follows, and
    `snapshot` (read after it) shows the run re-run since: the rollout ends as a re-run not
    followed, the thread told the approval may have reached the new attempt (once: the ending
    is saved with it). When nothing of the new attempt waits at the approval's environment nor
    went past it, the approval reached the attempt the rollout followed: the ending is told as
    any re-run not followed. Nothing changes when the snapshot shows no re-run (the rollout's
    next look at the run decides), or once the rollout ended."""
    if rollout.phase is Phase.ENDED or not rerun_since(rollout, snapshot):
        return Decision(rollout)
    ended = rerun_unseen(rollout, plan, snapshot, now)
    track, what = about(plan, review)
    waits = review.environment.casefold() in {name.casefold() for name in snapshot.waiting}
    if not waits and not _past(plan, snapshot, review.environment):
        # Nothing of the new attempt waited there to take it (GitHub takes a review only of
        # what waits): it reached the attempt the rollout followed, before its cancel.
        return ended

    def said(effect: Effect) -> Effect:
        if isinstance(effect, Announce) and isinstance(effect.event, RerunNotFollowed):
            told = ApprovalOvertaken(effect.event, track, what, review.environment, waits)
            return replace(effect, event=told)
        return effect

    return Decision(ended.rollout, tuple(map(said, ended.effects)))


def _past(plan: RolloutPlan, snapshot: RunSnapshot, environment: str) -> bool:
    """Whether a job of the run's attempt in `snapshot` went past `environment` (it started)."""
    return any(
        (job := snapshot.job(name)) is not None and job.started
        for name in jobs_at(plan, environment)
    )
