"""What the live metrics sources (Prometheus, Sentry) share: a window of the stage read,
one HTTP session per reading with its timeout, and a failed call turned into a reason.

A figure a live source cannot read is left missing with the reason (a `MetricsProblem`), so
the gate says INCONCLUSIVE, never PASS; a failure that passes (a rate limit, a 502, 503 or 504,
a connection refused or reset) is asked again first, for a few seconds at most.
"""

from __future__ import annotations

import abc
import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bot.domain.metrics import QueryWindow, Reading
from bot.domain.text import whole_number
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


RETRY_WAIT = 3.0
"""Seconds one request of a reading waits in all to be asked again after passing failures: a
gate's reading is not held longer (a Re-evaluate reads under the rollout's lock, which a Stop
waits for). A wait asked beyond it is not waited: the figure is missing, the gate INCONCLUSIVE."""
PASSING_WAIT = 1.0
"""Seconds before asking again when the failure says no wait of its own."""
RETRIES = 3
"""Times a request is asked again at most (a `Retry-After: 0` said each time waits nothing)."""
_PASSING = frozenset({429, 502, 503, 504})
"""A rate limit, and a gateway's or server's failure that passes (not a refusal of the query)."""


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    service: str,
    clock: Clock = utc_now,
    **options: Any,
) -> tuple[int, Any]:
    """The status and JSON body of a request (the body None when it is not JSON); a
    MetricsProblem naming `service` when there is no answer (never the URL: it may hold a
    password). A failure that passes (a rate limit, HTTP 502, 503 or 504, the connection refused
    or reset) is asked again when the answer says to wait (`Retry-After`, or Sentry's
    `X-Sentry-Rate-Limit-Reset` by `clock`), else after PASSING_WAIT, RETRIES times at most
    while the waits add up to RETRY_WAIT at most; then the last answer stands. A timeout is
    not: it took its time."""
    waited, retries = 0.0, 0
    while True:
        try:
            async with session.request(method, url, **options) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                status, wait = response.status, _wait(response, clock)
        except (aiohttp.ClientError, TimeoutError) as error:
            wait = PASSING_WAIT if _passing(error) else None
            if wait is None or waited + wait > RETRY_WAIT or retries == RETRIES:
                reason = "timed out" if isinstance(error, TimeoutError) else type(error).__name__
                raise MetricsProblem(f"{service} unreachable ({reason})") from None
        else:
            if wait is None or waited + wait > RETRY_WAIT or retries == RETRIES:
                return status, body
        waited, retries = waited + wait, retries + 1
        await asyncio.sleep(wait)


def _passing(error: Exception) -> bool:
    """A connection refused or reset (not a timeout, not a certificate refused)."""
    return isinstance(error, aiohttp.ClientConnectionError) and not isinstance(
        error, TimeoutError | aiohttp.ClientSSLError
    )


def _wait(response: aiohttp.ClientResponse, clock: Clock) -> float | None:
    """Seconds to wait before asking again (None: the answer stands)."""
    if response.status not in _PASSING:
        return None
    if (after := whole_number(response.headers.get("Retry-After", ""))) is not None:
        return float(after)
    if (reset := whole_number(response.headers.get("X-Sentry-Rate-Limit-Reset", ""))) is not None:
        return max(0.0, reset - clock().timestamp())
    return PASSING_WAIT
