"""How far another clock is from the bot's (Prometheus's, the database server's), and the watch
on the database server's, the clock every replica keeps its leases on.

A timer's or a message's lease ends at its holder's time plus `LEASE_SECONDS`, and another
replica takes it over once that end has passed. Written by the holder's clock and read by the
taker's, two replicas whose clocks are more than two thirds of a lease apart (it is renewed
every third of it: 40 s at the default) would take each other's live leases: a window
evaluated twice, a message sent twice. Replicas do not see each other's clocks, but each sees
the database's, which they all share: each reads its offset from the server's clock
(`DatabaseClock.offset`) and writes and compares its leases' ends on the server's clock
(`storage.leases`). The offset is read at start and at each scrape, and the server's time is
carried between readings on the monotonic clock, so a step of this replica's clock (NTP's)
moves none of its leases. But a timer is due by the clock of the replica that scheduled it,
read by the one that fires it. So a replica more than `MAX_CLOCK_SKEW` from the database's is
still a WARNING: the bound Prometheus's clock is held to, one figure for the operator and the
alert (NTP keeps clocks within milliseconds; seconds apart means a host is not synced and
drifts further).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.domain.clocks import MAX_CLOCK_SKEW, ClockOffset, offset_words
from bot.domain.rollout import ClockSkewed, Rollout
from bot.services.failures import TRANSIENT, log_failure
from bot.services.ports import Clock
from bot.services.telemetry import REFRESH_SECONDS, Telemetry

log = logging.getLogger(__name__)

CLOCK_READINGS = 3
"""Readings of another clock at most, while slow answers leave it unclear whether it is within
`MAX_CLOCK_SKEW` of the bot's (each narrows the range the offset lies in)."""

ClockReading = Callable[[], Awaitable[datetime]]
"""One request for another clock's time."""

ServerClock = Callable[[], AbstractAsyncContextManager[ClockReading]]
"""Opens a way to read the database server's clock (a connection, held for its readings, so
that taking one from the pool is not in their round trips)."""

APART_AT_RISK = (
    "a window's end scheduled by another replica fires here as early (or as late) as this "
    "clock is ahead (or behind): sync every host's clock with NTP"
)
"""What a replica's clock apart from the database server's still puts at risk, and what to do."""

SQLITE_SKIPPED = (
    "the database's clock is not compared with the bot's: SQLite is a file on one host, and "
    "the replicas that share it share that host's clock"
)


async def offset_of(theirs: ClockReading, clock: Clock) -> ClockOffset:
    """How far the clock `theirs` reads is from `clock`, the round trip allowed for: read again
    (up to `CLOCK_READINGS` times) while the answers leave it unclear."""
    found: ClockOffset | None = None
    for _ in range(CLOCK_READINGS):
        sent = clock()
        their_time = await theirs()
        reading = ClockOffset.read(sent=sent, theirs=their_time, received=clock())
        found = reading if found is None else found.narrowed(reading)
        if found.agree or found.apart:
            break
    assert found is not None
    return found


def too_slow_to_tell(offset: ClockOffset, *, whose: str, server: str, asked: str) -> str:
    """Why `whose` clock could not be compared with the bot's: `server`'s answers to `asked`
    too slow to tell."""
    limit = int(MAX_CLOCK_SKEW.total_seconds())
    low, high = offset.low.total_seconds(), offset.high.total_seconds()
    return (
        f"could not tell whether {whose} clock is within {limit}s of the bot's: it is "
        f"{low:+.1f}s to {high:+.1f}s from it (+: ahead), its answers to {asked} too slow to "
        f"tell (is {server} overloaded?)"
    )


@dataclass
class DatabaseClock:
    """This replica's clock against the database server's, checked at start and at each scrape
    of `/metrics`: the offset is a gauge, and it going beyond `MAX_CLOCK_SKEW` one WARNING line
    (said again only after it came back within)."""

    server: ServerClock
    clock: Clock
    telemetry: Telemetry
    _apart: bool = field(default=False, init=False)
    _read: tuple[datetime, float] | None = field(default=None, init=False)
    """The server's time at the last clear reading, and the monotonic clock's then."""

    def offset(self) -> timedelta:
        """The database server's clock minus this replica's (0 before a clear reading): what
        this replica's leases are written and compared on (`storage.leases`). The server's
        time is carried on from the last reading by the monotonic clock, which NTP does not
        step, so a step of this replica's clock since moves the offset, not its leases."""
        if self._read is None:
            return timedelta(0)
        server_then, monotonic_then = self._read
        elapsed = timedelta(seconds=time.monotonic() - monotonic_then)
        return server_then + elapsed - self.clock()

    async def check(self) -> ClockOffset:
        """Read the database server's clock; its failures are the caller's (a scrape reads the
        database as down)."""
        async with self.server() as theirs:
            offset = await offset_of(theirs, self.clock)
        self.telemetry.database_clock(offset=offset.middle)
        if offset.agree or offset.apart:  # not a reading too slow to tell: its middle is close
            self._read = (self.clock() + offset.middle, time.monotonic())
        limit = int(MAX_CLOCK_SKEW.total_seconds())
        if offset.apart and not self._apart:
            log.warning(
                "the database server's clock is %s (more than %ds apart): %s",
                offset_words(offset.seconds),
                limit,
                APART_AT_RISK,
            )
        elif offset.agree and self._apart:
            log.info("the database server's clock is within %ds of the bot's again", limit)
        if offset.apart or offset.agree:
            self._apart = offset.apart
        return offset

    async def first_check(self) -> None:
        """The check at start, within a scrape's bound (`REFRESH_SECONDS`): a failure is
        logged, never a refusal to start or a start held up (`serve` checked the database
        before; it may be away a moment)."""
        try:
            async with asyncio.timeout(REFRESH_SECONDS):
                await self.check()
        except TRANSIENT as error:
            log_failure(log, "the database server's clock was not read", error)


def warn_github_skewed(rollout: Rollout, skewed: ClockSkewed) -> None:
    """Once, as the stage's window opens (the decision is saved once): GitHub's time for its
    job is one it cannot have, so the window starts when the bot saw the job complete."""
    gap = timedelta(seconds=round((skewed.seen - skewed.reported).total_seconds()))
    # GitHub's job ended between the bot's approval and its look: up to `gap` behind.
    way = "up to {} behind" if gap.total_seconds() > 0 else "at least {} ahead of"
    log.warning(
        "GitHub's clock looks %s the bot's: rollout %s (%s), stage %s of %s: GitHub says its "
        "job completed at %s, before the bot approved it or after the bot's now (%s); its "
        "window starts when the bot saw it complete. Check GitHub's (Enterprise Server's) time "
        "source.",
        way.format(abs(gap)),
        rollout.id,
        rollout.tag,
        skewed.stage,
        skewed.track,
        skewed.reported.isoformat(),
        skewed.seen.isoformat(),
    )
