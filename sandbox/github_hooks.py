"""The repository's webhooks and their recent deliveries, as GitHub's REST API lists them
(`GET /repos/{owner}/{repo}/hooks`, `GET .../hooks/{hook_id}/deliveries`), for
`rollout-bot doctor`. Tests add a hook and record deliveries, failed ones too."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from sandbox import github_json as shapes
from sandbox.github_json import Json, Urls
from sandbox.github_routes import SimulatorRoutes, invalid, json_response, not_found


@dataclass(frozen=True)
class HookDelivery:
    """One delivery attempt: GitHub's `status` is "OK" for a 2xx, else what went wrong."""

    id: int
    event: str
    status_code: int
    status: str
    delivered_at: datetime
    action: str | None = None
    guid: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Hook:
    id: int
    url: str
    events: tuple[str, ...] = (
        "workflow_run",
        "workflow_job",
        "deployment",
        "deployment_status",
        "deployment_review",
    )
    """The events README's setup ticks."""
    active: bool = True
    deliveries: list[HookDelivery] = field(default_factory=list)

    def deliver(self, *, event: str, status_code: int, status: str = "OK") -> HookDelivery:
        """Record a delivery (newest last), as GitHub does after posting an event."""
        delivery = HookDelivery(
            id=9_000_000 + len(self.deliveries) + 1,
            event=event,
            status_code=status_code,
            status=status,
            delivered_at=datetime.now(UTC),
        )
        self.deliveries.append(delivery)
        return delivery


def hook_json(urls: Urls, hook: Hook) -> Json:
    api = f"{urls.repo_api}/hooks/{hook.id}"
    last = hook.deliveries[-1] if hook.deliveries else None
    return {
        "type": "Repository",
        "id": hook.id,
        "name": "web",
        "active": hook.active,
        "events": list(hook.events),
        "config": {"content_type": "json", "insecure_ssl": "0", "url": hook.url},
        "updated_at": shapes.iso(shapes.CREATED),
        "created_at": shapes.iso(shapes.CREATED),
        "url": api,
        "test_url": f"{api}/test",
        "ping_url": f"{api}/pings",
        "deliveries_url": f"{api}/deliveries",
        "last_response": {
            "code": last.status_code if last else None,
            "status": last.status.lower() if last else "unused",
            "message": None,
        },
    }


def delivery_json(delivery: HookDelivery, *, repository_id: int) -> Json:
    return {
        "id": delivery.id,
        "guid": delivery.guid,
        "delivered_at": shapes.iso(delivery.delivered_at),
        "redelivery": False,
        "duration": 0.05,
        "status": delivery.status,
        "status_code": delivery.status_code,
        "event": delivery.event,
        "action": delivery.action,
        "installation_id": None,
        "repository_id": repository_id,
        "throttled_at": None,
    }


class HookRoutes(SimulatorRoutes):
    """The webhook listing a token with the repository's webhook read permission sees."""

    def register(self, app: web.Application, prefix: str) -> None:
        hooks = f"{prefix}/repos/{{owner}}/{{repo}}/hooks"
        app.router.add_get(hooks, self.list_hooks)
        app.router.add_get(f"{hooks}/{{hook_id:\\d+}}/deliveries", self.list_deliveries)

    async def list_hooks(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        items = [hook_json(repository.urls, hook) for hook in repository.hooks]
        return self._listing(request, items)

    async def list_deliveries(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        wanted = int(request.match_info["hook_id"])
        hook = next((hook for hook in repository.hooks if hook.id == wanted), None)
        if hook is None:
            raise not_found()
        repository_id = repository.id
        newest = sorted(hook.deliveries, key=lambda d: d.delivered_at, reverse=True)
        return json_response(
            first_page(request, [delivery_json(d, repository_id=repository_id) for d in newest])
        )


def first_page(request: web.Request, newest: list[Json]) -> list[Json]:
    """Deliveries newest first, as GitHub lists them: one page of `per_page` (GitHub pages
    deliveries by cursor; the doctor reads the first page only)."""
    try:
        per_page = min(max(int(request.query.get("per_page", "30")), 1), 100)
    except ValueError as exc:
        raise invalid("per_page must be an integer.") from exc
    return newest[:per_page]
