"""What the live metrics sources (Prometheus, Sentry) share: a window of the stage read,
one HTTP session per reading with its timeout and its deadline, and a failed call turned into a
reason.

A figure a live source cannot read is left missing with the reason (a `MetricsProblem`), so
the gate says INCONCLUSIVE, never PASS; a failure that passes (a rate limit, a 502, 503 or 504,
a connection refused or reset) is asked again first, for a few seconds at most. A whole reading
(every request of it, asked again or not, and the waits) ends by its deadline (`READ_WITHIN`,
GATE_METRICS_TIMEOUT): a closing window's verdict and a Re-evaluate's wait for it.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bot.domain.metrics import QueryWindow, Reading
from bot.domain.retry_after import http_date, retry_after_seconds
from bot.domain.text import whole_number
from bot.services.ports import Clock
from bot.settings.metrics import READ_WITHIN

Sleep = Callable[[float], Awaitable[object]]
"""How a request waits before it is asked again (`asyncio.sleep`; tests pass one of their own)."""


class MetricsProblem(Exception):
    """A live source gave no usable figure; the message says why, for the card (never a secret)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class Deadline:
    """When one reading gives up, shared by all its requests: `seconds` after it began, by the
    event loop's clock (the requests' real time) or by the waits (a `Sleep` of a test's own
    waits none), whichever is further: a request that began at `spent()` is at `began + its
    waits` at least, and the next request after it begins there."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._began = asyncio.get_running_loop().time()
        self._reached = 0.0

    def elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self._began

    def spent(self) -> float:
        return max(self._reached, self.elapsed())

    def waited(self, until: float) -> None:
        self._reached = max(self._reached, until)

    def missed(self, service: str, last: str) -> MetricsProblem:
        return MetricsProblem(
            f"{service} did not answer within {self.seconds:g} s (GATE_METRICS_TIMEOUT, "
            f"last: {last})"
        )


@dataclass(frozen=True)
class Asking:
    """The HTTP session of one reading (every request with its timeout at most) and the
    reading's deadline."""

    http: aiohttp.ClientSession
    deadline: Deadline


