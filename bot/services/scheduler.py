"""The scheduler: fires durable timers (window ends) and follows the runs of active rollouts.

Timers live in the database, so a window that was running when the process died still ends:
the next process (or another replica, once the dead one's lease runs out) claims it and fires
it, once. Each of a few workers claims one timer at a time and renews its lease while working
on it, so a lease covers exactly the timers in hand, and a slow window end (metrics, GitHub)
does not hold the ones due behind it. A worker that ends a timer claims the next itself. Of
the idle workers only one at a time watches (the others wait their turn): it reads the next
due time, claims once that has come, and reads again only when woken by a timer scheduled here
(`wake`), the due time, or another worker's end (that window may have scheduled the next); it
hands the watch on as it takes a timer. So each fire costs about one claim and one read of the
next due time, not one of each per idle worker. A timer whose handler fails is retried with
exponential backoff and full jitter; after `max_attempts` it is dead-lettered and its stage
holds for a person (nothing is dropped silently; `bot.services.giving_up`, which stores what
failed without Slack markup); a kind only a newer version knows is left to its replicas. A
transient failure (GitHub, the database, another replica's change, a timeout) is one WARNING
line; a bug or a dead-lettered timer is an ERROR with its traceback.

Between timers the scheduler polls GitHub for each running rollout (`bot.services.polling`),
so stage changes are noticed even without webhooks (or when deliveries stop). Once an hour it
forgets what is older than RETENTION_DAYS (`Retention`: action claims, webhook deliveries,
protection rules' requests, the ended looks at npm Release runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from bot.services.backoff import Backoff
from bot.services.clock import Background, LoopClock, sleep_until_any, sleep_until_woken
from bot.services.effects import DISPATCH_TIMER, TIMER_KINDS, WINDOW_TIMER
from bot.services.failures import log_failure
from bot.services.giving_up import DeadTimers, GivingUp
from bot.services.leases import holding, replica_name
from bot.services.polling import PollBudget, RolloutLooks, RunPoller, Sweep
from bot.services.records import Timer
from bot.services.retention import Retention
from bot.services.store_ports import Deliveries, RunLooks, Timers
from bot.services.telemetry import UNTRACKED, Telemetry
from bot.services.words import Words

log = logging.getLogger(__name__)

PRUNE_EVERY = timedelta(hours=1)
TIMER_WORKERS = 8
"""Timers fired at once per replica: window ends of different rollouts wait on GitHub and the
metrics source, not on each other (two of one rollout still take its lock in turn)."""


class RolloutFollower(RolloutLooks, DeadTimers, Protocol):
    """What the scheduler drives: the rollout service."""

    async def on_timer(self, timer: Timer) -> None: ...


@dataclass
class _Firing:
    """What the workers of one `Scheduler.fire_due` share."""

    in_hand: int = 1
    """Workers holding a timer or claiming their next one (the first is claimed before)."""
    fired: int = 0
    failed: bool = False
    """A worker's own call (a claim, a completion) failed: the others stop claiming."""
    watch: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held by the one idle worker that looks for more work; the other idle ones wait on it."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a worker ends a timer (or fails): the watching worker looks again."""

    def moved(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class Scheduler:
    def __init__(
        self,
        *,
        timers: Timers,
        service: RolloutFollower,
        words: Words,
        looks: RunLooks,
        deliveries: Deliveries,
        clock: LoopClock,
        poll_interval: timedelta,
        max_poll_interval: timedelta | None = None,
        lease: timedelta = timedelta(minutes=2),
        retry_after: timedelta = timedelta(seconds=5),
        max_attempts: int = 8,
        backoff: Backoff | None = None,
        retention: Retention | None = None,
        rng: random.Random | None = None,
        owner: str | None = None,
        wake: asyncio.Event | None = None,
        telemetry: Telemetry = UNTRACKED,
        sweep: Sweep | None = None,
        budget: PollBudget | None = None,
        workers: int = TIMER_WORKERS,
    ) -> None:
        self._sweep = sweep
        """Each poll: hand kept protection-rule requests whose run has no card to their
        handler again (`UnfollowedRuns.sweep`; one indexed query when there are none)."""
        self._workers = workers
        self._timers = timers
        self._telemetry = telemetry
        self._service = service
        self._clock = clock
        self.poller = RunPoller(
            service=service,
            looks=looks,
            deliveries=deliveries,
            clock=clock,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            budget=budget,
            telemetry=telemetry,
            progressed=lambda: self._tick("polls"),
        )
        self._lease = lease
        self._retry_after = retry_after
        self._retention = retention
        self._pruned_at: datetime | None = None
        self._newer: set[str] = set()  # timer kinds of a newer version, said once
        self.owner = owner or replica_name()
        self._giving_up = GivingUp(
            timers=timers,
            service=service,
            words=words,
            clock=clock,
            owner=self.owner,
            max_attempts=max_attempts,
            backoff=backoff or Backoff(),
            rng=rng or random.Random(),
            telemetry=telemetry,
        )
        """A failed timer's retries and dead letter (`bot.services.giving_up`)."""
        self._wake = wake or asyncio.Event()
        """Set when a timer is scheduled: look again now, not at the end of the current sleep."""
        self._polls_wake = asyncio.Event()
        """Set only to stop: the polls keep their pace."""
        self._ticks: dict[str, datetime] = {}
        """When each loop (timers, polls) last made progress: a timer or a rollout's poll done,
        a pass ended. Set step by step, so a slow GitHub during one long pass does not make
        every replica unready at once; never by a pass that fails, so a loop failing every
        pass goes stale."""
        self._loop = Background("scheduler", wake=self._wake)

    @property
    def last_tick(self) -> datetime | None:
        """When the loop that is further behind last made progress (for `/readyz`): one loop
        failing every pass makes the replica unready while the other goes on."""
        return min(self._ticks.values(), default=None)

    def _tick(self, loop: str) -> None:
        self._ticks[loop] = self._clock()

    def start(self) -> None:
        self._loop.start(self.run())  # in a task of its own, until `stop`

    async def stop(self, *, grace: timedelta) -> None:
        """Stop claiming at once; let the timers in hand finish within `grace` (else cancel
        them), then give back every timer this replica holds, for another replica now."""
        self._loop.stopping.set()  # before the polls wake: they end instead of polling again
        self._polls_wake.set()
        if not await self._loop.stop(grace=grace):
            return  # never started, or already stopped
        try:
            released = await self._timers.release_owned(owner=self.owner)
        except Exception as error:
            log_failure(log, "could not give back this replica's timers", error)
            return
        log.info("scheduler %s stopped; gave back %d timers", self.owner, released)

    async def run(self) -> None:  # until `stop` (or cancelled)
        """Two loops side by side: the timers, and the polls (with the retention's pruning).
        A window's end never waits for a look at GitHub, however long a pass through many
        runs takes."""
        log.info("scheduler %s started", self.owner)
        await asyncio.gather(
            self._loop_until_stopped("timers", self._timers_turn),
            self._loop_until_stopped("polls", self._polls_turn),
        )

    async def _loop_until_stopped(self, name: str, turn: Callable[[], Awaitable[None]]) -> None:
        while not self._loop.stopping.is_set():
            try:
                await turn()
            except Exception as error:
                # The database or GitHub is away: the timers wait in the database, so
                # nothing is lost; try again after a pause instead of dying.
                message = f"scheduler iteration failed ({name}); retrying in {self._retry_after}"
                log_failure(log, message, error)
                await sleep_until_woken(self._loop.stopping, self._retry_after.total_seconds())

    async def _timers_turn(self) -> None:
        """Fire what is due, then sleep until the next due time or a timer scheduled here.
        The wake-up is cleared before the due time is read: a timer scheduled meanwhile sets
        it again and cuts the sleep short instead of being slept through."""
        await self.fire_due()
        self._tick("timers")
        self._wake.clear()
        if self._loop.stopping.is_set():
            return
        due = await self._timers.next_due(kinds=TIMER_KINDS)
        # A timer another replica schedules does not wake this one: read again each poll
        # interval, so one that replica leaves behind (it stopped) is not slept through.
        again = self._clock() + self.poller.poll_interval
        await self._clock.sleep_until(min(due, again) if due is not None else again, self._wake)

    async def _polls_turn(self) -> None:
        """Look at the runs whose look is due, prune once an hour, sleep until the next pass."""
        await self.poll_runs()
        next_poll = self._clock() + self.poller.poll_interval
        await self.prune()
        self._tick("polls")
        if not self._loop.stopping.is_set():
            await self._clock.sleep_until(next_poll, self._polls_wake)

    async def fire_due(self) -> int:
        """Fire every due timer this replica can claim, `workers` at once; returns how many
        fired once none is due and none is in hand. While one is in hand the others also fire
        what falls due meanwhile (a later window end does not wait for a slow one), one idle
        worker at a time watching for it (`_watch`). A failure of the workers' own (the
        database) ends them all, then is raised. With nothing due it costs one claim, as with
        one worker."""
        first = await self._claim()
        if first is None:
            return 0
        firing = _Firing()
        ended = await asyncio.gather(
            self._fire_in_turn(firing, first),
            *(self._fire_in_turn(firing, None) for _ in range(self._workers - 1)),
            return_exceptions=True,
        )
        for outcome in ended:
            if isinstance(outcome, BaseException):
                raise outcome
        return firing.fired

    async def _claim(self) -> Timer | None:
        claimed = await self._timers.claim_due(
            now=self._clock(), owner=self.owner, lease=self._lease, limit=1, kinds=TIMER_KINDS
        )
        return claimed[0] if claimed else None

    async def _fire_in_turn(self, firing: _Firing, timer: Timer | None) -> None:
        """One worker: fire `timer`, claim the next due and fire it, and so on; with none
        due, wait for its turn to watch (`_watch`) until the pass ends. One claimed as the
        pass ends (another worker failed, or a stop) is given back unfired, for the next."""
        try:
            while timer is not None or (timer := await self._watch(firing)) is not None:
                if self._ending(firing):  # claimed as the pass ended: given back, not held
                    await self._timers.release(timer_id=timer.id, owner=self.owner)
                    return
                await self._fire(timer, firing)
                timer = None if self._ending(firing) else await self._claim()
                if timer is None:
                    firing.in_hand -= 1
                firing.moved()  # after the claim: the watcher sees what this one left
        except Exception:
            firing.failed = True
            firing.moved()
            raise

    def _ending(self, firing: _Firing) -> bool:
        return self._loop.stopping.is_set() or firing.failed

    async def _watch(self, firing: _Firing) -> Timer | None:
        """An idle worker: in its turn (one at a time), read the next due time and claim it
        once it is due; sleep until then, a timer scheduled here (`wake`) or another worker's
        end (it may have scheduled one). None once no timer is in hand (the pass is over) or
        the pass ends. The wake-up is cleared before the due time is read, so a timer scheduled
        meanwhile cuts the wait short; the clock's sleepers are the loops', not these."""
        async with firing.watch:
            while firing.in_hand and not self._ending(firing):
                moved = firing.changed
                self._wake.clear()
                due = await self._timers.next_due(kinds=TIMER_KINDS)
                now = self._clock()
                if due is not None and due <= now:
                    if (timer := await self._claim()) is not None:
                        firing.in_hand += 1
                        return timer
                elif not moved.is_set():
                    until = due or now + self._lease
                    await sleep_until_any((moved, self._wake), (until - now).total_seconds())
        return None

    async def _fire(self, timer: Timer, firing: _Firing) -> None:
        """Fire one claimed timer under its lease, and record how it went."""
        if await self._giving_up.unfinished(timer):
            return
        try:
            async with self._holding(timer):
                await self._service.on_timer(timer)
        except Exception as error:
            await self._giving_up.failed(timer, error)
            return
        finally:
            self._tick("timers")
        if await self._timers.complete(timer_id=timer.id, owner=self.owner, now=self._clock()):
            firing.fired += 1

    def _holding(self, timer: Timer) -> contextlib.AbstractAsyncContextManager[None]:
        """Renew the timer's lease while it is worked on, so a slow window end (metrics, a
        chart, GitHub) is not taken over and run again by another replica."""
        return holding(
            lambda: self._timers.renew(
                timer_id=timer.id, owner=self.owner, lease_until=self._clock() + self._lease
            ),
            lease=self._lease,
            name=f"lease:{timer.key}",
            failed=lambda error: log_failure(
                log, f"could not renew the lease of timer {timer.key}", error
            ),
            lost=lambda: log.warning("timer %s was taken over while it fired", timer.key),
        )

    async def prune(self) -> None:
        """Once an hour (and as the bot starts): tell a held-over scheduled dispatch, or a
        stage, whose timer died while its service was not configured (`GivingUp.tell_again`);
        say (once) which due timers only a newer version fires (never claimed here, so no
        attempt is counted); forget action claims, webhook deliveries and rule requests older
        than the retention (deleting twice is harmless; a request still waiting is found again
        from its deployment). The audit trail stays."""
        now = self._clock()
        if self._pruned_at is not None and now < self._pruned_at + PRUNE_EVERY:
            return
        self._pruned_at = now
        await self._giving_up.tell_again({DISPATCH_TIMER, WINDOW_TIMER})
        for kind in sorted(await self._timers.due_kinds(now=now) - TIMER_KINDS - self._newer):
            self._newer.add(kind)
            log.warning("timers of kind %r are due: left to a newer version's replicas", kind)
        if self._retention is not None:
            await self._retention.prune(now=now)

    async def poll_runs(self) -> None:
        """Look at the runs of active rollouts whose look is due (`RunPoller.poll`), after
        the sweep of kept protection-rule requests."""
        await self.poller.poll(self._sweep)
