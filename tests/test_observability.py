"""The bot's own metrics, /healthz and --version, as an operator reads them.

`GET /metrics` is scraped from a sandbox-run app after a real command, click, gate and webhook
and parsed with prometheus-client's own parser; the series and labels asserted are the ones
docs/observability.md and ops/alerts.yml name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from figures import every_gate_passes, passing_sandbox, running_sandbox
from prometheus_client.parser import text_string_to_metric_families
from sandbox_views import dispatched, open_home
from services import missing
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_github_app import app, credentials, gateway, gh  # noqa: F401 - fixtures
from test_github_gateway import INPUTS, START, WORKFLOW

from bot.adapters.github.budget import RequestBudget, RequestBudgets
from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.transport import GitHubTransport
from bot.adapters.slack.calls import CallCounter
from bot.adapters.telemetry import PrometheusTelemetry
from bot.config import ConfigError, Settings, load_settings
from bot.domain.controls import DoneButOwed
from bot.domain.errors import (
    GitHubError,
    GitHubRateLimited,
    NotAuthorized,
    PartlyPromoted,
    PromotedWhileStopping,
)
from bot.domain.rollout import Phase, StageState
from bot.domain.service import DEFAULT_SERVICE
from bot.services.clock_skew import SQLITE_SKIPPED
from bot.services.telemetry import Backlog
from bot.version import build
from handlers.errors import failure_outcome
from sandbox.config import (
    BYSTANDER,
    GITHUB_TOKEN,
    GITHUB_WEBHOOK_SECRET,
    RELEASE_CHANNEL,
    RELEASE_MANAGER,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    bot_environment,
)
from sandbox.github import GitHubSimulator
from sandbox.github_app import SandboxApp
from sandbox.harness import Sandbox, fast_plan
from sandbox.prometheus_exporter import PrometheusProcess, prometheus_binary
from sandbox.signing import github_signature_headers, slack_signature_headers
from sandbox.slack import SlackTestServer
from storage.timers import TimerStore

TOKEN = "scrape-me-0123456789"
ROLLOUT_BOT = Path(sys.executable).parent / "rollout-bot"
ALERTS = Path(__file__).resolve().parent.parent / "ops" / "alerts.yml"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
GITHUB_REQUESTS = "rollout_bot_github_requests_total"
DEFAULT = {"service": DEFAULT_SERVICE}
"""The label of a bot of one service (no ROLLOUT_SERVICES) on its GitHub calls."""


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels (prometheus-client's parser: a scrape it
    cannot read fails the test)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


class Scraper:
    """Prometheus's side: GET /metrics with the bearer token."""

    def __init__(self, box: Sandbox, http: aiohttp.ClientSession, token: str | None) -> None:
        self._box, self._http = box, http
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def get(self, headers: Mapping[str, str] | None = None) -> tuple[int, str, str]:
        async with self._http.get(
            f"{self._box.url}/metrics", headers=self._headers if headers is None else headers
        ) as response:
            return response.status, response.headers["Content-Type"], await response.text()

    async def samples(self) -> Samples:
        status, _, text = await self.get()
        assert status == 200, text
        return parse(text)

    async def until(self, holds: Callable[[Samples], bool]) -> Samples:
        """Scrape until `holds` is true of the samples (what the bot does after it answered)."""
        for _ in range(300):
            found = await self.samples()
            if holds(found):
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"never held; last scrape: {sorted(found)}")


@pytest.fixture
async def box(tmp_path: Path, sqlite_database_url: str) -> AsyncIterator[Sandbox]:
    async with passing_sandbox(
        tmp_path, database_url=sqlite_database_url, extra_env={"METRICS_TOKEN": TOKEN}
    ) as sandbox:
        yield sandbox


async def post_webhook(
    box: Sandbox, http: aiohttp.ClientSession, event: str, payload: Mapping[str, Any], delivery: str
) -> str:
    body = json.dumps(payload).encode()
    headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, body, event=event, delivery=delivery)
    async with http.post(f"{box.url}/github/webhook", data=body, headers=headers) as response:
        return str((await response.json())["result"])


async def test_an_event_name_the_bot_does_not_follow_is_counted_as_other(
    box: Sandbox, http: aiohttp.ClientSession
) -> None:
    """`X-GitHub-Event` is outside the signature: a signed body (GitHub shows its deliveries'
    headers to the repository's admins) sent again under made-up event names must not make a
    series for each name, which would grow the bot's memory and every scrape without bound."""
    made_up = [f"made-up-{n}" for n in range(3)]
    for n, event in enumerate(made_up):
        assert await post_webhook(box, http, event, {"zen": "x"}, f"d-{n}") == "ignored"

    found = await Scraper(box, http, TOKEN).samples()

    deliveries = {
        dict(labels)["event"]
        for name, labels in found
        if name == "rollout_bot_webhook_deliveries_total"
    }
    assert not deliveries & set(made_up)
    assert (
        value(found, "rollout_bot_webhook_deliveries_total", event="other", result="ignored") == 3
    )


