"""`rollout-bot doctor` against the sandbox's Slack, GitHub and Sentry, through the real
slack_sdk and PyGithub clients: every check passes on a sound install, and each misconfiguration
in turn fails its own check (and only that one) with the fix."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from cleared import cleared_rollout
from test_cli import base_env, run, run_process
from test_prometheus_answers import QueryAnswers, vector

from bot.cli.doctor import examine, first_window, manifest_scopes
from bot.config import Settings
from bot.domain.plan import RolloutPlan
from bot.plan_file import load_plan
from sandbox.config import (
    GITHUB_TOKEN,
    RELEASE_CHANNEL,
    RELEASE_MANAGER,
    SECRETS,
    SENTRY_TOKEN,
    SLACK_BOT_TOKEN,
)
from sandbox.config import bot_environment as sandbox_environment
from sandbox.github import GitHubSimulator
from sandbox.plans import SENTRY_RINGS, fast_plan
from sandbox.sentry import SentryTestServer
from sandbox.slack import SlackTestServer
from sandbox.slack_variation import SlackVariation
from storage.db import create_session_factory, engine_for_one_task
from storage.migrate import head_revision, upgrade
from storage.rollout_store import RolloutStore
from storage.timers import TimerStore

ROOT = Path(__file__).resolve().parent.parent
APPROVER_GROUP = "S0APPROVE1"
METRICS_TOKEN = "doctor-metrics-token-5b1e"


@dataclass
class Install:
    """A sound install: the servers it talks to and its environment."""

    slack: SlackTestServer
    github: GitHubSimulator
    sentry: SentryTestServer | None
    env: dict[str, str]

    def settings(self) -> Settings:
        values = {name.lower(): value for name, value in self.env.items()}
        return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def doctor_environment(
    slack: SlackTestServer, github: GitHubSimulator, tmp_path: Path, database_url: str
) -> dict[str, str]:
    """The bot's environment on these servers and database with the plan `tmp_path/plan.yml`
    and no wait between GitHub retries."""
    return sandbox_environment(
        slack_api_url=slack.api_url, github_api_url=github.api_url, database_url=database_url
    ) | {
        "ROLLOUT_PLAN": str(tmp_path / "plan.yml"),
        "GITHUB_RETRY_BACKOFF": "0",
        "METRICS_TOKEN": METRICS_TOKEN,
    }


@pytest.fixture
async def install(tmp_path: Path, sqlite_database_url: str) -> AsyncIterator[Install]:
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml"))
    plan["tracks"]["desktop"]["metrics"] = SENTRY_RINGS
    (tmp_path / "plan.yml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    async with (
        SlackTestServer(bot_token=SLACK_BOT_TOKEN) as slack,
        GitHubSimulator(token=GITHUB_TOKEN) as github,
        SentryTestServer(token=SENTRY_TOKEN) as sentry,
    ):
        slack.channel_members[RELEASE_CHANNEL] = [slack.bot_user_id, RELEASE_MANAGER]
        slack.usergroups[APPROVER_GROUP] = [RELEASE_MANAGER]
        hook = github.add_hook("https://rollout.example.com/github/webhook")
        hook.deliver(event="workflow_run", status_code=200)
        env = doctor_environment(slack, github, tmp_path, sqlite_database_url) | {
            "ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{APPROVER_GROUP}",
            **sentry.environment(),
        }
        with_traffic(sentry, load_plan(tmp_path / "plan.yml"))
        yield Install(slack=slack, github=github, sentry=sentry, env=env)


RUNNING = "v1.4.2"
"""The release `lines` asks the doctor's queries for: it runs, its ring has sessions."""


def with_traffic(sentry: SentryTestServer, plan: RolloutPlan) -> None:
    """Sessions of RUNNING in the desktop ring the doctor asks about, in this hour and the
    next (Sentry counts whole hours: the doctor's window may start in either)."""
    now = datetime.now(UTC)
    for at in (now, now + timedelta(hours=1)):
        sentry.add_sessions(
            release=f"scriptum-desktop@{RUNNING}",
            environment=first_window(plan, "desktop").key,
            count=500,
            crashed=0,
            at=at,
        )


