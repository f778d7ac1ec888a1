"""The rollout state machine: pure functions from (rollout, event) to (rollout, effects).

A rollout drives one run of the Deployment Strategy workflow through its tracks (the relay's
percentages, the desktop rings). Each track moves its stages one at a time:

    pending -> approving -> deploying -> observing -> evaluating -> holding -> passed
                                               \\-> deployed (last stage, no window)

GitHub is reconciled level-triggered: `reconcile` compares the stages with a snapshot of the
run and asks for whatever is still missing (approve a waiting environment the bot promoted,
reject the next stage of a track being rolled back, make sure a window's timer exists). So a
lost effect (a crash, a GitHub 500) is simply asked for again on the next snapshot, and a
duplicate is harmless: GitHub only reviews environments that are waiting.

Nothing here does I/O; the services execute the effects after saving the new state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from bot.domain.durations import format_duration
from bot.domain.errors import RolloutError
from bot.domain.gate import GateKind, GateReason, GateVerdict, Verdict
from bot.domain.plan import ManualMetrics, PromoteMode, RolloutPlan
from bot.domain.plan import Stage as PlanStage
from bot.domain.plan import Track as PlanTrack
from bot.domain.run import (
    EnvironmentReview,
    JobConclusion,
    JobSnapshot,
    JobStatus,
    RunRef,
    RunSnapshot,
)


class InvalidTransition(RolloutError):
    """An action that does not apply to the rollout as it stands (the message says why)."""

    code = "invalid_transition"


class Phase(StrEnum):
    PREFLIGHT = "preflight"
    DISPATCHING = "dispatching"
    RUNNING = "running"
    ENDED = "ended"


class TrackState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    ABORTING = "aborting"
    """Stopping: the next stage is rejected and the track's failure job approved."""
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    HALTED = "halted"
    """The desktop kill-switch tripped: the release stays on its current ring."""
    FAILED = "failed"
    """A job failed on GitHub's side (preflight, a deploy step), or the run ended early."""
    CANCELLED = "cancelled"


TERMINAL_TRACK = frozenset(
    {
        TrackState.COMPLETED,
        TrackState.ROLLED_BACK,
        TrackState.HALTED,
        TrackState.FAILED,
        TrackState.CANCELLED,
    }
)


class StageState(StrEnum):
    PENDING = "pending"
    APPROVING = "approving"
    """The bot approves the stage's environment as soon as GitHub waits for it."""
    DEPLOYING = "deploying"
    OBSERVING = "observing"
    EVALUATING = "evaluating"
    """The window ended; the metrics are being read (or asked of the approvers)."""
    HOLDING = "holding"
    """Gate passed (or stayed inconclusive): the next stage waits for a Promote."""
    PASSED = "passed"
    DEPLOYED = "deployed"
    FAILED_GATE = "failed_gate"
    REJECTED = "rejected"
    FAILED = "failed"
    STOPPED = "stopped"
    """Observation cut short by a rollback or kill."""


_WATCHED = (StageState.OBSERVING, StageState.EVALUATING, StageState.HOLDING)
"""A deployed stage whose window or gate is under way."""

_REJECTABLE = (StageState.PENDING, StageState.APPROVING, StageState.DEPLOYING, StageState.REJECTED)
"""Stages whose job has not run: a stopping track rejects one whose environment waits (a
deploying one too: the bot's approval was lost)."""


class CheckState(StrEnum):
    PASS = "pass"  # noqa: S105 - a check state, not a password
    FAIL = "fail"
    PENDING = "pending"
    SKIPPED = "skipped"
    ERROR = "error"


@dataclass(frozen=True)
class Check:
    """One preflight check and what it found."""

    state: CheckState
    detail: str = ""

    @property
    def clear(self) -> bool:
        return self.state in (CheckState.PASS, CheckState.SKIPPED)


@dataclass(frozen=True)
class Preflight:
    """The runbook's preconditions: flags validated, migrations additive, image published."""

    flags: Check
    migrations: Check
    image: Check

    def blocking(self) -> list[str]:
        """What stops the dispatch, one line per check, empty when all are clear."""
        names = (
            ("Feature flags", self.flags),
            ("Migrations", self.migrations),
            ("Image tag", self.image),
        )
        return [
            f"{name}: {check.detail or check.state}" for name, check in names if not check.clear
        ]


@dataclass(frozen=True)
class Stage:
    key: str
    state: StageState = StageState.PENDING
    window_started_at: datetime | None = None
    window_ends_at: datetime | None = None
    extensions: int = 0
    verdict: GateVerdict | None = None


@dataclass(frozen=True)
class Track:
    name: str
    state: TrackState = TrackState.PENDING
    stages: tuple[Stage, ...] = ()
    ending: TrackState | None = None
    """While ABORTING: the state the track ends in once its failure job is done."""
    ended_reason: str | None = None
    ended_at: datetime | None = None

    def stage(self, key: str) -> Stage:
        for stage in self.stages:
            if stage.key == key:
                return stage
        raise KeyError(f"track {self.name} has no stage {key}")

    @property
    def current(self) -> Stage | None:
        """The stage the track is at: the first not yet passed (None once all passed)."""
        return next((s for s in self.stages if s.state is not StageState.PASSED), None)

    def with_stage(self, stage: Stage) -> Track:
        return replace(self, stages=tuple(stage if s.key == stage.key else s for s in self.stages))


