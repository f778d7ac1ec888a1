"""What the machine asks for: the effects of a decision (GitHub reviews, window timers, metrics
reads, the thread's announcements) and the decision itself. The shell saves the decision's
rollout first, then carries out its effects in order (`bot.services.effects`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.domain.rollout.events import AtStage, Event
from bot.domain.rollout.state import Rollout, window_timer_key


@dataclass(frozen=True)
class Review:
    """Approve or reject a waiting environment of the run."""

    track: str
    environment: str
    approve: bool
    comment: str


@dataclass(frozen=True)
class WindowEnd(AtStage):
    """The end of a stage's observation window, at `due_at` (its durable timer's key)."""

    due_at: datetime

    def timer_key(self, rollout_id: str) -> str:
        """The key of this window end's durable timer (`window_timer_key`)."""
        return window_timer_key(rollout_id, self.track, self.stage, self.due_at)


@dataclass(frozen=True)
class ScheduleWindow(WindowEnd):
    """Make sure the durable timer for this window's end exists (idempotent by key)."""


@dataclass(frozen=True)
class CancelWindow(WindowEnd):
    """The window ending at `due_at` no longer ends there (stopped or moved)."""


@dataclass(frozen=True)
class ReadMetrics(AtStage):
    """Read the stage's figures and feed them to `gate_evaluated`."""


@dataclass(frozen=True)
class Announce:
    """A reply in the rollout's thread, telling of `event`. The plan's notification level
    decides who sees it: failures always, stage changes unless the level is `failures`,
    details only at `all`."""

    event: Event
    failure: bool = False
    detail: bool = False
    """A step within a stage (a job queued, a deployment status), not a stage change."""


@dataclass(frozen=True)
class ClockSkewed(AtStage):
    """GitHub said the stage's job completed at `reported`, a moment it cannot have (before the
    bot approved it, or after the bot's clock): its window starts at `seen`, when the bot saw
    it, and the shell logs a warning naming the gap between the two clocks."""

    reported: datetime
    seen: datetime


Effect = Review | ScheduleWindow | CancelWindow | ReadMetrics | Announce | ClockSkewed


@dataclass(frozen=True)
class Decision:
    rollout: Rollout
    effects: tuple[Effect, ...] = field(default_factory=tuple)
