"""A review a re-run overtook on its way: the bot read the attempt it follows just before it
sent its approval or rejection of a stage, a person re-ran the run meanwhile, and GitHub took
the review, whose request names no attempt. An approval may have approved the same environment
on the new attempt, which the bot never watched nor gated; a rejection (of a stopped track)
may have reached the attempt the rollout followed only, the new attempt's job waiting there
again. The rollout ends as a re-run not followed (`reconcile`), its thread told that instead of
"nothing approves the new attempt"."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bot.domain.plan import RolloutPlan
from bot.domain.rollout.effects import Announce, Decision, Effect, Review
from bot.domain.rollout.events import ApprovalOvertaken, RejectionOvertaken, RerunNotFollowed
from bot.domain.rollout.reconcile import rerun_since, rerun_unseen
from bot.domain.rollout.refused import about, jobs_at
from bot.domain.rollout.state import Phase, Rollout
from bot.domain.run import RunSnapshot


def review_overtaken(
    rollout: Rollout,
    plan: RolloutPlan,
    snapshot: RunSnapshot,
    now: datetime,
    review: Review,
    *,
    untaken: bool,
    rejected: bool,
) -> Decision:
    """GitHub took the bot's review `review`, decided on the attempt `rollout` follows, and
    `snapshot` (read after it) shows the run re-run since: the rollout ends as a re-run not
    followed, told once (the ending is saved with it). `untaken`: what waits at the review's
    environment on the new attempt waits for the answer the bot gives (so the review did not
    reach it). An approval that may have reached the new attempt (its job there went past it,
    or waits still for another of its rules) is told so; a rejection whose environment the new
    attempt's job waits at or went past is told so, `rejected`: the bot rejected that wait too
    (`snapshot`, read after it, no longer shows it).
    Otherwise the ending is told as any re-run not followed. Nothing changes when the snapshot
    shows no re-run (the rollout's next look at the run decides), or once the rollout ended."""
    if rollout.phase is Phase.ENDED or not rerun_since(rollout, snapshot):
        return Decision(rollout)
    ended = rerun_unseen(rollout, plan, snapshot, now)
    track, what = about(plan, review)
    waits = rejected or snapshot.is_waiting(review.environment)
    past = _past(plan, snapshot, review.environment)
    if review.approve and (untaken or not (waits or past)):
        # Nothing of the new attempt waited there to take it (GitHub takes a review only of
        # what waits), or it waits for the bot's answer still: it reached the attempt the
        # rollout followed, before its cancel.
        return ended
    if not review.approve and not (waits or past):
        return ended  # the rejection reached the new attempt's job, or nothing of it is there

    def said(effect: Effect) -> Effect:
        if not (isinstance(effect, Announce) and isinstance(effect.event, RerunNotFollowed)):
            return effect
        rerun = effect.event
        if review.approve:
            told = ApprovalOvertaken(rerun, track, what, review.environment, waits)
            return replace(effect, event=told)
        event = RejectionOvertaken(rerun, track, what, review.environment, waits, rejected)
        return replace(effect, event=event)

    return Decision(ended.rollout, tuple(map(said, ended.effects)))


def _past(plan: RolloutPlan, snapshot: RunSnapshot, environment: str) -> bool:
    """Whether a job of the run's attempt in `snapshot` went past `environment` (it started)."""
    return any(
        (job := snapshot.job(name)) is not None and job.started
        for name in jobs_at(plan, environment)
    )
