"""What `rollout-bot doctor` asks GitHub (`bot.services.doctor.GitHubInstall`): the token's
account, the repository, the workflow file at the plan's ref, the environments' required
reviewers, the repository webhooks and their recent deliveries; in App mode the App's
installation, its webhook and that webhook's recent deliveries."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import yaml
from github import GithubException
from github.HookDelivery import HookDeliverySummary
from github.NamedUser import NamedUser
from github.Team import Team

from bot.adapters.github.protection_rules import enabled_rule_apps
from bot.adapters.github.refusals import message, unless_missing
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import GitHubError
from bot.services.doctor import EnvironmentReviewers, RepositoryWebhook, WebhookDelivery
from bot.services.doctor_app import AppInstallation, AppWebhook


class GitHubInstallReads:
    def __init__(self, github: GitHubTransport) -> None:
        self._github = github

    async def login(self) -> str:
        return await self._github.actor_login()

    async def repository(self) -> str:
        return await self._github.call(
            f"read the repository {self._github.repository}",
            lambda: self._github.repo.full_name,
        )

    async def workflow_inputs(self, *, file: str, ref: str) -> set[str] | None:
        path = f".github/workflows/{file}"

        def read() -> str | None:
            try:
                content = self._github.repo.get_contents(path, ref=ref)
            except GithubException as exc:
                # A missing file is a plain "Not Found"; a missing ref says so.
                if exc.status == 404 and message(exc) == "Not Found":
                    return None
                raise
            if isinstance(content, list):
                return None
            return content.decoded_content.decode("utf-8")

        text = await self._github.call(f"read {path} at {ref}", read)
        if text is None:
            return None
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise GitHubError(f"{path} at {ref} is not valid YAML ({error})") from None
        # YAML 1.1 reads the key `on` as true.
        triggers = document.get("on", document.get(True)) if isinstance(document, dict) else None
        dispatch = triggers.get("workflow_dispatch") if isinstance(triggers, dict) else None
        inputs = dispatch.get("inputs") if isinstance(dispatch, dict) else None
        return set(inputs) if isinstance(inputs, dict) else set()

    async def environment_reviewers(self, name: str) -> EnvironmentReviewers | None:
        def reviewers() -> EnvironmentReviewers | None:
            # The client is lazy: the environment is fetched when its rules are read.
            rules = unless_missing(
                lambda: self._github.repo.get_environment(name).protection_rules or []
            )
            if rules is None:
                return None
            required = [rule for rule in rules if rule.type == "required_reviewers"]
            return EnvironmentReviewers(
                logins=[
                    reviewer.reviewer.login
                    for rule in required
                    for reviewer in rule.reviewers or []
                    if isinstance(reviewer.reviewer, NamedUser)
                ],
                teams=[
                    reviewer.reviewer.slug
                    for rule in required
                    for reviewer in rule.reviewers or []
                    if isinstance(reviewer.reviewer, Team)
                ],
                # Absent (older GitHub Enterprise Server): self-review is allowed.
                self_review_prevented=any(rule.prevent_self_review for rule in required),
            )

        return await self._github.call(f"read the environment {name}", reviewers)

    async def team_member(self, team: str, login: str) -> bool:
        """GitHub's REST docs, "Get team membership for a user": `GET /orgs/{org}/teams/
        {team_slug}/memberships/{username}` answers the membership (`state` active or pending:
        an invitation not accepted yet), 404 when there is none; it counts the members of
        child teams. The team is the repository's organisation's."""
        github = self._github
        org = github.repository.split("/", 1)[0]

        def member() -> bool:
            try:
                found = github.get_json(f"/orgs/{org}/teams/{team}/memberships/{login}")
            except GithubException as exc:
                if exc.status == 404:
                    return False
                raise
            return isinstance(found, dict) and found.get("state") == "active"

        return await github.call(f"read the membership of team {team}", member, kind="team")

    async def webhooks(self) -> list[RepositoryWebhook]:
        def hooks() -> list[RepositoryWebhook]:
            return [
                RepositoryWebhook(
                    id=hook.id, url=hook.config.get("url", ""), events=frozenset(hook.events)
                )
                for hook in self._github.repo.get_hooks()
                if hook.active
            ]

        return await self._github.call("list the repository webhooks", hooks, kind="hooks")

    async def recent_deliveries(self, hook_id: int, count: int) -> list[WebhookDelivery]:
        def deliveries() -> list[WebhookDelivery]:
            newest = self._github.repo.get_hook_deliveries(hook_id)
            return _deliveries(itertools.islice(newest, count))

        return await self._github.call(
            f"list the deliveries of webhook {hook_id}", deliveries, kind="hooks"
        )

    async def app_deliveries(self, count: int) -> list[WebhookDelivery]:
        installation = self._github.installation
        if installation is None:
            return []
        return await self._github.call(
            "list the deliveries of the GitHub App's webhook",
            lambda: _deliveries(installation.hook_deliveries(count)),
            kind="app",
        )

    async def app_installation(self) -> AppInstallation | None:
        installation = self._github.installation
        if installation is None:
            return None

        def read() -> AppInstallation:
            found = installation.installation()
            hook = installation.hook_config()
            return AppInstallation(
                id=found.id,
                configured_id=installation.configured_id,
                slug=installation.slug(),
                permissions={str(k): str(v) for k, v in (found.permissions or {}).items()},
                events=frozenset(found.events or ()),
                suspended=found.suspended_at is not None,
                webhook=AppWebhook(
                    url=hook.get("url", ""),
                    content_type=hook.get("content_type", ""),
                    secret_set=bool(hook.get("secret")),
                ),
            )

        return await self._github.call("read the GitHub App's installation", read, kind="app")

    async def environment_rule_apps(self, name: str) -> list[str] | None:
        def rules() -> list[str] | None:
            apps = enabled_rule_apps(self._github, name)
            return None if apps is None else list(apps.values())

        return await self._github.call(f"read the protection rules of environment {name}", rules)


def _deliveries(newest: Iterable[HookDeliverySummary]) -> list[WebhookDelivery]:
    return [
        WebhookDelivery(
            status_code=d.status_code or 0,
            status=d.status or "",
            event=d.event or "",
            delivered_at=d.delivered_at,
            guid=d.guid or "",
        )
        for d in newest
        if d.delivered_at is not None
    ]