async def lines(install: Install, service: int = 0) -> list[str]:
    """The doctor's lines for the install's `service`th service (the first by default)."""
    scopes, problem = manifest_scopes(ROOT / "manifest.yml")
    assert problem is None
    settings = install.settings()
    findings = await examine(settings, settings.services()[service], scopes=scopes, tag=RUNNING)
    return [finding.line() for finding in findings]


async def run_doctor(
    install: Install, *, own_process: bool = False, **env: str
) -> tuple[int, str, str]:
    """`rollout-bot doctor` on the install's environment (with `env` over it), in this process
    or as a process of its own."""
    environment = base_env() | install.env | env
    args = ("doctor", "--manifest", str(ROOT / "manifest.yml"))
    return await (run_process if own_process else run)(*args, env=environment, cwd=ROOT)


async def passing_checks(
    install: Install, *, own_process: bool = False
) -> tuple[list[str], str, str]:
    """The doctor on a sound install exits 0 with every check passed; returns the check lines,
    its stdout and its stderr."""
    code, out, err = await run_doctor(install, own_process=own_process)
    assert code == 0, out + err
    checks = out.split("\n\n")[0].splitlines()
    assert all(line.startswith("✓ ") for line in checks), out
    return checks, out, err


async def test_a_sound_install_passes_every_check_and_exits_0(
    install: Install, tmp_path: Path
) -> None:
    checks, out, err = await passing_checks(install, own_process=True)
    text = "\n".join(checks)
    for expected in (
        "Slack token valid",
        "Slack scopes cover the manifest's 9",
        f"bot is a member of release channel {RELEASE_CHANNEL}",
        f"approver group {APPROVER_GROUP} has 1 members",
        f"database {install.env['DATABASE_URL']} answers, its migrations at {head_revision()}",
        "GitHub reaches scriptum/scriptum as release-bot",
        "workflow deployment-strategy.yml at main takes the plan's",
        "environment relay-canary-5 waits for release-bot",
        "environment desktop-kill-switch waits for release-bot",
        "webhook https://rollout.example.com/github/webhook: the last 1 deliveries succeeded",
        "metrics of the desktop track (sentry) answer their queries",
        "metrics of the relay track (static): no queries",
        "GET /metrics wants a bearer token (METRICS_TOKEN)",
    ):
        assert expected in text, expected
    assert out.endswith(f"{len(checks)} checks, 0 failed\n")
    assert not any(secret in out + err for secret in (*SECRETS, METRICS_TOKEN))


async def test_an_open_metrics_endpoint_is_a_warning_that_says_what_it_shows_and_the_fix(
    install: Install,
) -> None:
    """Without METRICS_TOKEN, `/metrics` answers anyone who reaches the port: not a failure
    (a proxy may keep it private), but the doctor says what it gives away and what to do."""
    environment = base_env() | {k: v for k, v in install.env.items() if k != "METRICS_TOKEN"}
    code, out, _ = await run(
        "doctor", "--manifest", str(ROOT / "manifest.yml"), env=environment, cwd=ROOT
    )
    assert code == 0, out
    checks = out.split("\n\n")[0].splitlines()
    (warning,) = [line for line in checks if not line.startswith("✓ ")]
    assert warning.startswith(
        "⚠ GET /metrics is served without authentication (METRICS_TOKEN is unset): whoever "
        f"reaches port {install.env['PORT']} reads the bot's series (its version and commit"
    )
    assert "Set METRICS_TOKEN, and the same token in Prometheus's scrape job" in warning
    assert "as ops/haproxy.cfg does (it forwards /slack/events, /github/webhook" in warning
    assert out.endswith(f"{len(checks)} checks, 0 failed, 1 warning\n")