async def test_a_scrape_after_a_command_a_click_a_gate_and_a_webhook_shows_each_series(
    box: Sandbox, http: aiohttp.ClientSession
) -> None:
    events: list[tuple[str, Mapping[str, Any]]] = []
    box.github.on_event(lambda name, payload: events.append((name, payload)))
    scraper = Scraper(box, http, TOKEN)

    await dispatched(box)
    await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.HOLDING)
    assert "approver" in await box.command("promote", user=BYSTANDER)
    assert "frobnicate" in await box.command("frobnicate")
    run = next(p for name, p in events if name == "workflow_run")
    assert await post_webhook(box, http, "workflow_run", run, "delivery-1") == "followed"
    assert await post_webhook(box, http, "workflow_run", run, "delivery-1") == "duplicate"

    # A scrape whose database reads took longer than the scrape waits for them (a loaded
    # machine) serves the database's gauges as unknown: the next one reads them again.
    found = await scraper.until(
        lambda s: (
            (
                value(
                    s,
                    "rollout_bot_gate_verdicts_total",
                    service="default",
                    track="relay",
                    verdict="PASS",
                )
                or 0
            )
            >= 1
            and value(s, "rollout_bot_database_up") == 1
        )
    )
    assert value(found, "rollout_bot_commands_total", subcommand="start", outcome="ok") == 1
    assert value(found, "rollout_bot_commands_total", subcommand="promote", outcome="refused") == 1
    assert value(found, "rollout_bot_commands_total", subcommand="unknown", outcome="refused") == 1
    assert value(found, "rollout_bot_clicks_total", action="dispatch", outcome="ok") == 1
    assert value(found, "rollout_bot_refusals_total", reason="not_authorized") == 1
    assert value(found, "rollout_bot_refusals_total", reason="invalid_command") == 1
    assert value(found, GITHUB_REQUESTS, **DEFAULT, endpoint="dispatch", status="2xx") == 1
    assert (value(found, GITHUB_REQUESTS, **DEFAULT, endpoint="review", status="2xx") or 0) >= 1
    # A token's one limit: no account (an empty label is no label to Prometheus).
    remaining = value(found, "rollout_bot_github_rate_limit_remaining", account="")
    assert remaining is not None and box.github.rate_limit_remaining <= remaining < 5000
    posted = value(
        found,
        "rollout_bot_slack_api_calls_total",
        method="chat.postMessage",
        status="200",
        error="",
    )
    assert posted is not None and posted >= 1
    assert value(found, "rollout_bot_rollouts_active", service="default", state="running") == 1
    assert value(found, "rollout_bot_rollouts_active", service="default", state="preflight") == 0
    assert value(found, "rollout_bot_timers_overdue") == 0
    assert value(found, "rollout_bot_timers_due") is not None
    closed = value(found, "rollout_bot_window_end_lateness_seconds_count")
    assert closed is not None and closed >= 1
    assert (
        value(
            found, "rollout_bot_webhook_deliveries_total", event="workflow_run", result="followed"
        )
        == 1
    )
    assert (
        value(
            found, "rollout_bot_webhook_deliveries_total", event="workflow_run", result="duplicate"
        )
        == 1
    )
    assert value(found, "rollout_bot_webhook_last_delivery_timestamp_seconds") == pytest.approx(
        box.clock().timestamp(), abs=60
    )
    # The sandbox sets GITHUB_WEBHOOK_SECRET: deliveries are expected (the alert reads it).
    assert value(found, "rollout_bot_webhook_secret_configured") == 1
    build = value(found, "rollout_bot_build_info", version=version("rollout-bot"), commit=_commit())
    assert build == 1
    assert value(found, "rollout_bot_process_start_time_seconds") is not None