@dataclass(frozen=True)
class Rollout:
    id: str
    tag: str
    channel_id: str
    started_by: str
    phase: Phase
    tracks: tuple[Track, ...]
    preflight: Preflight
    created_at: datetime
    run_id: int | None = None
    run_url: str | None = None
    message_ts: str | None = None
    dispatched_at: datetime | None = None
    ended_at: datetime | None = None
    version: int = 0
    """The stored version this value was read at (optimistic concurrency); 0 before storing."""

    def track(self, name: str) -> Track:
        for track in self.tracks:
            if track.name == name:
                return track
        raise KeyError(f"rollout {self.id} has no track {name}")

    def with_track(self, track: Track) -> Rollout:
        return replace(
            self, tracks=tuple(track if t.name == track.name else t for t in self.tracks)
        )

    @property
    def active(self) -> bool:
        return self.phase is not Phase.ENDED


# -- effects -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Review:
    """Approve or reject a waiting environment of the run."""

    track: str
    environment: str
    approve: bool
    comment: str


@dataclass(frozen=True)
class ScheduleWindow:
    """Make sure the durable timer for this window's end exists (idempotent by key)."""

    track: str
    stage: str
    due_at: datetime


@dataclass(frozen=True)
class CancelWindow:
    """The window ending at `due_at` no longer ends there (stopped or moved)."""

    track: str
    stage: str
    due_at: datetime


@dataclass(frozen=True)
class ReadMetrics:
    """Read the stage's figures and feed them to `gate_evaluated`."""

    track: str
    stage: str


@dataclass(frozen=True)
class Announce:
    """A reply in the rollout's thread. The plan's notification level decides who sees it:
    failures always, stage changes unless the level is `failures`, details only at `all`."""

    text: str
    failure: bool = False
    detail: bool = False
    """A step within a stage (a job queued, a deployment status), not a stage change."""


Effect = Review | ScheduleWindow | CancelWindow | ReadMetrics | Announce


@dataclass(frozen=True)
class Decision:
    rollout: Rollout
    effects: tuple[Effect, ...] = field(default_factory=tuple)


def window_timer_key(rollout_id: str, track: str, stage: str, due_at: datetime) -> str:
    """The durable timer of one window end. Keyed by the due time, so a window that moves
    (an extension) gets a timer of its own, and a stale one that fires anyway is told apart
    by `window_ended` (its due time is not the stage's window end any more)."""
    return f"window:{rollout_id}:{track}:{stage}:{due_at.astimezone(UTC).isoformat()}"


def slack_time(moment: datetime) -> str:
    """Slack date formatting: every reader sees the time in their own zone."""
    epoch = int(moment.timestamp())
    return f"<!date^{epoch}^{{time}} ({{date_short_pretty}})|{moment:%Y-%m-%d %H:%M} UTC>"


# -- creation and preflight ----------------------------------------------------------------


def new_rollout(
    *,
    rollout_id: str,
    tag: str,
    channel_id: str,
    started_by: str,
    plan: RolloutPlan,
    preflight: Preflight,
    now: datetime,
) -> Rollout:
    tracks = tuple(
        Track(name=name, stages=tuple(Stage(key=s.key) for s in track.stages))
        for name, track in plan.tracks.items()
    )
    return Rollout(
        id=rollout_id,
        tag=tag,
        channel_id=channel_id,
        started_by=started_by,
        phase=Phase.PREFLIGHT,
        tracks=tracks,
        preflight=preflight,
        created_at=now,
    )


def migration_check(plan: RolloutPlan, files: Mapping[str, str]) -> Check:
    """The workflow's own rule on the migration files at the ref: no DROP TABLE/DROP COLUMN."""
    rule = plan.preflight.migrations
    offending = [
        f"`{path}` line {number}: `{line.strip()}`"
        for path, text in sorted(files.items())
        if rule.applies_to(path)
        for number, line in rule.offending_lines(text)
    ]
    if offending:
        return Check(CheckState.FAIL, "destructive migration: " + "; ".join(offending))
    checked = sum(1 for path in files if rule.applies_to(path))
    return Check(CheckState.PASS, f"{checked} migration files, additive only")


def confirm_flags(rollout: Rollout, *, actor: str) -> Rollout:
    if rollout.phase is not Phase.PREFLIGHT:
        raise InvalidTransition("The preflight is over: this rollout was already dispatched.")
    flags = Check(CheckState.PASS, f"confirmed by <@{actor}>")
    return replace(rollout, preflight=replace(rollout.preflight, flags=flags))


