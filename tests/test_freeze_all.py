"""`/rollout freeze --all` and `/rollout unfreeze --all` (docs/freezes.md): every service's lane
at once, by an approver of every service, all or none, one Slack delivery, audited per service.
Three services in two channels (`test_services`): relay and billing-api share the release
channel, search has its own; BILLING_APPROVER approves billing-api only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from figures import passing_sandbox
from replicas import replica_sessions
from sandbox_views import command_body
from sqlalchemy.exc import OperationalError
from test_services import BILLING_APPROVER, SEARCH_CHANNEL, SERVICES

from bot.domain.errors import InvalidCommand
from bot.domain.freeze import LANE_FREEZE, Frozen, LaneHold
from bot.domain.freeze_all import FREEZE_ALL_TOLD_TIMER
from bot.domain.rollout import Rollout
from bot.domain.rollout_command import Freeze, Lock, Unfreeze, parse_command
from bot.services.lane_controls import tell_scheduled_later
from bot.services.records import NewAuditEvent, NewTimer
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER, SLACK_SIGNING_SECRET
from sandbox.harness import LOOK_AGAIN, Sandbox
from sandbox.signing import slack_signature_headers
from storage.audit_log import AuditLog
from storage.lane_holds import LaneHoldStore
from storage.outbox import OutboxStore
from storage.timers import TimerStore

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NAMES = ["relay", "billing-api", "search"]


def test_freeze_all_is_an_option_and_all_stays_a_service_name() -> None:
    assert parse_command("freeze --all 2h INC-9 outage") == Freeze("2h", "INC-9 outage", every=True)
    assert parse_command("freeze \N{EM DASH}all 2026-12-24 18:00 UTC holidays") == Freeze(
        "2026-12-24 18:00Z", "holidays", every=True
    )
    assert parse_command("unfreeze --all") == Unfreeze(every=True)
    assert parse_command("unfreeze") == Unfreeze()
    # `all` without dashes is not the option: it may be a service's name (or a bad end).
    assert parse_command("freeze all 2h x") == Freeze("all", "2h x")
    with pytest.raises(InvalidCommand, match="needs a reason"):
        parse_command("freeze --all 2h")
    with pytest.raises(InvalidCommand, match="needs an end"):
        parse_command("freeze --all")
    with pytest.raises(InvalidCommand):
        parse_command("unfreeze --all now")


@pytest.mark.parametrize(
    "text", ["freeze 2h --all INC-9 outage", "freeze 2026-12-24 18:00 \N{EN DASH}all holidays"]
)
def test_all_after_the_end_is_refused_never_taken_for_one_lanes_reason(text: str) -> None:
    """`--all` typed after the end would freeze the channel's one service, `--all ...` its
    reason, the other services left open."""
    with pytest.raises(InvalidCommand, match="`--all` goes right after `freeze`"):
        parse_command(text)
    assert parse_command("freeze 2h all hands") == Freeze("2h", "all hands")


@pytest.mark.parametrize("text", ["lock --all maintenance", "unlock \N{EM DASH}all done"])
def test_all_on_a_lock_is_refused_never_taken_for_its_reason(text: str) -> None:
    """Lock and unlock take one service's lane: `--all` would be their reason's first word, a
    person believing every service locked while the others stay open."""
    with pytest.raises(InvalidCommand, match="takes one service's lane"):
        parse_command(text)
    assert parse_command("lock all hands") == Lock("all hands")


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with passing_sandbox(tmp_path, rollout_services=SERVICES) as sandbox:
        yield sandbox


@pytest.fixture
async def holds(box: Sandbox) -> AsyncIterator[LaneHoldStore]:
    """Every service's lane holds in the sandbox's database."""
    async with replica_sessions(box.database_url, 1) as (sessions,):
        yield LaneHoldStore(sessions)


async def outbox_emptied(sandbox: Sandbox) -> None:
    """Wait until every message the bot wrote was delivered (or given up): its post comes a
    moment before its delivery is recorded."""
    async with replica_sessions(sandbox.database_url, 1) as (sessions,), asyncio.timeout(30):
        while await OutboxStore(sessions).pending():
            await sandbox.slack.changed(timeout=LOOK_AGAIN)


async def frozen_services(holds: LaneHoldStore) -> list[str]:
    return sorted(hold.service for hold in await holds.current() if hold.kind == LANE_FREEZE)


async def test_an_approver_of_every_service_freezes_them_all_each_audited(
    box: Sandbox, holds: LaneHoldStore
) -> None:
    said = await box.command("freeze --all 2h INC-9 payments outage")
    assert f"<@{RELEASE_MANAGER}> froze deploys of every service until" in said, said
    assert "`relay`, `billing-api`, `search`" in said and "INC-9 payments outage" in said
    assert f"Telling <#{SEARCH_CHANNEL}> too" in said  # the other channel told is named
    assert await frozen_services(holds) == sorted(NAMES)
    for name, channel in (("relay", RELEASE_CHANNEL), ("search", SEARCH_CHANNEL)):
        refused = await box.command(f"start {name} v1.4.2", channel=channel)
        assert f"Deploys are frozen by <@{RELEASE_MANAGER}>" in refused, refused
    events = [
        e for e in await box.audit.list_for_actor(RELEASE_MANAGER) if e.action == "command:freeze"
    ]
    assert sorted((e.service, e.result) for e in events) == sorted((n, "ok") for n in NAMES)
    assert all((e.detail or {}).get("all") == NAMES for e in events), events
    assert all((e.detail or {}).get("reason") == "INC-9 payments outage" for e in events)


async def test_someone_not_approving_every_service_freezes_none_told_which(
    box: Sandbox, holds: LaneHoldStore
) -> None:
    said = await box.command("freeze --all 2h INC-9 outage", user=BILLING_APPROVER)
    assert "you do not approve `relay`, `search`" in said, said
    assert "nothing was changed" in said
    assert await frozen_services(holds) == []
    assert "Preflight" in await box.command(
        "start billing-api v2.0.0 --flags-ready", user=BILLING_APPROVER
    )
    events = await box.audit.list_for_actor(BILLING_APPROVER)
    refused = [e for e in events if "freeze" in e.action]
    assert [(e.action, e.result) for e in refused] == [("command:freeze", "refused")]
    assert (refused[0].detail or {}).get("all") == NAMES


async def test_a_slack_retry_of_freeze_all_freezes_once_and_is_told_so(
    box: Sandbox, holds: LaneHoldStore
) -> None:
    """One delivery claim for the whole command: the first service's claim would make a
    second service read the command as its own retry, freezing the first service alone."""
    response_url, body = command_body(box.slack, "freeze --all 2h INC-9 outage")
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    async with aiohttp.ClientSession() as http:
        for count, extra in enumerate(({}, retry), start=1):
            headers = {**slack_signature_headers(SLACK_SIGNING_SECRET, body), **extra}
            async with http.post(f"{box.url}/slack/events", data=body, headers=headers) as answer:
                assert answer.status == 200
            await box.slack.wait_for_response(response_url, count=count)
    first, second = (str(post.body["text"]) for post in box.slack.responses(response_url))
    assert "froze deploys of every service" in first, first
    assert "retry 1" in second, second
    assert await frozen_services(holds) == sorted(NAMES)
    events = [e for e in await box.audit.list_for_actor(RELEASE_MANAGER) if "freeze" in e.action]
    assert sorted((e.service, e.result) for e in events if e.result == "ok") == sorted(
        (n, "ok") for n in NAMES
    )
    assert [e.result for e in events if e.result != "ok"] == ["duplicate"]
    await outbox_emptied(box)
    assert len(box.slack.messages(SEARCH_CHANNEL)) == 1  # the other channel is told once


async def test_unfreeze_all_lifts_every_freeze_each_audited(
    box: Sandbox, holds: LaneHoldStore
) -> None:
    refused = await box.command("unfreeze --all")
    assert "Nothing to unfreeze" in refused, refused
    await box.command("freeze search 2h reindex", channel=SEARCH_CHANNEL)
    await box.command("freeze relay 3h INC-9", channel=RELEASE_CHANNEL)
    refused = await box.command("unfreeze --all", user=BILLING_APPROVER)
    assert "you do not approve `relay`, `search`" in refused, refused
    assert await frozen_services(holds) == ["relay", "search"]

    said = await box.command("unfreeze --all", channel=SEARCH_CHANNEL)
    assert f"<@{RELEASE_MANAGER}> lifted the freeze of `relay`" in said, said
    assert "`search` (by" in said and "No `/rollout freeze` was in force for `billing-api`" in said
    assert f"Telling <#{RELEASE_CHANNEL}> too" in said  # relay's freeze was lifted
    assert await frozen_services(holds) == []
    assert "Preflight" in await box.command("start v3.0.0", channel=SEARCH_CHANNEL)
    events = [
        e for e in await box.audit.list_for_actor(RELEASE_MANAGER) if e.action == "command:unfreeze"
    ]
    assert sorted((e.service, e.result) for e in events) == [
        ("relay", "invalid_command"),  # with nothing frozen: the channel's first service's
        ("relay", "ok"),
        ("search", "ok"),
    ]
    lifted = {e.service: (e.detail or {}).get("lifted_reason") for e in events if e.result == "ok"}
    assert lifted == {"relay": "INC-9", "search": "reindex"}


async def test_every_services_hold_and_event_are_one_transaction(database_url: str) -> None:
    """An event that cannot be written for the second service: no service is frozen, and no
    event nor timer telling its threads is kept (not two services frozen and the third left
    open). Written, each service whose freeze was stored as asked has its timer."""
    async with replica_sessions(database_url, 1) as (sessions,):
        store, audit, timers = LaneHoldStore(sessions), AuditLog(sessions), TimerStore(sessions)

        def timer(asked: LaneHold, in_force: LaneHold) -> NewTimer | None:
            return tell_scheduled_later(asked) if in_force == asked else None

        async def told_later() -> list[str | None]:
            due = await timers.of_kind(kind=FREEZE_ALL_TOLD_TIMER, due_since=NOW)
            return sorted(t.service for t in due)

        until = NOW + timedelta(hours=2)
        holds = [LaneHold(LANE_FREEZE, "U1", "INC-9", NOW, until, service=n) for n in NAMES]
        written: list[str] = []

        def audited(asked: LaneHold, in_force: LaneHold) -> NewAuditEvent:
            written.append(asked.service)
            if len(written) == 2:
                raise RuntimeError("the database went away")
            return NewAuditEvent(at=NOW, actor="U1", action="command:freeze", result="ok")

        with pytest.raises(RuntimeError):
            await store.take_all(holds, audited, now=NOW, timer=timer)
        assert await store.current() == []
        assert await audit.list_for_actor("U1") == []
        assert await told_later() == []

        def fine(asked: LaneHold, in_force: LaneHold) -> NewAuditEvent:
            return NewAuditEvent(at=NOW, actor="U1", action="command:freeze", result="ok")

        longer = LaneHold(LANE_FREEZE, "U2", "holidays", NOW, until + timedelta(days=1))
        await LaneHoldStore(sessions, service="search").take(longer)
        stored = await store.take_all(holds, fine, now=NOW, timer=timer)
        assert [hold.actor for hold in stored] == ["U1", "U1", "U2"]  # never shortened
        assert len(await audit.list_for_actor("U1")) == 3
        assert await told_later() == ["billing-api", "relay"]  # search's freeze was U2's

        def lifted(removed: LaneHold) -> NewAuditEvent:
            raise RuntimeError("the database went away")

        with pytest.raises(RuntimeError):
            await store.release_all(LANE_FREEZE, NAMES, lifted, now=NOW)
        assert len(await store.current()) == 3  # nothing lifted


async def told_in_search_thread(box: Sandbox, needle: str) -> str:
    """Wait until a reply in the thread of search's preflight card says `needle`."""

    def found() -> str | None:
        cards = [m for m in box.slack.messages(SEARCH_CHANNEL) if "Preflight:" in m.rendered]
        replies = [reply.rendered for card in cards for reply in card.replies]
        return next((reply for reply in replies if needle in reply), None)

    await box.slack.wait_for(lambda: found() is not None, timeout=30)
    said = found()
    assert said is not None
    return said


