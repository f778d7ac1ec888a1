"""A sleep that a wake-up event cuts short, shared by the scheduler and the outbox loop."""

from __future__ import annotations

import asyncio
import contextlib


async def sleep_until_woken(wake: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less when `wake` is set. `asyncio.timeout`, not `wait_for`: on
    Python 3.11 `wait_for` can swallow a cancellation that arrives as the event is set, and a
    loop that lost its cancellation never stops (a shutdown that hangs)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()
