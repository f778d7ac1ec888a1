"""The outbox delivers what a rollout owes the channel once, in order, through Slack's faults:
the real slack_sdk client against the sandbox Slack, on SQLite and PostgreSQL, with a clock
the test moves (no sleeping through Retry-After or backoff)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.domain.plan import load_plan
from bot.domain.rollout import Check, CheckState, Preflight, Rollout, new_rollout
from bot.outbox import Outbox, card, told
from bot.rollout_store import RolloutStore
from bot.sandbox.config import SLACK_BOT_TOKEN
from bot.sandbox.slack import SlackTestServer
from handlers.notifier import SlackNotifier
from storage.outbox import NewMessage, OutboxStore

PLAN = load_plan(None)
CHANNEL = "C0RELEASES"
START = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def slack() -> AsyncIterator[SlackTestServer]:
    async with SlackTestServer(bot_token=SLACK_BOT_TOKEN) as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


def replica(
    sessions: async_sessionmaker[AsyncSession], slack: SlackTestServer, clock: Clock, owner: str
) -> Outbox:
    # No retry handler on the client: the outbox alone answers Slack's faults here.
    client = AsyncWebClient(token=SLACK_BOT_TOKEN, base_url=slack.api_url, retry_handlers=[])
    return Outbox(
        store=OutboxStore(sessions),
        rollouts=RolloutStore(sessions, clock=clock),
        notifier=SlackNotifier(client, approvers=()),
        clock=clock,
        owner=owner,
    )


async def started(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, *, lines: int
) -> Rollout:
    """A new rollout whose card and `lines` thread replies wait in the outbox."""
    rollout = new_rollout(
        rollout_id="r-00000000out1",
        tag="v1.4.2",
        channel_id=CHANNEL,
        started_by="U0MANAGER",
        plan=PLAN,
        preflight=Preflight(
            flags=Check(CheckState.PASS),
            migrations=Check(CheckState.PASS),
            image=Check(CheckState.SKIPPED),
        ),
        now=clock(),
    )
    said = [message for i in range(lines) for message in told(rollout, f"line {i}")]
    store = RolloutStore(sessions, clock=clock)
    return await store.create(rollout=rollout, plan=PLAN, outbox=[card(rollout), *said])


def thread(slack: SlackTestServer) -> list[str]:
    (parent,) = slack.messages(CHANNEL)
    return [reply.text for reply in parent.replies]


async def deliver_all(outboxes: list[Outbox], clock: Clock, store: OutboxStore) -> None:
    """Run the replicas' loops side by side, moving the clock past each wait, until done."""
    for _ in range(200):
        await asyncio.gather(*(outbox.deliver_due() for outbox in outboxes))
        if not await store.pending():
            return
        clock.advance(1.5)
    raise AssertionError("the outbox never emptied")


async def test_slack_429s_delay_messages_but_none_is_dropped_or_reordered(
    session_factory: async_sessionmaker[AsyncSession], slack: SlackTestServer, clock: Clock
) -> None:
    store = OutboxStore(session_factory)
    await started(session_factory, clock, lines=20)
    slack.inject_faults(rate=0.3, seed=11)

    await deliver_all([replica(session_factory, slack, clock, "a")], clock, store)

    assert slack.faults_injected >= 3
    assert thread(slack) == [f"line {i}" for i in range(20)]
    limited = [c for c in slack.calls if c.response.get("error") == "ratelimited"]
    assert len(limited) == slack.faults_injected


async def test_two_replicas_deliver_each_message_once_and_in_order(
    session_factory: async_sessionmaker[AsyncSession], slack: SlackTestServer, clock: Clock
) -> None:
    store = OutboxStore(session_factory)
    rollout = await started(session_factory, clock, lines=15)
    a = replica(session_factory, slack, clock, "replica-a")
    b = replica(session_factory, slack, clock, "replica-b")

    await asyncio.gather(a.flush(rollout.id), b.flush(rollout.id), a.deliver_due(), b.deliver_due())
    await deliver_all([a, b], clock, store)

    assert thread(slack) == [f"line {i}" for i in range(15)]
    assert len(slack.calls_to("chat.postMessage")) == 16  # the card and 15 replies, once each


