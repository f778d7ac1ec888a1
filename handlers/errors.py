"""Errors with a home: known errors become a clear ephemeral answer, unknown ones a
reference id that appears in the log next to the traceback.

Listeners acknowledge first and work after (Slack wants an answer within 3 seconds), so
their errors are answered through `acknowledged`, not Bolt's error handler: Bolt's asyncio
runner drops an ack() made moments before a fast failure, and would answer Slack 404.
Bolt's handler stays registered for failures before any listener runs.

Every answer on a response_url goes through `LimitedRespond`: Slack takes at most 5 posts to
one response_url within 30 minutes, so further answers (many duplicate clicks at once) go to
the person with chat.postEphemeral instead, as does an answer the response_url refused.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.models.attachments import Attachment
from slack_sdk.models.blocks import Block
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook import WebhookResponse

from bot.domain.errors import InvalidCommand, RolloutError
from bot.services import Services
from handlers import views

log = logging.getLogger(__name__)

Listener = Callable[..., Awaitable[None]]


async def report(error: Exception, body: dict[str, Any], respond: AsyncRespond | None) -> None:
    """Answer the person whose command or click failed, ephemerally."""
    text, blocks = explain(error, body)
    if respond is None or not (body.get("response_url") or body.get("response_urls")):
        return
    try:
        await respond(response_type="ephemeral", replace_original=False, text=text, blocks=blocks)
    except (aiohttp.ClientError, TimeoutError) as lost:  # the answer is lost, not the request
        log.warning("could not answer through the response_url: %s", type(lost).__name__)


def explain(error: Exception, body: dict[str, Any]) -> tuple[str, list[views.Block]]:
    """The answer to a failed request: a known error's message, or a reference id that the
    log line of the unknown error carries."""
    if isinstance(error, RolloutError):
        log.info("refused: %s (%s)", error.code, error.message)
        text = error.message
        blocks = views.error_blocks(text, with_help=isinstance(error, InvalidCommand))
    else:
        reference = uuid.uuid4().hex[:12]
        log.error(
            "unexpected error (ref %s) handling %s",
            reference,
            body.get("command") or body.get("type"),
            exc_info=error,
        )
        text = f"Something went wrong. Reference: `{reference}` (quote it to your bot admin)."
        blocks = views.error_blocks(text)
    return text, blocks


def acknowledged(listener: Listener) -> Listener:
    """Acknowledge at once, then run the listener and answer its errors with `report`.

    The listener declares `ack`, `body` and `respond` (Bolt passes arguments by name) and
    does not call `ack` itself.
    """

    @functools.wraps(listener)
    async def run(**kwargs: Any) -> None:
        ack: AsyncAck = kwargs["ack"]
        await ack()
        try:
            await listener(**kwargs)
        except Exception as error:
            await report(error, kwargs["body"], kwargs.get("respond"))

    return run


RESPONSE_URL_USES = 5
RESPONSE_URL_LIFETIME = 30 * 60.0
"""Slack's limit: a response_url takes 5 posts within 30 minutes (seconds)."""


class ResponseUrlUses:
    """How often each response_url was used, within Slack's limit.

    Counted in the process: a response_url belongs to one interaction payload, which Slack
    sends to one replica (it never re-sends a click). Should a replay reach two replicas, the
    answers Slack refuses beyond its limit fall back to chat.postEphemeral all the same.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._uses: dict[str, tuple[float, int]] = {}

    def take(self, url: str) -> bool:
        """Count one use of `url`; False when Slack would refuse it (the limit is spent)."""
        now = self._clock()
        if len(self._uses) > 1000:  # forget response_urls Slack no longer takes anyway
            self._uses = {
                u: seen for u, seen in self._uses.items() if now - seen[0] < RESPONSE_URL_LIFETIME
            }
        first, count = self._uses.get(url, (now, 0))
        if now - first >= RESPONSE_URL_LIFETIME:
            first, count = now, 0
        if count >= RESPONSE_URL_USES:
            return False
        self._uses[url] = (first, count + 1)
        return True


class LimitedRespond(AsyncRespond):
    """Bolt's `respond`, within Slack's response_url limit: beyond it (or when the
    response_url refuses), an ephemeral answer goes through chat.postEphemeral and a change
    of the original message is skipped."""

    def __init__(
        self,
        *,
        response_url: str,
        uses: ResponseUrlUses,
        client: AsyncWebClient,
        channel_id: str | None,
        user_id: str | None,
    ) -> None:
        super().__init__(response_url=response_url)
        self._url = response_url
        self._uses = uses
        self._client = client
        self._channel_id = channel_id
        self._user_id = user_id

    async def __call__(  # type: ignore[override]
        self,
        text: str | dict[str, Any] = "",
        blocks: Sequence[dict[str, Any] | Block] | None = None,
        attachments: Sequence[dict[str, Any] | Attachment] | None = None,
        response_type: str | None = None,
        replace_original: bool | None = None,
        delete_original: bool | None = None,
        **more: Any,
    ) -> WebhookResponse:
        whole = dict(
            text=text,
            blocks=blocks,
            attachments=attachments,
            response_type=response_type,
            replace_original=replace_original,
            delete_original=delete_original,
            **more,
        )
        if self._uses.take(self._url):
            try:
                sent = await super().__call__(**whole)
            except (aiohttp.ClientError, TimeoutError) as error:
                log.warning("response_url failed (%s); answering with chat.postEphemeral", error)
            else:
                if sent.status_code == 200:
                    return sent
                log.warning("response_url answered %s; using chat.postEphemeral", sent.status_code)
        return await self._ephemeral(whole)

    async def _ephemeral(self, whole: dict[str, Any]) -> WebhookResponse:
        skipped = WebhookResponse(url=self._url, status_code=429, body="skipped", headers={})
        text = whole["text"]
        changes_original = whole["replace_original"] or whole["delete_original"]
        in_channel = whole["response_type"] == "in_channel"
        if changes_original or in_channel or not isinstance(text, str) or not self._user_id:
            log.info("an answer beyond the response_url's limit was skipped")
            return skipped
        try:
            await self._client.chat_postEphemeral(
                channel=self._channel_id or "",
                user=self._user_id,
                text=text,
                blocks=whole["blocks"],
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.warning("an answer could not be sent: %s", type(error).__name__)
            return skipped
        return WebhookResponse(url="chat.postEphemeral", status_code=200, body="ok", headers={})


def register(app: AsyncApp, services: Services) -> None:
    uses = ResponseUrlUses()

    @app.middleware
    async def limit_response_urls(
        context: AsyncBoltContext, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        if context.response_url is not None:
            context["respond"] = LimitedRespond(
                response_url=context.response_url,
                uses=uses,
                client=context.client,
                channel_id=context.channel_id,
                user_id=context.user_id,
            )
        return await next()

    @app.error
    async def on_error(error: Exception, body: dict[str, Any], respond: AsyncRespond) -> None:
        await report(error, body, respond)
