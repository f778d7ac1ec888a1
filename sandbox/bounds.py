"""The bound on a wait of the harness: a bug fails the test with what it waited for instead of
hanging the run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


@asynccontextmanager
async def bounded(timeout: float, missing: Callable[[], str]) -> AsyncIterator[None]:  # noqa: ASYNC109
    """`asyncio.timeout(timeout)`, whose `TimeoutError` says, in `missing()` read as it trips,
    what had not happened yet."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError:
        raise TimeoutError(f"after {timeout} s, {missing()}") from None
