"""What the live metrics sources (Prometheus, Sentry) share: a window of the stage read,
one HTTP session per reading with its timeout, and a failed call turned into a reason.

A figure a live source cannot read is left missing with the reason (a `MetricsProblem`), so
the gate says INCONCLUSIVE, never PASS.
"""

from __future__ import annotations

import abc
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bot.domain.metrics import QueryWindow, Reading
from bot.services.ports import Clock


class MetricsProblem(Exception):
    """A live source gave no usable figure; the message says why, for the card (never a secret)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class LiveSource(abc.ABC):
    """A `MetricsSource` that reads a stage's figures over a window from a service."""

    def __init__(self, *, clock: Clock = utc_now, timeout: float = 10.0) -> None:
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def read(self, window: QueryWindow) -> Reading:
        return await self.measure(window)

    @abc.abstractmethod
    async def measure(self, window: QueryWindow) -> Reading: ...

    def session(self) -> aiohttp.ClientSession:
        """The HTTP session of one reading; every request in it has the source's timeout."""
        return aiohttp.ClientSession(timeout=self._timeout)


async def request_json(
    session: aiohttp.ClientSession, method: str, url: str, *, service: str, **options: Any
) -> tuple[int, Any]:
    """The status and JSON body of a request (the body None when it is not JSON); a
    MetricsProblem naming `service` when there is no answer (never the URL: it may hold a
    password)."""
    try:
        async with session.request(method, url, **options) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            return response.status, body
    except (aiohttp.ClientError, TimeoutError) as error:
        reason = "timed out" if isinstance(error, TimeoutError) else type(error).__name__
        raise MetricsProblem(f"{service} unreachable ({reason})") from None
