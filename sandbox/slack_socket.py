"""The sandbox Slack's Socket Mode: the app's WebSocket, the envelopes pushed and their acks."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from sandbox import slack_markup

SOCKET_LIMIT = 10
"""Socket Mode connections Slack keeps open at once for one app; one more is told
`disconnect` with `too_many_websockets`."""


class SocketMode:
    """Socket Mode for `SlackTestServer` (a mixin); `apps.connections.open` gives the tickets."""

    app_id: str
    _tickets: set[str]
    _sockets: list[web.WebSocketResponse]
    _acks: dict[str, dict[str, Any]]
    app_token_revoked: bool
    socket_limit: int = SOCKET_LIMIT
    refusals_held: asyncio.Event | None = None
    """When set to an event, a connection over `socket_limit` stays open, neither greeted nor
    refused, until the event is set: Slack's refusal comes after the handshake, and a look at
    the link in between sees it open."""
    pings_answered: bool = True
    """False: the app's WebSocket pings go unanswered, as on a connection that looks open
    while Slack is out of reach (a half-open TCP connection)."""
    handshakes_refused: int = 0
    """How many of the next WebSocket handshakes are answered 408 (Slack's link host refusing
    one, seen in the field): their tickets are spent."""
    markup_errors: list[slack_markup.MarkupError]
    wait_for: Callable[[Callable[[], bool], float], Awaitable[None]]
    _notify: Callable[[], Awaitable[None]]

    @property
    def socket_connected(self) -> bool:
        return bool(self._sockets)

    async def socket_send_envelope(
        self,
        *,
        type: str,
        payload: Mapping[str, Any],
        accepts_response_payload: bool | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> str:
        """Push an envelope (`slash_commands`, `interactive`, `events_api`) to the connected app.

        Waits up to `timeout` for a connection; returns the envelope id to await the ack with.
        """
        await self.wait_for(lambda: self.socket_connected, timeout)
        envelope_id = str(uuid.uuid4())
        if accepts_response_payload is None:
            accepts_response_payload = type != "events_api"
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "payload": dict(payload),
            "type": type,
            "accepts_response_payload": accepts_response_payload,
        }
        if type == "events_api":
            envelope["retry_attempt"] = 0
            envelope["retry_reason"] = ""
        await self._sockets[-1].send_str(json.dumps(envelope))
        return envelope_id

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Send the connected app Slack's `disconnect` message. `refresh_requested` (every few
        hours) and `warning` (ahead of a restart) ask for a new connection: the old one stays
        open (its envelopes' acks still taken) until the app closes it. `link_disabled`
        (Socket Mode turned off in the app's settings) is followed by the close of the link."""
        await self.wait_for(lambda: self.socket_connected, 30.0)
        socket = self._sockets[-1]
        debug_info = {"host": "applink-sandbox"}
        message = {"type": "disconnect", "reason": reason, "debug_info": debug_info}
        await socket.send_str(json.dumps(message))
        if reason == "link_disabled":
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"link disabled")

    async def socket_revoke_app_token(self) -> None:
        """The app-level token revoked (or Socket Mode turned off) while the app is connected:
        Slack closes the link, and `apps.connections.open` answers `token_revoked` from now on."""
        self.app_token_revoked = True
        for socket in list(self._sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"token revoked")

    async def wait_for_socket_ack(
        self,
        envelope_id: str,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """The app's acknowledgement of an envelope (`{"envelope_id", "payload"?}`)."""
        await self.wait_for(lambda: envelope_id in self._acks, timeout)
        return self._acks[envelope_id]

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            raise web.HTTPUnauthorized(text="invalid ticket")
        self._tickets.discard(ticket)
        if self.handshakes_refused:
            self.handshakes_refused -= 1
            raise web.HTTPRequestTimeout(text="handshake refused")
        # Answers the SDK's pings with their own data, as Slack does (RFC 6455 §5.5.3).
        ws = web.WebSocketResponse(autoping=self.pings_answered)
        await ws.prepare(request)
        if len(self._sockets) >= self.socket_limit:
            # No hello: the connection is told to go, and closed after it.
            if self.refusals_held is not None:
                await self.refusals_held.wait()
            debug_info = {"host": "applink-sandbox"}
            refusal = {"type": "disconnect", "reason": "too_many_websockets"}
            await ws.send_str(json.dumps({**refusal, "debug_info": debug_info}))
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many websockets")
            return ws
        self._sockets.append(ws)
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "debug_info": {
                        "host": "applink-sandbox",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": self.app_id},
                }
            )
        )
        await self._notify()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and isinstance(data.get("envelope_id"), str):
                    payload = data.get("payload")
                    if isinstance(payload, dict):
                        slack_markup.record(self.markup_errors, "socket ack", payload)
                    self._acks[data["envelope_id"]] = data
                    await self._notify()
        finally:
            self._sockets.remove(ws)
            await self._notify()
        return ws