@asynccontextmanager
async def asking(*, each: float, within: float) -> AsyncIterator[Asking]:
    """A reading's session: each request `each` seconds at most, all `within` seconds."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=each)) as http:
        yield Asking(http, Deadline(within))


class LiveSource(abc.ABC):
    """A `MetricsSource` that reads a stage's figures over a window from a service (each
    request `timeout` seconds at most, a whole reading `within`)."""

    def __init__(
        self, *, clock: Clock = utc_now, timeout: float = 10.0, within: float = READ_WITHIN
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self._within = within

    async def read(self, window: QueryWindow) -> Reading:
        return await self.measure(window)

    @abc.abstractmethod
    async def measure(self, window: QueryWindow) -> Reading: ...

    def session(self) -> AbstractAsyncContextManager[Asking]:
        """The session of one reading, its deadline starting now."""
        return asking(each=self._timeout, within=self._within)


RETRY_WAIT = 3.0
"""Seconds one request of a reading may take in all, from its first ask, to be asked again
after passing failures (the failed answers' own time counted with the waits): a gate's reading
is not held much longer (a Re-evaluate's verdict waits for it).
A wait asked beyond it is not waited: the figure is missing, the gate INCONCLUSIVE."""
PASSING_WAIT = 1.0
"""Seconds before asking again when the failure says no wait of its own."""
RETRIES = 3
"""Times a request is asked again at most (a `Retry-After: 0` said each time waits nothing)."""
_PASSING = frozenset({429, 502, 503, 504})
"""A rate limit, and a gateway's or server's failure that passes (not a refusal of the query)."""


async def request_json(
    session: Asking,
    method: str,
    url: str,
    *,
    service: str,
    clock: Clock = utc_now,
    sleep: Sleep = asyncio.sleep,
    **options: Any,
) -> tuple[int, Any]:
    """The status and JSON body of a request (the body None when it is not JSON); a
    MetricsProblem naming `service` when there is no answer (never the URL: it may hold a
    password). A failure that passes (a rate limit, HTTP 502, 503 or 504, the connection refused
    or reset) is asked again when the answer says to wait (`Retry-After`, or Sentry's
    `X-Sentry-Rate-Limit-Reset` by the answer's `Date`, else by `clock`), else after
    PASSING_WAIT, RETRIES times at most while the time since the first ask (the failed answers'
    own time with the waits) and the wait add up to RETRY_WAIT at most; then the last answer
    stands. A timeout is not: it took its time.
    Every ask and wait ends by the reading's deadline (`Deadline`): a request cut short by it,
    or a wait that would pass it, is a MetricsProblem saying the service did not answer in time."""
    deadline = session.deadline
    began, started, waited, retries = deadline.spent(), asyncio.get_running_loop().time(), 0.0, 0
    last = "not asked: the time was spent"
    while True:
        if (left := deadline.seconds - max(began + waited, deadline.elapsed())) <= 0:
            raise deadline.missed(service, last)
        cut = session.http.timeout.total is None or left < session.http.timeout.total
        timeout = aiohttp.ClientTimeout(total=left) if cut else session.http.timeout
        try:
            async with session.http.request(method, url, timeout=timeout, **options) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                status, wait = response.status, _wait(response, clock)
        except (aiohttp.ClientError, TimeoutError) as error:
            reason = "timed out" if isinstance(error, TimeoutError) else type(error).__name__
            if cut and isinstance(error, TimeoutError):
                raise deadline.missed(service, "no answer") from None
            wait = PASSING_WAIT if _passing(error) else None
            if wait is None or not _again(wait, started, waited, retries):
                raise MetricsProblem(f"{service} unreachable ({reason})") from None
            last = reason
        else:
            if wait is None or not _again(wait, started, waited, retries):
                return status, body
            last = f"HTTP {status}"
        if max(began + waited, deadline.elapsed()) + wait > deadline.seconds:
            raise deadline.missed(service, last)
        waited, retries = waited + wait, retries + 1
        await sleep(wait)
        deadline.waited(began + waited)


def _again(wait: float, started: float, waited: float, retries: int) -> bool:
    """Whether a request first asked at `started` (the event loop's monotonic time) is asked
    again after `wait`: a slow failing answer (a 504 after a proxy's own timeout) spends the
    time a gate waits as a wait does (the waits counted at least: a test's sleep waits none)."""
    spent = max(waited, asyncio.get_running_loop().time() - started)
    return retries < RETRIES and spent + wait <= RETRY_WAIT


def _passing(error: Exception) -> bool:
    """A connection refused or reset (not a timeout, not a certificate refused)."""
    return isinstance(error, aiohttp.ClientConnectionError) and not isinstance(
        error, TimeoutError | aiohttp.ClientSSLError
    )


def _wait(response: aiohttp.ClientResponse, clock: Clock) -> float | None:
    """Seconds to wait before asking again (None: the answer stands)."""
    if response.status not in _PASSING:
        return None
    said = response.headers.get("Retry-After", "")
    if (after := retry_after_seconds(said, now=_answered_at(response, clock))) is not None:
        return after
    if (reset := whole_number(response.headers.get("X-Sentry-Rate-Limit-Reset", ""))) is not None:
        return max(0.0, reset - _answered_at(response, clock).timestamp())
    return PASSING_WAIT


def _answered_at(response: aiohttp.ClientResponse, clock: Clock) -> datetime:
    """When the server answered, by its own clock (`Date`), which its reset times are on: the
    bot's clock seconds apart would wait too long (not at all, beyond RETRY_WAIT) or ask again
    too soon. The bot's clock when the answer has no readable `Date`."""
    return http_date(response.headers.get("Date", "")) or clock()
