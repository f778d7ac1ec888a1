"""The NPM_TOKEN walkthrough's buttons.

Each click is acknowledged at once; the listener reads which message was clicked (the payload's
container) and the walkthrough its button carried (with its service), and makes one service
call, which redraws the message with chat.update. Refusals come back ephemerally through
`acknowledged`, and so does what a call tells the person besides (a Release run again). The
clicks are a table (`NPM_CLICKS`: action id to service call), audited under the action id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.adapters.slack import views
from bot.adapters.slack.actions import InvalidPayload
from bot.adapters.slack.npm_views import NpmAction, decode_state
from bot.domain.npm import Walkthrough
from bot.services.directory import ServiceDirectory
from bot.services.npm_release import MessageRef
from bot.services.npm_walkthrough import NpmTokenService
from bot.services.requests import Origin
from handlers.errors import Listener, acknowledged, tell
from handlers.origin import click_origin
from handlers.payloads import BlockActions, parse
from handlers.routing import Routes

Step = Callable[[NpmTokenService, MessageRef, Walkthrough, Origin], Awaitable[object]]
"""What a walkthrough button does: one call on the walkthrough for the message it was on, with
the walkthrough that message showed and the click (who, and which delivery)."""

NPM_CLICKS: dict[NpmAction, Step] = {
    NpmAction.CHECK_SECRET: lambda npm, message, shown, origin: npm.check_secret(
        message=message, shown=shown, actor=origin.actor
    ),
    NpmAction.CHECK_LAST_RUN: lambda npm, message, shown, origin: npm.check_last_run(
        message=message, shown=shown, actor=origin.actor
    ),
    NpmAction.RUN_RELEASE: lambda npm, message, shown, origin: npm.run_release(
        message=message, shown=shown, origin=origin
    ),
}


def _message(click: BlockActions) -> MessageRef:
    """The walkthrough message the button is on."""
    container = click.container
    if container is None or not container.channel_id or not container.message_ts:
        raise InvalidPayload("This button is not on a walkthrough message.")
    return MessageRef(channel=container.channel_id, ts=container.message_ts)


def _clicked(directory: ServiceDirectory, action: NpmAction, step: Step) -> Listener:
    async def clicked(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        click = parse(BlockActions, body)
        message, shown = _message(click), decode_state(click.action.value)
        services = directory.named(shown.service)
        if services is None:
            raise InvalidPayload(
                f"This walkthrough is of a service the bot no longer releases ({shown.service})."
            )
        origin = click_origin(click, request)
        async with services.controls.audited(origin, str(action)):
            told = await step(services.npm_token, message, shown, origin)
        if isinstance(told, str):  # what the person is told besides the message (Release)
            await tell(*views.note(told), body, respond)

    return acknowledged(directory.telemetry)(clicked)


def register(routes: Routes, directory: ServiceDirectory) -> None:
    for action, step in NPM_CLICKS.items():
        routes.action(action)(_clicked(directory, action, step))