def begin_dispatch(rollout: Rollout, *, now: datetime) -> Rollout:
    """Mark the dispatch as under way (saved before GitHub is called, for restart safety)."""
    if rollout.phase is not Phase.PREFLIGHT:
        raise InvalidTransition(f"Rollout {rollout.tag} was already dispatched.")
    blocking = rollout.preflight.blocking()
    if blocking:
        raise InvalidTransition("Dispatch is blocked. " + " ".join(blocking))
    return replace(rollout, phase=Phase.DISPATCHING, dispatched_at=now)


def dispatched(rollout: Rollout, plan: RolloutPlan, run: RunRef) -> Decision:
    """The run exists. The Dispatch click is also the approval of each track's first stage."""
    if rollout.phase in (Phase.RUNNING, Phase.ENDED):
        raise InvalidTransition(
            f"Rollout {rollout.tag} is already attached to run {rollout.run_id}: nothing changed."
        )
    tracks = tuple(
        replace(
            track,
            state=TrackState.ACTIVE,
            stages=(replace(track.stages[0], state=StageState.APPROVING), *track.stages[1:]),
        )
        for track in rollout.tracks
    )
    started = replace(
        rollout, phase=Phase.RUNNING, run_id=run.run_id, run_url=run.html_url, tracks=tracks
    )
    firsts = ", ".join(
        f"{plan.track(t.name).stages[0].label} ({plan.track(t.name).label})" for t in tracks
    )
    text = (
        f"Dispatched *{plan.workflow.name}* for `{rollout.tag}`: <{run.html_url}|run {run.run_id}>."
        f" Approving {firsts} as soon as GitHub waits for them."
    )
    return Decision(started, (Announce(text),))


def cancel_preflight(rollout: Rollout, *, actor: str, now: datetime) -> Rollout:
    if rollout.phase is not Phase.PREFLIGHT:
        raise InvalidTransition("Only a rollout still in preflight can be cancelled.")
    tracks = tuple(
        replace(
            t, state=TrackState.CANCELLED, ended_at=now, ended_reason=f"cancelled by <@{actor}>"
        )
        for t in rollout.tracks
    )
    return replace(rollout, phase=Phase.ENDED, tracks=tracks, ended_at=now)


# -- reconciliation with GitHub --------------------------------------------------------------


class _Work:
    """Accumulates a decision: the rollout as it changes, and the effects asked for."""

    def __init__(self, rollout: Rollout) -> None:
        self.rollout = rollout
        self.effects: list[Effect] = []

    def set_track(self, track: Track) -> None:
        self.rollout = self.rollout.with_track(track)

    def track(self, name: str) -> Track:
        return self.rollout.track(name)

    def decision(self) -> Decision:
        return Decision(self.rollout, tuple(self.effects))


def reconcile(
    rollout: Rollout, plan: RolloutPlan, snapshot: RunSnapshot, now: datetime
) -> Decision:
    """Bring the rollout in line with what GitHub reports, and ask for what is still missing."""
    if rollout.phase is not Phase.RUNNING:
        return Decision(rollout)
    work = _Work(rollout)
    for track in rollout.tracks:
        plan_track = plan.track(track.name)
        if track.state is TrackState.ACTIVE:
            _reconcile_active(work, plan, plan_track, track.name, snapshot, now)
        if work.track(track.name).state is TrackState.ABORTING:
            _reconcile_aborting(work, plan_track, track.name, snapshot, now)
        if snapshot.completed and work.track(track.name).state not in TERMINAL_TRACK:
            _end_with_run(work, plan_track, track.name, snapshot, now)
    return _maybe_end(work, plan, now)