async def test_requests_signed_with_another_secret_are_counted_by_door(
    box: Sandbox, http: aiohttp.ClientSession
) -> None:
    # The signing secret was regenerated in Slack's app settings, and the webhook's secret
    # changed on GitHub, but not the bot's: every request is refused, and counted.
    slack = b"command=%2Frollout&text=status"
    github = json.dumps({"action": "completed"}).encode()
    asked = [
        ("/slack/events", slack, slack_signature_headers("regenerated-secret", slack)),
        ("/github/webhook", github, github_signature_headers("changed", github, event="push")),
        # Not counted: a request nobody signed, and one Slack signed ten minutes ago (a replay).
        ("/slack/events", slack, {"Content-Type": "application/x-www-form-urlencoded"}),
        ("/github/webhook", github, {"X-GitHub-Event": "push"}),
        (
            "/slack/events",
            slack,
            slack_signature_headers(SLACK_SIGNING_SECRET, slack, timestamp=int(time.time()) - 600),
        ),
    ]
    for path, body, headers in asked:
        async with http.post(f"{box.url}{path}", data=body, headers=headers) as response:
            assert response.status == 401, path

    found = await Scraper(box, http, TOKEN).samples()
    assert value(found, "rollout_bot_signature_refusals_total", door="slack") == 1
    assert value(found, "rollout_bot_signature_refusals_total", door="github") == 1


async def test_window_end_lateness_is_measured_on_the_bots_clock(
    tmp_path: Path, sqlite_database_url: str, http: aiohttp.ClientSession
) -> None:
    async with running_sandbox(tmp_path, sqlite_database_url, window="1h") as box:
        await dispatched(box)
        await box.wait_until(
            lambda r: (
                r.track("relay").stage("canary").state is StageState.OBSERVING
                and r.track("desktop").stage("internal").state is StageState.OBSERVING
            )
        )
        # The bot was away: the hour-long windows are evaluated two minutes after their end.
        await box.pass_time(timedelta(minutes=62))
        await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.HOLDING)
        found = await Scraper(box, http, None).until(
            lambda s: value(s, "rollout_bot_window_end_lateness_seconds_count") == 2
        )
    late = value(found, "rollout_bot_window_end_lateness_seconds_sum")
    assert late is not None and 2 * 120 <= late < 2 * 150
    assert value(found, "rollout_bot_window_end_lateness_seconds_bucket", le="120.0") == 0
    assert value(found, "rollout_bot_window_end_lateness_seconds_bucket", le="300.0") == 2


async def test_a_real_prometheus_scrapes_with_the_token_and_loads_the_alert_rules(
    box: Sandbox, http: aiohttp.ClientSession
) -> None:
    if prometheus_binary() is None:
        missing("the prometheus binary is missing (apt-get install prometheus)")
    target = box.url.removeprefix("http://")
    async with PrometheusProcess(
        {"rollout-bot": target, "wrong-token": target},
        tokens={"rollout-bot": TOKEN, "wrong-token": "not-the-token"},
        rules=[ALERTS],
    ) as prometheus:
        await prometheus.wait_for_scrapes(2)

        async def query(expression: str) -> dict[str, str]:
            async with http.post(
                f"{prometheus.url}/api/v1/query", data={"query": expression}
            ) as response:
                result = (await response.json())["data"]["result"]
            return {item["metric"].get("job", ""): item["value"][1] for item in result}

        async def rules() -> list[dict[str, Any]]:
            async with http.get(f"{prometheus.url}/api/v1/rules") as response:
                return [
                    rule
                    for group in (await response.json())["data"]["groups"]
                    for rule in group["rules"]
                ]

        assert await query("up") == {"rollout-bot": "1", "wrong-token": "0"}
        built = await query(f'rollout_bot_build_info{{version="{version("rollout-bot")}"}}')
        assert built == {"rollout-bot": "1"}
        for _ in range(100):
            loaded = await rules()
            if loaded and all(rule["health"] == "ok" for rule in loaded):
                break
            await asyncio.sleep(0.1)
        assert len(loaded) == 17 and {rule["health"] for rule in loaded} == {"ok"}, loaded
        assert {rule["state"] for rule in loaded} == {"inactive"}


async def test_slack_and_github_failures_are_counted_by_method_endpoint_and_status(
    box: Sandbox, http: aiohttp.ClientSession
) -> None:
    scraper = Scraper(box, http, TOKEN)
    await open_home(box, RELEASE_MANAGER)
    box.slack.fail_next("views.publish", error="invalid_auth")
    await open_home(box, RELEASE_MANAGER, refused=True)
    # A 429 is counted, then the client waits as Slack asks and tries again.
    box.slack.fail_next("views.publish", error="ratelimited", status=429, retry_after=0)
    calls = len(box.slack.calls_to("views.publish"))
    await open_home(box, RELEASE_MANAGER)
    await box.slack.wait_for(lambda: len(box.slack.calls_to("views.publish")) == calls + 2)

    found = await scraper.until(
        lambda s: value(s, "rollout_bot_slack_api_calls_total", **_publish("200", "")) == 2
    )
    assert value(found, "rollout_bot_slack_api_calls_total", **_publish("200", "invalid_auth")) == 1
    assert value(found, "rollout_bot_slack_api_calls_total", **_publish("429", "ratelimited")) == 1

    box.github.fail_next("GET", "/repos/*/contents/*", 401)
    await box.command("start v1.4.2 --flags-ready")  # preflight lists the migrations
    await scraper.until(
        lambda s: value(s, GITHUB_REQUESTS, **DEFAULT, endpoint="read", status="401") == 1
    )


