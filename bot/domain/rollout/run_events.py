"""What the thread is told of the run and of stops: dispatches, stages approved, deployed last
or failed on GitHub, stops, failure jobs, re-runs, redeploys and the run read or not.

One small dataclass per kind; `bot.domain.rollout.events` joins them with the window events
into the `Event` union the codec and the Slack messages match on.
Stage and track names are the plan's labels, as the reader knows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.freeze import Freeze, LaneHold
from bot.domain.rollout.left import TrackLeft
from bot.domain.rollout.state import StageState, StopReason, TrackState


@dataclass(frozen=True)
class AtStage:
    """Of one stage of one track: the fields every stage's event or effect starts with."""

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
    late_minutes: int = 0
    """Started this many minutes after the bot's approval, whose outcome it never learned, had
    been posted (`RunSnapshot.late_starts`): the approval may not have reached GitHub, and an
    admin may have started it past its protection rules. 0 when not so."""


@dataclass(frozen=True)
class RejectedOnGitHub(AtStage):
    reviewer: str | None
    comment: str
    reached: str | None
    desktop: bool
    failure_job: str


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
class ApprovalOvertaken:
    """The run was re-run on GitHub while the bot's approval of `what` (at `environment`) on
    `track`, decided on the attempt the rollout followed, was on its way: GitHub took it, and
    its review names no attempt, so it may have approved that environment on `rerun.attempt`,
    which the bot never watched nor gated. Said in place of `rerun` (the rollout ends as a
    re-run not followed); `waits`: the environment still waits on the new attempt."""

    rerun: RerunNotFollowed
    track: str
    what: str
    environment: str
    waits: bool


@dataclass(frozen=True)
class RejectionOvertaken:
    """The run was re-run on GitHub while the bot's rejection of `what` (at `environment`) on
    the stopped `track`, decided on the attempt the rollout followed, was on its way: GitHub
    took it, but `rerun.attempt`'s job there waited (`waits`) or went past it (deploys what the
    stop meant to stop). Said in place of `rerun` (the rollout ends as a re-run not followed);
    `rejected`: the bot rejected the waiting job on `rerun.attempt` too, GitHub took it."""

    rerun: RerunNotFollowed
    track: str
    what: str
    environment: str
    waits: bool
    rejected: bool


@dataclass(frozen=True)
class RolloutEnded:
    tag: str
    tracks: tuple[tuple[str, TrackState], ...]


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
class StopPutBack:
    """A stop of `tag` by `actor` (`desktop`: the Kill-switch, else a Roll back), saved before
    GitHub was read, put back on `tracks` (GitHub deploys their last stage, which it cannot
    stop), told to the people `waiting`: they asked for the same stop while it was decided and
    were answered that it was being done. `stopped`: the labels of the tracks it did stop."""

    tag: str
    desktop: bool
    actor: str
    waiting: tuple[str, ...]
    tracks: tuple[TrackLeft, ...]
    stopped: tuple[str, ...]


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
class ApprovalRefused:
    """GitHub refused the bot's approval of `what` (a stage's label, or the track's failure
    job) on `track`, answering `cause` (its words, never a credential): the thread said
    "Approved" when the stage was saved, before GitHub was asked, and GitHub holds it. The
    bot asks again at each look; told once (`Rollout.refused_approvals`)."""

    track: str
    what: str
    cause: str
    run_url: str | None
    rejected: bool = False
    """The bot's rejection of the stage `what` was refused, not an approval: the track is
    stopping (the thread said "Rejected"), and its failure job cannot start while GitHub holds
    the stage."""
    by_rule: bool = False
    """The App's protection rule holds the environment (App mode), not a required reviewer:
    only the App answers it there (a repository admin can start the job past it)."""


@dataclass(frozen=True)
class ReviewUnanswered:
    """GitHub has not taken the bot's approval (`rejected`: rejection) of `what` on `track`
    since `since`, failing it each time without refusing it (a 5xx, no answer: `cause`, its
    last answer in words), for GITHUB_UNREADABLE_SECONDS: told once, as `ApprovalRefused` is
    (`Rollout.refused_approvals`). The bot asks again at each look."""

    track: str
    what: str
    cause: str
    since: datetime
    run_url: str | None
    rejected: bool = False
    by_rule: bool = False
    """As `ApprovalRefused.by_rule`."""


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
