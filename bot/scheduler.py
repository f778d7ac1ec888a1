"""The scheduler: fires durable timers (window ends) and follows the runs of active rollouts.

Timers live in the database, so a window that was running when the process died still ends:
the next process (or another replica, once the dead one's lease runs out) claims it and fires
it, once. Between timers the scheduler polls GitHub for each running rollout, so stage
changes are noticed even without webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from datetime import datetime, timedelta

from bot.domain.rollout import Phase
from bot.ports import Clock
from bot.rollouts import RolloutService
from storage.timers import TimerStore

log = logging.getLogger(__name__)


def replica_name() -> str:
    """Who holds a claim: host, process and a random part (a restarted process is new)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Scheduler:
    def __init__(
        self,
        *,
        timers: TimerStore,
        service: RolloutService,
        clock: Clock,
        poll_interval: timedelta,
        lease: timedelta = timedelta(minutes=2),
        retry_after: timedelta = timedelta(seconds=30),
        owner: str | None = None,
        wake: asyncio.Event | None = None,
    ) -> None:
        self._timers = timers
        self._service = service
        self._clock = clock
        self._poll_interval = poll_interval
        self._lease = lease
        self._retry_after = retry_after
        self.owner = owner or replica_name()
        self._wake = wake or asyncio.Event()
        """Set when a timer is scheduled: look again now, not at the end of the current sleep."""

    async def run(self) -> None:
        """Run until cancelled."""
        log.info("scheduler %s started", self.owner)
        next_poll = self._clock()
        while True:
            try:
                await self.fire_due()
                if self._clock() >= next_poll:
                    await self.poll_runs()
                    next_poll = self._clock() + self._poll_interval
                await self._sleep_until(next_poll)
            except Exception:
                # The database or GitHub is away: the timers wait in the database, so
                # nothing is lost; try again after a pause instead of dying.
                log.exception("scheduler iteration failed; retrying in %s", self._retry_after)
                await asyncio.sleep(self._retry_after.total_seconds())

    async def fire_due(self) -> int:
        """Fire every due timer this replica can claim; returns how many fired."""
        fired = 0
        while due := await self._timers.claim_due(
            now=self._clock(), owner=self.owner, lease=self._lease
        ):
            for timer in due:
                try:
                    await self._service.on_timer(timer)
                except Exception:
                    # A timer must not be lost to one failure: it fires again later.
                    log.exception("timer %s failed; retrying in %s", timer.key, self._retry_after)
                    await self._timers.release(
                        timer_id=timer.id,
                        owner=self.owner,
                        due_at=self._clock() + self._retry_after,
                    )
                    continue
                if await self._timers.complete(
                    timer_id=timer.id, owner=self.owner, now=self._clock()
                ):
                    fired += 1
        return fired

    async def poll_runs(self) -> None:
        """Reconcile every running rollout with GitHub; find runs of interrupted dispatches."""
        for rollout in await self._service.active():
            try:
                if rollout.phase is Phase.DISPATCHING:
                    await self._service.find_dispatched_run(rollout)
                elif rollout.phase is Phase.RUNNING:
                    await self._service.reconcile(rollout.id)
            except Exception:
                log.exception("following rollout %s failed; trying again next poll", rollout.id)

    async def _sleep_until(self, next_poll: datetime) -> None:
        due = await self._timers.next_due()
        wake_at = min(next_poll, due) if due is not None else next_poll
        seconds = max(0.0, (wake_at - self._clock()).total_seconds())
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
