"""Many services, the corners a review found: help and typos, a service named with no reason,
audited refusals, freezes said per service, the App Home's lookups, timers of a removed
service, settings said all at once, and App-mode runs of another repository. Each test's
docstring says what went wrong before."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cleared import cleared_rollout
from figures import passing_sandbox
from replicas import poll_stores
from sandbox_views import open_home
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_cli import full_env
from test_services_file import env, settings, write
from test_services_removed import BILLING, RELAY, billing_run_on_github
from test_unfollowed_runs import run_cards

from bot.adapters.slack import messages
from bot.adapters.slack.unfollowed_card import unfollowed_text
from bot.config import ConfigError, Settings, load_settings
from bot.domain.rollout import Phase
from bot.domain.unfollowed_runs import UnfollowedRun
from bot.plan_file import load_plan
from bot.services.backoff import Backoff
from bot.services.directory import EveryService
from bot.services.scheduler import Scheduler
from bot.services.unfollowed_runs import timer_key
from sandbox.clock import ManualClock
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER, SandboxService
from sandbox.github_app import APP_ID, SandboxApp
from sandbox.harness import Sandbox
from storage.db import create_engine, create_session_factory
from storage.rollout_store import RolloutStore
from storage.timers import TimerStore

SEARCH_CHANNEL = "C0SEARCH01"
OTHER_CHANNEL = "C0GENERAL1"
DIRECT_MESSAGE = "D0DIRECT01"
SERVICES = [
    SandboxService(name="relay", repository="scriptum/scriptum"),
    SandboxService(name="billing-api", repository="scriptum/billing-api"),
    SandboxService(name="search", repository="scriptum/search", release_channels=(SEARCH_CHANNEL,)),
]
NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with passing_sandbox(tmp_path, rollout_services=SERVICES) as sandbox:
        yield sandbox


# -- command parsing --------------------------------------------------------------------------


@pytest.mark.parametrize("channel", [RELEASE_CHANNEL, OTHER_CHANNEL, DIRECT_MESSAGE])
async def test_a_bare_rollout_command_is_help_wherever_it_is_typed(
    box: Sandbox, channel: str
) -> None:
    """`/rollout` with no text is help (`parse_command("")`), allowed in any channel and in a
    DM with one service. With several, the directory refuses it before the parser sees it:
    'This channel releases several services: name one, as in `/rollout start relay ...`'."""
    answer = await box.command("", channel=channel)
    assert ":warning:" not in answer, answer
    assert "Show this help" in answer, answer


async def test_the_help_of_a_bot_of_several_services_says_how_to_name_one(box: Sandbox) -> None:
    """The help still reads `/rollout start <tag>`, `/rollout status`... as for one service:
    nothing says that a channel of several needs `/rollout start <service> <tag>`."""
    answer = await box.command("help")
    assert "service" in answer.lower(), answer


async def test_an_unknown_subcommand_in_a_channel_of_several_says_it_is_unknown(
    box: Sandbox,
) -> None:
    """A typo (`/rollout stauts`) must be told it is not a subcommand, not asked to name a
    service with a `start` example."""
    answer = await box.command("stauts")
    assert "not a /rollout subcommand" in answer, answer


@pytest.mark.parametrize("text", ["kill relay", "lock relay", "unlock relay"])
async def test_a_service_named_with_no_reason_after_it_is_that_service(
    box: Sandbox, text: str
) -> None:
    """`/rollout kill relay` in search's channel, with nothing after the name, is relay's
    command, refused there (naming relay's channels); it tripped search's kill-switch (or
    locked or unlocked search's lane) with the reason `relay`."""
    assert "Preflight" in await box.command("start v3.0.0 --flags-ready", channel=SEARCH_CHANNEL)
    answer = await box.command(text, channel=SEARCH_CHANNEL)
    assert "only works in" in answer and RELEASE_CHANNEL in answer, answer
    assert "no rollout in progress" not in answer and "locked" not in answer.lower(), answer


async def test_a_freeze_naming_a_service_released_elsewhere_is_that_services_refused_there(
    box: Sandbox,
) -> None:
    """A freeze's first word is its end, never its reason's: `/rollout freeze relay 2h INC-1`
    in search's channel is relay's freeze, refused there naming relay's channels. It was read
    as search's, answered `relay is not a duration`, as if relay's freeze were mistyped."""
    answer = await box.command("freeze relay 2h INC-1 relay outage", channel=SEARCH_CHANNEL)
    assert "only works in" in answer and RELEASE_CHANNEL in answer, answer
    assert "not a duration" not in answer, answer
    status = await box.command("status", channel=SEARCH_CHANNEL)
    assert "frozen" not in status.lower(), status


async def test_the_card_of_a_service_named_default_names_it_beside_another(
    tmp_path: Path,
) -> None:
    """docs/services.md tells an existing install to name its service `default` to keep its
    history. In a channel it shares with `billing-api`, its card must say which service it
    releases, as billing-api's does; `released()` drops the name of any service called
    `default`, so its card reads `Preflight: v1.4.2`."""
    services = [
        SandboxService(name="default", repository="scriptum/scriptum"),
        SandboxService(name="billing-api", repository="scriptum/billing-api"),
    ]
    async with passing_sandbox(tmp_path, rollout_services=services) as box:
        assert "Preflight" in await box.command("start default v1.4.2 --flags-ready")
        assert "Preflight" in await box.command("start billing-api v1.4.2 --flags-ready")
        titles = [m.rendered.splitlines()[0] for m in box.slack.messages(RELEASE_CHANNEL)]
        assert any("billing-api v1.4.2" in t for t in titles), titles
        assert any("default v1.4.2" in t for t in titles), titles


async def test_the_answers_of_a_service_named_default_name_it_beside_another(
    tmp_path: Path,
) -> None:
    """As its card does, what `/rollout freeze`, `status` and `report` answer of the service
    named `default` must name it in a channel it shares with billing-api: `_named` and the
    lane answer dropped the name of any service called `default`, so "Deploys are frozen ...",
    said to everyone there, read as billing-api's too, and its status and report named none."""
    services = [
        SandboxService(name="default", repository="scriptum/scriptum"),
        SandboxService(name="billing-api", repository="scriptum/billing-api"),
    ]
    async with passing_sandbox(tmp_path, rollout_services=services) as box:
        assert "Preflight" in await box.command("start default v1.4.2 --flags-ready")
        froze = await box.command("freeze default 2h payments quarter end")
        assert "*default*" in froze, froze
        assert "Rollouts of default in 7d" in await box.command("report default 7d")
        status = await box.command("status default")
        assert "Active rollouts of default" in status, status


@pytest.mark.parametrize(
    ("text", "channel"),
    [
        ("promote", RELEASE_CHANNEL),
        ("start v1.4.2", OTHER_CHANNEL),
        ("status", RELEASE_CHANNEL),
        ("kill billing-apl checkout errors", SEARCH_CHANNEL),
        ("kill relay calls time out", SEARCH_CHANNEL),
    ],
)
async def test_a_command_of_a_bot_of_several_services_is_audited(
    box: Sandbox, text: str, channel: str
) -> None:
    """Every command is an audit event with its outcome (`command:promote`, `refused`), and
    so it is with one service. With several, a command that names no service in a channel of
    two, or comes from a channel of none, is refused by `ServiceDirectory.for_command` before
    `controls.audited` is entered, and a bare `status` in a channel of two is answered before
    it: no event is written."""
    await box.command(text, channel=channel)
    events = await box.audit.list_for_actor(RELEASE_MANAGER)
    name = f"command:{text.split()[0]}"
    assert [e.action for e in events if e.action == name] == [name], events


async def test_the_app_home_asks_slack_for_each_channels_members_once(box: Sandbox) -> None:
    """The App Home asks, service after service, whether the viewer is in its release
    channels, each service with a membership cache of its own: a channel shared by N services
    is read N times per opening (200 services sharing a channel: 200 sequential
    `conversations.members` calls, past Slack's Tier 4 limit, before the tab is drawn)."""
    await open_home(box, "U0NOBODY01")
    asked = [call.args.get("channel") for call in box.slack.calls_to("conversations.members")]
    assert sorted(asked) == sorted({RELEASE_CHANNEL, SEARCH_CHANNEL}), asked


async def test_a_first_freeze_of_a_service_is_said_to_be_in_force(box: Sandbox) -> None:
    """`/rollout freeze 2h reindex` in search's channel, nothing frozen before: the lane store
    of a service stores the hold with `service="search"` while the hold asked has the default
    service, so `in_force != asked` and everyone in the channel is told the freeze "changes
    nothing" and "ends before" a freeze that is the very same one (the audit event records it
    as a `kept_freeze` too)."""
    froze = await box.command("freeze 2h reindex", channel=SEARCH_CHANNEL)
    assert "froze deploys until" in froze, froze
    assert "changes nothing" not in froze, froze
    events = await box.audit.list_for_actor(RELEASE_MANAGER)
    (freeze,) = [e for e in events if e.action == "command:freeze"]
    assert "kept_freeze" not in (freeze.detail or {}), freeze.detail


async def test_a_freeze_and_a_lock_in_a_shared_channel_say_which_service_they_hold(
    box: Sandbox,
) -> None:
    """relay and billing-api share the channel. `/rollout freeze billing-api ...` is said to
    everyone as "Deploys are frozen by ... until ...", naming no service (relay's people read
    it as theirs), and a bare `/rollout status` draws each service's lane lines *before* its
    heading, so billing-api's freeze sits under "Active rollouts of relay" and relay's lock
    above every heading, neither naming its service."""
    assert "Preflight" in await box.command("start relay v1.4.2 --flags-ready")
    froze = await box.command("freeze billing-api 2h payments quarter end")
    assert "billing-api" in froze, froze
    await box.command("lock relay migrating")
    lines = (await box.command("status")).splitlines()
    frozen = next(line for line in lines if "frozen" in line)
    locked = next(line for line in lines if "locked" in line)
    assert "billing-api" in frozen, lines
    assert "relay" in locked, lines


async def test_a_start_overriding_a_freeze_in_a_shared_channel_says_which_service(
    box: Sandbox,
) -> None:
    """relay and billing-api share the channel. A start that overrides billing-api's freeze
    is said to everyone there, as a freeze is, but as ":warning: ... overrode the freeze for
    `v1.4.2`: ..." naming no service: relay's people read that their freeze was overridden."""
    await box.command("freeze billing-api 2h payments quarter end")
    said = await box.command('start billing-api v1.4.2 --flags-ready --override-freeze "hotfix"')
    assert "overrode the freeze" in said, said
    assert "*billing-api*" in said, said


# -- timers of a removed service --------------------------------------------------------------


async def test_a_timer_of_a_service_no_longer_configured_is_dead_lettered(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """docs/services.md: a removed service's timers 'are retried and then dead-lettered'.
    `EveryService.on_timer_dead` raises UnknownService as `on_timer` does, so the scheduler's
    `_give_up` never buries the timer: it is released and retried for ever."""
    timers = TimerStore(session_factory)
    clock = ManualClock(NOW)
    loop = no_service_scheduler(session_factory, clock, poll_interval=timedelta(hours=1))
    await timers.schedule(
        key="w", kind="window", due_at=NOW, now=NOW, payload={"track": "relay"}, service="gone"
    )
    for _ in range(8):
        await loop.fire_due()
        clock.advance(timedelta(seconds=5))
    stored = await timers.get(key="w")
    assert stored is not None
    assert stored.dead_at is not None, f"still pending after {stored.attempts} attempts"


def no_service_scheduler(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock, *, poll_interval: timedelta
) -> Scheduler:
    """The scheduler of a bot whose services file names none of the services in its database."""
    return Scheduler(
        timers=TimerStore(sessions),
        service=EveryService([], rollouts=RolloutStore(sessions, clock=clock)),
        **poll_stores(sessions),
        words=messages,
        clock=clock,
        poll_interval=poll_interval,
        rng=random.Random(7),
        owner="replica-a",
        max_attempts=2,
        backoff=Backoff(base=timedelta(seconds=1), cap=timedelta(seconds=2)),
    )


async def test_a_running_rollout_of_a_service_no_longer_configured_is_said_once_not_each_poll(
    session_factory: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    """docs/services.md: such a rollout 'is not followed, and the log names the missing
    service'. The poller read it as active each poll, its look raised UnknownService, and the
    log took an ERROR with a traceback ('following rollout ... failed; trying again next
    poll') every poll for as long as the row stayed open: an operator's error alert firing
    for ever over a service taken out on purpose."""
    clock = ManualClock(NOW)
    rollout = cleared_rollout(load_plan(None), now=NOW, rollout_id="r-00000000gone")
    gone = replace(rollout, service="billing-api", phase=Phase.RUNNING, run_id=4242)
    await RolloutStore(session_factory, clock=clock).create(rollout=gone, plan=load_plan(None))
    loop = no_service_scheduler(session_factory, clock, poll_interval=timedelta(seconds=10))
    caplog.set_level(logging.INFO)

    for _ in range(4):
        await loop.poll_runs()
        clock.advance(timedelta(minutes=1))

    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    said = [r.getMessage() for r in caplog.records if "billing-api" in r.getMessage()]
    assert len(said) == 1, said
    assert "r-00000000gone" in said[0] and "ROLLOUT_SERVICES" in said[0], said


# -- settings ---------------------------------------------------------------------------------


def test_a_bad_services_file_and_a_one_service_variable_are_said_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every problem at once: with a bad ROLLOUT_SERVICES, GITHUB_REPOSITORY (for a bot of one
    service) is not reported, because `one_service_problem` skips every check while the
    services file is invalid; the operator learns of it only after fixing the file."""
    bad = {"services": {"relay": {"repository": "x", "release_channels": [], "approvers": []}}}
    values = env(
        tmp_path,
        ROLLOUT_SERVICES=str(write(tmp_path, bad)),
        RELEASE_CHANNELS=None,
        ROLLOUT_APPROVERS=None,
    )
    with pytest.raises(ConfigError) as raised:
        settings(monkeypatch, values)
    problems = raised.value.problems
    assert any(p.startswith("ROLLOUT_SERVICES:") for p in problems), problems
    assert any(p.startswith("GITHUB_REPOSITORY:") for p in problems), problems


def test_one_installation_id_for_services_of_two_owners_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An App has one installation per owner (docs/services.md). GITHUB_APP_INSTALLATION_ID
    is still accepted with services of two owners, and `RepositoryInstallation` then uses it
    for every repository: each call for the other owner's repository fails at run time
    (GitHub's token for that installation cannot see it) instead of at start."""
    two_owners = {
        "services": {
            "relay": {
                "repository": "scriptum/scriptum",
                "release_channels": ["C0RELEASES"],
                "approvers": ["U0RELMGR01"],
            },
            "billing-api": {
                "repository": "acme/billing-api",
                "release_channels": ["C0RELEASES"],
                "approvers": ["U0RELMGR01"],
            },
        }
    }
    base = full_env(tmp_path)
    for name in ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "RELEASE_CHANNELS", "ROLLOUT_APPROVERS"):
        base.pop(name, None)
        monkeypatch.delenv(name, raising=False)
    app = {
        "ROLLOUT_SERVICES": str(write(tmp_path, two_owners, plan=False)),
        "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_APP_PRIVATE_KEY": SandboxApp().private_key,
        "GITHUB_APP_INSTALLATION_ID": "61000001",
    }
    for name, value in (base | app).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        load_settings(Settings, env_file=None)
    assert any("GITHUB_APP_INSTALLATION_ID" in p for p in refused.value.problems)


# -- runs the bot did not start (App mode) ----------------------------------------------------


async def test_the_card_of_a_run_nobody_started_names_its_service_in_a_shared_channel(
    tmp_path: Path,
) -> None:
    """relay and billing-api share the channel and the workflow's name. The card of a run
    started on GitHub in billing-api's repository said "Run N of Release, dispatched by
    @octocat ... waits at ..." and offered Adopt, naming no service: relay's approvers could
    not tell whose release they were adopting (the repository hides behind the run's link)."""
    async with passing_sandbox(
        tmp_path, rollout_services=[RELAY, BILLING], github_app=SandboxApp()
    ) as box:
        _, card = await billing_run_on_github(box)
        first = card.rendered.splitlines()[0]
        assert "`billing-api`" in first, card.rendered


def test_the_card_of_a_run_keeps_its_service_and_reads_one_written_before() -> None:
    """The card's stored form gains `service` (docs/operating.md, This upgrade): a card a
    38840bf replica wrote (no `service`) is read and drawn naming none."""
    before = {
        "run_id": 7,
        "workflow": "Release",
        "run_url": "https://github.com/o/r/actions/runs/7",
        "ref": "v2.0.0",
        "tag": "v2.0.0",
        "event": "push",
        "sender": "octocat",
        "environment": "production",
        "asked_at": NOW.isoformat(),
        "due_at": NOW.isoformat(),
    }
    old = UnfollowedRun.from_json(before)
    assert old.service == "" and "service" not in old.to_json()
    assert unfollowed_text(old, named=True).startswith("Run 7 of Release,")
    card = replace(old, service="billing-api")
    assert UnfollowedRun.from_json(card.to_json()) == card
    assert unfollowed_text(card, named=True).startswith("Run 7 of `billing-api`'s Release,")
    assert unfollowed_text(card, named=False).startswith("Run 7 of Release,")


async def test_nobody_answers_a_run_of_another_service_and_its_default_comes(
    tmp_path: Path,
) -> None:
    """A run started on GitHub in billing-api's repository gets its card; nobody answers it,
    and the default (reject) must come after UNFOLLOWED_RUN_TIMEOUT. The webhook hands the
    request as parsed (service `default`) to `UnfollowedRuns.kept`, which writes the card's
    timer for the service `default`: the scheduler finds no such service (UnknownService),
    so the run waits on GitHub and its card says "waiting" for ever."""
    services = [RELAY, BILLING]
    async with passing_sandbox(tmp_path, rollout_services=services, github_app=SandboxApp()) as box:
        run_id, _ = await billing_run_on_github(box)
        engine = create_engine(box.database_url)
        try:
            timers = TimerStore(create_session_factory(engine), service="billing-api")
            timer = await timers.get(key=timer_key(run_id))
        finally:
            await engine.dispose()
        assert timer is not None, "the card's timer is not billing-api's"
        await box.pass_time(timedelta(seconds=1805))
        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
