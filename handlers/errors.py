"""Errors with a home: known errors become a clear ephemeral answer, unknown ones a
reference id that appears in the log next to the traceback.

Listeners acknowledge first and work after (Slack wants an answer within 3 seconds), so
their errors are answered through `acknowledged`, not Bolt's error handler: Bolt's asyncio
runner drops an ack() made moments before a fast failure, and would answer Slack 404.
Bolt's handler stays registered for failures before any listener runs.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

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


def register(app: AsyncApp, services: Services) -> None:
    @app.error
    async def on_error(error: Exception, body: dict[str, Any], respond: AsyncRespond) -> None:
        await report(error, body, respond)
