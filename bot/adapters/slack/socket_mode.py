"""Slack Socket Mode: the app's WebSocket, opened with the app-level token (xapp-...)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import aiohttp
from aiohttp import WSMessage, WSMsgType
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.adapters.slack.delivery import SLACK_TROUBLE
from bot.services.ports import Clock

log = logging.getLogger(__name__)


SOCKET_DOWN_GRACE = timedelta(seconds=30)
"""How long the socket may be down before the replica is not ready: Slack's routine refresh
takes a second, the SDK finds a dead link within 20 s (four missed pings) and asks again every
5 s; a link down for longer than this is not coming back by itself."""

WATCH_EVERY_S = 1.0
"""How often the link is looked at, whether or not `/readyz` or a scrape asks: its grace runs
from when it went down, not from the first look after (nothing may ask for minutes)."""

ANSWERED_WITHIN_S = 3.0
"""How long a drain waits, at most, for the envelopes Slack sent before it to be answered
before it closes the socket: Slack's own deadline for an ack (a command or a click not
acknowledged within 3 s is an error shown to the person, and waiting longer saves nothing)."""

BARRIER_POLL_S = 0.01
"""How often a drain looks whether Slack has answered its ping."""

SLACK_SOCKET_LIMIT = 10
"""Socket Mode connections Slack keeps open at once for one app (all replicas, and any other
process with the app's SLACK_APP_TOKEN)."""

TOLD = {
    "link_disabled": (
        "Slack turned Socket Mode off for this app (disconnect: link_disabled): no Slack "
        "request reaches the bot until Socket Mode is turned on again in the app's settings"
    ),
    "too_many_websockets": (
        "Slack refused this replica's Socket Mode connection (disconnect: too_many_websockets): "
        f"Slack keeps at most {SLACK_SOCKET_LIMIT} connections per app, and other replicas "
        "(or other processes with this SLACK_APP_TOKEN) hold them; no Slack request reaches "
        f"this replica until one closes: run at most {SLACK_SOCKET_LIMIT} `socket` replicas"
    ),
}
"""Slack's `disconnect` reasons that leave no request reaching the bot, and what the bot says.
Its other reasons (`refresh_requested` every few hours, `warning`) are routine: the SDK
reconnects."""


class _SaidOnce(logging.Filter):
    """The SDK's Socket Mode ERROR lines, each said once while the link stays down: it tries
    again every 5 s for ever (a revoked token, Slack out of reach), the same line and its
    traceback each time. While the link is `up`, each is said (a failure then is no retry)."""

    _SDK = os.path.join("slack_sdk", "socket_mode")

    def __init__(self, up: Callable[[], bool]) -> None:
        super().__init__()
        self._up = up
        self.said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or self._SDK not in record.pathname or self._up():
            return True
        message = record.getMessage()
        if message in self.said:
            return False
        self.said.add(message)
        return True


class SocketRefused(Exception):
    """Slack refused the app-level token its first WebSocket URL (`apps.connections.open`)."""


async def connected(bolt: AsyncApp, token: str, *, clock: Clock) -> SocketLink:
    """`bolt`'s Socket Mode connection, open. The first URL is asked for here: Slack's refusal
    of the token (revoked, wrong, without `connections:write`, Socket Mode turned off) is
    `SocketRefused`, naming Slack's error, where the SDK would ask again every 10 seconds for
    ever, a traceback each time, and the bot would never serve. Slack out of reach, its rate
    limit or its own trouble (HTTP 5xx, `internal_error`, `service_unavailable`...) is no
    refusal of the token: left to the SDK, which tries again."""
    handler = AsyncSocketModeHandler(bolt, token)
    link = SocketLink(handler, clock=clock)
    # The SDK's session for the socket's handshakes, traced: a refused one spends its ticket.
    await handler.client.aiohttp_client_session.close()
    handler.client.aiohttp_client_session = aiohttp.ClientSession(trace_configs=[link.tracing()])
    try:
        opened = await handler.client.web_client.apps_connections_open(app_token=token)
    except SlackApiError as refused:
        error = refused.response.get("error")
        if refused.response.status_code < 500 and error and error not in SLACK_TROUBLE:
            await link.close()
            raise SocketRefused(
                f"Slack refused SLACK_APP_TOKEN for Socket Mode ({error}): set an app-level "
                "token (Basic Information, App-Level Tokens) with the connections:write "
                "scope, and turn Socket Mode on in the app's settings"
            ) from None
    except (aiohttp.ClientError, TimeoutError):
        pass  # Slack out of reach for now: the SDK asks again until it answers
    else:
        handler.client.wss_uri = opened["url"]
    await handler.connect_async()  # type: ignore[no-untyped-call]
    link.watch()
    return link


class SocketLink:
    """The app's Socket Mode connection, watched. The SDK reconnects by itself, and for ever:
    a token revoked or Socket Mode turned off while the bot runs is an ERROR line from the
    SDK every few seconds and nothing more. Here a link down for longer than
    `SOCKET_DOWN_GRACE` makes the replica not ready (`problem`, one ERROR line when it turns
    so; looked at every `WATCH_EVERY_S`, asked or not), and Slack's `disconnect` reasons that
    leave no request reaching the bot (`TOLD`) are one ERROR line each until Slack reaches the
    bot again. Up means a connection Slack said `hello` on: one it refuses
    (`too_many_websockets`) is open a moment, never greeted, and counts as down. A drain
    (`drain`) answers what Slack sent before it, then closes. The SDK's ERROR lines are each
    said once while the link stays down."""

    def __init__(self, handler: AsyncSocketModeHandler, *, clock: Clock) -> None:
        self._handler = handler
        self._clock = clock
        self._greeted: object = None
        """The connection Slack last said `hello` on."""
        self._unanswered: set[str] = set()
        """The envelopes received whose Bolt handling (and so their ack) has not ended."""
        self._all_answered = asyncio.Event()
        self._all_answered.set()
        self._said_once = _SaidOnce(self._up)
        handler.client.logger.addFilter(self._said_once)
        self._down_since: datetime | None = None
        self._down_told = False
        self._told: str | None = None
        """The `disconnect` reason last told, until an envelope comes again."""
        self._closed = False
        self._watcher: asyncio.Task[None] | None = None
        handler.client.on_message_listeners.append(self._message)
        # After Bolt's own (its handler sends the ack): the envelope's handling has ended.
        handler.client.socket_mode_request_listeners.append(self._answered)

    def watch(self) -> None:
        """Look at the link every `WATCH_EVERY_S` until it is closed (`problem`: the grace of
        a link down starts then, and its ERROR line is said, asked or not)."""
        self._watcher = asyncio.create_task(self._watching())

    async def _watching(self) -> None:
        while not self._closed:
            self.problem()
            await asyncio.sleep(WATCH_EVERY_S)

    def problem(self) -> str | None:
        """Why this replica takes no Slack request, once the link has been down for longer
        than the grace; None while it is up, or down for less."""
        if self._up():
            if self._down_told:
                log.info("Slack's Socket Mode connection is up again")
            self._down_since, self._down_told = None, False
            return None
        now = self._clock()
        self._down_since = self._down_since or now
        down = now - self._down_since
        if down <= SOCKET_DOWN_GRACE:
            return None
        reason = (
            f"Slack's Socket Mode connection has been down for {int(down.total_seconds())} s "
            f"(more than {int(SOCKET_DOWN_GRACE.total_seconds())} s): no Slack request reaches "
            "this replica; the SDK's lines say what Slack answers (a revoked SLACK_APP_TOKEN, "
            "Socket Mode turned off in the app's settings, Slack out of reach)"
        )
        if not self._down_told:
            log.error("%s", reason)
            self._down_told = True
        return reason

    def _up(self) -> bool:
        """Whether the link is up: open, and on a connection Slack said `hello` on."""
        client = self._handler.client
        session = client.current_session
        greeted = session is not None and session is self._greeted and not session.closed
        return not self._closed and greeted and not client.stale

    def tracing(self) -> aiohttp.TraceConfig:
        """Tracing for the session the SDK opens the socket with: a handshake Slack answers
        other than 101 (a 408 from its link host) spent the URL's single-use ticket, but the
        SDK presents the same URL every 5 seconds for ever (it asks for a new one only when
        it has none): it is forgotten, and the next try asks `apps.connections.open`."""
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._handshake_answered)
        return trace

    async def _handshake_answered(
        self, session: object, context: object, params: aiohttp.TraceRequestEndParams
    ) -> None:
        if params.response.status != 101:
            self._handler.client.wss_uri = None

    async def drain(self) -> None:
        """Answer what Slack sent before the drain, then close the socket (the first thing a
        drain does): Slack sends what comes next to the app's other connections. What Slack
        sent is all in once it answers a ping sent now (one connection keeps its order); the
        envelopes in, their Bolt handling (which sends the ack) ends before the close, within
        `ANSWERED_WITHIN_S`. Closing at once dropped the envelopes the SDK held: Slack sends
        an event again, but a command or a click that is not acknowledged is an error shown
        to the person, and one whose handling had begun was acted on and shown that error."""
        all_in = False
        try:
            async with asyncio.timeout(ANSWERED_WITHIN_S):
                await self._all_sent_is_in()
                all_in = True
                await self._all_answered.wait()
        except TimeoutError:
            unanswered = len(self._unanswered)
            if all_in:
                log.warning(
                    "closing Slack's Socket Mode connection with %d envelopes not answered "
                    "within %g s: Slack shows the person an error for a command or a click "
                    "among them, and sends an event again",
                    unanswered,
                    ANSWERED_WITHIN_S,
                )
            else:
                log.warning(
                    "closing Slack's Socket Mode connection: Slack did not answer a ping "
                    "within %g s (out of reach, or slow), so what it sent before the drain "
                    "is not known to be in (%d envelopes in were not answered); a command "
                    "or a click not acknowledged is an error shown to the person, an event "
                    "is sent again",
                    ANSWERED_WITHIN_S,
                    unanswered,
                )
        await self.close()

    async def _all_sent_is_in(self) -> None:
        """Return once Slack has answered a ping sent now, or at once on a link that is down."""
        client = self._handler.client
        session = client.current_session
        if session is None or session.closed:
            return
        sent = time.time()
        try:
            await session.ping(f"sdk-ping-pong:{sent}".encode())  # the SDK's own form
        except ConnectionError:
            return
        # The SDK reads the pong (`last_ping_pong_time`) and tells no one: looked at.
        while (client.last_ping_pong_time or 0.0) < sent and not session.closed:  # noqa: ASYNC110
            await asyncio.sleep(BARRIER_POLL_S)

    async def _answered(
        self, client: AsyncBaseSocketModeClient, request: SocketModeRequest
    ) -> None:
        self._unanswered.discard(request.envelope_id)
        if not self._unanswered:
            self._all_answered.set()

    async def close(self) -> None:
        """Close the socket (after a drain's answers, and at the end)."""
        if not self._closed:
            self._closed = True
            if self._watcher is not None:
                self._watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._watcher
            await self._handler.close_async()  # type: ignore[no-untyped-call]
            self._handler.client.logger.removeFilter(self._said_once)

    async def _message(self, message: WSMessage) -> None:
        if message.type != WSMsgType.TEXT:
            return
        try:
            data = json.loads(message.data)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if (request := SocketModeRequest.from_dict(data)) is not None:
            self._told = None  # Slack reaches the bot again
            self._unanswered.add(request.envelope_id)
            self._all_answered.clear()
        elif data.get("type") == "hello":
            self._greeted = self._handler.client.current_session
            self._said_once.said.clear()  # up: a line said again tells a new failure
        elif data.get("type") == "disconnect":
            reason = data.get("reason")
            if reason in TOLD and reason != self._told:
                log.error("%s", TOLD[reason])
                self._told = reason
