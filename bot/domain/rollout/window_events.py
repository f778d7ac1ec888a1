"""What the thread is told of windows and of time: a stage deployed and its window, the gate at
its end, people's actions on an observing or holding stage, a scheduled dispatch and freezes.

One small dataclass per kind; `bot.domain.rollout.events` joins them with the run events into
the `Event` union the codec and the Slack messages match on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.freeze import Freeze, Frozen
from bot.domain.gate import Verdict
from bot.domain.late_gate import LateGate
from bot.domain.reasons import Reason
from bot.domain.rollout.run_events import AtStage
from bot.domain.rollout.state import StageState
from bot.domain.schedule import Held
from bot.domain.stored_reason import StoredReason


@dataclass(frozen=True)
class PersonAtStage:
    """A person's action on one stage of one track (Promote, Extend, Re-evaluate)."""

    actor: str
    track: str
    stage: str


@dataclass(frozen=True)
class StageDeployed(AtStage):
    """A stage deployed and its window runs for `window`, until `until`."""

    window: timedelta
    until: datetime


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
