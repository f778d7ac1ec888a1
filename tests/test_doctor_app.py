"""`rollout-bot doctor` in GitHub App mode against the sandbox's GitHub, through the real
PyGithub: a sound App install passes every check; each App misconfiguration (wrong App id:
GitHub's 401; not installed; a permission, an event, the webhook or an environment's rule
missing; a call refused 403) fails its own check with the fix, and never shows the key; a
delivery of the App's webhook that failed, and was not redelivered since, is reported."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from github import Auth, Github, GithubException, GithubIntegration
from test_doctor import (
    Install,
    doctor_environment,
    fails_alone_with_the_fix,
    lines,
    passing_checks,
    run_doctor,
)

from sandbox.config import (
    RELEASE_CHANNEL,
    RELEASE_MANAGER,
    SLACK_BOT_TOKEN,
    SandboxService,
    write_services,
)
from sandbox.github import GitHubSimulator
from sandbox.github_app import INSTALLATION_ID, SandboxApp
from sandbox.github_json import stable_id
from sandbox.loopback import LoopbackServer
from sandbox.plans import fast_plan
from sandbox.slack import SlackTestServer

HOOK = "https://rollout.example.com/github/webhook"


@dataclass
class AppInstall(Install):
    """A sound App install (no Sentry: the plan's metrics are static)."""

    app: SandboxApp = field(default_factory=SandboxApp)


@pytest.fixture
async def install(tmp_path: Path, sqlite_database_url: str) -> AsyncIterator[AppInstall]:
    app = SandboxApp(hook_url=HOOK)
    (tmp_path / "plan.yml").write_text(fast_plan(tmp_path / "figures.yml"), encoding="utf-8")
    async with (
        SlackTestServer(bot_token=SLACK_BOT_TOKEN) as slack,
        GitHubSimulator(app=app) as github,
    ):
        slack.channel_members[RELEASE_CHANNEL] = [slack.bot_user_id, RELEASE_MANAGER]
        app.rule_environments |= set(github.engine.environments)
        env = doctor_environment(slack, github, tmp_path, sqlite_database_url) | {
            "GITHUB_APP_ID": str(app.app_id),
            "GITHUB_APP_PRIVATE_KEY": app.private_key,
        }
        del env["GITHUB_TOKEN"]
        yield AppInstall(slack=slack, github=github, sentry=None, env=env, app=app)


async def test_a_sound_app_install_passes_every_check_and_exits_0(install: AppInstall) -> None:
    checks, out, err = await passing_checks(install)
    text = "\n".join(checks)
    for expected in (
        f"GitHub App rollout-bot authenticates and is installed on scriptum/scriptum "
        f"(installation {install.app.installation_id})",
        "GitHub App has the 6 permissions the bot needs",
        "GitHub App receives the 4 events the bot follows",
        f"GitHub App webhook posts JSON to {HOOK}, with a secret",
        "GitHub App webhook: no recent deliveries",
        "GitHub reaches scriptum/scriptum as rollout-bot[bot]",
        "workflow deployment-strategy.yml at main takes the plan's",
        "environment relay-canary-5 waits for the App's rule (rollout-bot)",
        "environment desktop-kill-switch waits for the App's rule (rollout-bot)",
    ):
        assert expected in text, expected
    assert "repository webhook" not in text  # App mode: the App's own webhook
    for line in install.app.private_key.splitlines()[1:-1]:
        assert line not in out + err


Breakage = Callable[[AppInstall], object]


@pytest.mark.parametrize(
    ("breakage", "failure", "fix"),
    [
        pytest.param(
            lambda i: i.env.update(GITHUB_APP_ID=str(i.app.app_id + 1)),
            "✗ GitHub App is installed on scriptum/scriptum: GitHub rejected the App's "
            "credentials (401 A JSON web token could not be decoded)",
            "check that GITHUB_APP_ID is the App's id",
            id="wrong App id",
        ),
        pytest.param(
            lambda i: setattr(i.app, "installed", False),
            "✗ GitHub App is installed on scriptum/scriptum: The GitHub App",
            "install it there",
            id="not installed",
        ),
        pytest.param(
            lambda i: i.app.permissions.pop("secrets"),
            "✗ GitHub App lacks the permissions Secrets: Read-only",
            "accept the new permissions on the installation",
            id="a permission missing",
        ),
        pytest.param(
            lambda i: setattr(i.app.first, "events", ("workflow_run", "deployment_status")),
            "✗ GitHub App is not subscribed to deployment_protection_rule, workflow_job",
            "Subscribe to events",
            id="events missing",
        ),
        pytest.param(
            lambda i: setattr(i.app, "hook_url", ""),
            "✗ GitHub App webhook is not set",
            "set the Webhook URL in the App's settings",
            id="no webhook",
        ),
        pytest.param(
            lambda i: setattr(i.app, "hook_secret", False),
            "✗ GitHub App webhook has no secret",
            "set the Webhook secret in the App's settings (General → Webhook) to the "
            "GITHUB_WEBHOOK_SECRET",
            id="webhook without a secret",
        ),
        pytest.param(
            lambda i: setattr(i.app, "hook_content_type", "form"),
            "✗ GitHub App webhook sends form content",
            "the bot reads JSON",
            id="webhook sending form content",
        ),
        pytest.param(
            lambda i: i.env.update(GITHUB_APP_INSTALLATION_ID=str(i.app.installation_id + 1)),
            f"✗ GITHUB_APP_INSTALLATION_ID is {INSTALLATION_ID + 1}; the App's installation on "
            f"scriptum/scriptum is {INSTALLATION_ID}",
            f"set GITHUB_APP_INSTALLATION_ID={INSTALLATION_ID} (or unset it",
            id="another installation configured",
        ),
        pytest.param(
            lambda i: i.app.rule_environments.discard("relay-rollout-50"),
            "✗ environment relay-rollout-50 does not wait for the App's rule",
            "Deployment protection rules: enable rollout-bot",
            id="an environment without the rule",
        ),
    ],
)
async def test_each_app_misconfiguration_fails_its_own_check_with_the_fix(
    install: AppInstall, breakage: Breakage, failure: str, fix: str
) -> None:
    await fails_alone_with_the_fix(install, breakage, failure, fix)


async def test_an_installation_without_environments_read_is_a_warning_with_the_fix(
    install: AppInstall,
) -> None:
    """An App registered from an older github-app.yml (or whose new permission is not yet
    accepted on the installation) lacks Environments read: everything but the NPM_TOKEN
    walkthrough's check of the npm job's environment works, so the doctor warns (exit 0)."""
    install.app.permissions.pop("environments")
    code, out, err = await run_doctor(install)
    assert code == 0, out + err
    text = out.split("\n\n")[0]
    assert not [line for line in text.splitlines() if line.startswith("✗")], text
    assert (
        "⚠ GitHub App lacks Environments: Read-only, which the NPM_TOKEN walkthrough needs to "
        "read the secret of the npm job's environment: grant it in the App's settings → "
        "Permissions & events, then accept the new permissions on the installation" in text
    )
    assert "✓ GitHub App has the 5 permissions rollouts need" in text


async def test_a_call_the_installation_may_not_make_names_the_permission_to_grant(
    install: AppInstall,
) -> None:
    install.app.permissions.pop("contents")
    failed = [line for line in await lines(install) if line.startswith("✗")]
    assert failed == [
        "✗ GitHub App lacks the permissions Contents: Read-only: grant them in the App's "
        "settings → Permissions & events, then accept the new permissions on the installation "
        "(Settings → GitHub Apps → Configure); without them GitHub answers 403 'Resource not "
        "accessible by integration'",
        "✗ GitHub workflow: GitHub refused to read .github/workflows/deployment-strategy.yml "
        "at main (403: Resource not accessible by integration): the GitHub App needs the "
        "permissions Actions: Read and Contents: Read (the App's settings → Permissions & "
        "events; then accept the new permissions on the installation: Settings → GitHub Apps "
        "→ Configure).",
    ]


async def test_a_suspended_installation_fails_the_installation_check_with_the_fix(
    install: AppInstall,
) -> None:
    """GitHub still answers a suspended installation (with its `suspended_at`), and its
    permissions and events, but refuses its tokens (403 "This installation has been
    suspended"): the doctor said "✓ … authenticates and is installed" and "✓ … has the 6
    permissions", then failed a later check with GitHub's bare words, no fix."""
    install.app.suspend("scriptum", by="octo-admin")
    failed = [line for line in await lines(install) if line.startswith("✗")]
    number = install.app.installation_id
    assert failed[0] == (
        f"✗ GitHub App rollout-bot is installed on scriptum/scriptum (installation {number}), "
        "but suspended: whoever suspended it lifts the suspension (the account's Settings → "
        "GitHub Apps → the App → Configure → Unsuspend; or, when the App's owner suspended it, "
        "the App's settings → Advanced → Unsuspend): until then GitHub refuses every call of "
        "the App there (403) and sends it no webhook from that account"
    ), failed
    assert all("permission" not in line for line in failed), failed
    assert all("is suspended" in line for line in failed[1:]), failed
    install.app.unsuspend("scriptum")
    assert all(line.startswith("✓") for line in await lines(install))


class Receiver(LoopbackServer):
    """Where the App's webhook posts (the bot's `/github/webhook`): answers 202."""

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/github/webhook", self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        return web.json_response({"result": "followed"}, status=202)


def app_deliveries(install: AppInstall, credential: Auth.Auth) -> Any:
    """`GET /app/hook/deliveries` through PyGithub, as the App (its JWT) or another credential."""
    if isinstance(credential, Auth.AppAuth):
        client = GithubIntegration(auth=credential, base_url=install.github.api_url)
        requester = client.requester
    else:
        requester = Github(auth=credential, base_url=install.github.api_url).requester
    return requester.requestJsonAndCheck("GET", "/app/hook/deliveries")[1]


async def test_a_failed_delivery_of_the_app_webhook_is_reported_until_it_is_redelivered(
    install: AppInstall,
) -> None:
    github, hook = install.github, install.github.app_hook
    github.protection_rule(set(github.engine.environments))
    async with Receiver() as bot:
        hook.url = f"{bot.url}/github/webhook"
        github.create_foreign_run()
        await github.settle()  # its first two jobs wait for the App: two requests, delivered
        assert len(hook.deliveries) == 2
        assert "✓ GitHub App webhook: the last 2 deliveries succeeded" in await lines(install)

        hook.url = None  # the bot is down
        lost = await hook.send("deployment_protection_rule", json.loads(hook.deliveries[0].body))
        found = await lines(install)
        failed = [line for line in found if line.startswith("✗")]
        assert failed == [
            "✗ GitHub App webhook: 1 of the last 3 deliveries failed (latest: 502 failed to "
            "connect, deployment_protection_rule, "
            f"{lost.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC): check that the App's webhook "
            "URL reaches the bot from GitHub and that its secret is GITHUB_WEBHOOK_SECRET; then "
            "redeliver them from the App's settings → Advanced → Recent Deliveries (GitHub does "
            "not redeliver by itself)"
        ], found

        hook.url = f"{bot.url}/github/webhook"
        await hook.redeliver(lost.guid)
        assert "✓ GitHub App webhook: the last 4 deliveries succeeded" in await lines(install)

    listed = await asyncio.to_thread(
        app_deliveries, install, Auth.AppAuth(install.app.app_id, install.app.private_key)
    )
    assert [(d["guid"], d["status_code"], d["redelivery"]) for d in listed[:2]] == [
        (lost.guid, 202, True),
        (lost.guid, 502, False),
    ]
    assert set(listed[0]) == {
        "id",
        "guid",
        "delivered_at",
        "redelivery",
        "duration",
        "status",
        "status_code",
        "event",
        "action",
        "installation_id",
        "repository_id",
        "throttled_at",
    }
    assert (listed[0]["status"], listed[1]["status"]) == ("OK", "failed to connect")
    assert listed[0]["event"] == "deployment_protection_rule"
    assert listed[0]["action"] == "requested"
    assert listed[0]["installation_id"] == INSTALLATION_ID
    assert listed[0]["repository_id"] == stable_id(f"repo:{github.repository}")
    assert len({d["id"] for d in listed}) == 4


async def test_only_the_apps_jwt_lists_its_webhook_deliveries(install: AppInstall) -> None:
    with pytest.raises(GithubException) as refused:
        await asyncio.to_thread(app_deliveries, install, Auth.Token(install.github.token))
    assert (refused.value.status, refused.value.data["message"]) == (
        401,
        "A JSON web token could not be decoded",
    )


async def test_services_of_two_owners_are_each_checked_with_their_own_installation(
    install: AppInstall, tmp_path: Path
) -> None:
    """docs/github-app.md, services of several owners: each service's checks name its own
    account's installation, and an installation removed fails its own service's checks only."""
    ledger = install.github.add_repository("globex/ledger")
    ledger.app_rule_environments |= set(ledger.engine.environments)
    plan = tmp_path / "plan.yml"
    services = [
        SandboxService(name="relay", repository="scriptum/scriptum", plan=plan),
        SandboxService(name="ledger", repository="globex/ledger", plan=plan),
    ]
    for name in ("GITHUB_REPOSITORY", "ROLLOUT_PLAN", "RELEASE_CHANNELS", "ROLLOUT_APPROVERS"):
        install.env.pop(name, None)
    install.env["ROLLOUT_SERVICES"] = str(write_services(tmp_path / "services.yml", services))
    scriptum, globex = (install.app.installations[a].id for a in ("scriptum", "globex"))
    assert scriptum != globex

    relay, checked = await lines(install, 0), await lines(install, 1)
    assert all(line.startswith("✓") for line in relay + checked), relay + checked
    assert f"is installed on scriptum/scriptum (installation {scriptum})" in "\n".join(relay)
    assert f"is installed on globex/ledger (installation {globex})" in "\n".join(checked)

    install.app.uninstall("globex")
    assert all(line.startswith("✓") for line in await lines(install, 0))
    failed = [line for line in await lines(install, 1) if line.startswith("✗")]
    assert failed == [
        f"✗ GitHub App is installed on globex/ledger: The GitHub App {install.app.app_id} is "
        "not installed on globex/ledger: install it there (the App's page → Install App)."
    ], failed
