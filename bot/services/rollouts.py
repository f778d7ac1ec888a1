"""The rollout service: one object that gathers a rollout's use cases, for the callers.

Each use case lives in its own module: starting and dispatching (`preflight`), following the
run (`following`), gating a stage (`gating`), people's actions (`actions`); all of them save
decisions and carry out their effects through one runner (`effects`). The controls
(`bot.services.controls`) decide who may act, once per request, before any of this.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Protocol

from bot.domain.plan import RolloutPlan
from bot.domain.reasons import Reason
from bot.domain.release_contents import ReleaseContents
from bot.domain.rollout import (
    DISPATCH_SEARCH,
    EARLY_GATE_TIMER,
    UNREAD_AFTER,
    InvalidTransition,
    Rollout,
)
from bot.domain.service import DEFAULT_SERVICE
from bot.services.actions import PeoplesActions
from bot.services.dispatched_runs import DispatchedRuns
from bot.services.effects import DISPATCH_TIMER, WINDOW_TIMER, EffectRunner
from bot.services.following import RunFollower
from bot.services.gating import Gate
from bot.services.ports import MetricsSources
from bot.services.preflight import Preflights
from bot.services.records import Timer
from bot.services.reevaluations import Reevaluations
from bot.services.reruns import FailureJobReruns
from bot.services.stops import Stops
from bot.services.window_ends import EarlyGates, WindowEnds
from bot.services.words import Words

log = logging.getLogger(__name__)


class UnhandledTimer(RuntimeError):
    """A timer of a kind no handler was wired for (a wiring mistake: the scheduler claims only
    the kinds this version knows, `TIMER_KINDS`): its firing fails, so it is retried and then
    dead-lettered loudly."""


class TimerHandler(Protocol):
    """Fires one kind of durable timer."""

    async def on_timer(self, timer: Timer) -> None: ...

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None: ...


class RolloutService:
    """Start, dispatch, observe, gate, promote and stop rollouts (the use cases, by name)."""

    def __init__(
        self,
        *,
        plan: RolloutPlan,
        effects: EffectRunner,
        metrics: MetricsSources,
        words: Words,
        dispatch_search: timedelta = DISPATCH_SEARCH,
        unread_after: timedelta = UNREAD_AFTER,
        service: str = DEFAULT_SERVICE,
    ) -> None:
        self.plan = plan
        self.service = service
        """The service whose rollouts these are (`bot.domain.service`)."""
        follower = RunFollower(effects, unread_after=unread_after)
        dispatched = DispatchedRuns(effects, follower, dispatch_search=dispatch_search)
        preflight = Preflights(effects, follower, dispatched, words, plan=plan, service=service)
        gate = Gate(effects, follower, sources=metrics)
        self._windows = WindowEnds(effects, follower, gate)
        reevaluations = Reevaluations(effects, follower, gate)
        self._early_gates = EarlyGates(reevaluations)
        actions = PeoplesActions(effects, follower, words)
        self.effects = effects
        """The effect runner every use case saves through (GitHub, the outbox, the audit)."""
        self.words = words
        """The edge's words for the answers the use cases and the controls give."""
        self._store = effects.store
        self.get = effects.get
        self.plan_of = effects.plan_of
        self.start = preflight.start
        self.checked = preflight.checked
        self.adopt = preflight.adopt
        self.recheck = preflight.recheck
        self.confirm_flags = preflight.confirm_flags
        self.dispatch = preflight.dispatch
        self.hold_schedule = preflight.hold_schedule
        self.reconcile = follower.reconcile
        self.look_again = follower.look_again
        self.follow_github_events = follower.follow_github_events
        self.find_dispatched_run = dispatched.find_dispatched_run
        self.link_run = dispatched.link_run
        self._gate = gate
        self._handlers: dict[str, TimerHandler] = {}
        self.submit_figures = gate.submit_figures
        self.reevaluate = reevaluations.reevaluate
        self.promotions_frozen_with = gate.frozen_with
        self.promote = actions.promote
        self.extend = actions.extend
        stops = Stops(effects, follower)
        self.abort = stops.abort
        self.stops = stops
        """What becomes of a stop, for whoever else asks for it (`StopOutcomes`)."""
        self.cancel = actions.cancel
        self.cancel_schedule = actions.cancel_schedule
        self.rerun_failure_job = FailureJobReruns(effects).rerun

    def dispatches_scheduled_with(self, handler: TimerHandler) -> None:
        """Who fires the scheduled dispatches (`bot.services.scheduled_starts`, which goes
        through the controls' exactly-once claims and audit); wired by `bot.wiring`."""
        self.fires_timers_with(DISPATCH_TIMER, handler)

    def fires_timers_with(self, kind: str, handler: TimerHandler) -> None:
        """Who fires the durable timers of `kind` (the gate fires the windows' ends)."""
        self._handlers[kind] = handler

    def handler_of(self, kind: str) -> TimerHandler | None:
        """Who fires the timers of `kind` (`fires_timers_with`), if anyone."""
        return self._handlers.get(kind)

    def _handler(self, timer: Timer) -> TimerHandler | None:
        """Who handles `timer`'s kind: a window's end or a failing verdict's early gate (the
        gate), a scheduled dispatch, a run nobody adopted in time
        (`bot.services.unfollowed_runs`)."""
        if timer.kind == WINDOW_TIMER:
            return self._windows
        if timer.kind == EARLY_GATE_TIMER:
            return self._early_gates
        return self._handlers.get(timer.kind)

    async def on_timer(self, timer: Timer) -> None:
        """A durable timer fired. A kind nobody handles fails (the scheduler retries it, then
        dead-letters it, logging each failure), never completes as if it had fired."""
        handler = self._handler(timer)
        if handler is None:
            raise UnhandledTimer(f"no handler for timer {timer.key} of kind {timer.kind!r}")
        await handler.on_timer(timer)

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        handler = self._handler(timer)
        if handler is None:  # nobody to tell: it is dead-lettered, and the log says so
            log.error("timer %s of kind %r has no handler; dead-lettered", timer.key, timer.kind)
            return
        await handler.on_timer_dead(timer, reason=reason)

    async def release_contents(self, rollout_id: str) -> ReleaseContents:
        """What is in the rollout's release, for its "What's in it" list (anyone who sees the
        card may look)."""
        contents = (await self.get(rollout_id)).preflight.contents
        if contents is None:
            raise InvalidTransition("This rollout started before the bot read release contents.")
        return contents

    async def active(self) -> list[Rollout]:
        return await self._store.active()

    async def active_with_plans(self) -> list[tuple[Rollout, RolloutPlan]]:
        """The active rollouts with the plans they were started with, in one read."""
        return await self._store.active_with_plans()

    async def history(self, *, tag: str | None = None, limit: int = 10) -> list[Rollout]:
        """The latest rollouts, newest first (of one tag when given)."""
        if tag is not None:
            return (await self._store.by_tag(tag))[:limit]
        return await self._store.recent(limit)
