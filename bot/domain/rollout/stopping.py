"""Following a stopping track (rolling back, tripping the kill-switch) to its end: the stages
that land all the same, the ones rejected, the failure job approved, and the end its failure
job's outcome makes true."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime

from bot.domain.gate import GateKind
from bot.domain.plan import Track as PlanTrack
from bot.domain.rollout.effects import Announce, Review
from bot.domain.rollout.events import (
    FailureJobEnded,
    LandedWhileStopping,
    StageRejected,
    TrackStopped,
)
from bot.domain.rollout.refused import rejecting
from bot.domain.rollout.state import (
    REACHED,
    REJECTABLE,
    StageState,
    StopKind,
    StopReason,
    Track,
    TrackState,
)
from bot.domain.rollout.words import github_person, reason_words
from bot.domain.rollout.work import Work, ended_by_job, reached_label
from bot.domain.run import EnvironmentReview, JobConclusion, JobSnapshot, JobStatus, RunSnapshot


def stop_told(plan_track: PlanTrack, track: Track, waiting: Collection[str]) -> Announce:
    """The thread's line of the stop of `track` (saved before GitHub was read; the run waits
    at `waiting` now), told late: by a look that acts on the stop after its process died, or
    by the stop's process when another replica acted on it first (a stop GitHub made void,
    its last stage deploying, stands then: the release lands there). A stage saved as
    deploying that GitHub still holds is not reached: the stop rejects it."""
    assert track.ended_reason is not None, track  # a stopping track's
    reached = track
    stage = track.current
    if stage is not None and stage.state is StageState.DEPLOYING:
        environment = plan_track.stage(stage.key).environment.casefold()
        if any(name.casefold() == environment for name in waiting):
            reached = track.with_stage(replace(stage, state=StageState.APPROVING))
    told = TrackStopped(
        plan_track.label,
        track.ended_reason,
        reached_label(plan_track, reached),
        desktop=plan_track.gate is GateKind.DESKTOP,
        failure_job=plan_track.on_failure.job,
    )
    return Announce(told, failure=True)


def tell_untold_stop(
    work: Work, plan_track: PlanTrack, before: Track, waiting: Collection[str], *, at: int
) -> None:
    """A look acts on the stop of `before` that the thread was never told of (its process
    died between its save and its line; `Rollout.untold_stops`): its line goes first, before
    what the look says of the track (from the effect `at`), and once."""
    work.effects.insert(at, stop_told(plan_track, before, waiting))
    untold = tuple(name for name in work.rollout.untold_stops if name != before.name)
    # The stop stands: whoever waited on it was told rightly that it was being done.
    waiters = tuple(w for w in work.rollout.stop_waiters if w[0] != before.name)
    work.rollout = replace(work.rollout, untold_stops=untold, stop_waiters=waiters)


def rejected_by_review(job: JobSnapshot, review: EnvironmentReview | None) -> bool:
    """GitHub failed the job without running it: its environment was rejected (or its wait
    for a review ran out, or another protection rule rejected it after a person approved).
    The bot itself only rejects stages of a track it is stopping."""
    if job.conclusion is not JobConclusion.FAILURE:
        return False  # a cancelled run, a timeout: not a review
    return not job.ran or (review is not None and review.state == "rejected")


def reconcile_aborting(
    work: Work, plan_track: PlanTrack, name: str, snapshot: RunSnapshot, now: datetime
) -> None:
    track = work.track(name)
    for stage in track.stages:
        job = snapshot.job(plan_track.stage(stage.key).job)
        running = job is not None and (job.status is JobStatus.IN_PROGRESS or job.succeeded)
        if stage.state in REJECTABLE and running:
            # Approved before the stop took hold, which saw it pending (a person on GitHub, a
            # Promote saved on another replica, a rejection too late): it runs all the same.
            track = track.with_stage(replace(stage, state=StageState.DEPLOYING))
    for stage in track.stages:
        job = snapshot.job(plan_track.stage(stage.key).job)
        if stage.state is not StageState.DEPLOYING or job is None:
            continue
        if job.status is not JobStatus.COMPLETED:
            continue
        # An approved job runs to its end whatever the bot does: the release got there (or the
        # deploy failed), and the stage's window is never observed.
        landed = StageState.STOPPED if job.succeeded else StageState.FAILED
        track = track.with_stage(replace(stage, state=landed))
        outcome = None if job.succeeded else str(job.conclusion)
        label = plan_track.stage(stage.key).label
        told = LandedWhileStopping(plan_track.label, label, outcome)
        work.effects.append(Announce(told, failure=not job.succeeded))
    for stage in track.stages:
        spec = plan_track.stage(stage.key)
        # A stage that has landed is never rejected: a late snapshot may still list its
        # environment as waiting after its job ran.
        if stage.state in REJECTABLE and snapshot.is_waiting(spec.environment):
            why = (
                reason_words(track.ended_reason, github_person) if track.ended_reason else "stopped"
            )
            comment = f"rollout-bot: {why}"
            work.effects.append(Review(name, spec.environment, approve=False, comment=comment))
            if stage.state is not StageState.REJECTED:
                track = track.with_stage(replace(stage, state=StageState.REJECTED))
                work.effects.append(Announce(StageRejected(plan_track.label, spec.label)))
                work.rollout = rejecting(work.rollout, spec.environment)
    work.set_track(track)
    failure = plan_track.on_failure
    if snapshot.is_waiting(failure.environment):
        work.effects.append(
            Review(name, failure.environment, approve=True, comment=f"rollout-bot: {failure.job}")
        )
    job = snapshot.job(failure.job)
    if job is not None and job.status is JobStatus.COMPLETED:
        _failure_job_ended(work, plan_track, track, job, snapshot, now)


def _failure_job_ended(
    work: Work,
    plan_track: PlanTrack,
    track: Track,
    job: JobSnapshot,
    snapshot: RunSnapshot,
    now: datetime,
) -> None:
    """The track ends with its failure job. Only a successful rollback or kill-switch job
    rolled back or halted anything; one GitHub skipped while nothing of the track had deployed
    (its `if:` asks for a deployed stage, or the run was cancelled) had nothing to take back,
    so the stop ends as it meant to; any other end leaves the track failed."""
    failure = plan_track.on_failure
    nothing = job.skipped and _nothing_deployed(plan_track, track, snapshot)
    ending = (track.ending if job.succeeded or nothing else None) or TrackState.FAILED
    outcome = None if job.succeeded else str(job.conclusion)
    reason = track.ended_reason
    landed = job.skipped and _landed_last(track)
    if outcome is not None and not nothing:
        last = plan_track.stages[-1].label if landed else ""
        reason = StopReason(
            StopKind.FAILURE_JOB_FAILED,
            subject=failure.job,
            outcome=outcome,
            detail=last,
            cause=reason,
        )
    ended_at = ended_by_job(work.rollout, track, job.completed_at, now)
    work.set_track(
        replace(track, state=ending, ending=None, ended_at=ended_at, ended_reason=reason)
    )
    ended = FailureJobEnded(
        plan_track.label,
        failure.job,
        outcome,
        job.html_url,
        ending,
        reached_label(plan_track, track),
        desktop=plan_track.gate is GateKind.DESKTOP,
        rejected=_any_rejected(plan_track, track, snapshot),
        landed=landed,
        track_key=track.name,
        attempt=work.rollout.attempt or 0,
    )
    work.effects.append(Announce(ended, failure=True))


def _nothing_deployed(plan_track: PlanTrack, track: Track, snapshot: RunSnapshot) -> bool:
    """No stage of the track deployed anything: none was reached, none failed in its deploy,
    and no stage's job ran, unless its environment was rejected (a runner may be named for
    it all the same). A stage job the run does not list (renamed in the workflow, not in the
    plan) may have deployed unseen: GitHub lists every job once the failure job, which needs
    them, has ended, so it is never counted as not run."""
    for stage in track.stages:
        spec = plan_track.stage(stage.key)
        job = snapshot.job(spec.job)
        if stage.state in REACHED or stage.state is StageState.FAILED or job is None:
            return False
        if rejected_by_review(job, snapshot.review_of(spec.environment)):
            continue
        if job.started or job.status is JobStatus.IN_PROGRESS:
            return False
    return True


def _landed_last(track: Track) -> bool:
    """The track's last stage deployed while it was stopping (approved before the stop took
    hold): the release is all the way out, and nothing failed for a failure job to run on."""
    return bool(track.stages) and track.stages[-1].state is StageState.STOPPED


def _any_rejected(plan_track: PlanTrack, track: Track, snapshot: RunSnapshot) -> bool:
    """Whether a stage of the track was rejected (by the stop, or by a person on GitHub), not
    failed by its own job."""
    for stage in track.stages:
        spec = plan_track.stage(stage.key)
        job = snapshot.job(spec.job)
        if stage.state is StageState.REJECTED or (
            job is not None and rejected_by_review(job, snapshot.review_of(spec.environment))
        ):
            return True
    return False
