"""What the thread is told of: the events a decision announces (its effects: `effects`).

Events are data (labels, actors, outcomes, times), never Slack text: the Slack adapter's
`messages` module words each kind; the outbox stores them as JSON (`codec`) until delivered.

Size exception: one small dataclass per kind of event and their union (`Event`), which the
codec and the messages match on; it grows by a field or a kind at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.freeze import Freeze, Frozen, LaneHold
from bot.domain.gate import Verdict
from bot.domain.github_events import GitHubReported
from bot.domain.late_gate import LateGate
from bot.domain.reasons import Reason
from bot.domain.rollout.left import TrackLeft
from bot.domain.rollout.state import StageState, StopReason, TrackState
from bot.domain.schedule import Held
from bot.domain.stored_reason import StoredReason

# -- what the thread is told: one event per kind, rendered by the Slack messages --------------
# Stage and track names are the plan's labels, as the reader knows them.


@dataclass(frozen=True)
class AtStage:
    """Of one stage of one track: the fields every stage's event or effect starts with."""

    track: str
    stage: str


@dataclass(frozen=True)
class PersonAtStage:
    """A person's action on one stage of one track (Promote, Extend, Re-evaluate)."""

    actor: str
    track: str
    stage: str


@dataclass(frozen=True)
class RunDispatched:
    workflow: str
    tag: str
    run_id: int
    run_url: str
    firsts: tuple[tuple[str, str], ...]
    """Each track's first stage, approved as soon as GitHub waits: (stage, track)."""
    linked_by: str | None = None
    """The person who linked the run by hand (`/rollout link`), when the bot did not find it."""
    late: timedelta = timedelta(0)  # a scheduled dispatch's, LATE_SAID or more after its time


@dataclass(frozen=True)
class StageApproved(AtStage):
    """The bot approved the stage's environment."""


@dataclass(frozen=True)
class StageJobFailed:
    """A stage's job failed on GitHub (or was skipped: no `outcome`); the track fails."""

    track: str
    job: str
    outcome: str | None
    logs: tuple[tuple[str, str], ...]
    """The failed jobs behind it: (name, URL); empty when none has a URL."""
    run_url: str
    failure_job: str


@dataclass(frozen=True)
class PromotedOnGitHub(AtStage):
    """The stage after `stage` was approved (by `reviewer`) or started on GitHub (`bypassed`:
    by a repository admin past its protection rules, the App's request unanswered)."""

    following: str
    held: StageState
    """Where `stage` was: observing, evaluating or holding."""
    reviewer: str | None
    bypassed: bool = False
    by_bot: bool = False
    """Started on the bot's own approval, whose reply from GitHub it had not seen (a Promote
    told it could not be read back)."""


@dataclass(frozen=True)
class RejectedOnGitHub(AtStage):
    reviewer: str | None
    comment: str
    reached: str | None
    desktop: bool
    failure_job: str


@dataclass(frozen=True)
class StageDeployed(AtStage):
    """A stage deployed and its window runs for `window`, until `until`."""

    window: timedelta
    until: datetime


@dataclass(frozen=True)
class TrackCompleted(AtStage):
    """The last stage deployed."""


@dataclass(frozen=True)
class LandedWhileStopping(AtStage):
    """An approved stage's job ended while its track stops (`outcome` None: deployed)."""

    outcome: str | None


@dataclass(frozen=True)
class StageRejected(AtStage):
    """The bot rejected the stage's waiting environment: its track is stopping."""


@dataclass(frozen=True)
class FailureJobEnded:
    """The failure job (rollback, kill-switch) ended (`outcome` None: it succeeded)."""

    track: str
    job: str
    outcome: str | None
    url: str | None
    ended: TrackState
    reached: str | None = None  # the last stage reached: where the release may still be
    desktop: bool = False
    rejected: bool = False  # the stop rejected a stage: its failure job had a failure to run on
    landed: bool = False
    """The track's last stage deployed before the stop took hold (the release is all the way
    out): GitHub skipped the failure job, nothing failed for it to run on."""
    track_key: str = ""
    """The track's key in the plan, and `attempt` the run's attempt the job failed in: what a
    Re-run button under a failed job acts on (empty and 0 in events stored before)."""
    attempt: int = 0


@dataclass(frozen=True)
class FailureJobRerun:
    """`actor` re-ran the failure job that had failed: GitHub runs it again (and the jobs that
    need it) as attempt `attempt` of the run, and the track is stopping again."""

    actor: str
    track: str
    job: str
    attempt: int
    run_url: str | None
    reached: str | None = None
    desktop: bool = False
    lane_taken_by: str = ""
    """The tag of a rollout that took the track's lane while GitHub re-ran the job: this
    rollout does not follow the attempt (the bot approves nothing of it), which waits on
    GitHub for a person."""
    sent_before: bool = False
    """The re-run was sent by an earlier click whose outcome the bot never recorded (it died,
    or could not save, after GitHub took it): the bot follows that attempt only now."""