def counted_gateway(
    sim: GitHubSimulator,
    telemetry: PrometheusTelemetry,
    **transport: Any,
) -> PyGithubGateway:
    """A gateway on `sim` whose every call `telemetry` counts (`transport`: more of
    GitHubTransport's options, such as a budget or retries)."""
    return PyGithubGateway(
        GitHubTransport(
            api_url=sim.api_url,
            token=GITHUB_TOKEN,
            repository=sim.repository,
            telemetry=telemetry,
            **transport,
        )
    )


@pytest.mark.story
async def test_github_s_clock_an_hour_behind_is_a_gauge_by_host_read_off_its_answers(
    tmp_path: Path, sqlite_database_url: str, http: aiohttp.ClientSession
) -> None:
    """The bot sets aside GitHub's job times an hour behind its clock (one WARNING per stage,
    docs/reliability.md); the scrape shows the skew too, as of GitHub's last answer (its
    `Date`), by GitHub host, with when it was read: RolloutBotGitHubClockSkew warns on it."""
    plan = fast_plan(tmp_path / "figures.yml", window="10m", extension="10m")
    async with Sandbox(
        workdir=tmp_path,
        database_url=sqlite_database_url,
        plan_yaml=plan,
        github_lag=timedelta(hours=1),
        extra_env={"METRICS_TOKEN": TOKEN},
    ) as box:
        every_gate_passes(box)
        await dispatched(box)
        host = box.github.api_url.removeprefix("http://")
        found = await Scraper(box, http, TOKEN).until(
            lambda s: value(s, "rollout_bot_github_clock_offset_seconds", host=host) is not None
        )
        read = value(found, "rollout_bot_github_clock_read_timestamp_seconds", host=host)

    offset = value(found, "rollout_bot_github_clock_offset_seconds", host=host)
    assert offset is not None and -3601 <= offset <= -3599, offset
    assert read is not None and abs(read - box.clock().timestamp()) < 60


async def test_github_s_clock_is_not_a_figure_when_its_answer_is_undated_or_too_slow() -> None:
    """A proxy that drops `Date`, or a round trip so slow that the reading cannot tell
    whether the clocks are within 5 s: no figure (a wrong one would warn, or hide a skew)."""
    telemetry = PrometheusTelemetry(build())
    async with GitHubSimulator(token=GITHUB_TOKEN) as simulator:
        ticks = iter([0, 0, 0, 20])  # the bot's clock, read around each request
        start = datetime.now(UTC)
        transport = GitHubTransport(
            api_url=simulator.api_url,
            token=GITHUB_TOKEN,
            repository=simulator.repository,
            telemetry=telemetry,
            clock=lambda: start + timedelta(seconds=next(ticks)),
        )
        path = f"/repos/{simulator.repository}"
        try:
            simulator.dated = False
            await transport.call("read", lambda: transport.get_json(path))
            simulator.dated = True
            await transport.call("read", lambda: transport.get_conditional(path))
        finally:
            await transport.close()
    found = parse(telemetry.exposition(None)[0].decode())
    assert not [name for name, _ in found if name.startswith("rollout_bot_github_clock")]
    assert value(found, GITHUB_REQUESTS, **DEFAULT, endpoint="read", status="2xx") == 2


async def test_github_calls_are_counted_by_endpoint_and_status_with_rate_limits_apart() -> None:
    telemetry = PrometheusTelemetry(build())
    async with GitHubSimulator(token=GITHUB_TOKEN) as simulator:
        gateway = counted_gateway(simulator, telemetry)
        try:
            simulator.fail_next("GET", "/repos/*/contents/*", 403)  # GitHub's primary rate limit
            with pytest.raises(GitHubRateLimited):
                await gateway.list_directory(path="crates", ref="main")
            simulator.fail_next(
                "GET", "/repos/*/contents/*", 403, {"message": "Resource not accessible"}
            )
            with pytest.raises(GitHubError, match="403"):
                await gateway.list_directory(path="crates", ref="main")
            await gateway.list_directory(path="crates", ref="main")
        finally:
            await gateway.close()
        left = simulator.rate_limit_remaining
    found = parse(telemetry.exposition(None)[0].decode())
    statuses = {
        dict(labels)["status"]: count
        for (name, labels), count in found.items()
        if name == "rollout_bot_github_requests_total" and dict(labels)["endpoint"] == "read"
    }
    assert statuses == {"rate_limited": 1, "403": 1, "2xx": 1}
    assert value(found, "rollout_bot_github_rate_limit_remaining", account="") == left
    reset = value(found, "rollout_bot_github_rate_limit_reset_timestamp_seconds", account="")
    assert reset is not None and time.time() < reset <= time.time() + 3600


