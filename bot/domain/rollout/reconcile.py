"""Following the GitHub run: compare the rollout with its run and ask for what is missing."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from bot.domain.gate import GateKind
from bot.domain.plan import RolloutPlan
from bot.domain.plan import Stage as PlanStage
from bot.domain.plan import Track as PlanTrack
from bot.domain.protection_rules import environment_jobs
from bot.domain.rollout.effects import (
    Announce,
    ClockSkewed,
    Decision,
    Review,
    ScheduleWindow,
)
from bot.domain.rollout.events import (
    PromotedOnGitHub,
    RejectedOnGitHub,
    RerunNotFollowed,
    RolloutEnded,
    RunEnded,
    StageApproved,
    StageDeployed,
    StageJobFailed,
    TrackCompleted,
    WaitsOutsidePlan,
)
from bot.domain.rollout.refused import still_refused
from bot.domain.rollout.state import (
    TERMINAL_TRACK,
    WATCHED,
    Phase,
    Rollout,
    Stage,
    StageState,
    StopKind,
    StopReason,
    TrackState,
)
from bot.domain.rollout.stopping import (
    reconcile_aborting,
    rejected_by_review,
    tell_untold_stop,
)
from bot.domain.rollout.work import Work, cancel_window, deployed_at, reached_label
from bot.domain.run import EnvironmentReview, RunSnapshot

DISPATCH_SEARCH = timedelta(minutes=10)
"""How long the bot looks for the run of a dispatch it could not identify at once before it
returns to the preflight (`DISPATCH_SEARCH_SECONDS`'s default)."""


def reconcile(
    rollout: Rollout, plan: RolloutPlan, snapshot: RunSnapshot, now: datetime
) -> Decision:
    """Bring the rollout in line with what GitHub reports, and ask for what is still missing."""
    if rollout.phase is not Phase.RUNNING:
        return Decision(rollout)
    if snapshot.attempt < (rollout.attempt or 0):
        # Read before the bot's own re-run of a failure job (`rerun`) and reconciled after
        # it: that attempt is over, its failed job already told.
        return Decision(rollout)
    if rerun_since(rollout, snapshot):
        return rerun_unseen(rollout, plan, snapshot, now)
    attached = rollout if rollout.attempt else replace(rollout, attempt=snapshot.attempt)
    work = Work(still_refused(attached, plan, snapshot))
    for track in rollout.tracks:
        plan_track = plan.track(track.name)
        told_at = len(work.effects)
        if track.state is TrackState.ACTIVE:
            _reconcile_active(work, plan, plan_track, track.name, snapshot, now)
        if work.track(track.name).state is TrackState.ABORTING:
            reconcile_aborting(work, plan_track, track.name, snapshot, now)
        if snapshot.completed and work.track(track.name).state not in TERMINAL_TRACK:
            _end_with_run(work, plan_track, track.name, snapshot, now)
        if track.name in rollout.untold_stops and work.track(track.name) != track:
            tell_untold_stop(work, plan_track, track, snapshot.waiting, at=told_at)
    _waits_outside_plan(work, plan, snapshot)
    return _maybe_end(work, plan, now)


def _waits_outside_plan(work: Work, plan: RolloutPlan, snapshot: RunSnapshot) -> None:
    """The run waits for the bot's answer (the App's rule, or in token mode the review of
    the bot's account) at an environment the plan does not name (a job of the workflow that
    no stage gates): nothing here approves or rejects it, and GitHub holds the job until
    someone does (nobody is notified of a wait for the bot), so the thread is told once per
    environment what to do. Saved with the rollout: a second replica or a later look finds
    it told."""
    rollout = work.rollout
    known = set(environment_jobs(plan)) | {name.casefold() for name in rollout.told_outside}
    new: list[str] = []
    for environment in sorted(snapshot.waiting):
        if environment.casefold() not in known:
            known.add(environment.casefold())
            new.append(environment)
            by_review = environment not in snapshot.rule_waits
            told = WaitsOutsidePlan(environment, snapshot.run_id, snapshot.html_url, by_review)
            work.effects.append(Announce(told, failure=True))
    if new:
        work.rollout = replace(rollout, told_outside=(*rollout.told_outside, *new))


def _reconcile_active(
    work: Work,
    plan: RolloutPlan,
    plan_track: PlanTrack,
    name: str,
    snapshot: RunSnapshot,
    now: datetime,
) -> None:
    track = work.track(name)
    stage = track.current
    if stage is None:
        return
    if stage.state in WATCHED and _reviewed_on_github(work, plan_track, name, stage, snapshot):
        track = work.track(name)
        stage = track.current
        if track.state is not TrackState.ACTIVE or stage is None:
            return
    spec = plan_track.stage(stage.key)
    if stage.state in (StageState.APPROVING, StageState.DEPLOYING):
        job = snapshot.job(spec.job)
        if job is not None and rejected_by_review(job, snapshot.review_of(spec.environment)):
            _rejected_on_github(work, plan_track, name, spec, snapshot.review_of(spec.environment))
        elif job is not None and job.succeeded:
            _deployed(work, plan_track, name, spec, job.completed_at, now)
        elif job is not None and (job.failed or job.skipped):
            # The stage's own job, or what made it skip; never the other track's failures.
            related = {s.job for s in plan_track.stages} | {plan.preflight.job}
            failed = (
                [job]
                if job.failed
                else [j for j in snapshot.jobs.values() if j.failed and j.name in related]
            )
            logs = tuple((j.name, j.html_url) for j in failed if j.html_url)
            outcome = None if job.skipped else str(job.conclusion)
            work.set_track(
                replace(
                    track.with_stage(replace(stage, state=StageState.FAILED)),
                    state=TrackState.ABORTING,
                    ending=TrackState.FAILED,
                    ended_reason=StopReason(StopKind.JOB_FAILED, subject=spec.job, outcome=outcome),
                )
            )
            told = StageJobFailed(
                plan_track.label,
                spec.job,
                outcome,
                logs,
                snapshot.html_url,
                plan_track.on_failure.job,
            )
            work.effects.append(Announce(told, failure=True))
        elif snapshot.is_waiting(spec.environment):
            # Its job cannot deploy before the bot's first approval (an approval asked again
            # keeps it): the window never starts earlier.
            cleared = stage.cleared_at or now
            approving = replace(stage, state=StageState.DEPLOYING, cleared_at=cleared)
            work.set_track(track.with_stage(approving))
            work.effects.append(
                Review(name, spec.environment, approve=True, comment=_comment(work.rollout, spec))
            )
            if stage.state is StageState.APPROVING:
                work.effects.append(Announce(StageApproved(plan_track.label, spec.label)))
    elif (
        stage.state is StageState.OBSERVING
        and stage.window_ends_at is not None
        and not snapshot.completed
    ):
        work.effects.append(ScheduleWindow(name, stage.key, stage.window_ends_at))


def _reviewed_on_github(
    work: Work, plan_track: PlanTrack, name: str, stage: Stage, snapshot: RunSnapshot
) -> bool:
    """Someone acted on GitHub (github.com, the API) on the stage after `stage`, which the bot
    was holding (its window, its gate or a Promote still to come): an approval promotes it,
    a rejection stops the track. True when the track moved."""
    following = plan_track.next_stage(stage.key)
    job = snapshot.job(following.job) if following is not None else None
    if following is None or job is None:
        return False
    review = snapshot.review_of(following.environment)
    if rejected_by_review(job, review):
        _rejected_on_github(work, plan_track, name, following, review)
        return True
    if not (job.started or (review is not None and review.state == "approved")):
        return False
    if stage.state is StageState.OBSERVING:
        work.effects.append(cancel_window(name, stage))
    moved = work.track(name).with_stage(replace(stage, state=StageState.PASSED))
    nxt = moved.stage(following.key)
    work.set_track(moved.with_stage(replace(nxt, state=StageState.DEPLOYING)))
    reviewer = review.reviewer if review is not None and review.state == "approved" else None
    bypassed = reviewer is None and snapshot.was_bypassed(following.environment)
    by_bot = reviewer is None and snapshot.was_applied_unseen(following.environment)
    late = snapshot.late_start(following.environment) if reviewer is None else None
    labels = (plan_track.label, plan_track.stage(stage.key).label, following.label)
    minutes = 0 if late is None else max(1, int(late.total_seconds() // 60))
    told = PromotedOnGitHub(*labels, stage.state, reviewer, bypassed, by_bot, minutes)
    work.effects.append(Announce(told))
    return True


def _rejected_on_github(
    work: Work,
    plan_track: PlanTrack,
    name: str,
    rejected: PlanStage,
    review: EnvironmentReview | None,
) -> None:
    """A stage the bot had not approved was rejected on GitHub: the run fails into the
    track's failure job, so the track stops as if rolled back (or killed) from Slack."""
    before = work.track(name)
    track = before
    current = track.current
    if current is not None and current.state in WATCHED:
        if current.state is StageState.OBSERVING:
            work.effects.append(cancel_window(name, current))
        track = track.with_stage(replace(current, state=StageState.STOPPED))
    track = track.with_stage(replace(track.stage(rejected.key), state=StageState.REJECTED))
    relay = plan_track.gate is GateKind.RELAY
    who = review.reviewer if review is not None else None
    reason = StopReason(StopKind.REJECTED_ON_GITHUB, actor=who, subject=rejected.label)
    work.set_track(
        replace(
            track,
            state=TrackState.ABORTING,
            ending=TrackState.ROLLED_BACK if relay else TrackState.HALTED,
            ended_reason=reason,
        )
    )
    told = RejectedOnGitHub(
        plan_track.label,
        rejected.label,
        who,
        review.comment if review is not None else "",
        reached_label(plan_track, before),
        desktop=not relay,
        failure_job=plan_track.on_failure.job,
    )
    work.effects.append(Announce(told, failure=True))


def _deployed(
    work: Work,
    plan_track: PlanTrack,
    name: str,
    spec: PlanStage,
    completed_at: datetime | None,
    now: datetime,
) -> None:
    track = work.track(name)
    stage = track.stage(spec.key)
    # When the release got there, not when the bot saw it (it may have been down): the window,
    # the lead time and the report's period are the release's; unless GitHub's clock is off.
    deployed, set_aside = deployed_at(work.rollout, track, stage, completed_at, now)
    if set_aside is not None:
        work.effects.append(ClockSkewed(name, spec.key, reported=set_aside, seen=now))
    window = spec.window
    if window is None:
        done = replace(stage, state=StageState.DEPLOYED)
        work.set_track(
            replace(
                track.with_stage(done),
                state=TrackState.COMPLETED,
                ended_at=deployed,
                ended_reason=StopReason(StopKind.COMPLETED, subject=spec.label),
            )
        )
        work.effects.append(Announce(TrackCompleted(plan_track.label, spec.label)))
        return
    ends = deployed + window
    observing = replace(
        stage, state=StageState.OBSERVING, window_started_at=deployed, window_ends_at=ends
    )
    work.set_track(track.with_stage(observing))
    work.effects.append(ScheduleWindow(name, spec.key, ends))
    work.effects.append(Announce(StageDeployed(plan_track.label, spec.label, window, ends)))


def _end_with_run(
    work: Work, plan_track: PlanTrack, name: str, snapshot: RunSnapshot, now: datetime
) -> None:
    track = work.track(name)
    conclusion = str(snapshot.conclusion)
    reason = track.ended_reason or StopReason(StopKind.RUN_ENDED, outcome=conclusion)
    unseen = None
    if track.state is TrackState.ABORTING and track.ending is not TrackState.FAILED:
        # Only its failure job's success rolls back or halts (`stopping`): the run
        # ended without the bot seeing it end (renamed in the workflow, not in the plan).
        unseen = plan_track.on_failure.job
        reason = StopReason(StopKind.RUN_ENDED, subject=unseen, outcome=conclusion, cause=reason)
    stage = track.current
    if stage is not None and stage.state in WATCHED:
        # Its window's timer must not wake a track that has ended.
        if stage.state is StageState.OBSERVING:
            work.effects.append(cancel_window(name, stage))
        track = track.with_stage(replace(stage, state=StageState.STOPPED))
    ended = replace(track, state=TrackState.FAILED, ending=None, ended_at=now, ended_reason=reason)
    work.set_track(ended)
    told = RunEnded(plan_track.label, conclusion, TrackState.FAILED, unseen)
    work.effects.append(Announce(told, failure=True))


def rerun_since(rollout: Rollout, snapshot: RunSnapshot) -> bool:
    """Whether the run was re-run since the attempt the rollout follows. A rollout stored
    before the attempt was kept (learnt at its next look) knows it was not this attempt when
    the attempt started after a deploy the rollout saw end: the one it followed ran that
    deploy, and GitHub re-runs only a completed run (an upgrade is when the bot is down). A
    window starts at its deploy job's `completed_at`: both times are GitHub's clock."""
    if rollout.attempt is not None:
        return snapshot.attempt > rollout.attempt
    started = snapshot.started_at
    if snapshot.attempt == 1 or started is None:
        return False
    seen = (s.window_started_at for t in rollout.tracks for s in t.stages)
    return any(deployed is not None and deployed < started for deployed in seen)


def rerun_unseen(
    rollout: Rollout, plan: RolloutPlan, snapshot: RunSnapshot, now: datetime
) -> Decision:
    """GitHub re-runs only a completed run: the attempt the rollout followed ended without the
    bot seeing it (it was down, or it all happened between two looks), and the new attempt
    starts every job again. Its stages, windows and gates would not be this rollout's, so the
    rollout does not follow it: its tracks still going end failed, and the thread says where
    each was last seen and that nothing approves the new attempt (see docs/controls.md)."""
    work = Work(replace(rollout, attempt=snapshot.attempt))
    reason = StopReason(StopKind.RERUN, outcome=str(snapshot.attempt))
    ended: list[tuple[str, str | None]] = []
    for track in rollout.tracks:
        plan_track = plan.track(track.name)
        if track.name in rollout.untold_stops:
            # Its stop's line is owed (its process died, or still reads the run): told first,
            # with the stop's own reason. The new attempt's waits say nothing of the old one.
            tell_untold_stop(work, plan_track, track, (), at=len(work.effects))
        if track.state in TERMINAL_TRACK:
            continue
        stage, stopped = track.current, track
        if stage is not None and stage.state in WATCHED:
            if stage.state is StageState.OBSERVING:
                work.effects.append(cancel_window(track.name, stage))
            stopped = track.with_stage(replace(stage, state=StageState.STOPPED))
        work.set_track(
            replace(
                stopped, state=TrackState.FAILED, ending=None, ended_at=now, ended_reason=reason
            )
        )
        ended.append((plan_track.label, reached_label(plan_track, track)))
    told = RerunNotFollowed(
        snapshot.run_id,
        snapshot.html_url,
        snapshot.attempt,
        rollout.tag,
        tuple(ended),
        tuple(sorted(snapshot.waiting)),
    )
    work.effects.append(Announce(told, failure=True))
    return _maybe_end(work, plan, now)


def _maybe_end(work: Work, plan: RolloutPlan, now: datetime) -> Decision:
    rollout = work.rollout
    if rollout.phase is Phase.RUNNING and all(t.state in TERMINAL_TRACK for t in rollout.tracks):
        # Its last track's end, which a job's completion may have set before `now`.
        ended_at = max((t.ended_at for t in rollout.tracks if t.ended_at is not None), default=now)
        work.rollout = replace(rollout, phase=Phase.ENDED, ended_at=min(ended_at, now))
        lanes = tuple((plan.track(t.name).label, t.state) for t in rollout.tracks)
        work.effects.append(Announce(RolloutEnded(rollout.tag, lanes)))
    return work.decision()


def _comment(rollout: Rollout, spec: PlanStage) -> str:
    return f"rollout-bot: {rollout.tag} to {spec.label}"
