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
    background task."""

    async def renewing() -> None:
        while True:
            await asyncio.sleep(lease.total_seconds() / 3)
            try:
                held = await renew()
            except Exception as error:
                failed(error)
                continue
            if not held:
                lost()
                return

    task = asyncio.create_task(renewing(), name=name)
    try:
        yield
    finally:
        task.cancel()
        # Waited for without suppressing CancelledError: that would also swallow a
        # cancellation of the caller (a shutdown) arriving meanwhile.
        await asyncio.wait([task])


def replica_name() -> str:
    """Who holds a claim: host, process and a random part (a restarted process is new)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
