"""Acknowledge first, work after: under a burst of Slack requests over HTTP, the commands and
clicks are acknowledged before the work on any of them goes on; and on shutdown, the work
already acknowledged runs to its end before the connections close.

Slack wants each request acknowledged within 3 seconds (else it shows the person an error and
delivers again); what the work answers goes to the response_url, which takes answers for 30
minutes. The acks and the work share one event loop, so without an order the acks of a burst
queue behind the work on the requests before them. `slack_events.receive` counts the requests
Bolt has not answered yet; the listeners wrapped by `handlers.errors.acknowledged` (the
commands and the clicks) wait, after their ack, until none is left, for `PATIENCE` at most (a
steady stream of requests never starves the work). What does not wait: the buttons that open
a form (Slack's trigger_id expires 3 seconds after the click), view submissions and the App
Home (not wrapped), and every request over Socket Mode (its acks go over the websocket).

The wrapped work is counted from its start to its end (`working`), so `rollout-bot serve`
waits for it (`idle`) before it closes the Slack session and the database engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from aiohttp import web
from slack_bolt.async_app import AsyncBoltContext
from slack_bolt.response import BoltResponse

log = logging.getLogger(__name__)

CONTEXT_KEY = "ack_first"
"""Where a listener finds the `AckFirst` in Bolt's request context (`in_context` puts it)."""

PATIENCE = 1.0
"""Seconds a listener's work waits at most for the other requests' acks."""


class _Count:
    """How many of something are under way, and an event set while none is."""

    def __init__(self) -> None:
        self.under_way = 0
        self.none = asyncio.Event()
        self.none.set()

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        self.under_way += 1
        self.none.clear()
        try:
            yield
        finally:
            self.under_way -= 1
            if not self.under_way:
                self.none.set()


class AckFirst:
    """The requests of one app being acknowledged now, and the work acknowledged but not
    finished."""

    def __init__(self, *, patience: float = PATIENCE) -> None:
        self.patience = patience
        self._acknowledging = _Count()
        self._working = _Count()

    def acknowledging(self) -> contextlib.AbstractContextManager[None]:
        """Around one request, until Bolt has answered it."""
        return self._acknowledging.one()

    def working(self) -> contextlib.AbstractContextManager[None]:
        """Around one listener's work, from its ack to its end."""
        return self._working.one()

    @property
    def work_under_way(self) -> int:
        return self._working.under_way

    async def acknowledged(self) -> None:
        """Return once no request waits for its ack (after `patience` at the latest)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.patience):
                await self._acknowledging.none.wait()

    async def idle(self, *, within: float) -> bool:
        """Wait until no work is under way, `within` seconds at most; False if some still is."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._working.none.wait()
        return not self._working.under_way


Middleware = Callable[
    [AsyncBoltContext, Callable[[], Awaitable[BoltResponse]]], Awaitable[BoltResponse]
]


def in_context(acks: AckFirst) -> Middleware:
    """A Bolt middleware that gives every request (over HTTP and Socket Mode) the app's
    `AckFirst`."""

    async def ack_first(
        context: AsyncBoltContext, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        context[CONTEXT_KEY] = acks
        return await next()

    return ack_first


class Drain:
    """On the way out, the work acknowledged may end: within `grace` seconds from the moment
    the server stops listening (`begins`, an `on_shutdown` hook), a grace the requests in
    flight and this work share (a request's handler ends at its ack, long before its work).
    `finishes` is a `cleanup_ctx` entry, after the one that opens what the work uses."""

    def __init__(self, acks: AckFirst, *, grace: float) -> None:
        self._acks = acks
        self._grace = grace
        self._until: float | None = None

    async def begins(self, app: web.Application) -> None:
        self._until = asyncio.get_running_loop().time() + self._grace

    async def finishes(self, app: web.Application) -> AsyncIterator[None]:
        yield
        now = asyncio.get_running_loop().time()
        left = self._grace if self._until is None else max(self._until - now, 0.0)
        if not await self._acks.idle(within=left):
            log.warning(
                "stopping with the work on %d acknowledged requests unfinished",
                self._acks.work_under_way,
            )