@pytest.mark.parametrize(
    ("ahead", "line"),
    [
        (
            timedelta(0),
            r"✓ Prometheus at http://127\.0\.0\.1:\d+: its clock and the bot's are 0s "
            r"apart \(at most 5s\)",
        ),
        (
            -timedelta(minutes=2),
            r"⚠ Prometheus at http://127\.0\.0\.1:\d+: its clock is 120s behind the bot's "
            r"\(more than 5s apart\): a window's last 120s are not in its figures yet, so every "
            r"gate reading it says INCONCLUSIVE: sync both hosts' clocks with NTP",
        ),
        (
            timedelta(minutes=2),
            r"⚠ Prometheus at http://127\.0\.0\.1:\d+: its clock is 120s ahead of the bot's "
            r"\(more than 5s apart\): the figures it gives for a window are those of 120s "
            r"before it, so every gate reading it says INCONCLUSIVE: sync both hosts' clocks "
            r"with NTP",
        ),
    ],
    ids=["in step", "two minutes behind", "two minutes ahead"],
)
async def test_the_skew_between_the_bot_s_clock_and_prometheus_s_is_a_line(
    install: Install, ahead: timedelta, line: str
) -> None:
    """With PROMETHEUS_URL set, the doctor asks Prometheus's clock (`time()` at its own now):
    within 5s of the bot's it passes; beyond, either way, every gate reading it says
    INCONCLUSIVE, so a warning with the fix (NTP)."""

    def prometheus_clock() -> datetime:
        return datetime.now(UTC) + ahead

    async with QueryAnswers(vector("0"), clock=prometheus_clock) as prometheus:
        code, out, err = await run_doctor(
            install, PROMETHEUS_URL=prometheus.url.replace("//", "//reader:s3cret@")
        )
    assert code == 0, out + err
    (clock,) = [check for check in out.splitlines() if "Prometheus at" in check]
    assert re.fullmatch(line, clock), clock
    assert "s3cret" not in out + err


async def test_queries_a_running_release_answers_no_data_for_are_a_warning(
    install: Install,
) -> None:
    """Queries that answer no data for a release that runs (a misspelt metric, label or
    environment: here the ring has no sessions) were ✓ "answer their queries", and went
    unnoticed until the first gate said INCONCLUSIVE: a ⚠ now, naming each figure (the doctor
    still exits 0: a release with no traffic yet answers so too). With the default tag, which
    no release has, no data is all the queries can answer, and they pass as before."""
    assert install.sentry is not None
    install.sentry.batches.clear()
    (metrics,) = [line for line in await lines(install) if "desktop track" in line]
    assert metrics.startswith(
        "⚠ metrics of the desktop track (sentry) answer no data: crash_rate value: no data: "
    ), metrics
    assert "check the metric names, labels and environment" in metrics
    code, out, err = await run_doctor(install)
    assert code == 0, out + err
    assert "✓ metrics of the desktop track (sentry) answer their queries" in out


Breakage = Callable[[Install], object]
AnyInstall = TypeVar("AnyInstall", bound=Install)


async def fails_alone_with_the_fix(
    install: AnyInstall, breakage: Callable[[AnyInstall], object], failure: str, fix: str
) -> None:
    """Every check passes on the sound install; after `breakage` (which may be awaitable),
    exactly one fails, starting with `failure` and naming `fix`."""
    assert all(line.startswith("✓") for line in await lines(install))
    broken = breakage(install)
    if hasattr(broken, "__await__"):
        await broken
    found = await lines(install)
    failed = [line for line in found if line.startswith("✗")]
    assert len(failed) == 1, found
    assert failed[0].startswith(failure), failed[0]
    assert fix in failed[0]


async def stop_sentry(install: Install) -> None:
    assert install.sentry is not None
    await install.sentry.stop()


