"""Adopt and Reject on the card of a run the bot did not start (`bot.services.unfollowed_runs`).

Each click is acknowledged at once, its value (the run) validated, and one call made on the
controls (release channel, approver, lane, exactly once, audit); refusals come back ephemerally
through `acknowledged`. An Adopt refused by a freeze offers Override freeze…, whose form
(`handlers.buttons`, `Callback.OVERRIDE_ADOPT`) asks the reason and adopts the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack import control_views
from bot.adapters.slack.actions import Action, RunValue
from bot.services.catalog import Services
from bot.services.requests import Origin
from bot.services.unfollowed_runs import UnfollowedRuns
from handlers.errors import Listener, acknowledged
from handlers.origin import click_origin
from handlers.payloads import BlockActions, parse

RunClick = Callable[[UnfollowedRuns, Origin, int], Awaitable[object]]

RUN_CLICKS: dict[Action, RunClick] = {
    Action.ADOPT_RUN: lambda runs, origin, run_id: runs.adopt(origin, run_id),
    Action.REJECT_RUN: lambda runs, origin, run_id: runs.reject(origin, run_id),
}


def _clicked(runs: UnfollowedRuns, act: RunClick, services: Services) -> Listener:
    async def clicked(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        click = parse(BlockActions, body)
        run = RunValue.decode(click.action.value)
        await act(runs, click_origin(click, request), run.run_id)

    return acknowledged(services.telemetry)(clicked)


def _opens_override(runs: UnfollowedRuns, services: Services) -> Listener:
    """Override freeze… under an Adopt refused by a freeze: the form asking the reason."""

    async def opens(
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        request: AsyncBoltRequest,
        client: AsyncWebClient,
    ) -> None:
        click = parse(BlockActions, body)
        origin = click_origin(click, request)
        card = await runs.override_form(origin, RunValue.decode(click.action.value).run_id)
        modal = control_views.adopt_override_modal(card, channel_id=origin.channel_id)
        await client.views_open(trigger_id=click.trigger_id or "", view=modal)

    return acknowledged(services.telemetry, waits=False)(opens)


def register(app: AsyncApp, services: Services) -> None:
    runs = services.controls.unfollowed
    if runs is None:
        return
    for action, act in RUN_CLICKS.items():
        app.action(action)(_clicked(runs, act, services))
    app.action(Action.OVERRIDE_ADOPT)(_opens_override(runs, services))
