"""Custom deployment protection rules in the GitHub simulator: the App's webhook that asks
(`deployment_protection_rule`, action `requested`), the run's callback that answers
(`POST .../actions/runs/{run_id}/deployment_protection_rule`), and the deployments API that
shows a deployment `waiting` on the rule.

Payloads follow GitHub's published schema for the event (octokit/webhooks,
`deployment_protection_rule/requested`): no `workflow_run`, the run is named only by the
callback URL. GitHub delivers each event once and never again by itself; a failed delivery
stays failed until someone redelivers it (`AppWebhook.redeliver`), which tests use, with
`lose_next`, to lose one.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from aiohttp import web

from sandbox import github_json as shapes
from sandbox.config import GITHUB_WEBHOOK_SECRET
from sandbox.github_events import webhook_repository
from sandbox.github_json import Json, Urls
from sandbox.github_repository_routes import environment_named
from sandbox.github_routes import (
    ACTOR,
    BODY,
    SimulatorRoutes,
    invalid,
    json_response,
    not_found,
)
from sandbox.github_runs import Deployment, DeploymentStatus, SimJob, SimRun
from sandbox.signing import github_signature_headers

_log = logging.getLogger(__name__)

APP_LOGIN = "rollout-bot[bot]"
"""The login GitHub shows for the sandbox App's installation (a bot user)."""


def custom_rule_json(urls: Urls, environment: str, app_id: int, slug: str) -> Json:
    """An App's custom deployment protection rule enabled on `environment`, as "Get all
    deployment protection rules for an environment" lists it."""
    rule_id = shapes.stable_id(f"rule:{environment}")  # one id everywhere
    return {
        "id": rule_id,
        "node_id": shapes.node_id("DPR", rule_id),
        "enabled": True,
        "app": {
            "id": app_id,
            "node_id": shapes.node_id("App", app_id),
            "slug": slug,
            "integration_url": f"{urls.api}/apps/{slug}",
        },
    }


def protection_rules_response(rules: list[Json]) -> web.Response:
    return json_response({"total_count": len(rules), "custom_deployment_protection_rules": rules})


def callback_url(urls: Urls, run_id: int) -> str:
    """Fixed per run: the same URL answers every environment of the run."""
    return f"{urls.repo_api}/actions/runs/{run_id}/deployment_protection_rule"


def requested_payload(
    urls: Urls,
    run: SimRun,
    job: SimJob,
    *,
    default_branch: str,
    sender: str,
    installation_id: int,
    with_deployment: bool = True,
) -> Json:
    """The `deployment_protection_rule` delivery when `job` reaches its environment, from the
    App's installation on the repository's account (`installation_id`). GitHub's REST
    description has `sha` and `ref` at the top level, "always populated from the check suite,
    regardless of whether a deployment is created", and a nullable `deployment`."""
    assert job.deployment is not None
    deployment = shapes.deployment(urls, job.deployment) if with_deployment else None
    return {
        "action": "requested",
        "environment": job.environment,
        "event": run.event,
        "sha": run.head_sha,
        "ref": f"refs/heads/{run.branch}",
        "deployment_callback_url": callback_url(urls, run.id),
        "deployment": deployment,
        "pull_requests": [],
        "repository": webhook_repository(urls, default_branch=default_branch),
        "sender": shapes.user(urls, sender),
        "installation": shapes.installation(installation_id),
    }


