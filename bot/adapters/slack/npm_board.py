"""The NPM_TOKEN walkthrough's message on Slack (`WalkthroughBoard`): posted once with
chat.postMessage, then redrawn in place with chat.update after each click."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.npm_steps import WalkthroughSetup
from bot.adapters.slack.npm_views import walkthrough_blocks, walkthrough_text
from bot.domain.npm import Walkthrough
from bot.services.npm_release import MessageRef
from bot.services.npm_walkthrough import WalkthroughNotPosted

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
