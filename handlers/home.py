"""The App Home tab: the help and the active rollouts, drawn when someone opens it.

Each service's rollouts are shown to the people its `/rollout status` answers: members of its
release channels and its approvers. Anyone else in the workspace sees the help and a line
saying why.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack import views
from bot.adapters.slack.blocks import BlockJson
from bot.adapters.slack.status_views import active_blocks, services_blocks
from bot.domain.freeze import Frozen
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout
from bot.services.catalog import Services
from bot.services.directory import ServiceDirectory
from bot.version import build
from handlers.payloads import EventCallback, parse

NOT_SHOWN = (
    "Rollouts are shown to the members of the release channels and to the release "
    "approvers. Join a release channel (or ask your bot admin) to follow them here."
)


def register(app: AsyncApp, directory: ServiceDirectory) -> None:
    @app.event("app_home_opened")  # in `payloads.HANDLED_EVENTS`: the edge answers others unread
    async def home_opened(body: dict[str, Any], client: AsyncWebClient) -> None:
        event = parse(EventCallback, body).event
        if event.tab != "home" or event.user is None:
            return
        admitted = [s for s in directory.each if await s.audience.admits(event.user)]
        if admitted:
            # Only the admitted services' (a service removed from the file keeps its rows).
            names = {s.service.name for s in admitted}
            active = [
                (rollout, plan)
                for rollout, plan in await directory.rollouts.active_with_plans()
                if rollout.service in names
            ]
            held: dict[str, Frozen] = {}
            for services in admitted:  # each service's lane: a freeze that will hold a schedule
                name = services.service.name
                held |= await services.lane.held_then([r for r, _ in active if r.service == name])
            shown = _active(directory, admitted, active, held)
        else:
            _, shown = views.note(NOT_SHOWN)
        await client.views_publish(user_id=event.user, view=views.home_tab(shown, running=build()))


def _active(
    directory: ServiceDirectory,
    admitted: list[Services],
    active: list[tuple[Rollout, RolloutPlan]],
    held: dict[str, Frozen],
) -> list[BlockJson]:
    """The active rollouts of the services the viewer may see; each service's under its name
    when the bot releases several (those without any are left out)."""
    if not directory.several:
        return active_blocks(active, room=views.HOME_ROOM, held=held)
    shown: list[tuple[str, list[BlockJson]]] = []
    for services in admitted:
        name = services.service.name
        if its := [(rollout, plan) for rollout, plan in active if rollout.service == name]:
            shown.append((name, active_blocks(its, service=name, held=held)))
    return services_blocks(shown, room=views.HOME_ROOM) if shown else active_blocks([])
