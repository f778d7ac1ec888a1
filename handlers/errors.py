"""The one Bolt error handler: known errors become a clear ephemeral answer, unknown ones a
reference id that appears in the log next to the traceback."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncRespond

from bot.domain.errors import InvalidCommand, RolloutError
from bot.services import Services
from handlers import views

log = logging.getLogger(__name__)


def register(app: AsyncApp, services: Services) -> None:
    @app.error
    async def on_error(error: Exception, body: dict[str, Any], respond: AsyncRespond) -> None:
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
        if body.get("response_url") or body.get("response_urls"):
            await respond(
                response_type="ephemeral", replace_original=False, text=text, blocks=blocks
            )
