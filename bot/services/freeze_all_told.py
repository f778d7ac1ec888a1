"""The threads of the scheduled dispatches a `/rollout freeze` (one service's, or `--all`) will
hold, told by a durable timer (`FREEZE_ALL_TOLD_TIMER`, one per service) written in the same
transaction as the freeze (`bot.services.lane_controls.tell_scheduled_later`): a failure, a
crash or a restart once the freeze is saved delays the telling (the scheduler retries it, on
any replica), and each thread is told once (its claim and its reply are one write)."""

from __future__ import annotations

import logging

from bot.domain.freeze_all import told_freeze
from bot.domain.reasons import Reason
from bot.domain.rollout import ScheduleFrozen
from bot.services.freeze_ends import OnceOutbox, tell_threads_once
from bot.services.lane_controls import LaneControls
from bot.services.records import Timer

log = logging.getLogger(__name__)


class FreezeAllTold:
    """Fires the timers of kind FREEZE_ALL_TOLD_TIMER of one service (wired by `bot.wiring`)."""

    def __init__(self, *, lane: LaneControls, outboxes: OnceOutbox) -> None:
        self._lane = lane
        self._outboxes = outboxes

    async def on_timer(self, timer: Timer) -> None:
        """Tell each scheduled dispatch's thread the freeze will hold it, unless told already
        (a retry of the timer after a failure, or after a replica died as it wrote them)."""
        freeze, until = told_freeze(timer.payload or {})
        held = await self._lane.scheduled_held_by(freeze, until)
        events = [(rollout, ScheduleFrozen(frozen)) for rollout, frozen in held]
        await tell_threads_once(self._lane.rollouts.effects, self._outboxes, timer.key, events)

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        """Nothing waits on it (the freeze holds the dispatches all the same, `/rollout status`
        shows it, and an untold thread is told at its dispatch's time, when the freeze holds
        it): the log says which threads' telling gave up."""
        log.error("the freeze timer %s gave up telling its threads: %s", timer.key, reason.text)
