"""The scheduler: fires durable timers (window ends) and follows the runs of active rollouts.

Timers live in the database, so a window that was running when the process died still ends:
the next process (or another replica, once the dead one's lease runs out) claims it and fires
it, once. Between timers the scheduler polls GitHub for each running rollout, so stage
changes are noticed even without webhooks (or when deliveries stop). Each run is polled at
its own pace: every `poll_interval` while things move, twice as long after each look that
found nothing new (up to `max_poll_interval`), and not at all while GitHub's rate limit says
to wait. Unchanged answers are conditional-request 304s, which cost no rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.rollout import Phase, Rollout
from bot.domain.run import RunSnapshot
from bot.ports import Clock
from bot.rollouts import RolloutService
from storage.timers import TimerStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPace:
    """How the poller follows one rollout's run: when it looks next, and what it saw last."""

    interval: timedelta
    due_at: datetime
    seen: RunSnapshot | None
    version: int
    """The rollout's version after the last look: any change to it (a click, a timer, a
    webhook) brings the next look forward."""


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
        max_poll_interval: timedelta | None = None,
        lease: timedelta = timedelta(minutes=2),
        retry_after: timedelta = timedelta(seconds=30),
        owner: str | None = None,
        wake: asyncio.Event | None = None,
    ) -> None:
        self._timers = timers
        self._service = service
        self._clock = clock
        self._poll_interval = poll_interval
        self._max_poll_interval = max(poll_interval, max_poll_interval or poll_interval * 8)
        self.paces: dict[str, RunPace] = {}
        self.paused_until: datetime | None = None
        """GitHub's rate limit said to wait until then: no run is polled before."""
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
        """Reconcile each running rollout whose look is due; find runs of interrupted
        dispatches. Nothing while GitHub's rate limit says to wait."""
        if self.paused_until is not None and self._clock() < self.paused_until:
            return
        self.paused_until = None
        active = await self._service.active()
        following = {rollout.id for rollout in active}
        self.paces = {key: pace for key, pace in self.paces.items() if key in following}
        for rollout in active:
            try:
                if rollout.phase is Phase.DISPATCHING:
                    await self._service.find_dispatched_run(rollout)
                elif rollout.phase is Phase.RUNNING:
                    await self._follow(rollout)
            except Exception:
                log.exception("following rollout %s failed; trying again next poll", rollout.id)
            if self.paused_until is not None:
                return

    async def _follow(self, rollout: Rollout) -> None:
        pace = self.paces.get(rollout.id)
        if pace is not None and rollout.version == pace.version and self._clock() < pace.due_at:
            return
        found = await self._service.reconcile(rollout.id)
        now = self._clock()
        longer = min((pace.interval if pace else self._poll_interval) * 2, self._max_poll_interval)
        if found.rate_limited:
            wait = timedelta(seconds=found.retry_after) if found.retry_after else longer
            self.paused_until = now + max(wait, self._poll_interval)
            log.warning("GitHub rate limit: polling paused until %s", self.paused_until)
            return
        seen = pace.seen if pace is not None else None
        unchanged = (
            pace is not None
            and found.version == pace.version
            and (found.snapshot is None or found.snapshot == seen)
        )
        interval = longer if unchanged else self._poll_interval
        self.paces[rollout.id] = RunPace(
            interval=interval,
            due_at=now + interval,
            seen=found.snapshot or seen,
            version=found.version,
        )

    async def _sleep_until(self, next_poll: datetime) -> None:
        due = await self._timers.next_due()
        wake_at = min(next_poll, due) if due is not None else next_poll
        seconds = max(0.0, (wake_at - self._clock()).total_seconds())
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