def status_json(
    urls: Urls, deployment: Deployment, status: DeploymentStatus, *, check_run_links: bool = False
) -> Json:
    """One status of an Actions deployment: its log and target link the run's job, as
    `.../actions/runs/{run_id}/job/{job_id}` or, as octokit's published example has it, as the
    job's check run (`.../runs/{job_id}?check_suite_focus=true`)."""
    deployment_api = f"{urls.repo_api}/deployments/{deployment.id}"
    job_url = f"{urls.repo_html}/actions/runs/{deployment.run_id}/job/{deployment.job_id}"
    if check_run_links:
        job_url = f"{urls.repo_html}/runs/{deployment.job_id}?check_suite_focus=true"
    return {
        "url": f"{deployment_api}/statuses/{status.id}",
        "id": status.id,
        "node_id": shapes.node_id("DeploymentStatus", status.id),
        "state": status.state,
        "creator": shapes.user(urls, "github-actions[bot]", kind="Bot"),
        "description": "",
        "environment": deployment.environment,
        "target_url": job_url,
        "log_url": job_url,
        "environment_url": "",
        "created_at": shapes.iso(status.at),
        "updated_at": shapes.iso(status.at),
        "deployment_url": deployment_api,
        "repository_url": urls.repo_api,
        "performed_via_github_app": None,
    }


@dataclass(frozen=True)
class AppDelivery:
    """One attempt: `status_code` None when the bot could not be reached (or it was lost)."""

    guid: str
    event: str
    body: bytes
    status_code: int | None
    result: str | None = None
    """What the bot's answer says became of it (`followed`, `kept`, `duplicate`, ...)."""
    redelivery: bool = False
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class AppWebhook:
    """The App's webhook: each event POSTed once to `url`, signed with the App's secret."""

    def __init__(self, secret: str = GITHUB_WEBHOOK_SECRET) -> None:
        self.url: str | None = None
        """Where the App's events go (the bot's `/github/webhook`); None while it is down."""
        self.route: Callable[[], str | None] | None = None
        """When set, asked for the URL of each delivery instead of `url`: a load balancer in
        front of several replicas (None when no replica is up)."""
        self.secret = secret
        self.deliveries: list[AppDelivery] = []
        self._lose = 0
        self._http: aiohttp.ClientSession | None = None

    def lose_next(self, count: int = 1) -> None:
        """The next `count` deliveries fail (as when the receiver is unreachable)."""
        self._lose += count

    async def send(self, event: str, payload: Json) -> AppDelivery:
        body = json.dumps(payload).encode()
        return await self._post(str(uuid.uuid4()), event, body, redelivery=False)

    async def redeliver(self, guid: str) -> AppDelivery:
        """Deliver an earlier delivery again, with its GUID (`POST .../attempts`)."""
        first = next(d for d in self.deliveries if d.guid == guid)
        return await self._post(guid, first.event, first.body, redelivery=True)

    async def replay(self, guid: str) -> AppDelivery:
        """Send an earlier delivery's body and signature again under a new GUID: not something
        GitHub does, but what anyone who saw the delivery can (the repository's admins see
        past deliveries; `X-GitHub-Delivery` is outside the signature)."""
        first = next(d for d in self.deliveries if d.guid == guid)
        return await self._post(str(uuid.uuid4()), first.event, first.body, redelivery=False)

    def failed(self) -> list[AppDelivery]:
        """Deliveries that never reached the bot and were not redelivered since."""
        reached = {d.guid for d in self.deliveries if d.status_code is not None}
        return [d for d in self.deliveries if d.guid not in reached]

    async def _post(self, guid: str, event: str, body: bytes, *, redelivery: bool) -> AppDelivery:
        status: int | None = None
        result: str | None = None
        url = self.route() if self.route is not None else self.url
        if self._lose > 0:
            self._lose -= 1
        elif url is not None:
            headers = github_signature_headers(self.secret, body, event=event, delivery=guid)
            headers["X-GitHub-Hook-Installation-Target-Type"] = "integration"
            self._http = self._http or aiohttp.ClientSession()
            try:
                async with self._http.post(url, data=body, headers=headers) as response:
                    status = response.status
                    answer = await response.json(content_type=None)
                    result = answer.get("result") if isinstance(answer, dict) else None
            except aiohttp.ClientError as error:
                _log.info("App webhook %s to %s failed: %s", event, url, error)
        delivery = AppDelivery(guid, event, body, status, result, redelivery)
        self.deliveries.append(delivery)
        return delivery

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


