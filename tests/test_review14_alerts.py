"""Review of issue 14 (branch review14): defects in the bot's metrics and ops/alerts.yml.

These tests FAIL on main: each names the defect it proves (see the review report).
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.web.async_client import AsyncWebClient
from test_alerts import promtool
from test_github_app import app, credentials, gh  # noqa: F401 - fixtures
from test_github_gateway import INPUTS, START, WORKFLOW

from bot.adapters.github.dispatch import DispatchSearch
from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.transport import GitHubTransport
from bot.adapters.slack.calls import CallCounter
from bot.adapters.telemetry import PrometheusTelemetry
from bot.domain.errors import GitHubError
from bot.version import Build
from sandbox.config import RELEASE_CHANNEL, REPOSITORY, SLACK_BOT_TOKEN
from sandbox.github import GitHubSimulator
from sandbox.github_app import SandboxApp
from sandbox.slack import SlackTestServer


def test_review14_alert_cases_the_rules_get_wrong() -> None:
    """tests/review14_alerts.test.yml: RolloutBotGitHubAuthFailing stays quiet when GitHub
    refuses the App's credentials (status="no_token"), and RolloutBotNoWebhookDeliveries fires
    while one replica has been up for less than two hours (min, not max, of start times), and
    RolloutBotGitHubRateLimitLow fires hours after the limit reset (a gauge never refreshed
    without a call)."""
    tested = promtool("test", "rules", "../tests/review14_alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


async def test_review14_app_credentials_refused_are_counted_as_a_401(
    gh: GitHubSimulator,  # noqa: F811
    app: SandboxApp,  # noqa: F811
) -> None:
    """GitHub answers 401 to the App's JWT (wrong App id: the same as a revoked key), yet the
    series says status="no_token", which RolloutBotGitHubAuthFailing does not match: the page
    for refused GitHub credentials can never fire in App mode."""
    telemetry = PrometheusTelemetry(Build(version="0", commit="review14"))
    transport = GitHubTransport(
        api_url=gh.api_url,
        app=credentials(app, app_id=app.app_id + 1),
        repository=REPOSITORY,
        timeout=5,
        backoff=0.01,
        telemetry=telemetry,
    )
    github = PyGithubGateway(transport, search=DispatchSearch(attempts=2, delay=0.01))
    try:
        with pytest.raises(GitHubError, match="401"):
            await github.dispatch(
                workflow_file=WORKFLOW, ref="main", inputs=INPUTS, dispatched_at=START
            )
    finally:
        await github.close()
    body, _ = telemetry.exposition(None)
    statuses = {
        sample.labels["status"]
        for family in text_string_to_metric_families(body.decode())
        if family.name == "rollout_bot_github_requests"
        for sample in family.samples
        if sample.name == "rollout_bot_github_requests_total" and sample.value > 0
    }
    assert statuses & {"401", "403"}, statuses


async def test_review14_slack_file_uploads_put_the_upload_url_key_in_a_label() -> None:
    """Gate charts go up with files_upload_v2: its second request posts the file to the
    one-time `upload_url` Slack handed out (files.slack.com/upload/v1/<key>), and slack_sdk
    runs that request through the client's retry handlers too. `CallCounter` takes the last
    path segment as the `method` label: every upload adds a series labelled with its upload
    key (unbounded cardinality, and the key is the upload's credential until it expires)."""
    telemetry = PrometheusTelemetry(Build(version="0", commit="review14"))
    async with SlackTestServer(bot_token=SLACK_BOT_TOKEN) as slack:
        client = AsyncWebClient(
            token=SLACK_BOT_TOKEN,
            base_url=slack.api_url,
            retry_handlers=[CallCounter(telemetry)],
        )
        for n in range(2):
            await client.files_upload_v2(
                channel=RELEASE_CHANNEL, content=b"\x89PNG", filename=f"gate-{n}.png"
            )
    body, _ = telemetry.exposition(None)
    methods = {
        sample.labels["method"]
        for family in text_string_to_metric_families(body.decode())
        if family.name == "rollout_bot_slack_api_calls"
        for sample in family.samples
        if sample.name == "rollout_bot_slack_api_calls_total"
    }
    assert all(method.startswith("files.") for method in methods), methods
