"""`rollout-bot doctor`: is a live install wired right? One finding per check, with the fix.

The checks ask Slack and GitHub what the bot will need from them during a rollout: the token,
its scopes against the manifest, the release channels, the approvers' groups; the repository,
the workflow and its inputs at the plan's ref, each environment holding the bot as a required
reviewer, the webhook and its recent deliveries; and the metrics source's queries. In GitHub
App mode (`doctor_app`): the App authenticates and is installed, with the permissions and
events the bot needs, its own webhook and that webhook's recent deliveries, and each
environment with the App's protection rule. A
side whose credentials fail is not asked anything more (every answer would be the same refusal).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from bot.domain.errors import GitHubError
from bot.domain.github_events import FOLLOWED
from bot.domain.plan import RolloutPlan
from bot.services.doctor_app import (
    WEBHOOK_PATH,
    AppInstallation,
    environment_finding,
    installation_findings,
    wrong_installation,
)
from bot.services.findings import Finding, failed, metrics_queries_finding, passed

RECENT_DELIVERIES = 10
CHANNEL_FIX = "check its ID in RELEASE_CHANNELS (or the services file), and invite the bot there"


class InstallProblem(Exception):
    """A service refused or could not be asked; the message is safe to print (no secret)."""


@dataclass(frozen=True)
class SlackIdentity:
    user_id: str
    name: str
    team: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt; a redelivery is another attempt with the same `guid`."""

    status_code: int
    status: str
    event: str
    delivered_at: datetime
    guid: str

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True)
class RepositoryWebhook:
    id: int
    url: str
    events: frozenset[str]


@dataclass(frozen=True)
class EnvironmentReviewers:
    logins: list[str]
    """Logins of the environment's required reviewers that are users."""
    self_review_prevented: bool
    """"Prevent self-review": a reviewer cannot approve a run they triggered."""
    teams: list[str] = field(default_factory=list)
    """Slugs of its required reviewers that are teams: any member of one may approve."""


class SlackInstall(Protocol):
    async def identity(self) -> SlackIdentity: ...

    async def channel_members(self, channel: str) -> Sequence[str]: ...

    async def group_members(self, group: str) -> Sequence[str]: ...


class GitHubInstall(Protocol):
    """Reads of the repository; a refusal or no answer raises GitHubError."""

    async def login(self) -> str: ...

    async def repository(self) -> str: ...

    async def workflow_inputs(self, *, file: str, ref: str) -> set[str] | None:
        """The workflow_dispatch inputs of the workflow file at `ref`; None: no such file."""
        ...

    async def environment_reviewers(self, name: str) -> EnvironmentReviewers | None:
        """The environment's required reviewers; None: no such environment."""
        ...

    async def webhooks(self) -> list[RepositoryWebhook]:
        """Each active repository webhook."""
        ...

    async def recent_deliveries(self, hook_id: int, count: int) -> list[WebhookDelivery]: ...

    async def app_deliveries(self, count: int) -> list[WebhookDelivery]:
        """The newest attempts to deliver the GitHub App's webhook (App mode)."""
        ...

    async def app_installation(self) -> AppInstallation | None:
        """The GitHub App's installation on the repository; None in token mode."""
        ...

    async def environment_rule_apps(self, name: str) -> list[str] | None:
        """Slugs of the Apps whose custom protection rule the environment has enabled;
        None: no such environment."""
        ...

    async def team_member(self, team: str, login: str) -> bool:
        """Whether `login` is an active member of `team` (a slug) of the repository's org."""
        ...


MetricsProbe = Callable[[str], Awaitable[tuple[list[str], list[str]] | None]]
"""A track's metrics source asked its queries once: what it could not answer, and what it
answered no data for where figures were expected (None: a source with nothing to ask, figures
from the plan or from people)."""


