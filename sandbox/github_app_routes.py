"""The GitHub App's REST endpoints on the GitHub simulator, authenticated by its JWT (the
request pipeline checked it): the App, its installation on a repository, its installation
tokens, and the custom deployment protection rules it has on an environment."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from bot.services.doctor_app import grants
from sandbox import github_json as shapes
from sandbox.github_app import (
    BOT_EVENTS,
    BOT_PERMISSIONS,
    SUSPENDED,
    SandboxApp,
    SandboxInstallation,
)
from sandbox.github_json import Json
from sandbox.github_repository_routes import environment_named
from sandbox.github_routes import BODY, SimulatorRoutes, invalid, json_response, not_found
from sandbox.github_rules import custom_rule_json, protection_rules_response


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AppScopedRoutes(SimulatorRoutes):
    """Handlers a simulator serves only when it has a GitHub App (`GitHubSimulator(app=...)`)."""

    @property
    def app(self) -> SandboxApp:
        assert self.sim.app is not None
        return self.sim.app


class AppRoutes(AppScopedRoutes):
    """The App's endpoints, authenticated by its JWT (`RequestPipeline` checked it)."""

    def register(self, app: web.Application, prefix: str) -> None:
        app.router.add_get(f"{prefix}/app", self.get_app)
        app.router.add_get(f"{prefix}/repos/{{owner}}/{{repo}}/installation", self.get_installation)
        app.router.add_get(
            f"{prefix}/app/installations/{{installation_id:\\d+}}", self.get_installation_numbered
        )
        app.router.add_post(
            f"{prefix}/app/installations/{{installation_id:\\d+}}/access_tokens", self.create_token
        )
        app.router.add_get(
            f"{prefix}/repos/{{owner}}/{{repo}}/environments/{{name}}/deployment_protection_rules",
            self.list_protection_rules,
        )

    async def list_protection_rules(self, request: web.Request) -> web.Response:
        """`GET .../environments/{name}/deployment_protection_rules`: the custom rules enabled."""
        repository = self._repository(request)
        name = environment_named(request, repository)
        sandbox_app, urls = self.app, repository.urls
        rules = []
        if name in repository.app_rule_environments:
            rules.append(custom_rule_json(urls, name, sandbox_app.app_id, sandbox_app.slug))
        return protection_rules_response(rules)

    def _owner(self, account: str) -> Json:
        return shapes.user(self.sim.urls, account, kind="Organization")

    async def get_app(self, request: web.Request) -> web.Response:
        sandbox_app = self.app
        return json_response(
            {
                "id": sandbox_app.app_id,
                "slug": sandbox_app.slug,
                "node_id": shapes.node_id("App", sandbox_app.app_id),
                "client_id": f"Iv23li{sandbox_app.app_id}",
                "owner": self._owner(self.sim.repository.split("/")[0]),
                "name": sandbox_app.slug,
                "description": "Drives staged releases from Slack",
                "external_url": "https://rollout.example.com",
                "html_url": f"{self.sim.html_url}/apps/{sandbox_app.slug}",
                "created_at": shapes.iso(shapes.CREATED),
                "updated_at": shapes.iso(shapes.CREATED),
                "permissions": dict(BOT_PERMISSIONS),
                "events": list(BOT_EVENTS),
                "installations_count": sum(i.installed for i in sandbox_app.installations.values()),
            }
        )

    async def get_installation(self, request: web.Request) -> web.Response:
        """The App's installation on the repository's owner, if it includes the repository
        (GitHub: 404 for a repository of an account it is not installed on, or not given)."""
        repository = self._repository(request).repository
        if self.app.lookups_answered is not None:
            await self.app.lookups_answered.wait()
        installation = self.app.installation_of(repository)
        if installation is None:
            raise not_found()
        return json_response(self._installation(installation))

    async def get_installation_numbered(self, request: web.Request) -> web.Response:
        """`GET /app/installations/{id}`: the App's installation by its id."""
        return json_response(self._installation(self._numbered(request)))

    def _numbered(self, request: web.Request) -> SandboxInstallation:
        """The installation `/app/installations/{installation_id}` names (404: none, or
        removed)."""
        installation = self.app.installation_numbered(int(request.match_info["installation_id"]))
        if installation is None:
            raise not_found()
        return installation

    def _installation(self, installation: SandboxInstallation) -> Json:
        sandbox_app, urls = self.app, self.sim.urls
        number, account = installation.id, installation.account
        return {
            "id": number,
            "account": self._owner(account),
            "repository_selection": _selection(installation),
            "access_tokens_url": f"{urls.api}/app/installations/{number}/access_tokens",
            "repositories_url": f"{urls.api}/installation/repositories",
            "html_url": f"{urls.html}/organizations/{account}/settings/installations/{number}",
            "app_id": sandbox_app.app_id,
            "app_slug": sandbox_app.slug,
            "target_id": shapes.stable_id(account),
            "target_type": "Organization",
            "permissions": dict(installation.permissions),
            "events": list(installation.events),
            "created_at": shapes.iso(shapes.CREATED),
            "updated_at": shapes.iso(shapes.CREATED),
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": (
                None
                if installation.suspended_at is None
                else shapes.user(urls, installation.suspended_by)
            ),
            "suspended_at": (
                None if installation.suspended_at is None else _iso(installation.suspended_at)
            ),
        }

    async def create_token(self, request: web.Request) -> web.Response:
        """A token of the installation named (404 for one removed, or of another App; 403 for
        one suspended)."""
        sandbox_app, installation = self.app, self._numbered(request)
        if installation.suspended_at is not None:
            return json_response(shapes.error(SUSPENDED, 403), 403)
        requested = _requested_permissions(request)
        if any(
            not grants(installation.permissions, name, level) for name, level in requested.items()
        ):
            raise invalid("The permissions requested are not granted to this installation.")
        chosen = self._requested_repositories(request, installation)
        issued = sandbox_app.mint(installation, requested, chosen)
        answer: Json = {
            "token": issued.token,
            "expires_at": _iso(issued.expires_at),
            "permissions": issued.permissions,
            "repository_selection": "selected" if chosen is not None else _selection(installation),
        }
        if chosen is not None:
            answer["repositories"] = [
                shapes.repository(served.urls, default_branch=served.default_branch)
                for served in self.sim.repositories.values()
                if served.id in chosen
            ]
        return json_response(answer, 201)

    def _requested_repositories(
        self, request: web.Request, installation: SandboxInstallation
    ) -> frozenset[int] | None:
        """The ids of the repositories a mint's `repositories` (names, of the installation's
        account) and `repository_ids` narrow its token to; None when neither is given. 422
        when one is not a repository the installation includes, as GitHub."""
        raw = request[BODY]
        body: Json = raw if isinstance(raw, dict) else {}
        names, ids = body.get("repositories"), body.get("repository_ids")
        if names is None and ids is None:
            return None
        by_id = {repository.id: repository for repository in self.sim.repositories.values()}
        chosen = [self.sim.repository_named(f"{installation.account}/{n}") for n in names or []]
        chosen += [by_id.get(number) if isinstance(number, int) else None for number in ids or []]
        if not chosen or any(
            repository is None or not installation.covers(repository.repository)
            for repository in chosen
        ):
            raise invalid(
                "There is at least one repository that does not exist or is not accessible to "
                "the parent installation."
            )
        return frozenset(repository.id for repository in chosen if repository is not None)


def _selection(installation: SandboxInstallation) -> str:
    return "all" if installation.repositories is None else "selected"


def _requested_permissions(request: web.Request) -> dict[str, str]:
    body = request[BODY]
    permissions = body.get("permissions") if isinstance(body, dict) else None
    return {str(k): str(v) for k, v in permissions.items()} if isinstance(permissions, dict) else {}
