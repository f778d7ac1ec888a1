"""The NPM_TOKEN walkthrough's buttons, and the Slack side of its message.

Each click is acknowledged at once; the listener reads which message was clicked (the payload's
container) and the walkthrough its button carried, and makes one service call, which redraws
the message with chat.update. Refusals come back ephemerally through `acknowledged`.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.npm import Walkthrough
from bot.npm_token import MessageRef, WalkthroughNotPosted
from bot.services import Services
from handlers.actions import InvalidPayload
from handlers.errors import acknowledged
from handlers.npm_views import (
    NpmAction,
    WalkthroughSetup,
    decode_state,
    walkthrough_blocks,
    walkthrough_text,
)
from handlers.origin import click_origin

log = logging.getLogger(__name__)


class SlackWalkthroughBoard:
    """`WalkthroughBoard` on Slack: chat.postMessage once, then chat.update in place."""

    def __init__(self, client: AsyncWebClient, *, setup: WalkthroughSetup) -> None:
        self._client = client
        self._setup = setup

    async def post(self, *, channel: str, walkthrough: Walkthrough) -> MessageRef:
        try:
            posted = await self._client.chat_postMessage(
                channel=channel,
                text=walkthrough_text(self._setup),
                blocks=walkthrough_blocks(walkthrough, self._setup),
            )
        except SlackApiError as error:
            reason = error.response.get("error")
            log.warning("could not post the npm-token walkthrough in %s: %s", channel, reason)
            raise WalkthroughNotPosted(
                f"The bot cannot post in this conversation ({reason}). Use `/rollout npm-token` "
                "in a release channel or in a direct message with the bot."
            ) from None
        return MessageRef(channel=str(posted["channel"]), ts=str(posted["ts"]))

    async def update(self, *, message: MessageRef, walkthrough: Walkthrough) -> None:
        try:
            await self._client.chat_update(
                channel=message.channel,
                ts=message.ts,
                text=walkthrough_text(self._setup),
                blocks=walkthrough_blocks(walkthrough, self._setup),
            )
        except SlackApiError as error:
            log.warning(
                "could not redraw the npm-token walkthrough %s: %s",
                message.ts,
                error.response.get("error"),
            )


def _clicked(body: dict[str, Any]) -> tuple[str, MessageRef, Walkthrough]:
    """The clicking user, the walkthrough message and the state its button carried."""
    container = body.get("container") or {}
    channel, ts = container.get("channel_id"), container.get("message_ts")
    if not channel or not ts:
        raise InvalidPayload("This button is not on a walkthrough message.")
    action = body["actions"][0]
    state = decode_state(str(action.get("value", "")))
    return str(body["user"]["id"]), MessageRef(channel=str(channel), ts=str(ts)), state


def register(app: AsyncApp, services: Services) -> None:
    walkthroughs = services.npm_token

    @app.action(NpmAction.CHECK_SECRET)
    @acknowledged
    async def check_secret(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        actor, message, shown = _clicked(body)
        async with services.controls.audited(click_origin(body, request), "npm_check_secret"):
            await walkthroughs.check_secret(message=message, shown=shown, actor=actor)

    @app.action(NpmAction.CHECK_LAST_RUN)
    @acknowledged
    async def check_last_run(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        actor, message, shown = _clicked(body)
        async with services.controls.audited(click_origin(body, request), "npm_check_last_run"):
            await walkthroughs.check_last_run(message=message, shown=shown, actor=actor)

    @app.action(NpmAction.RUN_RELEASE)
    @acknowledged
    async def run_release(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        actor, message, shown = _clicked(body)
        async with services.controls.audited(click_origin(body, request), "npm_run_release"):
            await walkthroughs.run_release(message=message, shown=shown, actor=actor)
