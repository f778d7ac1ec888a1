"""Slack Socket Mode: the app's WebSocket, opened with the app-level token (xapp-...)."""

from __future__ import annotations

import json
import logging

import aiohttp
from aiohttp import WSMessage, WSMsgType
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.adapters.slack.delivery import SLACK_TROUBLE

log = logging.getLogger(__name__)


class SocketRefused(Exception):
    """Slack refused the app-level token its first WebSocket URL (`apps.connections.open`)."""


async def connected(bolt: AsyncApp, token: str) -> AsyncSocketModeHandler:
    """`bolt`'s Socket Mode connection, open. The first URL is asked for here: Slack's refusal
    of the token (revoked, wrong, without `connections:write`, Socket Mode turned off) is
    `SocketRefused`, naming Slack's error, where the SDK would ask again every 10 seconds for
    ever, a traceback each time, and the bot would never serve. Slack out of reach, its rate
    limit or its own trouble (HTTP 5xx, `internal_error`, `service_unavailable`...) is no
    refusal of the token: left to the SDK, which tries again."""
    handler = AsyncSocketModeHandler(bolt, token)
    handler.client.on_message_listeners.append(_disconnect_told)
    try:
        opened = await handler.client.web_client.apps_connections_open(app_token=token)
    except SlackApiError as refused:
        error = refused.response.get("error")
        if refused.response.status_code < 500 and error and error not in SLACK_TROUBLE:
            await handler.close_async()  # type: ignore[no-untyped-call]
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
    return handler


async def _disconnect_told(message: WSMessage) -> None:
    """Slack's `disconnect` with `link_disabled` (Socket Mode turned off in the app's
    settings) said in one ERROR line: no Slack request reaches the bot any more, while the SDK
    says only that it opens a new connection. Its other reasons (`refresh_requested` every few
    hours, `warning`) are routine: the SDK reconnects."""
    if message.type != WSMsgType.TEXT or '"disconnect"' not in message.data:
        return
    try:
        reason = json.loads(message.data).get("reason")
    except (ValueError, AttributeError):
        return
    if reason == "link_disabled":
        log.error(
            "Slack turned Socket Mode off for this app (disconnect: link_disabled): no Slack "
            "request reaches the bot until Socket Mode is turned on again in the app's settings"
        )
