"""Clocks the tests move: the bot, its loops and the GitHub simulator read them, and a move
wakes whatever sleeps on them, so a test skips a window instead of waiting it out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.services.clock import sleep_until_woken
from sandbox.bounds import bounded

LOOPS_WAIT_S = 120.0
"""Seconds `settle` and `until_sleeping` wait for the loops at most by default: a pass takes
well under a second, many on a machine with a load of 16 on two cores; a loop that died or
hangs fails the test with what was waited for instead of hanging the run."""


class ManualClock:
    """A clock that only moves when told to: `clock()` reads it, `clock.advance(...)` moves
    it (and wakes the loops sleeping on it)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._start = start
        self.skipped = timedelta(0)
        """How far the clock was moved in all."""
        self._sleepers: set[asyncio.Event] = set()
        self._naps: dict[asyncio.Event, int] = {}
        """How many times each loop went to sleep on this clock: a loop woken by a move has
        finished its pass once it sleeps again."""
        self._woken: dict[asyncio.Event, int] = {}
        self._napped = asyncio.Event()
        """Set whenever a loop goes to sleep."""
        self.loops_wait = LOOPS_WAIT_S
        """Seconds `settle` and `until_sleeping` wait at most (a test of the bound shortens it)."""

    def __call__(self) -> datetime:
        return self._start + self.skipped

    def advance(self, delta: timedelta) -> None:
        self.skipped += delta
        for wake in self._sleepers:
            self._woken.setdefault(wake, self._naps[wake])
            wake.set()

    async def settle(self) -> None:
        """Wait until every loop the last moves woke has looked and sleeps again: whatever
        the moves made due has been done (or tried) by then; `TimeoutError` after
        `loops_wait`."""

        def awake() -> int:
            return sum(self._naps[wake] <= naps for wake, naps in self._woken.items())

        def missing() -> str:
            woken = len(self._woken)
            return f"{awake()} of the {woken} loops the clock's moves woke did not sleep again"

        async with bounded(self.loops_wait, missing):
            while awake():
                self._napped.clear()
                await self._napped.wait()
        self._woken.clear()

    def forget_ended(self) -> int:
        """Forget the loops that do not sleep on this clock now (a stopped bot's: they ended);
        how many loops it knew before."""
        known = len(self._naps)
        for wake in set(self._naps) - self._sleepers:
            del self._naps[wake]
            self._woken.pop(wake, None)
        return known

    async def until_sleeping(self, loops: int) -> None:
        """Wait until `loops` loops sleep on this clock (a bot started again went round);
        `TimeoutError` after `loops_wait`."""

        def missing() -> str:
            return f"only {len(self._sleepers)} of {loops} loops sleep on the clock"

        async with bounded(self.loops_wait, missing):
            while len(self._sleepers) < loops:
                self._napped.clear()
                await self._napped.wait()

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        """Return once woken or moved (a moved clock has the sleeper look again), or once
        `when` came in real time on a clock that also runs by itself."""
        self._sleepers.add(wake)
        self._naps[wake] = self._naps.get(wake, 0) + 1
        self._napped.set()
        try:
            await sleep_until_woken(wake, self._real_seconds(when))
        finally:
            self._sleepers.discard(wake)

    def _real_seconds(self, when: datetime) -> float | None:
        return None  # it never reaches a later time by itself


class SkippingClock(ManualClock):
    """Real time plus whatever the test skipped: everything runs as on the system clock,
    until a test jumps it over a window."""

    def __init__(self) -> None:
        super().__init__(datetime.now(UTC))

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.skipped

    def _real_seconds(self, when: datetime) -> float | None:
        return max(0.0, (when - self()).total_seconds())


class LaggingClock:
    """`clock` less `lag`: GitHub's clock behind the bot's (a GitHub Enterprise Server off its
    time source), moving as the bot's does."""

    def __init__(self, clock: ManualClock, lag: timedelta) -> None:
        self._clock = clock
        self._lag = lag

    def __call__(self) -> datetime:
        return self._clock() - self._lag