@pytest.mark.parametrize(
    ("behind", "line"),
    [
        (
            timedelta(0),
            r"✓ GitHub at http://127\.0\.0\.1:\d+: its clock and the bot's are [01]s apart "
            r"\(at most 5s\)$",
        ),
        (
            timedelta(hours=1),
            r"⚠ GitHub at http://127\.0\.0\.1:\d+: its clock is 36\d\ds behind the "
            r"bot's \(more than 5s apart\): a stage's window starts at GitHub's time for its "
            r"job only between the bot's approval and the bot's now, else when the bot saw the "
            r"job complete",
        ),
    ],
    ids=["in step", "an hour behind"],
)
async def test_github_s_clock_against_the_bot_s_is_a_line(
    install: Install, behind: timedelta, line: str
) -> None:
    """GitHub's answers carry its clock (`Date`): within 5s of the bot's it passes; an hour
    behind (a GitHub Enterprise Server off its time source) is a warning that says what the
    bot does about it and the fix."""
    install.github.clock = lambda: datetime.now(UTC) - behind

    found = [text for text in await lines(install) if "GitHub at " in text and "clock" in text]

    assert len(found) == 1, found
    assert re.match(line, found[0]), found[0]


async def test_github_s_answers_without_a_date_are_a_warning_not_silence(install: Install) -> None:
    """A proxy in front of GitHub Enterprise Server that drops `Date`: GitHub answers, but
    its clock cannot be read. The doctor says so instead of leaving the check out."""
    install.github.dated = False

    found = [text for text in await lines(install) if "GitHub at " in text and "clock" in text]

    assert len(found) == 1, found
    assert re.match(
        r"⚠ GitHub at http://127\.0\.0\.1:\d+: its clock could not be compared with the "
        r"bot's: its answer to a repository read carries no readable Date header",
        found[0],
    ), found[0]


@pytest.mark.parametrize(
    ("breakage", "failure", "fix"),
    [
        pytest.param(
            lambda i: setattr(
                i.slack, "scopes", tuple(s for s in i.slack.scopes if s != "files:write")
            ),
            "✗ Slack scopes lack files:write",
            "reinstall the app",
            id="a scope removed",
        ),
        pytest.param(
            lambda i: i.slack.channel_members[RELEASE_CHANNEL].remove(i.slack.bot_user_id),
            f"✗ bot is not a member of release channel {RELEASE_CHANNEL}",
            "/invite @rollout-bot",
            id="not in the channel",
        ),
        pytest.param(
            lambda i: i.slack.channel_members.pop(RELEASE_CHANNEL),
            f"✗ release channel {RELEASE_CHANNEL}: conversations.members {RELEASE_CHANNEL}: "
            "channel_not_found",
            "check its ID in RELEASE_CHANNELS",
            id="a release channel Slack does not show the bot",
        ),
        pytest.param(
            lambda i: i.slack.usergroups.pop(APPROVER_GROUP),
            f"✗ approver group {APPROVER_GROUP}",
            "check ROLLOUT_APPROVERS",
            id="an unknown user group",
        ),
        pytest.param(
            lambda i: i.slack.usergroups.__setitem__(APPROVER_GROUP, []),
            f"✗ approver group {APPROVER_GROUP} has no members",
            "add the approvers to the user group",
            id="an empty approver group",
        ),
        pytest.param(
            lambda i: i.github.engine.self_review_prevented.add("relay-rollout-50"),
            "✗ environment relay-rollout-50 prevents self-review",
            "untick Prevent self-review",
            id="an environment that prevents self-review",
        ),
        pytest.param(
            lambda i: i.github.engine.protected.discard("relay-rollout-50"),
            "✗ environment relay-rollout-50 does not hold the bot",
            "add release-bot to its required reviewers",
            id="no reviewer on an environment",
        ),
        pytest.param(
            lambda i: i.github.engine.environments.pop("desktop-beta"),
            "✗ environment desktop-beta does not exist",
            "create it",
            id="an environment missing",
        ),
        pytest.param(
            lambda i: i.github.remove_workflow("deployment-strategy.yml"),
            "✗ workflow deployment-strategy.yml at main not found",
            "push .github/workflows/deployment-strategy.yml",
            id="the workflow removed",
        ),
        pytest.param(
            lambda i: i.github.hooks.clear(),
            "✗ no repository webhook posts to …/github/webhook",
            "Settings → Webhooks",
            id="no webhook",
        ),
        pytest.param(
            lambda i: setattr(i.github.hooks[0], "events", ("push", "workflow_run")),
            "✗ webhook https://rollout.example.com/github/webhook is not subscribed to "
            "deployment, deployment_review, deployment_status, workflow_job",
            "Let me select individual events",
            id="a webhook without the bot's events",
        ),
        pytest.param(
            lambda i: i.github.hooks[0].deliver(
                event="workflow_job", status_code=502, status="failed to connect"
            ),
            "✗ webhook https://rollout.example.com/github/webhook: 1 of the last 2 deliveries "
            "failed (latest: 502 failed to connect, workflow_job, ",
            "GITHUB_WEBHOOK_SECRET",
            id="a failed delivery",
        ),
        pytest.param(
            stop_sentry,
            "✗ metrics of the desktop track (sentry): crash_rate",
            "SENTRY_*",
            id="a dead metrics source",
        ),
    ],
)
async def test_each_misconfiguration_fails_its_own_check_with_the_fix(
    install: Install, breakage: Breakage, failure: str, fix: str
) -> None:
    await fails_alone_with_the_fix(install, breakage, failure, fix)


