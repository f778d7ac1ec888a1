"""The GitHub simulator's REST handlers for the repository around the runs: users, the
rate limit, workflows, environments, secrets, container packages and file contents."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web

from sandbox import github_json as shapes
from sandbox.github_environment_rules import patterns_json, policy_json, rules_json
from sandbox.github_json import Json
from sandbox.github_routes import (
    ACTOR,
    DOWNLOAD_PREFIX,
    SimulatorRoutes,
    json_response,
    normalize_ref,
    not_found,
)
from sandbox.github_runs import ActionsError, commit_sha

if TYPE_CHECKING:
    from sandbox.github_repository import SimRepository

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
"""A commit's full SHA (SHA-1, or SHA-256), as a contents request's `ref` may name it."""


def environment_named(request: web.Request, repository: SimRepository) -> str:
    """The environment `.../environments/{name}/...` names (404 Not Found for none)."""
    name = request.match_info["name"]
    if name not in repository.engine.environments:
        raise not_found()
    return name


def _secret_json(name: str, when: str | None) -> Json:
    return {"name": name, "created_at": when, "updated_at": when}


class RepositoryRoutes(SimulatorRoutes):
    """Everything GitHub answers about the repository that is not a run."""

    def register(self, app: web.Application, prefix: str) -> None:
        repo = f"{prefix}/repos/{{owner}}/{{repo}}"
        app.router.add_get(f"{prefix}/user", self.get_user)
        app.router.add_get(f"{prefix}/users/{{login}}", self.get_named_user)
        app.router.add_get(f"{prefix}/rate_limit", self.get_rate_limit)
        app.router.add_get(repo, self.get_repository)
        app.router.add_get(f"{repo}/actions/workflows", self.list_workflows)
        app.router.add_get(f"{repo}/actions/workflows/{{workflow}}", self.get_workflow)
        app.router.add_get(f"{repo}/actions/secrets", self.list_secrets)
        app.router.add_get(f"{repo}/actions/organization-secrets", self.list_organization_secrets)
        app.router.add_get(f"{repo}/actions/secrets/{{name}}", self.get_secret)
        app.router.add_get(f"{repo}/branches", self.list_branches)
        app.router.add_get(f"{repo}/branches/{{branch:.+}}", self.get_branch)
        app.router.add_get(f"{repo}/environments", self.list_environments)
        app.router.add_get(f"{repo}/environments/{{name}}", self.get_environment)
        app.router.add_get(
            f"{repo}/environments/{{name}}/secrets/{{secret}}", self.get_environment_secret
        )
        app.router.add_get(
            f"{repo}/environments/{{name}}/deployment-branch-policies", self.list_branch_policies
        )
        app.router.add_get(
            f"{prefix}/orgs/{{org}}/teams/{{team}}/memberships/{{login}}", self.get_membership
        )
        for owner_kind in ("orgs", "users"):
            app.router.add_get(
                f"{prefix}/{owner_kind}/{{owner}}/packages/container/{{package}}/versions",
                self.list_package_versions,
            )
        app.router.add_get(f"{repo}/contents", self.get_contents)
        app.router.add_get(f"{repo}/contents/{{path:.*}}", self.get_contents)
        raw = f"{prefix}{DOWNLOAD_PREFIX}/raw/{{owner}}/{{repo}}/{{ref}}/{{path:.*}}"
        app.router.add_get(raw, self.download_raw)

    async def get_user(self, request: web.Request) -> web.Response:
        return json_response(shapes.user(self.sim.urls, request[ACTOR]))

    async def get_named_user(self, request: web.Request) -> web.Response:
        return json_response(shapes.user(self.sim.urls, request.match_info["login"]))

    async def get_rate_limit(self, request: web.Request) -> web.Response:
        core = {
            "limit": 5000,
            "remaining": self.sim.rate_limit_remaining,
            "reset": int(datetime.now(UTC).timestamp()) + 3600,
            "used": 5000 - self.sim.rate_limit_remaining,
        }
        return json_response({"resources": {"core": core}, "rate": core})

    async def get_repository(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        return json_response(
            shapes.repository(repository.urls, default_branch=repository.default_branch)
        )

    async def list_workflows(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        items = [
            shapes.workflow(repository.urls, spec, default_branch=repository.default_branch)
            for spec in repository.engine.workflows
        ]
        return self._listing(request, items, wrapped_in="workflows")

    async def get_workflow(self, request: web.Request) -> web.Response:
        repository, spec = self._workflow(request)
        return json_response(
            shapes.workflow(repository.urls, spec, default_branch=repository.default_branch)
        )

    # -- branches -------------------------------------------------------------------------------

    def _branch_json(self, repository: SimRepository, name: str) -> Json:
        """A branch as "Get a branch" and "List branches" show it (the fields the bot reads)."""
        sha = commit_sha(name)  # the commit a run on the branch reports
        protected = repository.branch_protected(name)
        branch = f"{repository.urls.repo_api}/branches/{quote(name, safe='')}"
        return {
            "name": name,
            "commit": {"sha": sha, "url": f"{repository.urls.repo_api}/commits/{sha}"},
            "protected": protected,
            "protection_url": f"{branch}/protection",
        }

    def _branch_names(self, repository: SimRepository) -> list[str]:
        branches = repository.refs - set(repository.history.tags)  # `refs` holds tags too
        return sorted(branches | repository.protected_branches)

    async def list_branches(self, request: web.Request) -> web.Response:
        """`GET /repos/{owner}/{repo}/branches` ("List branches"): `protected=true` lists the
        protected ones only, `false` the others."""
        repository = self._repository(request)
        items = [self._branch_json(repository, name) for name in self._branch_names(repository)]
        wanted = request.query.get("protected")
        if wanted in ("true", "false"):
            items = [item for item in items if item["protected"] is (wanted == "true")]
        return self._listing(request, items)

    async def get_branch(self, request: web.Request) -> web.Response:
        """`GET /repos/{owner}/{repo}/branches/{branch}` ("Get a branch"); 404 for none."""
        repository = self._repository(request)
        name = request.match_info["branch"]
        if name not in self._branch_names(repository):
            raise not_found()
        return json_response(self._branch_json(repository, name))

    # -- environments ---------------------------------------------------------------------------

    def _environment_json(self, repository: SimRepository, name: str) -> Json:
        engine = repository.engine
        env_id, rules = engine.environments[name], repository.environment_rules.get(name)
        answer = shapes.environment(
            repository.urls,
            name,
            env_id,
            protected=name in engine.protected,
            reviewer=self.sim.actor,
            prevent_self_review=name in engine.self_review_prevented,
            team=repository.reviewer_teams.get(name),
        )
        answer["protection_rules"] += rules_json(rules, env_id)
        answer["deployment_branch_policy"] = policy_json(rules)
        return answer

    async def get_membership(self, request: web.Request) -> web.Response:
        """`GET /orgs/{org}/teams/{team_slug}/memberships/{username}` (GitHub's REST docs,
        "Get team membership for a user"): the membership, or 404 when there is none."""
        org, team, login = (request.match_info[key] for key in ("org", "team", "login"))
        members = self.sim.teams.get(f"{org}/{team}".lower())
        if members is None or login.lower() not in {m.lower() for m in members}:
            raise not_found()
        url = f"{self.sim.api_url}/orgs/{org}/teams/{team}/memberships/{login}"
        return json_response({"url": url, "role": "member", "state": "active"})

    async def list_environments(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        items = [
            self._environment_json(repository, name) for name in repository.engine.environments
        ]
        return self._listing(request, items, wrapped_in="environments")

    async def get_environment(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        name = environment_named(request, repository)
        return json_response(self._environment_json(repository, name))

    async def list_branch_policies(self, request: web.Request) -> web.Response:
        """`GET /repos/{owner}/{repo}/environments/{environment_name}/deployment-branch-policies`
        ("List deployment branch policies"): the name patterns of branches and tags that may
        deploy; 404 for an environment that does not exist."""
        repository = self._repository(request)
        name = environment_named(request, repository)
        rules = repository.environment_rules.get(name)
        items = patterns_json(rules, repository.engine.environments[name])
        return self._listing(request, items, wrapped_in="branch_policies")

    # -- secrets --------------------------------------------------------------------------------

    def _secrets(self, request: web.Request) -> dict[str, str | None]:
        """The repository's secrets as GitHub lists them (their values are never shown)."""
        repository = self._repository(request)
        if repository.secrets_forbidden:
            raise ActionsError(403, "Resource not accessible by integration")
        return {name: shapes.iso(when) for name, when in repository.secrets.items()}

    async def list_secrets(self, request: web.Request) -> web.Response:
        secrets = self._secrets(request)
        items = [_secret_json(name, secrets[name]) for name in sorted(secrets)]
        return self._listing(request, items, wrapped_in="secrets")

    async def list_organization_secrets(self, request: web.Request) -> web.Response:
        """The organization's secrets shared with the repository, names and dates only."""
        self._secrets(request)  # the same permission and access as the repository's own
        shared = self._repository(request).organization_secrets
        items = [_secret_json(name, shapes.iso(shared[name])) for name in sorted(shared)]
        return self._listing(request, items, wrapped_in="secrets")

    async def get_secret(self, request: web.Request) -> web.Response:
        secrets = self._secrets(request)
        name = request.match_info["name"]
        if name not in secrets:
            raise not_found()
        return json_response(_secret_json(name, secrets[name]))

    async def get_environment_secret(self, request: web.Request) -> web.Response:
        """`GET /repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}`:
        name and dates, never the value; 404 when the environment or the secret does not
        exist, 403 without the Environments permission."""
        repository = self._repository(request)
        if repository.environment_secrets_forbidden:
            raise ActionsError(403, "Resource not accessible by integration")
        environment, name = environment_named(request, repository), request.match_info["secret"]
        secrets = repository.environment_secrets.get(environment, {})
        if name not in secrets:
            raise not_found()
        return json_response(_secret_json(name, shapes.iso(secrets[name])))

    # -- packages -------------------------------------------------------------------------------

    async def list_package_versions(self, request: web.Request) -> web.Response:
        """GitHub Packages: the versions of a container package, each with its tags."""
        owner = request.match_info["owner"]
        package = request.match_info["package"]
        owners = {name.split("/")[0] for name in self.sim.repositories}
        if owner.lower() not in owners or package not in self.sim.images:
            raise ActionsError(404, "Package not found.")
        versions = [
            {
                "id": index + 1,
                "name": "sha256:" + hashlib.sha256(tag.encode()).hexdigest(),
                "package_html_url": f"{self.sim.html_url}/{owner}/packages/container/{package}",
                "metadata": {"package_type": "container", "container": {"tags": [tag]}},
            }
            for index, tag in enumerate(sorted(self.sim.images[package]))
        ]
        return self._listing(request, versions)

    # -- contents -------------------------------------------------------------------------------

    def _tree(self, repository: SimRepository, ref: str) -> dict[str, str]:
        """The files at `ref`: a branch's (`files`); a commit's or a pushed tag's, those a test
        gave its commit (`files[sha]`), else the default branch's (the simulator's commits
        change no file of their own); 404 for a ref GitHub has no commit for."""
        files = repository.files
        if ref in files:
            return files[ref]
        commit = ref if _COMMIT.fullmatch(ref) else repository.history.tags.get(ref)
        if commit is not None:
            return files.get(commit, files[repository.default_branch])
        if ref not in repository.refs:
            raise ActionsError(404, f"No commit found for the ref {ref}")
        return {}

    def _entry(
        self, repository: SimRepository, ref: str, path: str, kind: str, text: str | None
    ) -> Json:
        urls = repository.urls
        api = f"{urls.repo_api}/contents/{quote(path)}?ref={quote(ref, safe='')}"
        html = f"{urls.repo_html}/{'blob' if kind == 'file' else 'tree'}/{ref}/{path}"
        data = (text or "").encode()
        sha = hashlib.sha1(
            b"blob %d\0" % len(data) + data if kind == "file" else f"tree:{ref}:{path}".encode(),
            usedforsecurity=False,
        ).hexdigest()
        git = f"{urls.repo_api}/git/{'blobs' if kind == 'file' else 'trees'}/{sha}"
        raw = f"{self.sim.api_url}{DOWNLOAD_PREFIX}/raw/{repository.repository}"
        download = f"{raw}/{quote(ref, safe='')}/{quote(path)}"
        return {
            "type": kind,
            "size": len(data),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "url": api,
            "git_url": git,
            "html_url": html,
            "download_url": download if kind == "file" else None,
            "_links": {"self": api, "git": git, "html": html},
        }

    async def get_contents(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        ref = normalize_ref(request.query.get("ref", repository.default_branch))
        tree = self._tree(repository, ref)
        path = request.match_info.get("path", "").strip("/")
        if path in tree:
            entry = self._entry(repository, ref, path, "file", tree[path])
            encoded = base64.b64encode(tree[path].encode()).decode()
            chunks = [encoded[i : i + 60] for i in range(0, len(encoded), 60)]
            entry.update(encoding="base64", content="".join(f"{c}\n" for c in chunks))
            return json_response(entry)
        prefix = f"{path}/" if path else ""
        children: dict[str, Json] = {}
        for file_path in tree:
            if not file_path.startswith(prefix):
                continue
            head, sep, _ = file_path.removeprefix(prefix).partition("/")
            child = f"{prefix}{head}"
            kind = "dir" if sep else "file"
            children[child] = self._entry(repository, ref, child, kind, tree.get(child))
        if not children:
            raise not_found()
        return json_response([children[name] for name in sorted(children)])

    async def download_raw(self, request: web.Request) -> web.Response:
        tree = self._tree(self._repository(request), request.match_info["ref"])
        path = request.match_info["path"]
        if path not in tree:
            raise not_found()
        return web.Response(text=tree[path], content_type="text/plain")