async def test_each_services_scheduled_dispatch_is_told_of_freeze_all_and_its_lifting(
    box: Sandbox, holds: LaneHoldStore
) -> None:
    """As one service's freeze tells it: search's thread, in search's own channel, learns the
    freeze typed in relay's channel will hold its dispatch, and then that it was lifted."""
    started = await box.command(
        'start v3.0.0 --flags-ready --at "tomorrow 09:00"', channel=SEARCH_CHANNEL
    )
    assert "dispatch scheduled for" in started, started
    await told_in_search_thread(box, "scheduled the dispatch for")

    await box.command("freeze --all 48h INC-9 outage")
    said = await told_in_search_thread(box, "will be held then")
    assert f"Deploys are frozen by <@{RELEASE_MANAGER}>" in said and "INC-9 outage" in said

    await box.command("unfreeze --all")
    said = await told_in_search_thread(box, "lifted the freeze")
    assert f"<@{RELEASE_MANAGER}> lifted the freeze by <@{RELEASE_MANAGER}> (INC-9" in said, said
    assert await frozen_services(holds) == []


async def test_freeze_all_tells_the_threads_at_once_not_at_the_schedulers_next_look(
    tmp_path: Path,
) -> None:
    """The timer telling the threads wakes this replica's scheduler as it is written: a
    thread is told at once, not at the scheduler's next look (a poll interval, here a
    minute, after the person's answer)."""
    async with passing_sandbox(
        tmp_path, rollout_services=SERVICES, skip_windows=False, poll_interval=60
    ) as box:
        started = await box.command(
            'start v3.0.0 --flags-ready --at "tomorrow 09:00"', channel=SEARCH_CHANNEL
        )
        assert "dispatch scheduled for" in started, started
        await box.command("freeze --all 48h INC-9 outage")
        async with asyncio.timeout(10):
            await told_in_search_thread(box, "will be held then")