async def test_a_reviewer_team_that_includes_the_bot_holds_the_environment(
    install: Install,
) -> None:
    """A required reviewer may be a team: a member of it may approve (GitHub's REST docs,
    "Get team membership for a user", tells whether the bot's account is one)."""
    install.github.reviewer_teams["relay-rollout-50"] = "release-engineers"
    install.github.teams["scriptum/release-engineers"] = {"octocat", "release-bot"}

    found = await lines(install)

    assert all(line.startswith("✓") for line in found), found
    assert (
        "✓ environment relay-rollout-50 waits for release-bot (a member of its reviewer team "
        "release-engineers)"
    ) in found
    memberships = [r for r in install.github.requests if "/memberships/" in r.path]
    assert [(r.path, r.status) for r in memberships] == [
        ("/orgs/scriptum/teams/release-engineers/memberships/release-bot", 200)
    ]


async def test_a_reviewer_team_without_the_bot_does_not_hold_the_environment(
    install: Install,
) -> None:
    def breakage(install: Install) -> None:
        install.github.reviewer_teams["relay-rollout-50"] = "release-engineers"
        install.github.teams["scriptum/release-engineers"] = {"octocat"}

    await fails_alone_with_the_fix(
        install,
        breakage,
        "✗ environment relay-rollout-50 does not hold the bot",
        "or to a team that is one",
    )


async def test_of_several_webhooks_to_the_bot_one_that_is_right_passes_and_says_which(
    install: Install,
) -> None:
    """A stale webhook to the bot's path (an old host, its events unticked) beside the right
    one: the install is sound, and the line says which is right and what the other lacks."""
    stale = install.github.add_hook("https://old.example.com/github/webhook")
    stale.events = ("push",)
    right = install.github.hooks[0]
    install.github.hooks.reverse()  # the stale one listed first

    found = await lines(install)

    webhook = [line for line in found if "webhook" in line]
    assert webhook == [
        f"✓ webhook {right.url} (id {right.id}): the last 1 deliveries succeeded (besides it: "
        f"webhook {stale.url} (id {stale.id}) is not subscribed to deployment, "
        "deployment_review, deployment_status, workflow_job, workflow_run)"
    ]

    right.deliver(event="workflow_job", status_code=502, status="failed to connect")
    failed = [line for line in await lines(install) if line.startswith("✗")]
    assert len(failed) == 2, failed  # neither is right: each says what to fix
    assert failed[0].startswith(f"✗ webhook {stale.url} (id {stale.id}) is not subscribed")
    assert failed[1].startswith(
        f"✗ webhook {right.url} (id {right.id}): 1 of the last 2 deliveries failed"
    )