class RuleRoutes(SimulatorRoutes):
    """The run's callback for the rule's App, and the deployments it creates."""

    def register(self, app: web.Application, prefix: str) -> None:
        repo = f"{prefix}/repos/{{owner}}/{{repo}}"
        app.router.add_post(
            f"{repo}/actions/runs/{{run_id:\\d+}}/deployment_protection_rule", self.answer_rule
        )
        app.router.add_get(f"{repo}/deployments", self.list_deployments)
        app.router.add_get(f"{repo}/deployments/{{deployment_id:\\d+}}/statuses", self.statuses)
        if self.sim.app is None:  # else the App's routes answer it (`AppRoutes`)
            app.router.add_get(
                f"{repo}/environments/{{name}}/deployment_protection_rules",
                self.list_protection_rules,
            )

    async def list_protection_rules(self, request: web.Request) -> web.Response:
        """`GET .../environments/{name}/deployment_protection_rules` ("Get all deployment
        protection rules for an environment": any token that reads Actions) without an App
        installed: the rule of `rule_app` (`SimRepository.protection_rule`) where it is enabled;
        404 for an environment that does not exist."""
        repository = self._repository(request)
        name = environment_named(request, repository)
        rules = []
        if name in repository.engine.rule_environments:
            slug = repository.rule_app.removesuffix("[bot]")
            app_id = shapes.stable_id(f"app:{slug}")
            rules.append(custom_rule_json(repository.urls, name, app_id, slug))
        return protection_rules_response(rules)

    async def answer_rule(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        run_id = int(request.match_info["run_id"])
        if run_id not in repository.runs or not request[ACTOR].endswith("[bot]"):
            raise not_found()  # only a GitHub App may answer, and only its own rule
        body = request.get(BODY)
        if not isinstance(body, dict):
            raise invalid("Body must be a JSON object.")
        environment, state, comment = (
            body.get(k) for k in ("environment_name", "state", "comment")
        )
        if not isinstance(environment, str) or not environment:
            raise invalid('"environment_name" wasn\'t supplied.')
        if state is not None and state not in ("approved", "rejected"):
            raise invalid(
                f"For 'properties/state', {json.dumps(state)} "
                'is not one of ["approved", "rejected"].'
            )
        if (comment is not None and not isinstance(comment, str)) or (
            state is None and not comment
        ):
            raise invalid("A comment is required when no state is given.")
        if request[ACTOR] != repository.rule_app:
            environment = ""  # another App's rule: nothing of this App's is pending
        if state is None:  # a comment alone, on a request still pending
            repository.engine.rule_jobs(run_id, environment)
        else:
            repository.engine.review_rule(
                run_id,
                environment=environment,
                state=state,
                comment=comment or "",
                actor=request[ACTOR],
            )
        return web.Response(status=204)

    async def list_deployments(self, request: web.Request) -> web.Response:
        """Newest first (oldest first with `lists_oldest_first`), filtered by `sha`, `ref`,
        `task` and `environment` as GitHub does."""
        repository = self._repository(request)
        wanted = {k: request.query[k] for k in ("sha", "ref", "environment") if k in request.query}
        deployments = repository.engine.deployments
        found = [
            shapes.deployment(repository.urls, d)
            for d in (deployments if self.sim.lists_oldest_first else deployments[::-1])
            if all(getattr(d, key) == value for key, value in wanted.items())
            and request.query.get("task", "deploy") == "deploy"
            and d.environment not in repository.unlisted_deployments
        ]
        return self._listing(request, found)

    async def statuses(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        wanted = int(request.match_info["deployment_id"])
        deployment = next((d for d in repository.engine.deployments if d.id == wanted), None)
        if deployment is None:
            raise not_found()
        links = self.sim.check_run_links
        listed = deployment.statuses if self.sim.lists_oldest_first else deployment.statuses[::-1]
        items = [status_json(repository.urls, deployment, s, check_run_links=links) for s in listed]
        return self._listing(request, items)