@dataclass(frozen=True)
class RerunUnconfirmed:
    """The bot asked GitHub to re-run the failure job that failed (for `actor`) and does not
    know whether GitHub did: `why` is `not_seen` (an unclear answer, and the run read back
    still at `attempt`, the one the job failed in: GitHub may still apply it), `unread` (an
    unclear answer, and the run could not be read back: never asked again) or `interrupted`
    (the bot stopped before it knew). `again_after`: when a click may look again (its claim's
    lease runs out), None when never (`unread`)."""

    actor: str
    track: str
    job: str
    attempt: int
    run_url: str | None
    why: str
    again_after: datetime | None = None
    reached: str | None = None
    desktop: bool = False


@dataclass(frozen=True)
class RunEnded:
    """The run ended while the track was not over."""

    track: str
    conclusion: str | None
    ended: TrackState
    unseen: str | None = None
    """The failure job of the stopping track, whose end the bot never saw."""


@dataclass(frozen=True)
class RerunNotFollowed:
    """The run was re-run on GitHub (`attempt`) before the bot saw the attempt it followed
    end: the tracks still going end here (`tracks`: each one's label and the last stage it was
    seen to reach), and the new attempt waits at `waiting` with nobody approving it."""

    run_id: int
    run_url: str
    attempt: int
    tag: str
    tracks: tuple[tuple[str, str | None], ...]
    waiting: tuple[str, ...]


@dataclass(frozen=True)
class RolloutEnded:
    tag: str
    tracks: tuple[tuple[str, TrackState], ...]


@dataclass(frozen=True)
class GateMissed(AtStage):
    """A window's timer gave up after `attempts`: the stage holds without a verdict."""

    due_at: datetime
    attempts: int
    error: Reason
    """What failed last, in words and the ids they name (`bot.domain.reasons`)."""
    manual: bool
    """The track's figures are typed in by people (no Re-evaluate)."""
    desktop: bool = False


@dataclass(frozen=True)
class GatePassed:
    stage: str
    figures: str
    following: str
    auto: bool
    """Promoted at once (the plan says `promote: auto`), else holding for a Promote."""
    late: LateGate | None = None
    """Set when the gate ran late and read two stretches (None in events stored before)."""
    frozen: Freeze | None = None
    """The freeze that held a `promote: auto` stage for a Promote (None: not held by one, and
    in events stored before)."""


@dataclass(frozen=True)
class GateInconclusive:
    """Extended once by `extended_by` until `until`, or (neither) holding for a human."""

    stage: str
    figures: str
    extended_by: timedelta | None = None
    until: datetime | None = None
    reason: StoredReason = None
    """Why no verdict (None in events stored before it was said)."""
    late: LateGate | None = None
    """Set when the gate ran late and read two stretches (None in events stored before)."""
    desktop: bool = False
    """Its gate is the desktop one, which Kill-switch stops (False in events stored before)."""


@dataclass(frozen=True)
class GateFailed(AtStage):
    verdict: Verdict
    reason: StoredReason
    figures: str
    reached: str | None
    desktop: bool
    failure_job: str
    late: LateGate | None = None
    """Set when the gate ran late and read two stretches (None in events stored before)."""


@dataclass(frozen=True)
class StagePromoted(PersonAtStage):
    override: StageState | None = None
    """What a Promote overrode: a HOLDING stage's INCONCLUSIVE gate, or (PENDING) a gate that
    never ran."""


@dataclass(frozen=True)
class WindowExtended(PersonAtStage):
    by: timedelta
    until: datetime


@dataclass(frozen=True)
class Reevaluated(PersonAtStage):
    """A person re-evaluated an observing stage: the verdict is shown, the window runs on."""

    verdict: Verdict
    figures: str
    until: datetime | None
    late: LateGate | None = None
    """Set when the gate ran late and read two stretches (None in events stored before)."""


@dataclass(frozen=True)
class TrackStopped:
    """A person stopped the track (rolled back, or tripped the kill-switch)."""

    track: str
    reason: StopReason
    reached: str | None
    desktop: bool
    failure_job: str


@dataclass(frozen=True)
class StopUnconfirmed:
    """A person stopped the track while its last stage, `stage`, was saved as deploying and
    the run could not be read: whether GitHub deploys it (an approved job lands) or still holds
    it (the bot's approval failed: it is rejected once GitHub answers) is not known yet."""

    track: str
    reason: StopReason
    stage: str
    desktop: bool
    failure_job: str


@dataclass(frozen=True)
class TracksLeft:
    """A stop of `tag` (by `actor`, or by a failed gate: None) left these tracks of its gate
    as they are (`desktop`: the kill-switch's gate, else the relay's)."""

    tag: str
    desktop: bool
    tracks: tuple[TrackLeft, ...]
    actor: str | None = None


@dataclass(frozen=True)
class RolloutCancelled:
    actor: str