async def test_a_failed_delivery_redelivered_with_success_passes(install: Install) -> None:
    """GitHub records a redelivery as another attempt with the delivery's guid."""
    hook = install.github.hooks[0]
    failed = hook.deliver(event="workflow_job", status_code=502, status="failed to connect")
    redelivered = hook.deliver(event="workflow_job", status_code=200)
    hook.deliveries[-1] = replace(redelivered, guid=failed.guid)
    assert (
        "✓ webhook https://rollout.example.com/github/webhook: the last 3 deliveries succeeded"
        in await lines(install)
    )


async def test_a_refused_token_is_one_failure_and_the_doctor_exits_1(install: Install) -> None:
    code, out, _ = await run_doctor(install, SLACK_BOT_TOKEN="xoxb-revoked-0000")
    assert code == 1
    assert "✗ Slack token: auth.test answered invalid_auth: check SLACK_BOT_TOKEN" in out
    assert "xoxb-revoked-0000" not in out
    # The GitHub side is still checked.
    assert "✓ GitHub reaches scriptum/scriptum as release-bot" in out


async def test_without_a_manifest_no_scope_check_claims_to_pass(install: Install) -> None:
    settings = install.settings()
    findings = await examine(settings, settings.services()[0], scopes=frozenset(), tag="v1.4.2")
    assert not any("scopes" in finding.line() for finding in findings)


def test_a_missing_manifest_is_a_failed_check_that_names_the_option(tmp_path: Path) -> None:
    scopes, problem = manifest_scopes(tmp_path / "manifest.yml")
    assert scopes == frozenset()
    assert problem is not None
    assert problem.line() == (
        f"✗ Slack app manifest {tmp_path / 'manifest.yml'} unreadable (FileNotFoundError): "
        "pass the bot's manifest.yml with --manifest"
    )


async def test_a_missing_sqlite_database_is_said_missing_and_not_created(
    install: Install, tmp_path: Path
) -> None:
    """`serve` would refuse to start: the doctor says so (and does not create the file)."""
    missing_file = tmp_path / "elsewhere" / "rollout-bot.db"
    missing_file.parent.mkdir()
    url = f"sqlite+aiosqlite:///{missing_file}"
    code, out, _ = await run_doctor(install, DATABASE_URL=url)
    assert code == 1
    (line,) = [line for line in out.splitlines() if line.startswith("✗")]
    assert line == (
        f"✗ database {url} does not exist: run `rollout-bot migrate` (it creates it), "
        "or point DATABASE_URL at the bot's database"
    )
    assert not missing_file.exists()


async def test_a_database_behind_this_version_fails_with_the_migrate_fix(
    install: Install, empty_database_url: str
) -> None:
    await upgrade(empty_database_url, revision="0001")
    code, out, _ = await run_doctor(install, DATABASE_URL=empty_database_url)
    assert code == 1
    (line,) = [line for line in out.splitlines() if line.startswith("✗")]
    assert "`rollout-bot serve` would refuse it: the database is at migration 0001" in line
    assert line.endswith("run `rollout-bot migrate`")


@pytest.mark.postgres
async def test_a_database_that_takes_no_writes_fails_and_serve_refuses_it(
    install: Install, empty_postgres_database_url: str
) -> None:
    """A read replica (a hot standby, a cluster's reader endpoint) or a database set
    `default_transaction_read_only`: it answers, its migrations read at head, and every write
    of the bot fails. The doctor said ✓ and `serve` started on it."""
    url = empty_postgres_database_url
    await upgrade(url)
    async with engine_for_one_task(url) as engine, engine.begin() as connection:
        name = connection.engine.url.database
        await connection.exec_driver_sql(
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
        )
    said = (
        "the database takes no writes (transaction_read_only is on: a read replica, or "
        "default_transaction_read_only set on the database or its role): point DATABASE_URL "
        "at the primary"
    )
    code, out, _ = await run_doctor(install, DATABASE_URL=url)
    assert code == 1
    (line,) = [line for line in out.splitlines() if line.startswith("✗")]
    assert line.endswith(f"`rollout-bot serve` would refuse it: {said}"), line
    code, _, err = await run(
        "serve", env=base_env() | install.env | {"DATABASE_URL": url}, cwd=ROOT
    )
    assert code == 2
    assert err == f"rollout-bot: {said}\n"