async def test_each_app_installations_rate_limit_is_its_own_series() -> None:
    # An App installed on two accounts has a rate limit per installation: acme's is nearly
    # spent, globex's is whole. One series for both would read as whichever answered last.
    telemetry = PrometheusTelemetry(build())
    budgets = RequestBudgets({"api": "acme", "billing": "globex"})
    async with (
        GitHubSimulator(token=GITHUB_TOKEN) as acme,
        GitHubSimulator(token=GITHUB_TOKEN) as globex,
    ):
        acme.rate_limit_remaining = 150
        gateways = [
            counted_gateway(sim, telemetry, budget=budgets.of(service))
            for sim, service in ((acme, "api"), (globex, "billing"))
        ]
        try:
            for gateway in gateways:
                await gateway.list_directory(path="crates", ref="main")
        finally:
            for gateway in gateways:
                await gateway.close()
        left = {"acme": acme.rate_limit_remaining, "globex": globex.rate_limit_remaining}
    found = parse(telemetry.exposition(None)[0].decode())
    assert left["acme"] < 200 < left["globex"]
    for account, remaining in left.items():
        assert value(found, "rollout_bot_github_rate_limit_remaining", account=account) == remaining
        reset = value(
            found, "rollout_bot_github_rate_limit_reset_timestamp_seconds", account=account
        )
        assert reset is not None and time.time() < reset <= time.time() + 3600


async def test_github_calls_are_counted_by_the_service_whose_repository_they_concern() -> None:
    # Two services' transports on one token: billing's token lacks a permission, api's does
    # not. Without the service label both read as one series: which repository fails?
    telemetry = PrometheusTelemetry(build())
    async with (
        GitHubSimulator(token=GITHUB_TOKEN) as api,
        GitHubSimulator(token=GITHUB_TOKEN) as billing,
    ):
        billing.fail_next("GET", "/repos/*/contents/*", 403, {"message": "Resource not accessible"})
        gateways = {
            service: counted_gateway(sim, telemetry, service=service)
            for sim, service in ((api, "api"), (billing, "billing"))
        }
        try:
            for _ in range(2):
                await gateways["api"].list_directory(path="crates", ref="main")
            with pytest.raises(GitHubError, match="403"):
                await gateways["billing"].list_directory(path="crates", ref="main")
        finally:
            for gateway in gateways.values():
                await gateway.close()
    found = parse(telemetry.exposition(None)[0].decode())
    counted = {
        (labels["service"], labels["endpoint"], labels["status"]): count
        for (name, label_set), count in found.items()
        if name == GITHUB_REQUESTS
        for labels in [dict(label_set)]
    }
    assert counted == {("api", "read", "2xx"): 2, ("billing", "read", "403"): 1}


async def test_a_call_without_an_answer_leaves_the_newest_rate_limit_shown() -> None:
    # Two transports on one token: the second answered last; the first's next call gets no
    # answer, and its client's figure is older than the second's.
    telemetry = PrometheusTelemetry(build())
    budget = RequestBudget()
    async with GitHubSimulator(token=GITHUB_TOKEN) as simulator:
        first, second = (
            counted_gateway(simulator, telemetry, budget=budget, retries=0) for _ in range(2)
        )
        try:
            await first.list_directory(path="crates", ref="main")
            for _ in range(3):
                await second.list_directory(path="crates", ref="main")
            newest = simulator.rate_limit_remaining
            simulator.fault_next("GET", "/repos/*/contents/*", "accept_then_drop")
            with pytest.raises(GitHubError):
                await first.list_directory(path="crates", ref="main")
        finally:
            await first.close()
            await second.close()
    found = parse(telemetry.exposition(None)[0].decode())
    assert value(found, GITHUB_REQUESTS, **DEFAULT, endpoint="read", status="no_answer")
    assert value(found, "rollout_bot_github_rate_limit_remaining", account="") == newest


