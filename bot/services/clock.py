"""The clock the scheduler and the outbox loop run on: what time it is, and sleeping until a
time unless woken first. Production runs on `SystemClock`; tests inject one they move."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.services.ports import Clock


class LoopClock(Clock, Protocol):
    """A clock a loop can sleep on: a test's clock wakes the sleeper when it is moved."""

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        """Return once this clock reads `when`, or earlier: when `wake` is set or the clock
        was moved (the caller looks again either way)."""
        ...


class SystemClock:
    """Real time, in UTC."""

    def __call__(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        await sleep_until_woken(wake, max(0.0, (when - self()).total_seconds()))


async def sleep_until_woken(wake: asyncio.Event, seconds: float | None) -> None:
    """Sleep `seconds` (None: until woken), or less when `wake` is set. `asyncio.timeout`, not
    `wait_for`: on Python 3.11 `wait_for` can swallow a cancellation that arrives as the event
    is set, and a loop that lost its cancellation never stops (a shutdown that hangs)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()


async def sleep_until_any(wakes: Collection[asyncio.Event], seconds: float) -> None:
    """Sleep `seconds`, or less when one of `wakes` is set."""
    waits = [asyncio.ensure_future(wake.wait()) for wake in wakes]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def finish(tasks: Collection[asyncio.Task[Any]], *, grace: float) -> None:
    """Let `tasks` end on their own within `grace` seconds, then cancel the rest and wait for
    them. Cancelling comes last: a task cancelled in the middle of a database call can leave
    its connection checked out, and on SQLite its write lock held, until the garbage collector
    finds it (the next start of the bot in the same process then meets "database is locked")."""
    if not tasks:
        return
    await asyncio.wait(tasks, timeout=grace)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Background:
    """A loop run in a task of its own until stopped: the loop ends its turn once `stopping`
    is set, and `wake` cuts its sleep short."""

    def __init__(self, name: str, *, wake: asyncio.Event) -> None:
        self.name = name
        self.stopping = asyncio.Event()
        self._wake = wake
        self._task: asyncio.Task[None] | None = None

    def start(self, loop: Coroutine[Any, Any, None]) -> None:
        self.stopping.clear()
        self._task = asyncio.create_task(loop, name=self.name)

    async def stop(self, *, grace: timedelta) -> bool:
        """Tell the loop to stop and let its turn end within `grace` (`finish`); False when
        it was not running (never started, or stopped already)."""
        running, self._task = self._task, None
        if running is None:
            return False
        self.stopping.set()
        self._wake.set()
        await finish([running], grace=grace.total_seconds())
        return True
