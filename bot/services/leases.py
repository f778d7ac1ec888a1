"""Holding a lease while working: renewed every third of it in the background, so a slow piece
of work (a delivery to Slack, a window's end) is not taken over and done again by another
replica; the renewal stops when the work ends, or when a renewal finds the lease lost. And who
holds it (`replica_name`)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from bot.services.clock import sleep_until_woken


@asynccontextmanager
async def holding(
    renew: Callable[[], Awaitable[bool]],
    *,
    lease: timedelta,
    name: str,
    failed: Callable[[Exception], None],
    lost: Callable[[], None],
) -> AsyncIterator[None]:
    """Call `renew` every third of `lease` while the body runs; a renewal that raises is
    handed to `failed` and the next one is tried; one that answers False (another replica
    took the work over) calls `lost`, and nothing is renewed after it. `name` names the
    background task.

    When the body ends, a renewal under way is let finish, not cancelled: a write cancelled
    in the middle can leave its connection in a transaction, and on SQLite the database
    locked for every replica's writes until the garbage collector closes it. It is waited
    for a third of the lease at most (longer than the app lets one statement take, a quarter
    of the lease: `bot.bootstrap.statement_timeout`), then cancelled: a database that hangs
    must not hang a shutdown. A caller cancelled meanwhile leaves it to end by itself
    (`_finishing` keeps it)."""
    ended = asyncio.Event()

    async def renewing() -> None:
        while True:
            await sleep_until_woken(ended, lease.total_seconds() / 3)
            if ended.is_set():
                return
            try:
                held = await renew()
            except Exception as error:
                failed(error)
                continue
            if not held:
                lost()
                return

    task = asyncio.create_task(renewing(), name=name)
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)
    try:
        yield
    finally:
        ended.set()
        await asyncio.wait([task], timeout=lease.total_seconds() / 3)
        if not task.done():
            task.cancel()
            await asyncio.wait([task])


_finishing: set[asyncio.Task[None]] = set()
"""The renewal tasks not yet ended (the event loop keeps only weak references to tasks)."""


def replica_name() -> str:
    """Who holds a claim: host, process and a random part (a restarted process is new)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