async def test_the_apps_refused_credentials_count_githubs_401_to_the_installation_token(
    gh: GitHubSimulator,  # noqa: F811
    app: SandboxApp,  # noqa: F811
) -> None:
    """GitHub answers 401 to the App's JWT (a wrong App id: the same as a revoked key): no
    installation token, nothing else sent; the token's request is counted with GitHub's 401,
    which RolloutBotGitHubAuthFailing pages on."""
    telemetry = PrometheusTelemetry(build())
    wrong_app = credentials(app, app_id=app.app_id + 1)
    async with gateway(gh, wrong_app, telemetry=telemetry) as github:
        with pytest.raises(GitHubError, match="401"):
            await github.dispatch(
                workflow_file=WORKFLOW, ref="main", inputs=INPUTS, dispatched_at=START
            )
    found = parse(telemetry.exposition(None)[0].decode())
    counted = {
        (labels["endpoint"], labels["status"])
        for (name, label_set), count in found.items()
        if name == "rollout_bot_github_requests_total" and count > 0
        for labels in [dict(label_set)]
    }
    assert counted == {("app_token", "401")}


async def test_a_slack_file_upload_is_counted_under_a_fixed_label_never_its_upload_url() -> None:
    """files_upload_v2 posts the file to the one-time `upload_url` Slack handed out
    (`.../upload/v1/<key>`), and slack_sdk runs that request through the retry handlers too:
    its key must not become a `method` label (one series per upload, and the key is the
    upload's credential until it expires)."""
    telemetry = PrometheusTelemetry(build())
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
    found = parse(telemetry.exposition(None)[0].decode())
    methods = {
        dict(labels)["method"]: count
        for (name, labels), count in found.items()
        if name == "rollout_bot_slack_api_calls_total"
    }
    assert methods == {
        "files.getUploadURLExternal": 2,
        "file_upload": 2,
        "files.completeUploadExternal": 2,
    }


def _publish(status: str, error: str) -> dict[str, str]:
    return {"method": "views.publish", "status": status, "error": error}


async def test_metrics_want_the_bearer_token_when_one_is_set(
    box: Sandbox, http: aiohttp.ClientSession
) -> None:
    scraper = Scraper(box, http, TOKEN)
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ):
        status, _, text = await scraper.get(headers)
        assert status == 401 and TOKEN not in text
    status, content_type, text = await scraper.get()
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert "rollout_bot_commands_total" in text