async def test_a_network_error_is_retried_after_a_backoff_and_the_thread_keeps_its_order(
    session_factory: async_sessionmaker[AsyncSession], slack: SlackTestServer, clock: Clock
) -> None:
    store = OutboxStore(session_factory)
    rollout = await started(session_factory, clock, lines=0)
    outbox = replica(session_factory, slack, clock, "a")
    await outbox.flush(rollout.id)  # the card
    await outbox.add([*told(rollout, "promoted"), *told(rollout, "deploying")])
    slack.drop_next("chat.postMessage")

    await outbox.flush(rollout.id)

    assert thread(slack) == []  # the connection dropped: the thread waits, in order
    (first, _) = await store.pending(rollout.id)
    assert first.attempts == 1
    await outbox.deliver_due()
    assert thread(slack) == []  # still backing off
    await deliver_all([outbox], clock, store)
    assert thread(slack) == ["promoted", "deploying"]


async def test_a_message_slack_refuses_is_dead_lettered_once_and_the_rest_go_on(
    session_factory: async_sessionmaker[AsyncSession],
    slack: SlackTestServer,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = OutboxStore(session_factory)
    rollout = await started(session_factory, clock, lines=0)
    outbox = replica(session_factory, slack, clock, "a")
    await outbox.flush(rollout.id)
    await outbox.add([*told(rollout, "too long"), *told(rollout, "next")])
    slack.fail_next("chat.postMessage", error="msg_too_long")

    with caplog.at_level(logging.ERROR, logger="bot.outbox"):
        await outbox.flush(rollout.id)
        await deliver_all([outbox], clock, store)

    assert thread(slack) == ["next"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "msg_too_long" in errors[0].getMessage()


async def test_a_card_redraw_superseded_by_a_newer_one_is_skipped(
    session_factory: async_sessionmaker[AsyncSession], slack: SlackTestServer, clock: Clock
) -> None:
    store = OutboxStore(session_factory)
    rollout = await started(session_factory, clock, lines=0)
    outbox = replica(session_factory, slack, clock, "a")
    await outbox.flush(rollout.id)
    redraw = NewMessage(kind="card", channel_id=CHANNEL, rollout_id=rollout.id)
    await outbox.add([redraw, redraw, *told(rollout, "between"), redraw, redraw])

    await deliver_all([outbox], clock, store)

    assert len(slack.calls_to("chat.postMessage")) == 2  # the card, then "between"
    assert len(slack.calls_to("chat.update")) == 1  # the last redraw draws the state once
    assert thread(slack) == ["between"]


async def test_a_message_held_by_a_replica_that_died_is_delivered_after_its_lease(
    session_factory: async_sessionmaker[AsyncSession], slack: SlackTestServer, clock: Clock
) -> None:
    store = OutboxStore(session_factory)
    await started(session_factory, clock, lines=1)
    claimed = await store.claim(now=clock(), owner="died", lease=timedelta(minutes=1))
    assert [m.kind for m in claimed] == ["card"]  # the head only: the reply waits behind it
    survivor = replica(session_factory, slack, clock, "survivor")

    assert await survivor.deliver_due() == 0
    clock.advance(61)
    assert await survivor.deliver_due() == 2

    assert thread(slack) == ["line 0"]


async def test_the_first_card_post_keeps_its_ts_against_a_save_from_an_older_copy(
    session_factory: async_sessionmaker[AsyncSession], slack: SlackTestServer, clock: Clock
) -> None:
    store = RolloutStore(session_factory, clock=clock)
    read_before = await started(session_factory, clock, lines=0)
    assert read_before.message_ts is None
    await replica(session_factory, slack, clock, "a").flush(read_before.id)

    saved = await store.save(read_before)  # a copy read before the card was posted

    (card_message,) = slack.messages(CHANNEL)
    assert saved.message_ts == card_message.ts