async def dead_window_timer(database_url: str, *, service: str, kind: str = "window") -> str:
    """A rollout of `service`, not ended, whose canary's window timer (or another of `kind`,
    with a window timer's payload) was given up (dead after its last attempt); its id."""
    now = datetime.now(UTC)
    plan = load_plan(None)
    rollout = replace(
        cleared_rollout(plan, now=now, rollout_id="r-00000000dead", channel_id=RELEASE_CHANNEL),
        service=service,
    )
    async with engine_for_one_task(database_url) as engine:
        sessions = create_session_factory(engine)
        await RolloutStore(sessions, clock=lambda: now).create(rollout=rollout, plan=plan)
        timers = TimerStore(sessions)
        await timers.schedule(
            key=f"{kind}:r-00000000dead:relay:canary",
            kind=kind,
            due_at=now,
            now=now,
            rollout_id=rollout.id,
            payload={"track": "relay", "stage": "canary", "window_ends_at": now.isoformat()},
            service=service,
        )
        (timer,) = await timers.claim_due(now=now, owner="a", lease=timedelta(minutes=1))
        await timers.bury(timer_id=timer.id, owner="a", now=now, error="UnknownService: no")
    return rollout.id


@pytest.mark.parametrize(
    ("service", "says"),
    [
        ("default", "then Re-evaluate, Extend, Promote or Roll back from its card"),
        ("billing-api", "put `billing-api` back in the services file (ROLLOUT_SERVICES)"),
    ],
)
async def test_a_timer_given_up_is_a_warning_that_says_how_to_clear_its_alert(
    install: Install, sqlite_database_url: str, service: str, says: str
) -> None:
    """RolloutBotTimerDeadLettered pages until the rollout ends; of a service taken out of the
    services file, for ever (nobody follows its rollout): the doctor names the timer, its
    rollout and service, and what clears it."""
    rollout_id = await dead_window_timer(sqlite_database_url, service=service)

    code, out, _ = await run_doctor(install)

    (line,) = [line for line in out.splitlines() if "was given up" in line]
    assert line.startswith(f"⚠ the window timer of canary (relay) of rollout {rollout_id} ")
    assert f"(service `{service}`)" in line and says in line
    assert code == 0  # a warning: the install itself is sound


async def test_slack_answers_in_another_shape_are_read_the_same(install: Install) -> None:
    """Slack's variation mode (`sandbox/slack_variation.py`): each method's first call is
    answered 429 with `Retry-After` ("Rate limits": wait, then call again), the others carry
    warnings and fields the doctor never asked for. Every check still passes: the doctor
    waits out a rate limit as the bot does, instead of failing the token or a channel."""
    install.slack.variation = SlackVariation()
    checks, _, _ = await passing_checks(install)
    assert any("Slack token valid" in line for line in checks)
    limited = [c for c in install.slack.calls if c.response.get("error") == "ratelimited"]
    assert {c.method for c in limited} >= {"auth.test", "conversations.members"}


async def test_an_early_gate_given_up_says_it_held_nothing(
    install: Install, sqlite_database_url: str
) -> None:
    """A Re-evaluate's failing verdict's early gate given up holds no stage: the doctor says so,
    and what still gates the stage (not "its stage holds for a person")."""
    rollout_id = await dead_window_timer(sqlite_database_url, service="default", kind="early_gate")

    code, out, _ = await run_doctor(install)

    (line,) = [line for line in out.splitlines() if "was given up" in line]
    assert line.startswith(f"⚠ the early_gate timer of canary (relay) of rollout {rollout_id} ")
    assert "it held nothing" in line and "holds for a person" not in line, line
    assert code == 0