def thread_replies(box: Sandbox, channel: str, needle: str) -> list[str]:
    """The replies saying `needle` in the threads of the preflight cards in `channel`."""
    cards = [m for m in box.slack.messages(channel) if "Preflight:" in m.rendered]
    return [r.rendered for card in cards for r in card.replies if needle in r.rendered]


async def test_a_fault_telling_one_services_threads_leaves_every_thread_told_once(
    box: Sandbox, holds: LaneHoldStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails once as relay's scheduled dispatches are read, after every freeze was
    saved. The person is told the freezes are in force (they are); relay's thread is told once
    (retried), and search's, after relay's, once. Before, the answer was an error and search's
    thread was never told its dispatch would be held."""
    for name, channel in (("relay", RELEASE_CHANNEL), ("search", SEARCH_CHANNEL)):
        started = await box.command(
            f'start {name} v3.0.0 --flags-ready --at "tomorrow 09:00"', channel=channel
        )
        assert "dispatch scheduled for" in started, started
    relay = box.services  # the first service's
    assert relay.service.name == "relay"
    held_then, failed = relay.lane.held_then, asyncio.Event()

    async def failing_once(rollouts: Sequence[Rollout]) -> dict[str, Frozen]:
        if not failed.is_set():
            failed.set()
            raise OperationalError("SELECT lane_holds", {}, ConnectionResetError("reset"))
        return await held_then(rollouts)

    monkeypatch.setattr(relay.lane, "held_then", failing_once)
    said = await box.command("freeze --all 48h INC-9 outage")
    assert f"<@{RELEASE_MANAGER}> froze deploys of every service" in said, said
    assert await frozen_services(holds) == sorted(NAMES)
    # The threads are told by a timer written with the freezes, a moment after the answer.
    await asyncio.wait_for(failed.wait(), 30)
    await box.pass_time(timedelta(minutes=5))  # relay's telling is retried
    for channel in (RELEASE_CHANNEL, SEARCH_CHANNEL):
        await box.slack.wait_for(lambda c=channel: bool(thread_replies(box, c, "will be held")))
    await box.pass_time(timedelta(minutes=5))
    for channel in (RELEASE_CHANNEL, SEARCH_CHANNEL):
        assert len(thread_replies(box, channel, "will be held then")) == 1, channel


@pytest.mark.parametrize(
    ("text", "channel"),
    [
        ("freeze search --all 2h INC-9 outage", SEARCH_CHANNEL),
        ("freeze relay --all 2h INC-9 outage", RELEASE_CHANNEL),
        ("freeze search \N{EM DASH}all 2h INC-9 outage", SEARCH_CHANNEL),
        ("unfreeze search --all", SEARCH_CHANNEL),
    ],
)
async def test_a_service_named_with_all_is_refused_never_read_as_that_service_alone(
    box: Sandbox, holds: LaneHoldStore, text: str, channel: str
) -> None:
    """`/rollout freeze search --all ...` asks for two things: freezing `search` alone (the
    other services left open while the asker believes them frozen) is refused, and nothing is
    frozen or lifted."""
    if text.startswith("unfreeze"):
        await box.command("freeze search 2h reindex", channel=SEARCH_CHANNEL)
    before = await frozen_services(holds)
    said = await box.command(text, channel=channel)
    assert "`--all` is every service" in said, said
    assert "nothing was changed" in said, said
    assert await frozen_services(holds) == before
    events = [e for e in await box.audit.list_for_actor(RELEASE_MANAGER) if "freeze" in e.action]
    assert events[-1].result == "invalid_command", events
