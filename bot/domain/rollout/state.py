"""The rollout's state: phases, tracks and stages as values, and the rules read off them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

from bot.domain.errors import RolloutError
from bot.domain.gate import GateVerdict
from bot.domain.members import member, replaced
from bot.domain.plan import RolloutPlan
from bot.domain.release_contents import ReleaseContents
from bot.domain.schedule import Schedule
from bot.domain.service import DEFAULT_SERVICE
from bot.domain.stored_reason import or_else


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


WATCHED = (StageState.OBSERVING, StageState.EVALUATING, StageState.HOLDING)
"""A deployed stage whose window or gate is under way."""

REJECTABLE = (StageState.PENDING, StageState.APPROVING, StageState.DEPLOYING, StageState.REJECTED)
"""Stages whose job has not run: a stopping track rejects one whose environment waits (a
deploying one too: the bot's approval was lost)."""


REACHED = frozenset(
    {*WATCHED, StageState.DEPLOYING, StageState.PASSED, StageState.DEPLOYED}
    | {StageState.FAILED_GATE, StageState.STOPPED}
)
"""Stages the release has reached: deployed there, whatever happened after (a deploying job
was approved: GitHub cannot stop it, so the release lands there)."""


class StopKind(StrEnum):
    """Why a track ended (or is ending)."""

    CANCELLED = "cancelled"
    """Cancelled in its preflight by `actor`."""
    ROLLED_BACK = "rolled_back"
    """Rolled back by hand by `actor`; `detail` holds their words."""
    KILL_SWITCH = "kill_switch"
    """The kill-switch tripped by hand by `actor`; `detail` holds their words."""
    GATE_FAILED = "gate_failed"
    """The gate of stage `subject` decided `outcome` (a verdict) for `detail` (reason words)."""
    REJECTED_ON_GITHUB = "rejected_on_github"
    """Stage `subject` was rejected on GitHub by `actor` (a GitHub login, or None)."""
    JOB_FAILED = "job_failed"
    """Job `subject` ended `outcome` (a conclusion) on GitHub, or was skipped (no outcome)."""
    FAILURE_JOB_FAILED = "failure_job_failed"
    """The failure job `subject` ended `outcome`; `cause` is why the track was stopping.
    `detail`, when set: GitHub skipped it because the last stage, `detail`, deployed before
    the stop took hold (nothing was rolled back)."""
    RUN_ENDED = "run_ended"
    """The run ended `outcome` (a conclusion) before the track did; while it stopped for
    `cause`, before its failure job `subject` was seen to end."""
    RERUN = "rerun"
    """The run was re-run on GitHub (attempt `outcome`) before the bot saw the attempt it
    followed end (the bot was down, or between two looks): the rollout does not follow it."""
    COMPLETED = "completed"
    """The last stage `subject` deployed."""
    LEGACY = "legacy"
    """A reason stored as text before reasons were data: `detail` holds it; also a kind a
    newer version stored, which this one does not know (its words: `UNKNOWN_STOP`)."""


UNKNOWN_STOP = "stopped for a reason a newer version of the bot recorded"


@dataclass(frozen=True)
class StopReason:
    """Why a track ended, as data (the edge words it, with mentions where there is an actor)."""

    kind: Annotated[StopKind, or_else(StopKind, StopKind.LEGACY)]  # bot.domain.stored_reason
    actor: str | None = None
    subject: str = ""
    outcome: str | None = None
    detail: str = ""
    cause: StopReason | None = None


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
    confirmed_by: str | None = None
    """The person who confirmed the check by hand (the edge renders the mention)."""

    @property
    def clear(self) -> bool:
        return self.state in (CheckState.PASS, CheckState.SKIPPED)


@dataclass(frozen=True)
class Preflight:
    """The runbook's preconditions: flags validated, migrations additive, image published."""

    flags: Check
    migrations: Check
    image: Check
    contents: ReleaseContents | None = None
    """What is in the release (shown on the card; it never blocks the dispatch). None on
    rollouts started before the bot read it."""
    tag_commit: str | None = None
    """The commit the release tag was at when the preflight read it (the start, each
    Re-check): a person's Dispatch is refused if the tag moved since
    (`bot.services.preflight`). Empty: GitHub had no commit for the tag then; None: not known
    (GitHub did not say, or the preflight was read by an older version): not compared."""
    moved_to: str | None = None
    """Where a person's Dispatch, refused, found the tag moved off `tag_commit` ("": gone from
    GitHub): the card offers Re-check, which reads the tag there (and clears this). None: no
    Dispatch found it moved."""

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
    observed_from: datetime | None = None
    """Where the running window's figures start when it was opened again after it closed
    (`reopened_from`); None: from `window_started_at`, the deploy."""

    cleared_at: datetime | None = None
    """When the bot approved the stage's waiting environment (on its own clock): its job cannot
    have deployed before. None before, for a stage promoted on GitHub, and in rows stored
    before it was kept (`cleared_from` falls back to the stage before's deploy or the
    dispatch)."""

    @property
    def observed_since(self) -> datetime | None:
        """The start of the figures the stage's window reads."""
        return self.observed_from or self.window_started_at


@dataclass(frozen=True)
class Track:
    name: str
    state: TrackState = TrackState.PENDING
    stages: tuple[Stage, ...] = ()
    ending: TrackState | None = None
    """While ABORTING: the state the track ends in once its failure job is done."""
    ended_reason: StopReason | None = None
    ended_at: datetime | None = None

    def stage(self, key: str) -> Stage:
        return member(
            self.stages, key, by=lambda s: s.key, missing=f"track {self.name} has no stage {key}"
        )

    @property
    def current(self) -> Stage | None:
        """The stage the track is at: the first not yet passed (None once all passed)."""
        return next((s for s in self.stages if s.state is not StageState.PASSED), None)

    @property
    def reached(self) -> Stage | None:
        """The last stage the release reached (see `REACHED`), None before any."""
        return next((s for s in reversed(self.stages) if s.state in REACHED), None)

    def with_stage(self, stage: Stage) -> Track:
        return replace(self, stages=replaced(self.stages, stage, by=lambda s: s.key))


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
    gave_up_at: datetime | None = None
    """When the bot last gave up looking for the run of its dispatch (a person may link it)."""
    schedule: Schedule | None = None
    """A dispatch scheduled by its starter (`/rollout start ... --at`)."""
    ended_at: datetime | None = None
    version: int = 0
    """The stored version this value was read at (optimistic concurrency); 0 before storing."""
    service: str = DEFAULT_SERVICE
    """The service released (`bot.domain.service`): its plan, repository, channels, approvers."""
    told_outside: tuple[str, ...] = ()
    """The environments outside the plan the run waited at for the bot's answer (the App's
    rule, or the review of the bot's account), each told to the thread once
    (`WaitsOutsidePlan`), as GitHub spelled them."""
    unread_since: datetime | None = None
    """Since when GitHub has not let the bot read the run (None: the last read succeeded)."""
    told_unread: bool = False
    """The thread was told that the run is unreadable (`RunUnreadable`), and not yet that it
    is read again."""
    untold_stops: tuple[str, ...] = ()
    """The tracks whose stop (a Roll back or Kill-switch saved before GitHub was read) the
    thread has not been told of yet: the stop's own process tells it once GitHub answers, or
    else the first look that acts on the track (the process died meanwhile): told once."""
    untold_stops_kept: bool = False
    """`untold_stops` is stored (set with it by a stop of this version, kept by its looks):
    False when no such stop was saved, or a 091736d replica saved the rollout since (it drops
    the list, and never tells a stop's line): a stop's process then tells a line it cannot
    know was told (`Stops._settle`)."""
    stop_waiters: tuple[tuple[str, str], ...] = ()
    """Who else asked for a stop of `untold_stops` while it was decided (GitHub read) and was
    answered that it is being done: (track, person), told in the thread, by name, if that stop
    is put back (`StopPutBack`); forgotten once the stop is settled, either way."""
    refused_approvals: tuple[str, ...] = ()
    """The environments (as the plan spells them) whose approval (or, on a stopping track,
    rejection) by the bot GitHub refused while their job still waits there, each told to the
    thread once (`ApprovalRefused`): the card does not say such a stage deploys, or is
    rejected. Let go once the job no longer waits. Also those GitHub failed without refusing
    for a while (`unreviewed_since`), told as such once (`ReviewUnanswered`)."""
    unreviewed_since: tuple[tuple[str, datetime], ...] = ()
    """The environments whose review by the bot (as `refused_approvals`) GitHub has failed
    without refusing it (a 5xx, no answer) since when, while their job waits and GitHub has
    not answered it since: told once that long (`GITHUB_UNREADABLE_SECONDS`)."""
    attempt: int | None = None
    """The attempt of the run the rollout follows (GitHub's `run_attempt`), set as it attaches
    to the run; None before, and in rollouts stored before it was kept (learnt at their next
    look)."""

    def track(self, name: str) -> Track:
        return member(
            self.tracks, name, by=lambda t: t.name, missing=f"rollout {self.id} has no track {name}"
        )

    def with_track(self, track: Track) -> Rollout:
        return replace(self, tracks=replaced(self.tracks, track, by=lambda t: t.name))

    @property
    def active(self) -> bool:
        return self.phase is not Phase.ENDED


def window_timer_key(rollout_id: str, track: str, stage: str, due_at: datetime) -> str:
    """The durable timer of one window end. Keyed by the due time, so a window that moves
    (an extension) gets a timer of its own, and a stale one that fires anyway is told apart
    by `window_ended` (its due time is not the stage's window end any more)."""
    return f"window:{rollout_id}:{track}:{stage}:{due_at.astimezone(UTC).isoformat()}"


def backstop_timer_key(
    rollout_id: str, track: str, stage: str, ends_at: datetime, *, asked_at: datetime
) -> str:
    """The window timer that backs a Re-evaluate of a stage whose window ended at `ends_at`,
    asked at `asked_at` (one per click: a backstop fired earlier is no backstop for a later
    click). It fires as the window's own timer would (its payload names that window end)."""
    window = window_timer_key(rollout_id, track, stage, ends_at)
    return ":".join((window, "reevaluated", asked_at.astimezone(UTC).isoformat()))


def window_timer_payload(track: str, stage: str, ends_at: datetime) -> dict[str, str]:
    """What a window timer carries: the stage and its window's end as scheduled (a retry moves
    only the timer's due time; `bot.services.gating` reads it back)."""
    return {"track": track, "stage": stage, "window_ends_at": ends_at.isoformat()}


def new_rollout(
    *,
    rollout_id: str,
    tag: str,
    channel_id: str,
    started_by: str,
    plan: RolloutPlan,
    preflight: Preflight,
    now: datetime,
    service: str = DEFAULT_SERVICE,
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
        service=service,
    )


def holding_tracks(rollout: Rollout) -> list[str]:
    """Tracks whose current stage holds on a gate, waiting for a Promote."""
    return [
        t.name
        for t in rollout.tracks
        if t.state is TrackState.ACTIVE
        and (stage := t.current) is not None
        and stage.state is StageState.HOLDING
    ]


def reopened_from(stage: Stage, now: datetime, settle: timedelta) -> datetime | None:
    """Where a window opened again at `now` (an INCONCLUSIVE extension, a missed gate
    extended by hand) reads from: after its end and `settle` (a late timer, a held stage), the
    latest stretch of the length it was observed for, as a held stage's re-evaluation reads;
    from its start, the figures of the hours since would dilute a canary failing in the last."""
    start, ends = stage.observed_since, stage.window_ends_at
    if start is None or ends is None or now <= ends + settle:
        return stage.observed_from
    return now - (ends - start)


def gate_missed(stage: Stage) -> bool:
    """Held without a verdict: the window's timer gave up before its gate could run."""
    return stage.state is StageState.HOLDING and stage.verdict is None
