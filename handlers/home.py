"""The App Home tab: the help and the active rollouts, drawn when someone opens it.

The rollouts are shown to the people `/rollout status` answers: members of a release channel
and the approvers. Anyone else in the workspace sees the help and a line saying why.
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack import views
from bot.adapters.slack.status_views import active_blocks
from bot.services.catalog import Services
from bot.version import build
from handlers.payloads import EventCallback, parse

NOT_SHOWN = (
    "Rollouts are shown to the members of the release channels and to the release "
    "approvers. Join a release channel (or ask your bot admin) to follow them here."
)


def register(app: AsyncApp, services: Services) -> None:
    @app.event("app_home_opened")
    async def home_opened(body: dict[str, Any], client: AsyncWebClient) -> None:
        event = parse(EventCallback, body).event
        if event.tab != "home" or event.user is None:
            return
        if await services.audience.admits(event.user):
            shown = active_blocks(await services.rollouts.active_with_plans())
        else:
            _, shown = views.note(NOT_SHOWN)
        await client.views_publish(user_id=event.user, view=views.home_tab(shown, running=build()))
