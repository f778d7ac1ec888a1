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

Nothing here does I/O; the services execute the effects after saving the new state. The
package re-exports what the services use: `state` (the values and stop reasons), `events`
(the events the thread is told of), `effects` (what a decision asks for, and the decision),
`reconcile` (following the run),
`gating` (windows and gates), `actions` (people's actions), `work` (building a decision) and
`codec` (JSON for storage and the outbox). The domain speaks events, not Slack: the words
and markup live in `bot.adapters.slack.messages`.
"""

from bot.domain.rollout.actions import (
    abort,
    begin_dispatch,
    cancel_preflight,
    cancel_schedule,
    confirm_flags,
    dispatched,
    extend,
    held_on_github,
    hold_schedule,
    migration_check,
    promote,
    tracks_to_stop,
)
from bot.domain.rollout.codec import (
    NewerEvent,
    check_from_json,
    check_to_json,
    contents_from_json,
    contents_to_json,
    event_from_json,
    event_to_json,
    late_to_json,
    reason_from_json,
    reason_to_json,
    schedule_from_json,
    schedule_to_json,
    verdict_from_json,
    verdict_to_json,
)
from bot.domain.rollout.effects import (
    Announce,
    CancelWindow,
    ClockSkewed,
    Decision,
    Effect,
    ReadMetrics,
    Review,
    ScheduleWindow,
)
from bot.domain.rollout.events import (
    DispatchGaveUp,
    DispatchScheduled,
    DispatchUnclear,
    Event,
    FreezeEnded,
    FreezeLiftedHolding,
    FreezeOverridden,
    Redeploying,
    Reevaluated,
    RolloutCancelled,
    ScheduleCancelled,
    ScheduleFrozen,
    ScheduleHeld,
    StopPutBack,
    StopUnconfirmed,
    TracksLeft,
    TrackStopped,
)
from bot.domain.rollout.gating import (
    gate_evaluated,
    held_by_freeze,
    held_by_freezes,
    stages_held_by_freezes,
    window_ended,
    window_timer_dead,
)
from bot.domain.rollout.left import Left, TrackLeft, tracks_left
from bot.domain.rollout.overtaken import approval_overtaken
from bot.domain.rollout.reconcile import DISPATCH_SEARCH, reconcile
from bot.domain.rollout.refused import approval_refused, review_failed
from bot.domain.rollout.rerun import (
    rerun_failure_job,
    rerun_refusal,
    rerun_told,
    rerun_unconfirmed,
)
from bot.domain.rollout.state import (
    TERMINAL_TRACK,
    Check,
    CheckState,
    InvalidTransition,
    Phase,
    Preflight,
    Rollout,
    Stage,
    StageState,
    StopKind,
    StopReason,
    Track,
    TrackState,
    backstop_timer_key,
    gate_missed,
    holding_tracks,
    new_rollout,
    window_timer_key,
    window_timer_payload,
)
from bot.domain.rollout.stopping import stop_told
from bot.domain.rollout.unread import UNREAD_AFTER, read_again, read_failed
from bot.domain.rollout.words import github_person, reason_words, state_words
from bot.domain.rollout.work import reached_label

__all__ = [
    "DISPATCH_SEARCH",
    "TERMINAL_TRACK",
    "UNREAD_AFTER",
    "Announce",
    "CancelWindow",
    "Check",
    "CheckState",
    "ClockSkewed",
    "Decision",
    "DispatchGaveUp",
    "DispatchScheduled",
    "DispatchUnclear",
    "Effect",
    "Event",
    "FreezeEnded",
    "FreezeLiftedHolding",
    "FreezeOverridden",
    "InvalidTransition",
    "Left",
    "NewerEvent",
    "Phase",
    "Preflight",
    "ReadMetrics",
    "Redeploying",
    "Reevaluated",
    "Review",
    "Rollout",
    "RolloutCancelled",
    "ScheduleCancelled",
    "ScheduleFrozen",
    "ScheduleHeld",
    "ScheduleWindow",
    "Stage",
    "StageState",
    "StopKind",
    "StopPutBack",
    "StopReason",
    "StopUnconfirmed",
    "Track",
    "TrackLeft",
    "TrackState",
    "TrackStopped",
    "TracksLeft",
    "abort",
    "approval_overtaken",
    "approval_refused",
    "backstop_timer_key",
    "begin_dispatch",
    "cancel_preflight",
    "cancel_schedule",
    "check_from_json",
    "check_to_json",
    "confirm_flags",
    "contents_from_json",
    "contents_to_json",
    "dispatched",
    "event_from_json",
    "event_to_json",
    "extend",
    "gate_evaluated",
    "gate_missed",
    "github_person",
    "held_by_freeze",
    "held_by_freezes",
    "held_on_github",
    "hold_schedule",
    "holding_tracks",
    "late_to_json",
    "migration_check",
    "new_rollout",
    "promote",
    "reached_label",
    "read_again",
    "read_failed",
    "reason_from_json",
    "reason_to_json",
    "reason_words",
    "reconcile",
    "rerun_failure_job",
    "rerun_refusal",
    "rerun_told",
    "rerun_unconfirmed",
    "review_failed",
    "schedule_from_json",
    "schedule_to_json",
    "stages_held_by_freezes",
    "state_words",
    "stop_told",
    "tracks_left",
    "tracks_to_stop",
    "verdict_from_json",
    "verdict_to_json",
    "window_ended",
    "window_timer_dead",
    "window_timer_key",
    "window_timer_payload",
]