async def test_the_app_home_and_the_start_log_show_the_version_healthz_does_not(
    tmp_path: Path,
    sqlite_database_url: str,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`/healthz` is on the public port (ops/haproxy.cfg): it says the process and its
    database answer, not which build (a fingerprint for whoever looks for a known bug); the
    build is on the App Home, in the start log and in `/metrics` (open here: no METRICS_TOKEN).
    On SQLite the start log also says why the database's clock is not compared (one host),
    and its gauge is unknown (tests/test_database_clock.py: PostgreSQL)."""
    caplog.set_level(logging.INFO, logger="bot.bootstrap")
    caplog.set_level(logging.INFO, logger="bot.wiring")
    async with Sandbox(workdir=tmp_path, database_url=sqlite_database_url) as box:
        async with http.get(f"{box.url}/healthz") as response:
            assert response.status == 200
            health = await response.json()
        status, _, text = await Scraper(box, http, None).get()
        home = await open_home(box, RELEASE_MANAGER)
    assert health == {"status": "ok", "database": "ok"}
    assert status == 200
    assert (
        value(
            parse(text), "rollout_bot_build_info", version=version("rollout-bot"), commit=_commit()
        )
        == 1
    )
    assert f"rollout-bot {version('rollout-bot')} (commit {_commit()})" in home
    assert f"rollout-bot {version('rollout-bot')} (commit {_commit()}) starting" in caplog.messages
    assert SQLITE_SKIPPED in caplog.messages
    assert math.isnan(value(parse(text), "rollout_bot_database_clock_offset_seconds") or 0)


DATABASE_GAUGES = (
    "timers_due",
    "timers_overdue",
    "database_clock_offset_seconds",
    "database_up",
)


class TimersLeft:
    """The timer store's answer, or the database gone (a connection refused)."""

    def __init__(self) -> None:
        self.reachable = True

    async def active(self) -> list[object]:
        if not self.reachable:
            raise OperationalError("SELECT", {}, ConnectionRefusedError("connection refused"))
        return []

    async def backlog(self, *, now: datetime, overdue_after: timedelta) -> tuple[int, int]:
        return 3, 1

    async def dead_by_service(self) -> dict[str, int]:
        return {"retired": 2}  # a service taken out of the services file


def relay_backlog(
    telemetry: PrometheusTelemetry,
    database: TimersLeft,
    database_clock: Callable[[], Awaitable[object]] | None = None,
) -> Backlog:
    """The scrape's database gauges of a bot configured with the one service `relay`."""
    return Backlog(
        telemetry=telemetry,
        rollouts=database,
        timers=database,
        clock=lambda: datetime(2026, 12, 4, tzinfo=UTC),
        overdue_after=timedelta(minutes=1),
        services=["relay"],
        database_clock=database_clock,
    )


async def test_a_scrape_while_the_database_is_away_serves_its_gauges_as_unknown_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    telemetry = PrometheusTelemetry(build())
    database = TimersLeft()

    async def database_clock() -> None:  # the server's clock 3 s behind this replica's
        await database.active()
        telemetry.database_clock(offset=timedelta(seconds=-3))

    backlog = relay_backlog(telemetry, database, database_clock)
    await backlog.refresh()
    found = parse(telemetry.exposition(None)[0].decode())
    assert [value(found, f"rollout_bot_{name}") for name in DATABASE_GAUGES] == [3, 1, -3, 1]
    assert value(found, "rollout_bot_timers_dead", service="relay") == 0
    assert value(found, "rollout_bot_timers_dead", service="retired") == 2
    database.reachable = False
    telemetry.handled(kind="command", name="status", outcome="ok")
    await backlog.refresh()

    found = parse(telemetry.exposition(None)[0].decode())
    *unknown, up = [value(found, f"rollout_bot_{name}") for name in DATABASE_GAUGES]
    assert all(math.isnan(figure or 0) for figure in unknown) and up == 0, unknown
    assert math.isnan(
        value(found, "rollout_bot_rollouts_active", service="relay", state="running") or 0
    )
    assert math.isnan(value(found, "rollout_bot_timers_dead", service="retired") or 0)
    assert value(found, "rollout_bot_commands_total", subcommand="status", outcome="ok") == 1
    [line] = [r for r in caplog.records if r.name == "bot.services.telemetry"]
    assert line.levelname == "WARNING" and "connection refused" in line.getMessage()


class RetiredServiceEnds(TimersLeft):
    """`retired`, taken out of the services file, has a running rollout whose window timer
    was given up; then the rollout ends (rolled back from a replica that has the service)."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = False

    async def active(self) -> list[object]:
        return [] if self.ended else [SimpleNamespace(service="retired", phase=Phase.RUNNING)]

    async def dead_by_service(self) -> dict[str, int]:
        return {} if self.ended else {"retired": 1}


async def test_a_service_taken_out_reads_zero_once_its_rollout_ends() -> None:
    """RolloutBotTimerDeadLettered (and RolloutBotNoWebhookDeliveries) read these gauges: a
    series left at its last figure once the rollout ended would page until the restart."""
    telemetry = PrometheusTelemetry(build())
    database = RetiredServiceEnds()
    backlog = relay_backlog(telemetry, database)
    await backlog.refresh()
    found = parse(telemetry.exposition(None)[0].decode())
    assert value(found, "rollout_bot_timers_dead", service="retired") == 1
    assert value(found, "rollout_bot_rollouts_active", service="retired", state="running") == 1

    database.ended = True
    await backlog.refresh()

    found = parse(telemetry.exposition(None)[0].decode())
    assert value(found, "rollout_bot_timers_dead", service="retired") == 0
    assert value(found, "rollout_bot_rollouts_active", service="retired", state="running") == 0
    assert value(found, "rollout_bot_timers_dead", service="relay") == 0


async def test_the_timer_backlog_counts_due_and_overdue_pending_timers(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    timers = TimerStore(session_factory)
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    for key, due in (
        ("long-due", now - timedelta(minutes=10)),
        ("just-due", now - timedelta(seconds=10)),
        ("later", now + timedelta(minutes=1)),
        ("fired", now - timedelta(minutes=20)),
    ):
        await timers.schedule(key=key, kind="window", due_at=due, now=now - timedelta(hours=1))
    (fired,) = await timers.claim_due(
        now=now - timedelta(minutes=15), owner="a", lease=timedelta(minutes=1)
    )
    assert await timers.complete(timer_id=fired.id, owner="a", now=now)
    assert await timers.backlog(now=now, overdue_after=timedelta(minutes=1)) == (2, 1)
    assert await timers.backlog(now=now, overdue_after=timedelta(minutes=30)) == (2, 0)


def _commit() -> str:
    """The commit this process reports: ROLLOUT_BOT_COMMIT when the runner sets it, else HEAD."""
    return os.environ.get("ROLLOUT_BOT_COMMIT", "").strip() or _head()


def _head() -> str:
    found = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - the test runs in a checkout
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    )
    return found.stdout.strip()


def _version(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the installed command
        [str(ROLLOUT_BOT), "--version"], capture_output=True, text=True, env=dict(env), check=False
    )


def test_no_created_series_beside_the_counters_and_histograms() -> None:
    """prometheus-client would add an undocumented `*_created` series to each counter and
    histogram, in both formats."""
    telemetry = PrometheusTelemetry(build())
    telemetry.handled(kind="command", name="status", outcome="ok")
    telemetry.window_closed(lateness=timedelta(seconds=1))
    for accept in (None, "application/openmetrics-text; version=1.0.0"):
        text = telemetry.exposition(accept)[0].decode()
        assert "rollout_bot_commands_total" in text
        assert "_created" not in text, accept


def test_without_a_webhook_secret_no_delivery_is_expected() -> None:
    """The webhook is optional: without GITHUB_WEBHOOK_SECRET the gauge the alert reads is 0."""
    found = parse(PrometheusTelemetry(build()).exposition(None)[0].decode())
    assert value(found, "rollout_bot_webhook_secret_configured") == 0


def test_version_names_the_package_version_and_the_commit() -> None:
    path = os.environ.get("PATH", "")
    given = _version({"PATH": path, "ROLLOUT_BOT_COMMIT": "0a1b2c3"})
    assert (given.returncode, given.stdout) == (
        0,
        f"rollout-bot {version('rollout-bot')} (commit 0a1b2c3)\n",
    )
    checkout = _version({"PATH": path})
    assert checkout.stdout == f"rollout-bot {version('rollout-bot')} (commit {_head()})\n"
    no_git = _version({"PATH": str(ROLLOUT_BOT.parent)})
    assert no_git.stdout == f"rollout-bot {version('rollout-bot')} (commit unknown)\n"


def test_metrics_token_is_a_masked_secret_and_a_bad_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = bot_environment(
        slack_api_url="http://127.0.0.1:9/api/",
        github_api_url="http://127.0.0.1:9/",
        database_url="sqlite:///unused.db",
    )
    for name, setting in env.items():
        monkeypatch.setenv(name, setting)
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    settings = load_settings(Settings, env_file=None)
    assert ("METRICS_TOKEN", "******** (set)") in settings.describe()
    assert TOKEN in settings.secret_values()
    for bad in ("", "two words"):
        monkeypatch.setenv("METRICS_TOKEN", bad)
        with pytest.raises(ConfigError) as refused:
            load_settings(Settings, env_file=None)
        assert [p for p in refused.value.problems if p.startswith("METRICS_TOKEN")] == [
            "METRICS_TOKEN: must be printable ASCII without spaces (a bearer token); leave it "
            "unset to serve /metrics without one"
        ]


def test_a_promote_overtaken_by_a_stop_is_counted_apart_from_refusals() -> None:
    """A Promote whose approval GitHub took while another replica stopped the track was done
    (GitHub deploys the stage): not a refusal. It has its own outcome, and no reason among
    the refusals, so a refusals panel or alert does not count a deploy that happened."""
    telemetry = PrometheusTelemetry(build())
    for error in (PromotedWhileStopping("done, but rolling back"), NotAuthorized("no")):
        outcome = failure_outcome(error, telemetry)
        telemetry.handled(kind="click", name="promote", outcome=outcome)
    # `/rollout promote` that promoted one lane and not the other: done as well.
    outcome = failure_outcome(PartlyPromoted("Promoted Hosted relay to *50%*."), telemetry)
    telemetry.handled(kind="command", name="promote", outcome=outcome)
    # An Extend saved, then its window's timer not written: done, the timer still owed.
    outcome = failure_outcome(DoneButOwed("Done: extend the window."), telemetry)
    telemetry.handled(kind="click", name="extend_window", outcome=outcome)

    found = parse(telemetry.exposition(None)[0].decode())

    clicks = "rollout_bot_clicks_total"
    assert value(found, clicks, action="promote", outcome="promoted_while_stopping") == 1
    assert value(found, clicks, action="promote", outcome="refused") == 1
    commands = "rollout_bot_commands_total"
    assert value(found, commands, subcommand="promote", outcome="partly_promoted") == 1
    assert value(found, clicks, action="extend_window", outcome="done_but_owed") == 1
    refusals = {
        dict(labels)["reason"]
        for (name, labels) in found
        if name.startswith("rollout_bot_refusals")
    }
    assert refusals == {"not_authorized"}
