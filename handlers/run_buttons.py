"""Adopt and Reject on the card of a run the bot did not start (`bot.services.unfollowed_runs`).

Each click is acknowledged at once, its value (the run) validated, and one call made on the
controls (release channel, approver, lane, exactly once, audit); refusals come back ephemerally
through `acknowledged`. An Adopt refused by a freeze offers Override freeze…, whose form
(`handlers.buttons`, `Callback.OVERRIDE_ADOPT`) asks the reason and adopts the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.adapters.slack import control_views
from bot.adapters.slack.actions import Action, RunValue
from bot.adapters.slack.blocks import ViewJson
from bot.domain.errors import InvalidCommand
from bot.services.directory import ServiceDirectory
from bot.services.requests import Origin
from bot.services.unfollowed_runs import UnfollowedRuns
from handlers.errors import Listener, acknowledged, opens_form
from handlers.origin import click_origin
from handlers.payloads import BlockActions, parse
from handlers.routing import Routes

RunClick = Callable[[UnfollowedRuns, Origin, int], Awaitable[object]]

APP_ONLY = "This bot answers runs it did not start only as a GitHub App."

RUN_CLICKS: dict[Action, RunClick] = {
    Action.ADOPT_RUN: lambda runs, origin, run_id: runs.adopt(origin, run_id),
    Action.REJECT_RUN: lambda runs, origin, run_id: runs.reject(origin, run_id),
}


async def _runs(
    directory: ServiceDirectory, click: BlockActions, run_id: int, origin: Origin
) -> UnfollowedRuns:
    """The unfollowed runs of the service whose repository the run is of."""
    async with directory.refusal_audited(origin, click.action.action_id):
        runs = (await directory.of_run(run_id, channel_id=click.channel_id)).controls.unfollowed
    if runs is None:
        raise InvalidCommand(APP_ONLY)
    return runs


def _clicked(directory: ServiceDirectory, act: RunClick) -> Listener:
    async def clicked(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, request: AsyncBoltRequest
    ) -> None:
        click = parse(BlockActions, body)
        run, origin = RunValue.decode(click.action.value), click_origin(click, request)
        await act(await _runs(directory, click, run.run_id, origin), origin, run.run_id)

    return acknowledged(directory.telemetry)(clicked)


def _opens_override(directory: ServiceDirectory) -> Listener:
    """Override freeze… under an Adopt refused by a freeze: the form asking the reason."""

    async def draw(click: BlockActions, request: AsyncBoltRequest) -> ViewJson:
        origin = click_origin(click, request)
        run_id = RunValue.decode(click.action.value).run_id
        card = await (await _runs(directory, click, run_id, origin)).override_form(origin, run_id)
        return control_views.adopt_override_modal(card, channel_id=origin.channel_id)

    return opens_form(directory.telemetry, draw)


def register(routes: Routes, directory: ServiceDirectory) -> None:
    if all(services.controls.unfollowed is None for services in directory.each):
        return
    for action, act in RUN_CLICKS.items():
        routes.action(action)(_clicked(directory, act))
    routes.action(Action.OVERRIDE_ADOPT)(_opens_override(directory))