@dataclass(frozen=True)
class Doctor:
    plan: RolloutPlan
    repository: str
    release_channels: tuple[str, ...]
    approvers: tuple[str, ...]
    manifest_scopes: frozenset[str]
    slack: SlackInstall
    github: GitHubInstall
    metrics: MetricsProbe

    async def examine(self) -> list[Finding]:
        return [*await self._slack(), *await self._github(), *await self._metrics()]

    async def _slack(self) -> list[Finding]:
        try:
            me = await self.slack.identity()
        except InstallProblem as problem:
            return [failed("Slack token", f"{problem}: check SLACK_BOT_TOKEN")]
        findings = [passed(f"Slack token valid (auth.test: {me.user_id} in {me.team})")]
        missing = sorted(self.manifest_scopes - me.scopes)
        if self.manifest_scopes:  # an unreadable manifest is a finding of its own
            findings.append(
                passed(f"Slack scopes cover the manifest's {len(self.manifest_scopes)}")
                if not missing
                else failed(
                    f"Slack scopes lack {', '.join(missing)}",
                    "add them under OAuth & Permissions (or paste manifest.yml again) "
                    "and reinstall the app",
                )
            )
        for channel in self.release_channels:
            try:
                member = me.user_id in await self.slack.channel_members(channel)
            except InstallProblem as problem:
                findings.append(failed(f"release channel {channel}: {problem}", CHANNEL_FIX))
                continue
            findings.append(
                passed(f"bot is a member of release channel {channel}")
                if member
                else failed(
                    f"bot is not a member of release channel {channel}",
                    f"type /invite @{me.name} in that channel",
                )
            )
        for group in (a for a in self.approvers if a.startswith("S")):
            try:
                members = await self.slack.group_members(group)
            except InstallProblem as problem:
                findings.append(
                    failed(
                        f"approver group {group}",
                        f"{problem}: check ROLLOUT_APPROVERS and the usergroups:read scope",
                    )
                )
                continue
            findings.append(
                passed(f"approver group {group} has {len(members)} members")
                if members
                else failed(
                    f"approver group {group} has no members: nobody it names can approve",
                    "add the approvers to the user group in Slack, or fix ROLLOUT_APPROVERS",
                )
            )
        return findings

    async def _github(self) -> list[Finding]:
        findings: list[Finding] = []
        try:
            app = await self.github.app_installation()
        except GitHubError as error:
            return [failed(f"GitHub App is installed on {self.repository}", error.message)]
        if app is not None:
            if (wrong := wrong_installation(app, self.repository)) is not None:
                return [wrong]  # every token would be minted for another installation
            findings += installation_findings(app, self.repository)
        try:
            login = await self.github.login()
            await self.github.repository()
        except GitHubError as error:
            return [*findings, failed(f"GitHub reaches {self.repository}", error.message)]
        findings.append(passed(f"GitHub reaches {self.repository} as {login}"))
        checks = [
            ("workflow", self._workflow),
            ("environments", self._environments if app is None else self._rule_environments),
        ]
        # App mode: the App's own webhook (its settings checked above), and its deliveries.
        checks.append(
            ("webhook", self._webhook)
            if app is None
            else ("App webhook deliveries", self._app_deliveries)
        )
        for label, check in checks:
            try:
                findings.extend(await check(login))
            except GitHubError as error:
                findings.append(failed(f"GitHub {label}", error.message))
        return findings

    async def _workflow(self, login: str) -> list[Finding]:
        workflow = self.plan.workflow
        where = f"workflow {workflow.file} at {workflow.ref}"
        inputs = await self.github.workflow_inputs(file=workflow.file, ref=workflow.ref)
        if inputs is None:
            return [
                failed(
                    f"{where} not found",
                    "push .github/workflows/"
                    f"{workflow.file} to {workflow.ref}, or fix the plan's workflow.file/ref",
                )
            ]
        missing = sorted(set(self.plan.inputs) - inputs)
        if missing:
            return [
                failed(
                    f"{where} lacks the inputs {', '.join(missing)}",
                    "GitHub refuses a dispatch with unknown inputs: add them to its "
                    "workflow_dispatch inputs, or remove them from the plan's inputs",
                )
            ]
        return [passed(f"{where} takes the plan's {len(self.plan.inputs)} inputs")]

    async def _environments(self, login: str) -> list[Finding]:
        findings = []
        for name in _environments(self.plan):
            reviewers = await self.github.environment_reviewers(name)
            team = ""
            if reviewers is not None and login not in reviewers.logins:
                team = await self._team_of(reviewers.teams, login)
            if reviewers is None:
                findings.append(
                    failed(
                        f"environment {name} does not exist",
                        f"create it (Settings → Environments) with {login} as a required reviewer",
                    )
                )
            elif login not in reviewers.logins and not team:
                findings.append(
                    failed(
                        f"environment {name} does not hold the bot",
                        f"add {login} to its required reviewers (or to a team that is one): "
                        "without them the job does not wait for the bot",
                    )
                )
            elif reviewers.self_review_prevented:
                findings.append(
                    failed(
                        f"environment {name} prevents self-review",
                        f"the bot dispatches the run, so GitHub refuses {login}'s approval: "
                        "untick Prevent self-review in its required reviewers (Settings → "
                        "Environments)",
                    )
                )
            else:
                member = f" (a member of its reviewer team {team})" if team else ""
                findings.append(passed(f"environment {name} waits for {login}{member}"))
        return findings

    async def _team_of(self, teams: list[str], login: str) -> str:
        """The first of `teams` that `login` is a member of ("": none)."""
        member = [team for team in teams if await self.github.team_member(team, login)]
        return member[0] if member else ""

    async def _rule_environments(self, login: str) -> list[Finding]:
        slug = login.removesuffix("[bot]")
        return [
            environment_finding(name, await self.github.environment_rule_apps(name), slug)
            for name in _environments(self.plan)
        ]

    async def _webhook(self, login: str) -> list[Finding]:
        """Every webhook to the bot is examined: one that is right passes (a stale one may
        sit beside it), and its line names those that are not."""
        hooks = [h for h in await self.github.webhooks() if h.url.endswith(WEBHOOK_PATH)]
        if not hooks:
            return [
                failed(
                    f"no repository webhook posts to …{WEBHOOK_PATH}",
                    f"add one (Settings → Webhooks: https://YOUR-HOST{WEBHOOK_PATH}, JSON, "
                    "the GITHUB_WEBHOOK_SECRET, workflow runs, workflow jobs, deployments, "
                    "deployment statuses and deployment reviews)",
                )
            ]
        several = len(hooks) > 1
        findings = [
            await self._one_webhook(hook, f"webhook {hook.url}" + (f" (id {hook.id})" * several))
            for hook in hooks
        ]
        right, wrong = [f for f in findings if f.ok], [f for f in findings if not f.ok]
        if not right or not wrong:
            return findings
        besides = "; ".join(finding.check for finding in wrong)
        return [passed(f"{right[0].check} (besides it: {besides})"), *right[1:]]

    async def _one_webhook(self, hook: RepositoryWebhook, name: str) -> Finding:
        unheard = sorted(FOLLOWED - hook.events)
        if unheard:
            return failed(
                f"{name} is not subscribed to {', '.join(unheard)}",
                "tick them under the webhook's settings → Let me select individual "
                "events: without them the bot hears of its runs only by polling",
            )
        recent = await self.github.recent_deliveries(hook.id, RECENT_DELIVERIES)
        return _deliveries_finding(
            name,
            recent,
            "check that the URL reaches the bot from GitHub and that its secret is "
            "GITHUB_WEBHOOK_SECRET; then redeliver them from the webhook's Recent "
            "Deliveries (GitHub does not redeliver by itself)",
        )

    async def _app_deliveries(self, login: str) -> list[Finding]:
        recent = await self.github.app_deliveries(RECENT_DELIVERIES)
        return [
            _deliveries_finding(
                "GitHub App webhook",
                recent,
                "check that the App's webhook URL reaches the bot from GitHub and that its "
                "secret is GITHUB_WEBHOOK_SECRET; then redeliver them from the App's settings "
                "→ Advanced → Recent Deliveries (GitHub does not redeliver by itself)",
            )
        ]

    async def _metrics(self) -> list[Finding]:
        findings = []
        for name, track in self.plan.tracks.items():
            metrics = f"metrics of the {name} track ({track.metrics.source})"
            findings.append(metrics_queries_finding(metrics, await self.metrics(name)))
        return findings


def _environments(plan: RolloutPlan) -> list[str]:
    """Every environment the plan's stages and failure jobs run in, in plan order."""
    names = [
        environment
        for track in plan.tracks.values()
        for environment in (*(s.environment for s in track.stages), track.on_failure.environment)
    ]
    return list(dict.fromkeys(names))


def _deliveries_finding(hook: str, recent: list[WebhookDelivery], fix: str) -> Finding:
    """GitHub lists every attempt and never redelivers by itself: a delivery failed when
    none of its attempts (same guid) succeeded, so a redelivery that succeeded clears it."""
    delivered = {d.guid for d in recent if d.succeeded}
    lost = [d for d in recent if not d.succeeded and d.guid not in delivered]
    if not recent:
        return passed(f"{hook}: no recent deliveries")
    if not lost:
        return passed(f"{hook}: the last {len(recent)} deliveries succeeded")
    latest = max(lost, key=lambda d: d.delivered_at)
    return failed(
        f"{hook}: {len(lost)} of the last {len(recent)} deliveries failed "
        f"(latest: {latest.status_code} {latest.status}, {latest.event}, "
        f"{latest.delivered_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)",
        fix,
    )
