"""The Bolt app the Slack listeners register on, around the bot's own Slack client."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_sdk.web.async_client import AsyncWebClient


class _SameToken(logging.Filter):
    """Bolt reads `SLACK_BOT_TOKEN` from the environment by itself, then warns at every start
    that the client's token wins over it: they are the same token, so the warning says
    nothing an operator could act on. Bolt's other lines pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


logging.getLogger(f"slack_bolt.{AsyncApp.__name__}").addFilter(_SameToken())  # Bolt's logger


def bolt_app(client: AsyncWebClient, *, signing_secret: str) -> AsyncApp:
    """A Bolt app that calls Slack through `client`. It verifies no signature:
    `handlers.slack_events` checks the raw body before anything parses it. A request no
    listener takes goes to the app's error handler (`handlers.errors`), which acknowledges it:
    Bolt's own answer, a 404 (and no ack over Socket Mode), has Slack deliver it again and
    show the person an error."""
    return AsyncApp(
        name="rollout-bot",  # Bolt would otherwise walk the call stack to name itself
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=False,
        raise_error_for_unhandled_request=True,
    )
