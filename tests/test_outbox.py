"""The outbox delivers what a rollout owes the channel once, in order, through Slack's faults:
the real slack_sdk client against the sandbox Slack, on SQLite and PostgreSQL, with a clock
the test moves (no sleeping through Retry-After or backoff)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cleared import cleared_rollout
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_observability import parse, value

from bot.adapters.slack.limits import MESSAGE_TEXT
from bot.adapters.slack.notifier import SlackNotifier
from bot.adapters.telemetry import PrometheusTelemetry
from bot.domain.plan import Notifications, RolloutPlan
from bot.domain.rollout import (
    DispatchUnclear,
    Rollout,
)
from bot.plan_file import load_plan
from bot.services.outbox import Outbox
from bot.services.outbox_messages import card, figures_request, told
from bot.services.ports import BeforePost
from bot.services.records import NewMessage, OutboxMessage
from bot.services.telemetry import UNTRACKED, Telemetry
from bot.version import build
from sandbox.clock import ManualClock
from sandbox.config import SLACK_BOT_TOKEN
from sandbox.harness import CHARTS
from sandbox.slack import SlackCall, SlackTestServer
from sandbox.slack_variation import SlackVariation
from storage.audit_log import AuditLog
from storage.outbox import OutboxStore
from storage.rollout_store import RolloutStore

PLAN = load_plan(None)
CHANNEL = "C0RELEASES"
FAILURES = "C0FAILURES"
LEASE = timedelta(minutes=1)
REQUEST_TIMEOUT = timedelta(seconds=10)


@pytest.fixture
async def slack() -> AsyncIterator[SlackTestServer]:
    async with SlackTestServer(bot_token=SLACK_BOT_TOKEN) as server:
        yield server


@dataclass(frozen=True)
class Scene:
    """An outbox test's world: the database, the sandbox Slack, and a manual clock set to the
    wall clock (the sandbox Slack stamps messages with it) that the test moves."""

    sessions: async_sessionmaker[AsyncSession]
    slack: SlackTestServer
    clock: ManualClock

    @property
    def store(self) -> OutboxStore:
        return OutboxStore(self.sessions)

    def replica(
        self,
        owner: str,
        notifier: type[SlackNotifier] = SlackNotifier,
        store: OutboxStore | None = None,
        lease: timedelta = LEASE,
        request_timeout: timedelta | None = None,
        rollouts: RolloutStore | None = None,
        telemetry: Telemetry = UNTRACKED,
        audit: AuditLog | None = None,
    ) -> Outbox:
        # No retry handler on the client: the outbox alone answers Slack's faults here.
        client = AsyncWebClient(
            token=SLACK_BOT_TOKEN, base_url=self.slack.api_url, retry_handlers=[]
        )
        return Outbox(
            store=store or self.store,
            rollouts=rollouts or RolloutStore(self.sessions, clock=self.clock),
            audit=audit or AuditLog(self.sessions),
            notifier=notifier(client, approvers={}, charts=CHARTS),
            clock=self.clock,
            owner=owner,
            request_timeout=request_timeout or REQUEST_TIMEOUT * (lease / LEASE),
            lease=lease,
            telemetry=telemetry,
        )

    async def started(self, *, lines: int) -> Rollout:
        """A new rollout whose card and `lines` thread replies wait in the outbox."""
        rollout = cleared_rollout(
            PLAN, now=self.clock(), rollout_id="r-00000000out1", channel_id=CHANNEL
        )
        lines_said = [message for i in range(lines) for message in said(rollout, f"line {i}")]
        store = RolloutStore(self.sessions, clock=self.clock)
        return await store.create(rollout=rollout, plan=PLAN, outbox=[card(rollout), *lines_said])

    async def card_posted(self, *waiting: str) -> tuple[Rollout, Outbox]:
        """A new rollout whose card replica "a" posted, with the thread lines `waiting` in the
        outbox after it."""
        rollout = await self.started(lines=0)
        outbox = self.replica("a")
        await outbox.flush(rollout.id)
        await outbox.add([message for line in waiting for message in said(rollout, line)])
        return rollout, outbox

    def thread(self) -> list[str]:
        (parent,) = self.slack.messages(CHANNEL)
        return [reply.text.removeprefix(":warning: ") for reply in parent.replies]

    async def deliver_all(self, outboxes: list[Outbox]) -> None:
        """Run the replicas' loops side by side, moving the clock past each wait, until done."""
        for _ in range(200):
            await asyncio.gather(*(outbox.deliver_due() for outbox in outboxes))
            if not await self.store.pending():
                return
            self.clock.advance(timedelta(seconds=1.5))
        raise AssertionError("the outbox never emptied")


@pytest.fixture
def scene(session_factory: async_sessionmaker[AsyncSession], slack: SlackTestServer) -> Scene:
    return Scene(session_factory, slack, ManualClock(datetime.now(UTC)))


def said(rollout: Rollout, line: str) -> list[NewMessage]:
    """A thread reply telling of an event the Slack messages word as `:warning: <line>`."""
    return told(rollout, DispatchUnclear(line))


async def test_slack_429s_delay_messages_but_none_is_dropped_or_reordered(scene: Scene) -> None:
    await scene.started(lines=20)
    scene.slack.inject_faults(rate=0.3, seed=11)

    await scene.deliver_all([scene.replica("a")])

    assert scene.slack.faults_injected >= 3
    assert scene.thread() == [f"line {i}" for i in range(20)]
    limited = [c for c in scene.slack.calls if c.response.get("error") == "ratelimited"]
    assert len(limited) == scene.slack.faults_injected