@dataclass(frozen=True)
class Redeploying:
    """A person redeploys `tag` over `replaced`: as a new rollout (`rollout_id`), or through
    the track's redeploy `workflow` (its run `run_id` at `run_url`)."""

    actor: str
    tag: str
    replaced: str
    rollout_id: str | None = None
    workflow: str | None = None
    run_id: int | None = None
    run_url: str | None = None
    track: str = ""
    """The label of the track put back (empty in events stored before it was said)."""
    still: tuple[str, ...] = ()
    """Labels of the rollout's other completed tracks, which the rollback workflow leaves on
    `replaced` (each card lane offers its own Roll back to the previous release…)."""
    freeze: Freeze | None = None
    """The freeze in force as a new rollout started: a roll back, so it does not hold it."""
    lock: LaneHold | None = None
    """Someone else's lock of the lane then, which the new rollout passes too."""


@dataclass(frozen=True)
class DispatchGaveUp:
    """No run of the dispatch could be told apart within `after`: back to the preflight."""

    tag: str
    workflow: str
    after: timedelta


@dataclass(frozen=True)
class DispatchUnclear:
    """The dispatch went through but its run is not known yet (`message` says what)."""

    message: str


@dataclass(frozen=True)
class DispatchScheduled:
    """`actor` scheduled the dispatch for `at`, read in their Slack time zone `zone`."""

    actor: str
    at: datetime
    zone: str


@dataclass(frozen=True)
class ScheduleHeld:
    """The dispatch scheduled for `at` did not go (`held` says why): a person dispatches."""

    at: datetime
    held: Held


@dataclass(frozen=True)
class ScheduleFrozen:
    """A freeze declared later covers the dispatch's time: held then (`held`, with `at`) unless
    it is lifted or ends first; with `lifted_by`, it was lifted and nothing holds the time."""

    held: Frozen
    lifted_by: str | None = None


@dataclass(frozen=True)
class FreezeLiftedHolding:
    """`lifted_by` lifted the `/rollout freeze` of `froze` while `promote: auto` stages of the
    rollout were held by a freeze (`held`: `Stage → next stage` labels): they stay held for a
    person's Promote. `lane`: the freeze still in force after it (the plan's calendar)."""

    lifted_by: str
    froze: str
    held: tuple[str, ...]
    lane: Freeze | None = None


@dataclass(frozen=True)
class FreezeEnded:
    """The freeze that held the rollout ended at `ended_at` (deploys are no longer frozen for
    it): `held`, its `promote: auto` stages a freeze held (`Stage → next stage` labels), or
    `dispatch_at`, its scheduled dispatch a freeze held, still wait for a person."""

    ended_at: datetime
    held: tuple[str, ...] = ()
    dispatch_at: datetime | None = None


@dataclass(frozen=True)
class ScheduleCancelled:
    """`actor` cancelled the dispatch scheduled for `at`; the preflight stays."""

    actor: str
    at: datetime


@dataclass(frozen=True)
class FreezeOverridden:
    """`actor` overrode `freeze` for the dispatch of `tag`, for `reason` (from the card)."""

    actor: str
    tag: str
    reason: str
    freeze: Freeze


@dataclass(frozen=True)
class WaitsOutsidePlan:
    """The run waits at `environment` for the bot's answer (the App's custom protection rule,
    or in token mode the review of the bot's account, a required reviewer there), and no
    stage or failure job of the plan deploys there: the bot neither approves nor rejects it,
    so the job waits on GitHub for a person."""

    environment: str
    run_id: int
    run_url: str
    by_review: bool = False
    """The bot's account is a required reviewer there (token mode), not the App's rule."""


@dataclass(frozen=True)
class RunUnreadable:
    """GitHub has not let the bot read the followed run since `since`; `cause` is its last
    answer in words (never a credential). The bot keeps trying; it cannot approve or reject
    meanwhile."""

    since: datetime
    cause: str
    run_url: str | None
    rate_limited: bool


@dataclass(frozen=True)
class RunReadable:
    """The run is read again at `back_at`, after being unreadable since `since` (told)."""

    since: datetime
    back_at: datetime


Event = (
    RunDispatched
    | StageApproved
    | StageJobFailed
    | PromotedOnGitHub
    | RejectedOnGitHub
    | StageDeployed
    | TrackCompleted
    | LandedWhileStopping
    | StageRejected
    | FailureJobEnded
    | FailureJobRerun
    | RerunUnconfirmed
    | RunEnded
    | RerunNotFollowed
    | RolloutEnded
    | GateMissed
    | GatePassed
    | GateInconclusive
    | GateFailed
    | StagePromoted
    | WindowExtended
    | Reevaluated
    | TrackStopped
    | StopUnconfirmed
    | TracksLeft
    | RolloutCancelled
    | Redeploying
    | DispatchGaveUp
    | DispatchUnclear
    | DispatchScheduled
    | ScheduleHeld
    | ScheduleFrozen
    | FreezeLiftedHolding
    | FreezeEnded
    | ScheduleCancelled
    | FreezeOverridden
    | GitHubReported
    | WaitsOutsidePlan
    | RunUnreadable
    | RunReadable
)
