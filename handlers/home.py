"""The App Home tab: the help and the active rollouts, drawn when someone opens it."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.services import Services
from handlers import rollout_views, views
from handlers.commands import plans_of


def register(app: AsyncApp, services: Services) -> None:
    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab") != "home":
            return
        active = await services.rollouts.active()
        plans = await plans_of(services, active)
        blocks = rollout_views.status_blocks(active, lambda r: plans[r.id]) + views.help_blocks()
        await client.views_publish(
            user_id=str(event["user"]), view={"type": "home", "blocks": blocks}
        )