@pytest.mark.parametrize("code", ["ratelimited", "rate_limited"])
async def test_a_rate_limit_answered_200_is_waited_out_not_given_up(
    scene: Scene, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    # chat.postMessage documents both: `ratelimited`, and `rate_limited` ("Application has
    # posted too many messages"), answered ok:false with HTTP 200 and no Retry-After.
    telemetry = PrometheusTelemetry(build())
    rollout = await scene.started(lines=0)
    outbox = scene.replica("a", telemetry=telemetry)
    await outbox.flush(rollout.id)
    await outbox.add(said(rollout, "promoted"))
    scene.slack.fail_next("chat.postMessage", error=code, status=200)

    with caplog.at_level(logging.WARNING, logger="bot.services.outbox"):
        await outbox.flush(rollout.id)
        assert scene.thread() == []
        (waiting,) = await scene.store.pending(rollout.id)
        assert waiting.attempts == 0  # a rate limit counts no attempt
        await scene.deliver_all([outbox])

    assert scene.thread() == ["promoted"]
    assert given_up(telemetry) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_failure_is_told_in_the_failure_channel_when_the_card_never_reached_its_own(
    scene: Scene,
) -> None:
    # The bot is not in the release channel (or it was archived): Slack refused the card, and
    # the failure channel is the one place left to hear of the rollout's failure.
    scene.slack.shut_out[CHANNEL] = "not_in_channel"
    rollout = await scene.started(lines=0)
    outbox = scene.replica("a")
    await outbox.flush(rollout.id)
    failures = Notifications(failure_channel=FAILURES)
    await outbox.add(
        told(rollout, DispatchUnclear("rolled back"), notifications=failures, failure=True)
    )

    await outbox.flush(rollout.id)
    await scene.deliver_all([outbox])

    assert scene.slack.messages(CHANNEL) == []
    (posted,) = scene.slack.messages(FAILURES)
    assert "rolled back" in posted.text
    assert f"<#{CHANNEL}>" in posted.text


TOLD_HERE = PLAN.model_copy(
    update={"notifications": PLAN.notifications.model_copy(update={"failure_channel": FAILURES})}
)
"""The default plan, its failures told in FAILURES too."""


async def refused_rollout(scene: Scene, n: int, *lines: str) -> Rollout:
    """Rollout `n` (of `v1.<n>.0`, a plan telling failures in FAILURES), its card and `lines`
    waiting in the outbox, then its "Enter figures" prompt."""
    rollout = cleared_rollout(
        TOLD_HERE, now=scene.clock(), rollout_id=f"r-0000000ref{n}", channel_id=CHANNEL
    )
    rollout = replace(rollout, tag=f"v1.{n}.0", service=f"service-{n}")
    told_lines = [message for line in lines for message in said(rollout, line)]
    waiting = [card(rollout), *told_lines, figures_request(rollout, track="relay", stage="canary")]
    store = RolloutStore(scene.sessions, clock=scene.clock)
    return await store.create(rollout=rollout, plan=TOLD_HERE, outbox=waiting)


@pytest.mark.parametrize(
    ("refusal", "fix"),
    [
        ("not_in_channel", "/invite"),
        ("is_archived", "Unarchive"),
        ("no_permission", "/invite"),
        ("restricted_action", "let the bot post"),
        ("restricted_action_read_only_channel", "read-only"),
        ("ekm_access_denied", "restore access"),
    ],
)
async def test_a_release_channel_refusing_the_bot_is_told_once_in_the_failure_channel(
    scene: Scene, refusal: str, fix: str
) -> None:
    """Passes, promotions and "Enter figures" prompts were given up with a log line only:
    nobody heard that the bot cannot post in the release channel. Two replicas give up two
    rollouts' messages at once: one notice, naming the channel, the fix, what was lost."""
    scene.slack.shut_out[CHANNEL] = refusal
    await refused_rollout(scene, 1, "promoted")
    await refused_rollout(scene, 2)

    await scene.deliver_all([scene.replica("a"), scene.replica("b")])

    assert scene.slack.messages(CHANNEL) == []
    (notice,) = scene.slack.messages(FAILURES)
    assert f"<#{CHANNEL}>" in notice.text and f"`{refusal}`" in notice.text
    assert fix in notice.text
    assert "the card" in notice.text
    # Once all is given up, the notice drawn again lists every message not delivered.
    undelivered = await scene.store.refused(CHANNEL, after=0)
    assert len(undelivered) == 5


async def test_a_channel_that_refuses_the_bot_again_after_it_was_back_is_told_again(
    scene: Scene,
) -> None:
    scene.slack.shut_out[CHANNEL] = "not_in_channel"
    first = await refused_rollout(scene, 1)
    outbox = scene.replica("a")
    await scene.deliver_all([outbox])
    del scene.slack.shut_out[CHANNEL]  # invited: the next message is posted
    await outbox.add(said(first, "promoted"))
    await scene.deliver_all([outbox])
    scene.slack.shut_out[CHANNEL] = "is_archived"
    await outbox.add(said(first, "rolled back"))

    await scene.deliver_all([outbox])

    notices = scene.slack.messages(FAILURES)
    assert [("not_in_channel" in n.text, "is_archived" in n.text) for n in notices] == [
        (True, False),
        (False, True),
    ]
    assert "`v1.1.0`: a thread line" in notices[1].text


async def test_a_refusal_notice_whose_answer_was_lost_is_not_posted_twice(scene: Scene) -> None:
    scene.slack.shut_out[CHANNEL] = "not_in_channel"
    rollout = await refused_rollout(scene, 1)
    outbox = scene.replica("a")
    for _ in range(2):
        await outbox.flush(rollout.id)  # the card, then the prompt, given up
    assert scene.slack.messages(FAILURES) == []  # the notice waits for the loop
    scene.slack.lose_next_answer("chat.postMessage")  # Slack posts it; the answer never arrives

    await scene.deliver_all([outbox])

    (notice,) = scene.slack.messages(FAILURES)
    assert "`v1.1.0`" in notice.text


async def test_a_refusal_notice_an_old_replica_gave_up_is_told_at_the_next_refusal(
    scene: Scene,
) -> None:
    """During a rolling upgrade, a replica of the previous version claims the notice, a kind
    it does not know and of no rollout, and gives it up at once ("a message of no rollout").
    Its claim then kept every later message given up there from telling anyone."""
    scene.slack.shut_out[CHANNEL] = "not_in_channel"
    rollout = await refused_rollout(scene, 1)
    outbox = scene.replica("a")
    for _ in range(2):
        await outbox.flush(rollout.id)  # the card, then the prompt, given up: the notice waits
    store = scene.store
    (notice,) = await store.claim(now=scene.clock(), owner="old", lease=LEASE)
    assert notice.kind == "channel_refused"
    # The previous version's Outbox._send: a kind it does not know, of no rollout.
    await store.dead(
        message_id=notice.id, owner="old", now=scene.clock(), error="a message of no rollout"
    )
    await outbox.add(said(rollout, "promoted"))

    await scene.deliver_all([outbox])

    (told_now,) = scene.slack.messages(FAILURES)
    assert f"<#{CHANNEL}>" in told_now.text and "`v1.1.0`: 3 messages" in told_now.text


class SlowCard(SlackNotifier):
    """Slack's notifier whose card posts wait until the test lets them through (after the
    look at their lease: Slack slow to take them)."""

    posting = asyncio.Event()
    let_through = asyncio.Event()

    async def publish(self, rollout: Rollout, plan: RolloutPlan, before_post: BeforePost) -> str:
        async def slow() -> None:
            await before_post()
            SlowCard.posting.set()
            await SlowCard.let_through.wait()

        return await super().publish(rollout, plan, slow)


class Watched(OutboxStore):
    """The store that says when a flush found nothing to claim, and can hold the loop's
    claims (of every rollout) on their way back: the rows are taken, the loop does not know
    it yet."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, hold: bool) -> None:
        super().__init__(sessions)
        self.hold = hold
        self.loop_took = asyncio.Event()
        self.flush_found_none = asyncio.Event()
        self.let_through = asyncio.Event()

    async def claim(self, **kwargs: Any) -> list[OutboxMessage]:
        claimed = await super().claim(**kwargs)
        if kwargs.get("rollout_id") is not None and not claimed:
            self.flush_found_none.set()
        elif claimed and self.hold:
            self.loop_took.set()
            await self.let_through.wait()
        return claimed


async def test_a_flush_waits_for_the_message_the_loop_has_in_hand(scene: Scene) -> None:
    """The loop claimed the new card just before the command's own flush: the command's
    answer still comes after the card and the lines behind it were posted."""
    rollout = await scene.started(lines=2)
    SlowCard.posting, SlowCard.let_through = asyncio.Event(), asyncio.Event()
    store = Watched(scene.sessions, hold=False)
    outbox = scene.replica("a", notifier=SlowCard, store=store)
    loop = asyncio.create_task(outbox.deliver_due())
    await SlowCard.posting.wait()

    flushed = asyncio.create_task(outbox.flush(rollout.id))
    await store.flush_found_none.wait()
    SlowCard.let_through.set()
    await flushed

    assert scene.thread() == ["line 0", "line 1"]
    await loop


async def test_a_flush_waits_for_a_claim_of_the_loop_still_on_its_way(scene: Scene) -> None:
    """The loop's claim took the card but has not come back yet (its commit on its way): the
    flush, finding nothing to claim, waits for that claim instead of answering early."""
    rollout = await scene.started(lines=2)
    store = Watched(scene.sessions, hold=True)
    outbox = scene.replica("a", store=store)
    loop = asyncio.create_task(outbox.deliver_due())
    await store.loop_took.wait()

    flushed = asyncio.create_task(outbox.flush(rollout.id))
    await store.flush_found_none.wait()
    store.hold = False
    store.let_through.set()
    await flushed

    assert scene.thread() == ["line 0", "line 1"]
    await loop


async def test_a_stop_lets_the_post_in_hand_finish_and_be_recorded(scene: Scene) -> None:
    """A shutdown while the loop posts the card waits for the post (within its grace): the
    card is recorded as posted, nothing is left claimed, and no cancelled database call holds
    a connection (SQLite's write lock) behind."""
    rollout = await scene.started(lines=0)
    SlowCard.posting, SlowCard.let_through = asyncio.Event(), asyncio.Event()
    outbox = scene.replica("a", notifier=SlowCard)
    outbox.start()
    await SlowCard.posting.wait()

    stopped = asyncio.create_task(outbox.stop(grace=timedelta(seconds=30)))
    await asyncio.sleep(0)
    assert not stopped.done()
    SlowCard.let_through.set()
    await stopped

    assert await scene.store.pending() == []
    assert len(scene.slack.calls_to("chat.postMessage")) == 1
    stored = await RolloutStore(scene.sessions, clock=scene.clock).get(rollout.id)
    assert stored is not None and stored.message_ts is not None


async def test_two_replicas_deliver_each_message_once_and_in_order(scene: Scene) -> None:
    rollout = await scene.started(lines=15)
    a = scene.replica("replica-a")
    b = scene.replica("replica-b")

    await asyncio.gather(a.flush(rollout.id), b.flush(rollout.id), a.deliver_due(), b.deliver_due())
    await scene.deliver_all([a, b])

    assert scene.thread() == [f"line {i}" for i in range(15)]
    assert len(scene.slack.calls_to("chat.postMessage")) == 16  # the card and 15 replies, once each


async def test_a_network_error_is_retried_after_a_backoff_and_the_thread_keeps_its_order(
    scene: Scene,
) -> None:
    rollout, outbox = await scene.card_posted("promoted", "deploying")
    scene.slack.drop_next("chat.postMessage")

    await outbox.flush(rollout.id)

    assert scene.thread() == []  # the connection dropped: the thread waits, in order
    (first, _) = await scene.store.pending(rollout.id)
    assert first.attempts == 1
    await outbox.deliver_due()
    assert scene.thread() == []  # still backing off
    await scene.deliver_all([outbox])
    assert scene.thread() == ["promoted", "deploying"]


class _DatabaseRefusesOnce(RolloutStore):
    """The rollout store of a replica whose first read of a rollout finds the database
    refusing connections (PostgreSQL's "too many clients")."""

    refused = False

    async def with_plan(self, rollout_id: str) -> tuple[Rollout, RolloutPlan] | None:
        if not self.refused:
            self.refused = True
            refusal = OSError("sorry, too many clients already")
            raise DBAPIError("SELECT rollouts", {}, refusal)
        return await super().with_plan(rollout_id)


async def test_a_database_refusing_connections_while_a_card_is_drawn_is_retried_as_one_warning(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """A transient database failure is what a later try repairs: one WARNING line and a retry
    after the backoff, not an ERROR with a traceback reported as a bug."""
    rollout = await scene.started(lines=1)
    outbox = scene.replica("a", rollouts=_DatabaseRefusesOnce(scene.sessions, clock=scene.clock))

    with caplog.at_level(logging.INFO, logger="bot.services.outbox"):
        await outbox.flush(rollout.id)
        (first, _) = await scene.store.pending(rollout.id)
        assert first.attempts == 1 and scene.slack.messages(CHANNEL) == []
        await scene.deliver_all([outbox])

    assert scene.thread() == ["line 0"]
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelname, r.exc_info is None) for r in problems] == [("WARNING", True)]
    assert "too many clients" in problems[0].getMessage()


async def test_a_message_slack_refuses_is_dead_lettered_once_and_the_rest_go_on(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    rollout, outbox = await scene.card_posted("too long", "next")
    scene.slack.fail_next("chat.postMessage", error="msg_too_long")

    with caplog.at_level(logging.ERROR, logger="bot.services.outbox"):
        await outbox.flush(rollout.id)
        await scene.deliver_all([outbox])

    assert scene.thread() == ["next"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "msg_too_long" in errors[0].getMessage()


async def test_a_message_given_up_is_counted_for_the_operators_alert(scene: Scene) -> None:
    # The bot was removed from the channel: Slack refuses the line for good.
    telemetry = PrometheusTelemetry(build())
    rollout = await scene.started(lines=0)
    outbox = scene.replica("a", telemetry=telemetry)
    await outbox.flush(rollout.id)
    await outbox.add(said(rollout, "lost"))
    scene.slack.fail_next("chat.postMessage", error="not_in_channel")

    await outbox.flush(rollout.id)
    await scene.deliver_all([outbox])

    assert given_up(telemetry) == 1


def given_up(telemetry: PrometheusTelemetry) -> float | None:
    """The messages this process's outbox gave up, as scraped."""
    scraped = parse(telemetry.exposition(None)[0].decode())
    return value(scraped, "rollout_bot_outbox_dead_lettered_total")


class TakenOverBeforeGivenUp(OutboxStore):
    """The store of a replica whose lease ran out while Slack refused its message: replica
    "b" took the message over before this one gave it up."""

    def __init__(self, scene: Scene) -> None:
        super().__init__(scene.sessions)
        self.scene = scene

    async def dead(self, **kwargs: Any) -> bool:
        self.scene.clock.advance(LEASE + timedelta(seconds=1))
        (taken,) = await self.scene.store.claim(now=self.scene.clock(), owner="b", lease=LEASE)
        assert taken.id == kwargs["message_id"]
        return await super().dead(**kwargs)


async def test_a_message_another_replica_took_over_is_not_counted_given_up_here(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    # "b" holds the message now: it retries it, and tells and counts it if it gives it up.
    telemetry = PrometheusTelemetry(build())
    rollout, _ = await scene.card_posted("lost")
    outbox = scene.replica("a", store=TakenOverBeforeGivenUp(scene), telemetry=telemetry)
    scene.slack.fail_next("chat.postMessage", error="not_in_channel")

    await outbox.deliver_due()

    assert not [r for r in caplog.records if "given up" in r.getMessage()]

    assert [m.rollout_id for m in await scene.store.pending()] == [rollout.id]  # not dead
    assert given_up(telemetry) == 0


async def test_a_card_redraw_superseded_by_a_newer_one_is_skipped(scene: Scene) -> None:
    rollout = await scene.started(lines=0)
    outbox = scene.replica("a")
    await outbox.flush(rollout.id)
    redraw = NewMessage(kind="card", channel_id=CHANNEL, rollout_id=rollout.id)
    await outbox.add([redraw, redraw, *said(rollout, "between"), redraw, redraw])

    await scene.deliver_all([outbox])

    assert len(scene.slack.calls_to("chat.postMessage")) == 2  # the card, then "between"
    assert len(scene.slack.calls_to("chat.update")) == 1  # the last redraw draws the state once
    assert scene.thread() == ["between"]


async def test_a_message_held_by_a_replica_that_died_is_delivered_after_its_lease(
    scene: Scene,
) -> None:
    await scene.started(lines=1)
    claimed = await scene.store.claim(now=scene.clock(), owner="died", lease=timedelta(minutes=1))
    assert [m.kind for m in claimed] == ["card"]  # the head only: the reply waits behind it
    survivor = scene.replica("survivor")

    assert await survivor.deliver_due() == 0
    scene.clock.advance(timedelta(seconds=61))
    assert await survivor.deliver_due() == 2

    assert scene.thread() == ["line 0"]


async def test_the_first_card_post_keeps_its_ts_against_a_save_from_an_older_copy(
    scene: Scene,
) -> None:
    rollouts = RolloutStore(scene.sessions, clock=scene.clock)
    read_before = await scene.started(lines=0)
    assert read_before.message_ts is None
    await scene.replica("a").flush(read_before.id)

    saved = await rollouts.save(read_before)  # a copy read before the card was posted

    (card_message,) = scene.slack.messages(CHANNEL)
    assert saved.message_ts == card_message.ts


async def test_a_line_a_previous_version_wrote_as_text_is_still_delivered(scene: Scene) -> None:
    rollout = await scene.started(lines=1)
    written_before = NewMessage(
        kind="thread", channel_id=CHANNEL, rollout_id=rollout.id, payload={"text": "as it was"}
    )
    outbox = scene.replica("a")
    await outbox.add([written_before])

    await outbox.flush(rollout.id)

    assert scene.thread() == ["line 0", "as it was"]


async def a_line_of_the_next_version(scene: Scene) -> tuple[Rollout, Outbox]:
    """A posted card, then a thread line of an event kind only the next version has (a
    replica of it wrote the line), and a line of this version after it."""
    rollout, outbox = await scene.card_posted()
    of_the_next_version = NewMessage(
        kind="thread",
        channel_id=CHANNEL,
        rollout_id=rollout.id,
        payload={"event": {"kind": "KindOfTheNextVersion", "fields": {"stage": "canary"}}},
    )
    await outbox.add([of_the_next_version, *said(rollout, "after it")])
    return rollout, outbox


async def test_a_line_only_a_newer_version_can_word_is_left_to_its_replicas(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """A rolling upgrade: a replica of the next version wrote a thread event of a kind this
    version does not have. This replica does not post it, nor anything after it in that
    thread (the order holds), and does not give it up within the hour: no attempt is counted,
    no ERROR, one WARNING; it stays pending for a newer replica."""
    rollout, outbox = await a_line_of_the_next_version(scene)

    with caplog.at_level(logging.WARNING, logger="bot.services"):
        for _ in range(9):  # past every backoff a counted failure would take to give up
            await outbox.flush(rollout.id)
            await outbox.deliver_due()
            scene.clock.advance(timedelta(minutes=6))

    assert scene.thread() == []
    waiting = await scene.store.pending(rollout.id)
    assert [m.payload.get("event", {}).get("kind") for m in waiting] == [
        "KindOfTheNextVersion",
        "DispatchUnclear",
    ]
    assert waiting[0].attempts == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    kind = "KindOfTheNextVersion"
    assert warnings == [
        f"thread messages of kind {kind!r} are due: left to a newer version's replicas"
    ]


async def test_a_line_no_newer_replica_came_for_is_given_up_after_the_hour(scene: Scene) -> None:
    """The upgrade was rolled back: no replica can word the newer version's line. Past
    `LEFT_TO_NEWER_AT_MOST` it is given up (a dead letter), and the thread goes on."""
    rollout, outbox = await a_line_of_the_next_version(scene)

    for _ in range(12):
        await outbox.flush(rollout.id)
        await outbox.deliver_due()
        scene.clock.advance(timedelta(minutes=6))

    assert scene.thread() == ["after it"]
    assert await scene.store.pending(rollout.id) == []


@pytest.mark.parametrize("rollout_id", [None, "r-00000000out1"], ids=["no_rollout", "rollout"])
async def test_a_message_of_a_kind_only_a_newer_version_has_waits_for_its_replicas(
    scene: Scene, caplog: pytest.LogCaptureFixture, rollout_id: str | None
) -> None:
    """A rolling upgrade: a replica of the next version wrote a message of a kind this version
    does not have (a notice of no rollout, as `channel_refused` was, or a rollout's). It was
    given up at once ("a message of no rollout", "unknown kind"): now it is left to a newer
    replica, no attempt counted, one WARNING, and given up only past the hour (the upgrade
    rolled back), as a thread event of a newer version is."""
    rollout, outbox = await scene.card_posted()
    assert rollout_id in (None, rollout.id)
    newer = NewMessage(kind="kind_of_the_next_version", channel_id=FAILURES, rollout_id=rollout_id)
    await outbox.add([newer])

    with caplog.at_level(logging.WARNING, logger="bot.services"):
        for _ in range(9):  # past every backoff a counted failure would take to give up
            await outbox.deliver_due()
            scene.clock.advance(timedelta(minutes=6))

    (waiting,) = await scene.store.pending(rollout_id)
    assert (waiting.kind, waiting.attempts) == ("kind_of_the_next_version", 0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "messages of kind 'kind_of_the_next_version' are due: left to a newer version's replicas"
    ]
    for _ in range(3):
        await outbox.deliver_due()
        scene.clock.advance(timedelta(minutes=6))
    assert await scene.store.pending(rollout_id) == []
    assert scene.slack.messages(FAILURES) == []


def posts_of(slack: SlackTestServer, text: str) -> list[SlackCall]:
    posts = slack.calls_to("chat.postMessage")
    return [c for c in posts if c.args.get("text") == f":warning: {text}"]


async def test_a_thread_line_whose_answer_was_lost_is_found_and_not_posted_again(
    scene: Scene,
) -> None:
    rollout, outbox = await scene.card_posted("promoted", "deploying")
    scene.slack.lose_next_answer("chat.postMessage")  # Slack posts it; the answer never arrives

    await outbox.flush(rollout.id)
    (unclear, _) = await scene.store.pending(rollout.id)
    assert unclear.attempts == 1
    await scene.deliver_all([outbox])

    assert scene.thread() == ["promoted", "deploying"]
    assert len(posts_of(scene.slack, "promoted")) == 1
    (look,) = scene.slack.calls_to("conversations.replies")  # only the unclear one looked first
    assert look.args["include_all_metadata"] == "1"


async def test_a_lost_line_is_found_in_a_long_thread_that_slack_pages_short(scene: Scene) -> None:
    """Slack may answer fewer messages than `limit` asks while more follow ("Pagination"): its
    variation pages by two. 24 lines in the thread, the next one's answer lost: the look for
    it reads the thread to its end, not ten pages of two, and does not post it again."""
    lines = [f"line {n}" for n in range(24)]
    rollout, outbox = await scene.card_posted(*lines)
    await scene.deliver_all([outbox])
    scene.slack.variation = SlackVariation(spared=frozenset({"chat.postMessage"}))
    await outbox.add(said(rollout, "promoted"))
    scene.slack.lose_next_answer("chat.postMessage")

    await scene.deliver_all([outbox])

    assert scene.thread() == [*lines, "promoted"]
    assert len(posts_of(scene.slack, "promoted")) == 1
    assert len(scene.slack.calls_to("conversations.replies")) > 10


async def test_a_look_rate_limited_on_its_second_page_goes_on_from_that_page(
    scene: Scene,
) -> None:
    """Installed as a non-Marketplace app, Slack allows conversations.replies once a minute:
    a look that began again from page one after each 429 might never reach the end. Here the
    second page of the look is answered 429: the look waits, then reads on from that page."""
    lines = [f"line {n}" for n in range(8)]
    rollout, outbox = await scene.card_posted(*lines)
    await scene.deliver_all([outbox])
    scene.slack.variation = SlackVariation(spared=frozenset({"chat.postMessage"}))
    scene.slack.variation.limited.add("conversations.replies")  # its first page is read
    await outbox.add(said(rollout, "promoted"))
    scene.slack.lose_next_answer("chat.postMessage")
    await outbox.flush(rollout.id)  # posted, the answer lost
    scene.slack.fail_next(
        "conversations.replies", error="ratelimited", status=429, retry_after=60, after=1
    )

    await scene.deliver_all([outbox])

    assert scene.thread() == [*lines, "promoted"]
    assert len(posts_of(scene.slack, "promoted")) == 1
    looks = scene.slack.calls_to("conversations.replies")
    assert [call.args.get("cursor") for call in looks].count(None) == 1
    cursors = [call.args.get("cursor") for call in looks if call.args.get("cursor")]
    assert cursors[0] == cursors[1]  # the page refused, asked again, not page one


async def test_a_line_posted_by_a_replica_that_died_before_recording_it_is_not_posted_again(
    scene: Scene,
) -> None:
    rollout = await scene.started(lines=1)
    survivor = scene.replica("survivor")
    await survivor.flush(rollout.id)  # the card and the line
    await survivor.add(said(rollout, "promoted"))
    # A replica claims the line and posts it, then dies before the outbox records it.
    (claimed,) = await scene.store.claim(
        now=scene.clock(), owner="died", lease=timedelta(minutes=1)
    )
    client = AsyncWebClient(token=SLACK_BOT_TOKEN, base_url=scene.slack.api_url, retry_handlers=[])
    posted = await RolloutStore(scene.sessions, clock=scene.clock).get(rollout.id)
    assert posted is not None
    await SlackNotifier(client, approvers={}, charts=CHARTS).announce(
        posted, DispatchUnclear("promoted"), key=claimed.id
    )

    scene.clock.advance(timedelta(seconds=61))
    await scene.deliver_all([survivor])

    assert scene.thread() == ["line 0", "promoted"]
    assert len(posts_of(scene.slack, "promoted")) == 1


async def test_a_card_whose_answer_was_lost_is_found_and_its_ts_recorded(scene: Scene) -> None:
    rollout = await scene.started(lines=1)
    outbox = scene.replica("a")
    scene.slack.lose_next_answer("chat.postMessage")

    await outbox.flush(rollout.id)
    await scene.deliver_all([outbox])

    (card_message,) = scene.slack.messages(CHANNEL)
    assert [reply.text for reply in card_message.replies] == [":warning: line 0"]
    stored = await RolloutStore(scene.sessions, clock=scene.clock).get(rollout.id)
    assert stored is not None and stored.message_ts == card_message.ts
    assert len(scene.slack.calls_to("chat.update")) == 1  # the found card redrawn as it stands


class Renewals(Watched):
    """The store that holds the loop's claims on their way back (`Watched`) and records, at
    each renewal, how many posts Slack had seen and what the renewal answered. A test holding
    `renewing` has no renewal on its way meanwhile: one waits for it, one under way is waited
    for."""

    def __init__(self, scene: Scene, *, hold: bool = True) -> None:
        super().__init__(scene.sessions, hold=hold)
        self.slack = scene.slack
        self.renewals: list[tuple[int, bool]] = []
        self.lost = asyncio.Event()
        self.renewing = asyncio.Lock()

    async def renew(self, **kwargs: Any) -> bool:
        async with self.renewing:
            held = await super().renew(**kwargs)
        self.renewals.append((len(self.slack.calls_to("chat.postMessage")), held))
        if not held:
            self.lost.set()
        return held


async def test_a_message_whose_lease_ran_out_before_its_turn_is_not_sent(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """Replica "a" claimed the card, then stalled past its lease; "b" took the card over. "a"
    must not post it: "b" will, and chat.postMessage has no idempotency key."""
    await scene.started(lines=0)
    store = Renewals(scene)
    a = scene.replica("a", store=store)
    stalled = asyncio.create_task(a.deliver_due())
    await store.loop_took.wait()
    scene.clock.advance(LEASE + timedelta(seconds=1))
    (taken,) = await scene.store.claim(now=scene.clock(), owner="b", lease=LEASE)

    with caplog.at_level(logging.WARNING, logger="bot.services.outbox_lease"):
        store.let_through.set()
        assert await stalled == 0

    assert scene.slack.calls_to("chat.postMessage") == []
    assert store.renewals == [(0, False)]  # looked at before anything was posted: lost
    assert [m.id for m in await scene.store.pending()] == [taken.id]  # left to "b"
    assert any(f"message {taken.id} (card) lost" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("stalled", "renewed"),
    [(timedelta(seconds=55), True), (timedelta(seconds=45), True), (None, False)],
)
async def test_a_claim_with_too_little_lease_left_is_renewed_before_it_is_sent(
    scene: Scene, stalled: timedelta | None, renewed: bool
) -> None:
    """A claim whose lease would run out before the first renewal while it is sent (a third of
    the lease, 20 s) and a request's 10 s beyond is renewed before the card is posted: with 5 s
    left, and with 15 s (a request's time, but the lease would end before anything renews it);
    a fresh one is sent on the claim."""
    await scene.started(lines=0)
    store = Renewals(scene)
    a = scene.replica("a", store=store)
    loop = asyncio.create_task(a.deliver_due())
    await store.loop_took.wait()
    if stalled is not None:
        scene.clock.advance(stalled)
    store.let_through.set()
    assert await loop == 1

    assert len(scene.slack.calls_to("chat.postMessage")) == 1
    assert store.renewals == ([(0, True)] if renewed else [])


def test_the_outbox_refuses_a_request_timeout_not_below_its_lease(scene: Scene) -> None:
    lease = timedelta(seconds=30)
    scene.replica("a", lease=lease, request_timeout=lease - timedelta(seconds=1))
    with pytest.raises(ValueError, match="posted twice"):
        scene.replica("a", lease=lease, request_timeout=lease)


async def test_a_lease_lost_while_the_post_is_on_its_way_is_logged_once(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """ "a" posts the card, slowly; its lease runs out and "b" takes the card over. The renewal
    that finds the lease lost says so at once (the post cannot be unsent), and only then."""
    rollout = await scene.started(lines=0)
    SlowCard.posting, SlowCard.let_through = asyncio.Event(), asyncio.Event()
    store = Renewals(scene, hold=False)
    lease = timedelta(seconds=0.3)  # renewed every 100 ms of real time while sent
    a = scene.replica("a", notifier=SlowCard, store=store, lease=lease)
    caplog.set_level(logging.WARNING, logger="bot.services")
    flushed = asyncio.create_task(a.flush(rollout.id))
    await SlowCard.posting.wait()
    # The take-over between two of "a"'s renewals: one after the move would renew the lease
    # from the new time, and on PostgreSQL one under way locks the row "b" claims, which
    # skips it (`SKIP LOCKED`). Either leaves "b" nothing to take on a loaded machine.
    async with store.renewing:
        scene.clock.advance(timedelta(seconds=1))
        (taken,) = await scene.store.claim(now=scene.clock(), owner="b", lease=LEASE)

    await asyncio.wait_for(store.lost.wait(), 60)  # the next renewal, 100 ms on; bounds a hang
    SlowCard.let_through.set()
    await flushed

    assert len(scene.slack.calls_to("chat.postMessage")) == 1  # "a"'s post went out
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"message {taken.id} (card) lost its lease while sent: the replica that took it over "
        "may post it again"
    ]


async def test_a_thread_line_longer_than_slack_takes_is_cut_not_refused(scene: Scene) -> None:
    rollout = await scene.started(lines=0)
    await scene.replica("a").flush(rollout.id)  # the card
    posted = await RolloutStore(scene.sessions, clock=scene.clock).get(rollout.id)
    assert posted is not None
    client = AsyncWebClient(token=SLACK_BOT_TOKEN, base_url=scene.slack.api_url, retry_handlers=[])

    await SlackNotifier(client, approvers={}, charts=CHARTS).announce(
        posted, DispatchUnclear("x" * 50_000), key=1
    )

    (line,) = scene.thread()
    assert len(line) <= MESSAGE_TEXT and line.endswith("…")


@pytest.mark.parametrize("stale", [False, True], ids=["retried", "stale copy"])
async def test_a_deleted_card_posted_again_already_is_found_not_posted_once_more(
    scene: Scene, stale: bool
) -> None:
    """Someone deleted the card; a new one was posted, but not recorded (its post's answer
    was lost) or recorded by another replica while this one held the old copy. A thread line
    then finds that card and goes under it: never a third card in the channel."""
    rollout, outbox = await scene.card_posted("after the card")
    assert rollout.message_ts is None
    drawn = await RolloutStore(scene.sessions, clock=scene.clock).get(rollout.id)
    assert drawn is not None and drawn.message_ts is not None
    scene.slack.delete_message(CHANNEL, drawn.message_ts)
    notifier = SlackNotifier(
        AsyncWebClient(token=SLACK_BOT_TOKEN, base_url=scene.slack.api_url),
        approvers={},
        charts=CHARTS,
    )
    # Posted by a notifier outside the outbox (no lease to look at), not recorded.
    again = await notifier.publish(replace(drawn, message_ts=None), PLAN, lambda: asyncio.sleep(0))
    if stale:  # another replica recorded it; this one still holds the deleted card's ts
        store = RolloutStore(scene.sessions, clock=scene.clock)
        await store.set_message_ts(rollout.id, again, replacing=drawn.message_ts)
        await outbox.flush(rollout.id, known=(drawn, PLAN))
    else:
        await scene.deliver_all([outbox])

    (only,) = scene.slack.messages(CHANNEL)
    assert only.ts == again
    assert scene.thread() == ["after the card"]
    stored = await RolloutStore(scene.sessions, clock=scene.clock).get(rollout.id)
    assert stored is not None and stored.message_ts == again


async def test_a_card_redraw_posted_again_with_its_answer_lost_is_not_posted_twice(
    scene: Scene,
) -> None:
    """Someone deleted the card; the next redraw posts it again, and Slack takes the post but
    its answer is lost. The retry finds that card and redraws it: one card in the channel."""
    rollout, outbox = await scene.card_posted()
    drawn = await RolloutStore(scene.sessions, clock=scene.clock).get(rollout.id)
    assert drawn is not None and drawn.message_ts is not None
    scene.slack.delete_message(CHANNEL, drawn.message_ts)
    scene.slack.lose_next_answer("chat.postMessage")

    await outbox.add([card(drawn)])
    await scene.deliver_all([outbox])

    (only,) = scene.slack.messages(CHANNEL)
    stored = await RolloutStore(scene.sessions, clock=scene.clock).get(rollout.id)
    assert stored is not None and stored.message_ts == only.ts != drawn.message_ts


async def test_a_shared_release_channel_refusing_the_bot_is_told_to_each_services_failure_channel(
    scene: Scene,
) -> None:
    """Two services share a release channel, each with its own failure channel. Once the
    channel refuses the bot, each service's failure channel hears it, listing its own lost
    messages only: the first notice (one per refusing channel) used to go to whichever
    service gave a message up first, listing the other's releases, and the other team never
    heard that its release channel refuses the bot."""
    billing_failures = "C0BILLINGINC"
    billing_plan = TOLD_HERE.model_copy(
        update={
            "notifications": TOLD_HERE.notifications.model_copy(
                update={"failure_channel": billing_failures}
            )
        }
    )
    scene.slack.shut_out[CHANNEL] = "not_in_channel"
    await refused_rollout(scene, 1, "promoted")  # relay's, failures told in FAILURES
    billing = cleared_rollout(
        billing_plan, now=scene.clock(), rollout_id="r-0000000ref2", channel_id=CHANNEL
    )
    billing = replace(billing, tag="v9.0.0", service="billing-api")
    store = RolloutStore(scene.sessions, clock=scene.clock)
    await store.create(rollout=billing, plan=billing_plan, outbox=[card(billing)])

    await scene.deliver_all([scene.replica("a"), scene.replica("b")])

    (relay_notice,) = scene.slack.messages(FAILURES)
    (billing_notice,) = scene.slack.messages(billing_failures)
    for notice in (relay_notice, billing_notice):
        assert f"<#{CHANNEL}>" in notice.text and "`not_in_channel`" in notice.text
    assert "`v1.1.0`" in relay_notice.text and "`v9.0.0`" not in relay_notice.text
    assert "`v9.0.0`" in billing_notice.text and "`v1.1.0`" not in billing_notice.text


async def test_a_channel_refusing_thread_replies_only_is_told_so_once(scene: Scene) -> None:
    """Slack answers `restricted_action` when the channel's posting permissions keep the bot
    from replying in threads while it may post: the cards are posted, the thread lines are
    given up. The notice said the bot could post nothing there, and every card posted since
    made the next refusal look new: one notice per rollout."""
    scene.slack.replies_shut_out[CHANNEL] = "restricted_action"
    outbox = scene.replica("a")
    await refused_rollout(scene, 1, "promoted")
    await scene.deliver_all([outbox])
    await refused_rollout(scene, 2)
    await scene.deliver_all([outbox])

    cards = scene.slack.messages(CHANNEL)
    assert len(cards) == 2 and all(not card.replies for card in cards)
    (notice,) = scene.slack.messages(FAILURES)
    assert f"*The bot cannot reply in threads in <#{CHANNEL}>*" in notice.text
    assert "`restricted_action`" in notice.text and "reply in threads" in notice.text
    assert "cards are posted" in notice.text
    assert "the card" not in notice.text
    # Drawn when delivered: what rollout 1's thread was not told by then.
    assert "Not delivered there so far: `v1.1.0`: " in notice.text and "thread line" in notice.text
    assert "once the bot can reply in threads there" in notice.text


class _SlowRead(RolloutStore):
    """The rollout store of a replica whose read of the rollout, once it has claimed and is
    sending a message, hangs until the test lets it through (a database blink on its
    connections only: its lease's renewals are late or fail meanwhile)."""

    def __init__(self, scene: Scene) -> None:
        super().__init__(scene.sessions, clock=scene.clock)
        self.reading = asyncio.Event()
        self.let_through = asyncio.Event()

    async def with_plan(self, rollout_id: str) -> tuple[Rollout, RolloutPlan] | None:
        self.reading.set()
        await self.let_through.wait()
        return await super().with_plan(rollout_id)


@pytest.mark.parametrize("taken", [True, False], ids=["taken over", "not taken over"])
async def test_a_line_whose_lease_ran_out_before_its_post_is_left_to_the_replica_that_took_it(
    scene: Scene, caplog: pytest.LogCaptureFixture, taken: bool
) -> None:
    """ "a" claims a thread line with its lease fresh, then stalls reading the rollout past its
    lease; "b" takes the line over, looks in the thread (nothing there yet) and posts it. "a"
    must look at its lease again before the post, not post the line a second time (it did:
    "message N (thread) was taken over while sent"). Not taken over, "a" renews it and posts."""
    rollout, _ = await scene.card_posted("promoted")
    (line,) = await scene.store.pending(rollout.id)
    store, rollouts = Renewals(scene, hold=False), _SlowRead(scene)
    a = scene.replica("a", store=store, rollouts=rollouts)
    caplog.set_level(logging.WARNING, logger="bot.services")
    stalled = asyncio.create_task(a.flush(rollout.id))
    await rollouts.reading.wait()
    async with store.renewing:  # no renewal of "a"'s on its way while "b" takes the line over
        scene.clock.advance(LEASE + timedelta(seconds=1))
        if taken:
            assert await scene.replica("b").deliver_due() == 1

    rollouts.let_through.set()
    await stalled

    assert scene.thread() == ["promoted"]
    assert len(posts_of(scene.slack, "promoted")) == 1
    assert await scene.store.pending() == []
    assert store.renewals[-1:] == [(2 if taken else 1, not taken)]  # looked at before the post
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if taken:
        assert warnings == [
            f"message {line.id} (thread) lost its lease before it was sent; left to the "
            "replica that took it over"
        ]
    else:
        assert warnings == []


class _DeliveredLost(OutboxStore):
    """The store of a replica whose save of a message as delivered finds the database gone,
    once: its post reached Slack, the outbox does not know it."""

    lost = False

    async def delivered(self, **kwargs: Any) -> bool:
        if not self.lost:
            self.lost = True
            raise DBAPIError("UPDATE outbox", {}, OSError("server closed the connection"))
        return await super().delivered(**kwargs)


async def test_a_line_posted_whose_delivery_was_not_saved_is_found_by_the_replica_taking_it(
    scene: Scene,
) -> None:
    """The database went away between "a"'s post and its save of the line as delivered: the
    line stays "a"'s until its lease runs out; "b" takes it over (an attempt counted), looks
    in the thread first and finds it: recorded as delivered, not posted again."""
    rollout, _ = await scene.card_posted("promoted")
    a = scene.replica("a", store=_DeliveredLost(scene.sessions))
    await a.flush(rollout.id)  # posted; the save failed, left to the loop
    assert len(posts_of(scene.slack, "promoted")) == 1

    scene.clock.advance(LEASE + timedelta(seconds=1))
    assert await scene.replica("b").deliver_due() == 1

    assert scene.thread() == ["promoted"]
    assert len(posts_of(scene.slack, "promoted")) == 1
    assert await scene.store.pending() == []