def _reconcile_active(
    work: _Work,
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
    if stage.state in _WATCHED and _reviewed_on_github(work, plan_track, name, stage, snapshot):
        track = work.track(name)
        stage = track.current
        if track.state is not TrackState.ACTIVE or stage is None:
            return
    spec = plan_track.stage(stage.key)
    if stage.state in (StageState.APPROVING, StageState.DEPLOYING):
        job = snapshot.job(spec.job)
        if job is not None and _rejected(job, snapshot.review_of(spec.environment)):
            _rejected_on_github(work, plan_track, name, spec, snapshot.review_of(spec.environment))
        elif job is not None and job.succeeded:
            _deployed(work, plan_track, name, spec, job.completed_at or now, now)
        elif job is not None and (job.failed or job.skipped):
            # The stage's own job, or what made it skip; never the other track's failures.
            related = {s.job for s in plan_track.stages} | {plan.preflight.job}
            failed = (
                [job]
                if job.failed
                else [j for j in snapshot.jobs.values() if j.failed and j.name in related]
            )
            links = ", ".join(f"<{j.html_url}|{j.name}>" for j in failed if j.html_url) or (
                f"<{snapshot.html_url}|the run>"
            )
            what = "was skipped" if job.skipped else f"ended `{job.conclusion}`"
            work.set_track(
                replace(
                    track.with_stage(replace(stage, state=StageState.FAILED)),
                    state=TrackState.ABORTING,
                    ending=TrackState.FAILED,
                    ended_reason=f"{spec.job} {what}",
                )
            )
            work.effects.append(
                Announce(
                    f":x: {plan_track.label}: *{spec.job}* {what} on GitHub. Logs: {links}. "
                    f"The track has failed; approving *{plan_track.on_failure.job}* if it waits.",
                    failure=True,
                )
            )
        elif snapshot.is_waiting(spec.environment):
            work.set_track(track.with_stage(replace(stage, state=StageState.DEPLOYING)))
            work.effects.append(
                Review(name, spec.environment, approve=True, comment=_comment(work.rollout, spec))
            )
            if stage.state is StageState.APPROVING:
                work.effects.append(
                    Announce(f"Approved *{spec.label}* ({plan_track.label}): deploying.")
                )
    elif (
        stage.state is StageState.OBSERVING
        and stage.window_ends_at is not None
        and not snapshot.completed
    ):
        work.effects.append(ScheduleWindow(name, stage.key, stage.window_ends_at))


def _rejected(job: JobSnapshot, review: EnvironmentReview | None) -> bool:
    """GitHub failed the job without running it: its environment was rejected (or its wait
    for a review ran out). The bot itself only rejects stages of a track it is stopping."""
    if job.conclusion is not JobConclusion.FAILURE:
        return False  # a cancelled run, a timeout: not a review
    return not job.ran or (review is not None and review.state == "rejected")


def _reviewed_on_github(
    work: _Work, plan_track: PlanTrack, name: str, stage: Stage, snapshot: RunSnapshot
) -> bool:
    """Someone acted on GitHub (github.com, the API) on the stage after `stage`, which the bot
    was holding (its window, its gate or a Promote still to come): an approval promotes it,
    a rejection stops the track. True when the track moved."""
    following = plan_track.next_stage(stage.key)
    job = snapshot.job(following.job) if following is not None else None
    if following is None or job is None:
        return False
    review = snapshot.review_of(following.environment)
    if _rejected(job, review):
        _rejected_on_github(work, plan_track, name, following, review)
        return True
    if not (job.started or (review is not None and review.state == "approved")):
        return False
    spec = plan_track.stage(stage.key)
    if stage.state is StageState.OBSERVING:
        work.effects.append(_cancel(name, stage))
        held = f"the window of {spec.label} is stopped before its gate"
    elif stage.state is StageState.EVALUATING:
        held = f"the gate of {spec.label} is skipped"
    else:
        held = f"the hold after {spec.label} ends"
    moved = work.track(name).with_stage(replace(stage, state=StageState.PASSED))
    nxt = moved.stage(following.key)
    work.set_track(moved.with_stage(replace(nxt, state=StageState.DEPLOYING)))
    if review is not None and review.state == "approved":
        what = f"{review.reviewer} approved *{following.label}* ({plan_track.label}) on GitHub"
    else:
        what = f"*{following.label}* ({plan_track.label}) started on GitHub without the bot"
    work.effects.append(Announce(f":white_check_mark: {what}: {held}. Deploying."))
    return True


def _rejected_on_github(
    work: _Work,
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
    if current is not None and current.state in _WATCHED:
        if current.state is StageState.OBSERVING:
            work.effects.append(_cancel(name, current))
        track = track.with_stage(replace(current, state=StageState.STOPPED))
    track = track.with_stage(replace(track.stage(rejected.key), state=StageState.REJECTED))
    relay = plan_track.gate is GateKind.RELAY
    who = review.reviewer if review is not None else "Someone"
    reason = f"{rejected.label} rejected on GitHub by {who}"
    work.set_track(
        replace(
            track,
            state=TrackState.ABORTING,
            ending=TrackState.ROLLED_BACK if relay else TrackState.HALTED,
            ended_reason=reason,
        )
    )
    said = f" ({review.comment})" if review is not None and review.comment else ""
    action = "rolling back" if relay else "tripping the kill-switch"
    work.effects.append(
        Announce(
            f":no_entry: {who} rejected *{rejected.label}* ({plan_track.label}) on GitHub{said}. "
            f"{_stays_on(plan_track, before)} {plan_track.label}: {action}: approving "
            f"*{plan_track.on_failure.job}* when it waits.",
            failure=True,
        )
    )


def _deployed(
    work: _Work,
    plan_track: PlanTrack,
    name: str,
    spec: PlanStage,
    completed_at: datetime,
    now: datetime,
) -> None:
    track = work.track(name)
    stage = track.stage(spec.key)
    window = spec.window
    if window is None:
        done = replace(stage, state=StageState.DEPLOYED)
        work.set_track(
            replace(
                track.with_stage(done),
                state=TrackState.COMPLETED,
                ended_at=now,
                ended_reason=f"{spec.label} deployed",
            )
        )
        work.effects.append(
            Announce(f":white_check_mark: *{spec.label}* deployed: {plan_track.label} is done.")
        )
        return
    ends = completed_at + window
    observing = replace(
        stage, state=StageState.OBSERVING, window_started_at=completed_at, window_ends_at=ends
    )
    work.set_track(track.with_stage(observing))
    work.effects.append(ScheduleWindow(name, spec.key, ends))
    work.effects.append(
        Announce(
            f"*{spec.label}* deployed ({plan_track.label}). Observing for "
            f"{format_duration(window)}, until {slack_time(ends)}."
        )
    )


def _reconcile_aborting(
    work: _Work, plan_track: PlanTrack, name: str, snapshot: RunSnapshot, now: datetime
) -> None:
    track = work.track(name)
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
        what = "deployed" if job.succeeded else f"ended `{job.conclusion}`"
        work.effects.append(
            Announce(
                f"*{plan_track.stage(stage.key).label}* {what} ({plan_track.label}); "
                "not observed: the track is stopping.",
                failure=not job.succeeded,
            )
        )
    for stage in track.stages:
        spec = plan_track.stage(stage.key)
        # A stage that has landed is never rejected: a late snapshot may still list its
        # environment as waiting after its job ran.
        if stage.state in _REJECTABLE and snapshot.is_waiting(spec.environment):
            comment = f"rollout-bot: {track.ended_reason or 'stopped'}"
            work.effects.append(Review(name, spec.environment, approve=False, comment=comment))
            if stage.state is not StageState.REJECTED:
                track = track.with_stage(replace(stage, state=StageState.REJECTED))
                work.effects.append(Announce(f"Rejected *{spec.label}* ({plan_track.label})."))
    work.set_track(track)
    failure = plan_track.on_failure
    if snapshot.is_waiting(failure.environment):
        work.effects.append(
            Review(name, failure.environment, approve=True, comment=f"rollout-bot: {failure.job}")
        )
    job = snapshot.job(failure.job)
    if job is not None and job.status is JobStatus.COMPLETED:
        # Only a successful rollback or kill-switch job rolled back or halted anything.
        ending = (track.ending if job.succeeded else None) or TrackState.FAILED
        outcome = "finished" if job.succeeded else f"ended `{job.conclusion}`"
        link = f" <{job.html_url}|logs>" if job.html_url else ""
        reason = track.ended_reason
        if not job.succeeded:
            reason = f"{failure.job} ended `{job.conclusion}`" + (f" ({reason})" if reason else "")
        work.set_track(replace(track, state=ending, ending=None, ended_at=now, ended_reason=reason))
        work.effects.append(
            Announce(
                f"*{failure.job}* {outcome}.{link} {plan_track.label}: {_ended_words(ending)}.",
                failure=True,
            )
        )


def _end_with_run(
    work: _Work, plan_track: PlanTrack, name: str, snapshot: RunSnapshot, now: datetime
) -> None:
    track = work.track(name)
    ending = track.ending if track.state is TrackState.ABORTING and track.ending else None
    state = ending or TrackState.FAILED
    reason = track.ended_reason or f"the run ended `{snapshot.conclusion}` first"
    stage = track.current
    if stage is not None and stage.state in _WATCHED:
        # Its window's timer must not wake a track that has ended.
        if stage.state is StageState.OBSERVING:
            work.effects.append(_cancel(name, stage))
        track = track.with_stage(replace(stage, state=StageState.STOPPED))
    work.set_track(replace(track, state=state, ending=None, ended_at=now, ended_reason=reason))
    work.effects.append(
        Announce(
            f"The run ended (`{snapshot.conclusion}`). {plan_track.label}: {_ended_words(state)}.",
            failure=state is not TrackState.COMPLETED,
        )
    )


def _maybe_end(work: _Work, plan: RolloutPlan, now: datetime) -> Decision:
    rollout = work.rollout
    if rollout.phase is Phase.RUNNING and all(t.state in TERMINAL_TRACK for t in rollout.tracks):
        work.rollout = replace(rollout, phase=Phase.ENDED, ended_at=now)
        lanes = "; ".join(
            f"{plan.track(t.name).label}: {_ended_words(t.state)}" for t in rollout.tracks
        )
        work.effects.append(Announce(f"Rollout of `{rollout.tag}` ended. {lanes}."))
    return work.decision()


def _ended_words(state: TrackState) -> str:
    return {
        TrackState.COMPLETED: "completed",
        TrackState.ROLLED_BACK: "rolled back",
        TrackState.HALTED: "halted by the kill-switch",
        TrackState.FAILED: "failed",
        TrackState.CANCELLED: "cancelled",
    }.get(state, str(state))


def _comment(rollout: Rollout, spec: PlanStage) -> str:
    return f"rollout-bot: {rollout.tag} to {spec.label}"


# -- windows and gates -----------------------------------------------------------------------


def window_ended(rollout: Rollout, *, track: str, stage: str, due_at: datetime) -> Decision:
    """A window's timer fired. `due_at` is the window end the timer was scheduled for (not
    when a retry of it fires). Stale timers (an extended or stopped window) change nothing;
    a timer fired again after a failure mid-evaluation asks for the metrics again."""
    current = rollout.track(track).stage(stage)
    if current.window_ends_at != due_at or current.state not in (
        StageState.OBSERVING,
        StageState.EVALUATING,
    ):
        return Decision(rollout)
    evaluating = replace(current, state=StageState.EVALUATING)
    updated = rollout.with_track(rollout.track(track).with_stage(evaluating))
    return Decision(updated, (ReadMetrics(track, stage),))


def gate_missed(stage: Stage) -> bool:
    """Held without a verdict: the window's timer gave up before its gate could run."""
    return stage.state is StageState.HOLDING and stage.verdict is None


def window_timer_dead(
    rollout: Rollout,
    plan: RolloutPlan,
    *,
    track: str,
    stage: str,
    due_at: datetime,
    attempts: int,
    reason: str,
) -> Decision:
    """The timer of a window's end gave up after `attempts` failures, so the gate never ran.
    The stage holds without a verdict rather than observing forever: a person re-evaluates,
    extends the window, overrides with Promote or stops; the thread says what failed."""
    current = rollout.track(track).stage(stage)
    if current.window_ends_at != due_at or current.state not in (
        StageState.OBSERVING,
        StageState.EVALUATING,
    ):
        return Decision(rollout)
    plan_track = plan.track(track)
    spec = plan_track.stage(stage)
    held = replace(current, state=StageState.HOLDING, verdict=None)
    gate = (
        "*Extend* observes longer and asks for the figures again"
        if isinstance(plan_track.metrics, ManualMetrics)
        else "*Re-evaluate now* runs the gate, *Extend* observes longer"
    )
    text = (
        f":warning: The window of *{spec.label}* ({plan_track.label}) ended at "
        f"{slack_time(due_at)}, but its gate could not run: {attempts} attempts failed "
        f"(last: {reason}). Holding: {gate}, Promote overrides, Roll back stops."
    )
    return Decision(
        rollout.with_track(rollout.track(track).with_stage(held)),
        (Announce(text, failure=True),),
    )


def gate_evaluated(
    rollout: Rollout,
    plan: RolloutPlan,
    *,
    track: str,
    stage: str,
    verdict: GateVerdict,
    now: datetime,
) -> Decision:
    """Act on a gate's verdict: hold (or auto-promote) on PASS, stop on a failure, extend
    once then hold on INCONCLUSIVE. Only a stage being evaluated takes a verdict."""
    current = rollout.track(track).stage(stage)
    if current.state is not StageState.EVALUATING:
        return Decision(rollout)
    work = _Work(rollout)
    plan_track = plan.track(track)
    spec = plan_track.stage(stage)
    judged = replace(current, verdict=verdict)
    figures = verdict.summary
    if verdict.verdict is Verdict.PASS:
        following = plan_track.next_stage(stage)
        assert following is not None  # only stages with a window are gated; the last has none
        observe = spec.observe
        if observe is not None and observe.promote is PromoteMode.AUTO:
            _advance(work, track, judged, following)
            work.effects.append(
                Announce(
                    f":large_green_circle: {spec.label} gate PASS ({figures}). "
                    f"Promoting to *{following.label}* automatically (plan: promote auto)."
                )
            )
        else:
            work.set_track(work.track(track).with_stage(replace(judged, state=StageState.HOLDING)))
            work.effects.append(
                Announce(
                    f":large_green_circle: {spec.label} gate PASS ({figures}). "
                    f"Holding *{following.label}* until someone clicks Promote."
                )
            )
    elif verdict.verdict is Verdict.INCONCLUSIVE:
        extension = spec.observe.inconclusive_extension if spec.observe else None
        if extension is not None and current.extensions == 0 and current.window_ends_at:
            ends = now + extension
            extended = replace(
                judged, state=StageState.OBSERVING, window_ends_at=ends, extensions=1
            )
            work.set_track(work.track(track).with_stage(extended))
            work.effects.append(ScheduleWindow(track, stage, ends))
            work.effects.append(
                Announce(
                    f":large_yellow_circle: {spec.label} gate INCONCLUSIVE ({figures}). "
                    f"Window extended once by {format_duration(extension)}, "
                    f"until {slack_time(ends)}."
                )
            )
        else:
            work.set_track(work.track(track).with_stage(replace(judged, state=StageState.HOLDING)))
            work.effects.append(
                Announce(
                    f":large_yellow_circle: {spec.label} gate INCONCLUSIVE ({figures}). "
                    "Not enough data for a verdict: holding for a human "
                    "(Promote overrides, Roll back stops).",
                    failure=True,
                )
            )
    else:
        failed = replace(judged, state=StageState.FAILED_GATE)
        ending = TrackState.ROLLED_BACK if plan_track.gate is GateKind.RELAY else TrackState.HALTED
        reason = f"{spec.label} gate {verdict.verdict}: {_reason_words(verdict)}"
        stopped = replace(
            work.track(track).with_stage(failed),
            state=TrackState.ABORTING,
            ending=ending,
            ended_reason=reason,
        )
        work.set_track(stopped)
        action = "rolling back" if ending is TrackState.ROLLED_BACK else "tripping the kill-switch"
        work.effects.append(
            Announce(
                f":red_circle: {spec.label} gate *{verdict.verdict}*: {_reason_words(verdict)} "
                f"({figures}). "
                f"{_stays_on(plan_track, stopped)} "
                f"{plan_track.label}: {action} now: rejecting the next stage and approving "
                f"*{plan_track.on_failure.job}*.",
                failure=True,
            )
        )
    return work.decision()


def _reason_words(verdict: GateVerdict) -> str:
    return (
        {
            GateReason.ERROR_RATE: "error rate",
            GateReason.ZERO_BASELINE: "crashes on a zero baseline",
            GateReason.CRASH_RATE: "crash rate",
        }.get(verdict.reason, str(verdict.reason))
        if verdict.reason
        else "failed"
    )


def _advance(work: _Work, track: str, passed_stage: Stage, following: PlanStage) -> None:
    current = work.track(track)
    moved = current.with_stage(replace(passed_stage, state=StageState.PASSED))
    nxt = moved.stage(following.key)
    work.set_track(moved.with_stage(replace(nxt, state=StageState.APPROVING)))


# -- people's actions ----------------------------------------------------------------------


def promote(
    rollout: Rollout, plan: RolloutPlan, *, track: str, actor: str, override: bool = False
) -> Decision:
    """Approve the next stage after the current one's gate. An INCONCLUSIVE hold is only
    promoted with `override` (the button's confirm dialog says so)."""
    current_track = rollout.track(track)
    plan_track = plan.track(track)
    stage = current_track.current
    if current_track.state is not TrackState.ACTIVE or stage is None:
        raise InvalidTransition(f"{plan_track.label} is {current_track.state}: nothing to promote.")
    spec = plan_track.stage(stage.key)
    if stage.state is not StageState.HOLDING:
        raise InvalidTransition(_not_holding(plan_track, spec, stage))
    inconclusive = stage.verdict is not None and stage.verdict.verdict is Verdict.INCONCLUSIVE
    if inconclusive and not override:
        raise InvalidTransition(
            f"{spec.label} is held on an INCONCLUSIVE gate: promote it with the Promote button, "
            "which asks you to confirm the override."
        )
    if gate_missed(stage) and not override:
        raise InvalidTransition(
            f"The gate of {spec.label} never ran: promote it with the Promote button, which "
            "asks you to confirm the override (or Re-evaluate first)."
        )
    following = plan_track.next_stage(stage.key)
    assert following is not None
    work = _Work(rollout)
    _advance(work, track, stage, following)
    how = (
        " (override of an INCONCLUSIVE gate)"
        if inconclusive
        else " (override: the gate never ran)"
        if gate_missed(stage)
        else ""
    )
    work.effects.append(
        Announce(f"<@{actor}> promoted {plan_track.label} to *{following.label}*{how}.")
    )
    return work.decision()


def holding_tracks(rollout: Rollout) -> list[str]:
    """Tracks whose current stage holds on a gate, waiting for a Promote."""
    return [
        t.name
        for t in rollout.tracks
        if t.state is TrackState.ACTIVE
        and (stage := t.current) is not None
        and stage.state is StageState.HOLDING
    ]


def _not_holding(plan_track: PlanTrack, spec: PlanStage, stage: Stage) -> str:
    if stage.state is StageState.OBSERVING and stage.window_ends_at:
        return (
            f"{spec.label} ({plan_track.label}) is still observing until "
            f"{slack_time(stage.window_ends_at)}; its gate decides first."
        )
    return f"{spec.label} ({plan_track.label}) is {stage.state}, not waiting for a Promote."


def extend(
    rollout: Rollout,
    plan: RolloutPlan,
    *,
    track: str,
    actor: str,
    by: timedelta,
    now: datetime,
) -> Decision:
    """Move the end of the running window of a track by `by` (a person wants more data).
    A stage whose gate never ran (its timer gave up) observes again, from now."""
    current_track = rollout.track(track)
    plan_track = plan.track(track)
    stage = current_track.current
    if (
        current_track.state is not TrackState.ACTIVE
        or stage is None
        or not (stage.state is StageState.OBSERVING or gate_missed(stage))
        or stage.window_ends_at is None
    ):
        raise InvalidTransition(f"{plan_track.label} has no window running: nothing to extend.")
    spec = plan_track.stage(stage.key)
    missed = gate_missed(stage)
    ends = (now if missed else stage.window_ends_at) + by
    moved = replace(stage, state=StageState.OBSERVING, window_ends_at=ends)
    effects: list[Effect] = [] if missed else [_cancel(track, stage)]
    effects.append(ScheduleWindow(track, stage.key, ends))
    effects.append(
        Announce(
            f"<@{actor}> extended the window of *{spec.label}* ({plan_track.label}) by "
            f"{format_duration(by)}, until {slack_time(ends)}."
        )
    )
    return Decision(rollout.with_track(current_track.with_stage(moved)), tuple(effects))


def _cancel(track: str, stage: Stage) -> CancelWindow:
    assert stage.window_ends_at is not None  # every observed stage has a window end
    return CancelWindow(track, stage.key, stage.window_ends_at)


def abort(
    rollout: Rollout, plan: RolloutPlan, *, track: str, actor: str, reason: str, now: datetime
) -> Decision:
    """Stop a track by hand: roll back the relay, or trip the desktop kill-switch."""
    current_track = rollout.track(track)
    plan_track = plan.track(track)
    relay = plan_track.gate is GateKind.RELAY
    verb = "roll back" if relay else "trip the kill-switch of"
    if rollout.phase is Phase.PREFLIGHT:
        raise InvalidTransition(f"`{rollout.tag}` has not been dispatched yet: nothing to {verb}.")
    if current_track.state is TrackState.COMPLETED:
        last = plan_track.stages[-1].label
        raise InvalidTransition(
            f"{plan_track.label} already completed ({last}) for `{rollout.tag}`: "
            f"there is no stage left to stop, nothing was changed."
        )
    if current_track.state is not TrackState.ACTIVE:
        raise InvalidTransition(
            f"{plan_track.label} is already {_ended_words(current_track.state)}: "
            "nothing was changed."
        )
    stage = current_track.current
    final = plan_track.stages[-1]
    if stage is not None and stage.key == final.key and stage.state is StageState.DEPLOYING:
        # GitHub only stops a job by rejecting its environment; this one was approved.
        raise InvalidTransition(
            f"{plan_track.label} is already deploying {final.label} for `{rollout.tag}`: "
            "there is no stage left to stop, nothing was changed."
        )
    work = _Work(rollout)
    track_now = current_track
    if stage is not None and stage.state in _WATCHED:
        if stage.state is StageState.OBSERVING:
            work.effects.append(_cancel(track, stage))
        track_now = track_now.with_stage(replace(stage, state=StageState.STOPPED))
    ending = TrackState.ROLLED_BACK if relay else TrackState.HALTED
    why = f"{'rolled back' if relay else 'kill-switch'} by <@{actor}>" + (
        f": {reason}" if reason else ""
    )
    work.set_track(replace(track_now, state=TrackState.ABORTING, ending=ending, ended_reason=why))
    stays = _stays_on(plan_track, current_track)
    work.effects.append(
        Announce(
            f":rotating_light: {plan_track.label}: {why}. {stays} Rejecting the next stage and "
            f"approving *{plan_track.on_failure.job}*.",
            failure=True,
        )
    )
    return work.decision()


def _stays_on(plan_track: PlanTrack, track: Track) -> str:
    # A deploying stage counts: GitHub cannot stop an approved job, the release lands there.
    deployed = (
        *_WATCHED,
        StageState.DEPLOYING,
        StageState.PASSED,
        StageState.DEPLOYED,
        StageState.FAILED_GATE,
    )
    reached = [plan_track.stage(s.key).label for s in track.stages if s.state in deployed]
    if plan_track.gate is GateKind.DESKTOP:
        return f"The release stays on the {reached[-1]}." if reached else "No ring was reached."
    return f"Reached: {reached[-1]}." if reached else "Nothing was deployed yet."


# -- verdict (de)serialisation, for storage --------------------------------------------------


def verdict_to_json(verdict: GateVerdict) -> dict[str, Any]:
    def text(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    return {
        "gate": verdict.gate.value,
        "verdict": verdict.verdict.value,
        "reason": verdict.reason.value if verdict.reason else None,
        "current_crash": text(verdict.current_crash),
        "baseline_crash": text(verdict.baseline_crash),
        "crash_multiplier": str(verdict.crash_multiplier),
        "crash_limit": text(verdict.crash_limit),
        "current_error": text(verdict.current_error),
        "error_threshold": text(verdict.error_threshold),
        "sample": verdict.sample,
        "min_sample": verdict.min_sample,
    }


def verdict_from_json(data: Mapping[str, Any]) -> GateVerdict:
    def number(key: str) -> Decimal | None:
        value = data.get(key)
        return None if value is None else Decimal(value)

    return GateVerdict(
        gate=GateKind(data["gate"]),
        verdict=Verdict(data["verdict"]),
        reason=GateReason(data["reason"]) if data.get("reason") else None,
        current_crash=number("current_crash"),
        baseline_crash=number("baseline_crash"),
        crash_multiplier=Decimal(data["crash_multiplier"]),
        crash_limit=number("crash_limit"),
        current_error=number("current_error"),
        error_threshold=number("error_threshold"),
        sample=data.get("sample"),
        min_sample=int(data.get("min_sample", 0)),
    )


def check_to_json(check: Check) -> dict[str, str]:
    return {"state": check.state.value, "detail": check.detail}


def check_from_json(data: Mapping[str, str]) -> Check:
    return Check(CheckState(data["state"]), data.get("detail", ""))
