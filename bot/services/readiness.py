"""Readiness (`GET /readyz`) and draining: whether a load balancer should send this replica
work, and how it stops taking any on SIGTERM.

Ready means the database answers, its migrations are at this binary's head, it takes writes
(not a standby a failover left DATABASE_URL on), and the scheduler loop went round recently.
Liveness (`/healthz`) is only "the process answers"; a replica that is alive but not ready is
left running and sent nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.services.ports import Clock

log = logging.getLogger(__name__)

READY_WITHIN_S = 2.0
"""Seconds the database's part of the check (the ping and the look at the migrations, together)
may take: a probe is answered in time, whatever holds the database up. A load balancer's check
must wait longer than this (`timeout check` in ops/haproxy.cfg)."""


@dataclass
class Readiness:
    """One replica's readiness; `drain` makes it unready for good and stops its loops."""

    database: Callable[[], Awaitable[bool]]
    """True when the database answers (`SELECT 1`)."""
    schema: Callable[[], Awaitable[str | None]]
    """Why this replica must not serve on the database (its migrations are not at this
    binary's head, or it takes no writes), or None."""
    last_tick: Callable[[], datetime | None]
    """When the scheduler loop last went round."""
    clock: Clock
    stale_after: timedelta
    """A scheduler loop that has not gone round for longer than this is stuck."""
    stoppers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """What `drain` stops, in order (Socket Mode's socket, then the scheduler: it gives back
    its timers)."""
    links: list[Callable[[], str | None]] = field(default_factory=list)
    """Why a link the replica's work comes through is down (Socket Mode's socket), or None."""
    draining: bool = False
    within_s: float = READY_WITHIN_S
    """One budget for the database's part: the ping and the look at the migrations share it."""

    async def problem(self) -> str | None:
        """Why this replica should not be sent work, or None when it is ready."""
        if self.draining:
            return "shutting down: this replica takes no new work"
        for link in self.links:
            if (down := link()) is not None:
                return down
        try:
            async with asyncio.timeout(self.within_s):
                if not await self.database():
                    return "the database does not answer"
                behind = await self.schema()
        # A slow server, or a lock on the table of migrations: not ready, rather than an
        # answer a probe gives up waiting for.
        except TimeoutError:
            return f"the database did not answer within {self.within_s:g} s"
        # The database went away between the ping and this look: not ready, never a 500.
        except Exception as error:
            log.warning("reading the migration revision failed: %s", type(error).__name__)
            return "the database does not answer"
        if behind is not None:
            return behind
        tick = self.last_tick()
        if tick is None:
            return "the scheduler has not gone round yet"
        late = self.clock() - tick
        if late > self.stale_after:
            return (
                f"the scheduler last went round {int(late.total_seconds())} s ago "
                f"(more than {int(self.stale_after.total_seconds())} s)"
            )
        return None

    async def drain(self) -> None:
        """Stop taking new work: `/readyz` answers 503 from now on, then each loop stops
        claiming and gives back what it holds. Requests in flight are the server's to finish."""
        self.draining = True
        log.info("draining: /readyz answers 503; the scheduler stops claiming timers")
        for stop in self.stoppers:
            await stop()
