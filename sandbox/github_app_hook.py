"""The GitHub App's own webhook, as GitHub's REST API shows it to the App (its JWT only):
`GET /app/hook/config` (the secret as `********`) and `GET /app/hook/deliveries`, every
attempt of `AppWebhook` newest first, one page of `per_page` (GitHub pages by cursor).

A delivery's fields are the ones GitHub documents for "List deliveries for an app webhook":
`status` is "OK" for a 2xx, "Invalid HTTP Response: <code>" for another answer, and "failed to
connect" (with GitHub's documented example code, 502) when the bot was not reached.
"""

from __future__ import annotations

import json

from aiohttp import web

from sandbox import github_json as shapes
from sandbox.github_app_routes import AppScopedRoutes
from sandbox.github_hooks import first_page
from sandbox.github_json import Json
from sandbox.github_routes import json_response
from sandbox.github_rules import AppDelivery

UNREACHED = (502, "failed to connect")


def app_delivery_json(number: int, delivery: AppDelivery) -> Json:
    """The `number`th attempt (from 1) as GitHub lists it."""
    payload = json.loads(delivery.body)
    code, status = UNREACHED if delivery.status_code is None else (delivery.status_code, "")
    if not status:
        status = "OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}"
    installation, repository = payload.get("installation"), payload.get("repository")
    return {
        "id": 7_000_000 + number,
        "guid": delivery.guid,
        "delivered_at": shapes.iso(delivery.at),
        "redelivery": delivery.redelivery,
        "duration": 0.05,
        "status": status,
        "status_code": code,
        "event": delivery.event,
        "action": payload.get("action"),
        "installation_id": installation.get("id") if isinstance(installation, dict) else None,
        "repository_id": repository.get("id") if isinstance(repository, dict) else None,
        "throttled_at": None,
    }


class AppHookRoutes(AppScopedRoutes):
    def register(self, app: web.Application, prefix: str) -> None:
        app.router.add_get(f"{prefix}/app/hook/config", self.get_hook_config)
        app.router.add_get(f"{prefix}/app/hook/deliveries", self.list_deliveries)

    async def get_hook_config(self, request: web.Request) -> web.Response:
        app = self.app
        config = {"content_type": app.hook_content_type, "insecure_ssl": "0", "url": app.hook_url}
        if app.hook_secret:
            config["secret"] = "********"
        return json_response(config)

    async def list_deliveries(self, request: web.Request) -> web.Response:
        attempts = [
            app_delivery_json(number, delivery)
            for number, delivery in enumerate(self.sim.app_hook.deliveries, start=1)
        ]
        return json_response(first_page(request, attempts[::-1]))
