"""What the thread is told of: the events a decision announces (its effects: `effects`).

Events are data (labels, actors, outcomes, times), never Slack text: the Slack adapter's
`messages` module words each kind; the outbox stores them as JSON (`codec`) until delivered.
Each kind is one small dataclass: the run's and stops' in `run_events`, the windows', gates'
and time's (schedules, freezes) in `window_events`, GitHub's reports in
`bot.domain.github_events`. This module is their union (`Event`), which the codec and the
messages match on, and the one place the kinds are imported from.
"""

from __future__ import annotations

from bot.domain.github_events import GitHubReported
from bot.domain.rollout.run_events import (
    ApprovalOvertaken,
    ApprovalRefused,
    AtStage,
    DispatchGaveUp,
    DispatchUnclear,
    FailureJobEnded,
    FailureJobRerun,
    LandedWhileStopping,
    PromotedOnGitHub,
    Redeploying,
    RejectedOnGitHub,
    RejectionOvertaken,
    RerunNotFollowed,
    RerunUnconfirmed,
    ReviewUnanswered,
    RolloutCancelled,
    RolloutEnded,
    RunDispatched,
    RunEnded,
    RunReadable,
    RunUnreadable,
    StageApproved,
    StageJobFailed,
    StageRejected,
    StopPutBack,
    StopUnconfirmed,
    TrackCompleted,
    TracksLeft,
    TrackStopped,
    WaitsOutsidePlan,
)
from bot.domain.rollout.window_events import (
    DispatchScheduled,
    FreezeEnded,
    FreezeLiftedHolding,
    FreezeOverridden,
    GateFailed,
    GateInconclusive,
    GateMissed,
    GatePassed,
    PersonAtStage,
    Reevaluated,
    ScheduleCancelled,
    ScheduleFrozen,
    ScheduleHeld,
    StageDeployed,
    StagePromoted,
    WindowExtended,
)

__all__ = [
    "ApprovalOvertaken",
    "ApprovalRefused",
    "AtStage",
    "DispatchGaveUp",
    "DispatchScheduled",
    "DispatchUnclear",
    "Event",
    "FailureJobEnded",
    "FailureJobRerun",
    "FreezeEnded",
    "FreezeLiftedHolding",
    "FreezeOverridden",
    "GateFailed",
    "GateInconclusive",
    "GateMissed",
    "GatePassed",
    "GitHubReported",
    "LandedWhileStopping",
    "PersonAtStage",
    "PromotedOnGitHub",
    "Redeploying",
    "Reevaluated",
    "RejectedOnGitHub",
    "RejectionOvertaken",
    "RerunNotFollowed",
    "RerunUnconfirmed",
    "ReviewUnanswered",
    "RolloutCancelled",
    "RolloutEnded",
    "RunDispatched",
    "RunEnded",
    "RunReadable",
    "RunUnreadable",
    "ScheduleCancelled",
    "ScheduleFrozen",
    "ScheduleHeld",
    "StageApproved",
    "StageDeployed",
    "StageJobFailed",
    "StagePromoted",
    "StageRejected",
    "StopPutBack",
    "StopUnconfirmed",
    "TrackCompleted",
    "TrackStopped",
    "TracksLeft",
    "WaitsOutsidePlan",
    "WindowExtended",
]

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
    | StopPutBack
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
    | ApprovalRefused
    | ReviewUnanswered
    | ApprovalOvertaken
    | RejectionOvertaken
)
