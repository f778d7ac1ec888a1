"""Slack faults end to end: signed clicks to the real app, the sandbox Slack dropping
connections and answering 429, the thread checked as people read it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import aiohttp
import pytest
from figures import CANARY_OK, RELAY_OK, passing_sandbox, running_sandbox
from sandbox_views import (
    RELAY_ROLLED_BACK_AT_CANARY,
    audit_results,
    begun,
    dispatched,
    github_until,
    reviews,
    value_of,
)
from sqlalchemy.exc import OperationalError
from test_exactly_once import (
    APPROVERS_ENV,
    CLICKERS,
    GROUP,
    approvals,
    both_holding,
)

from bot.domain.rollout import TrackState
from handlers.errors import INTERRUPTED, UNANSWERED, ResponseUrlUses, explain
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER, SLACK_SIGNING_SECRET
from sandbox.harness import LOOK_AGAIN, Sandbox
from sandbox.signing import slack_signature_headers
from storage.outbox import OutboxStore

pytestmark = pytest.mark.story

PROMOTED = "<@U0RELMGR01> promoted Hosted relay to *50%*"


@pytest.fixture
async def sandbox(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with passing_sandbox(tmp_path, database_url=database_url, extra_env=APPROVERS_ENV) as box:
        yield box


async def holding(box: Sandbox) -> str:
    """Both tracks held on a passed gate, and the thread told of it; the relay's Promote
    button value."""
    await dispatched(box)
    await both_holding(box)
    outbox = OutboxStore(box.services.database.sessions)
    async with asyncio.timeout(30):  # a loaded machine's outbox: waited for, never passed by
        while await outbox.pending():  # a post comes a moment before its delivery's record
            await box.slack.changed(timeout=LOOK_AGAIN)
    return await value_of(box, "promote", "relay")


def thread_after(box: Sandbox, first: str) -> list[str]:
    lines = box.thread()
    return lines[next(i for i, line in enumerate(lines) if first in line) :]


async def test_a_slack_network_error_after_a_promotion_tells_the_truth_and_the_thread_follows(
    sandbox: Sandbox,
) -> None:
    value = await holding(sandbox)
    before = len(sandbox.thread())
    # The outbox's client does not retry a dropped connection itself: the outbox does.
    sandbox.slack.drop_next("chat.postMessage", count=2)

    answer = await sandbox.click("promote", value=value)

    assert answer is None  # no "Something went wrong": the promotion happened
    await begun(sandbox, "relay", "half")
    assert approvals(sandbox, "relay-rollout-50") == ["approved"]
    await sandbox.wait_for_thread(PROMOTED)
    lines = sandbox.thread()
    assert sum(PROMOTED in line for line in lines) == 1
    assert PROMOTED in lines[before]  # nothing said after the promotion came before it
    rollout = await sandbox.rollout()
    assert await audit_results(sandbox, rollout.id, "click:promote", 1) == ["ok"]


async def test_a_release_channel_archived_while_the_canary_observes_does_not_stop_its_rollback(
    tmp_path: Path, database_url: str
) -> None:
    # Slack is only the voice: the gate still decides and the relay is still rolled back
    # while every post and card redraw in the channel is refused.
    relay = {**RELAY_OK, "canary": {**CANARY_OK, "error_rate": "0.02"}}
    async with running_sandbox(tmp_path, database_url, window="3s", relay=relay) as box:
        await dispatched(box)
        box.slack.shut_out[RELEASE_CHANNEL] = "is_archived"

        await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
        await github_until(box, lambda: reviews(box, "relay") == RELAY_ROLLED_BACK_AT_CANARY)

        assert any(c.response.get("error") == "is_archived" for c in box.slack.calls)


async def test_a_post_rate_limited_three_times_is_delivered_after_the_waits(
    sandbox: Sandbox,
) -> None:
    value = await holding(sandbox)
    before = len(sandbox.thread())
    # The outbox's client does not wait itself: the outbox honours each Retry-After.
    for _ in range(3):
        sandbox.slack.fail_next("chat.postMessage", error="ratelimited", status=429, retry_after=1)

    answer = await sandbox.click("promote", value=value)

    assert answer is None
    await sandbox.wait_for_thread(PROMOTED)
    limited = [c for c in sandbox.slack.calls if c.response.get("error") == "ratelimited"]
    delivered = next(
        c
        for c in sandbox.slack.calls_to("chat.postMessage")
        if c.ok and PROMOTED in str(c.args.get("text"))
    )
    assert delivered.time - limited[-1].time >= 1.0  # Retry-After: 1 was honoured
    lines = sandbox.thread()
    assert sum(PROMOTED in line for line in lines) == 1
    assert PROMOTED in lines[before]


@pytest.mark.database_matters
async def test_fifty_duplicate_clicks_use_their_response_url_at_most_five_times(
    sandbox: Sandbox,
) -> None:
    sandbox.slack.usergroups[GROUP] = CLICKERS[1:]
    value = await holding(sandbox)
    response_url, body = sandbox.click_body(
        "promote",
        user=RELEASE_MANAGER,
        value=value,
        trigger_id="13345224609.738474920.8088930838d88f008e0",
    )

    async def click(http: aiohttp.ClientSession) -> None:
        headers = slack_signature_headers(SLACK_SIGNING_SECRET, body)
        async with http.post(f"{sandbox.url}/slack/events", data=body, headers=headers) as r:
            assert r.status == 200

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(click(http) for _ in range(50)))

    def answers() -> list[str]:
        posted = [str(p.body.get("text", "")) for p in sandbox.slack.responses(response_url)]
        ephemeral = [
            e.text
            for e in sandbox.slack.ephemerals(user=RELEASE_MANAGER)
            if e.via == "chat.postEphemeral"
        ]
        return posted + ephemeral

    await sandbox.slack.wait_for(lambda: len(answers()) >= 49, timeout=30)
    await asyncio.sleep(0.5)  # a 50th answer would show up by now
    assert len(sandbox.slack.responses(response_url)) == 5
    assert len(sandbox.slack.calls_to("chat.postEphemeral")) == 44
    texts = answers()
    assert len(texts) == 49
    # Done, or (while the first click is still at it) being done: never a Slack re-delivery.
    done = ("Already done by <@U0RELMGR01> at <!date^", "Already being done by <@U0RELMGR01>")
    assert all(text.startswith(done) for text in texts), {t[:60] for t in texts}
    assert all("promote Hosted relay of `v1.4.2` from 5% canary to 50%" in t for t in texts)
    assert not any("Slack delivered this request again" in text for text in texts)
    assert approvals(sandbox, "relay-rollout-50") == ["approved"]


def test_a_response_url_is_counted_five_times_per_thirty_minutes() -> None:
    now = [0.0]
    uses = ResponseUrlUses(clock=lambda: now[0])

    assert [uses.take("https://hooks/1") for _ in range(6)] == [True] * 5 + [False]
    assert uses.take("https://hooks/2")
    now[0] += 30 * 60
    assert uses.take("https://hooks/1")


def test_counting_a_response_url_costs_the_same_with_thousands_in_the_last_half_hour() -> None:
    # Every answer of a busy app counts its response_url, on the event loop the acks share.
    now = [0.0]
    uses = ResponseUrlUses(clock=lambda: now[0])
    # The CPU this thread spent, not the time that passed: a loaded machine's scheduler
    # stretched 0.04 s of work to 0.64 s of wall time here.
    started = time.thread_time()
    for n in range(20_000):
        now[0] += 0.01
        assert uses.take(f"https://hooks/{n}")
    assert time.thread_time() - started < 2  # not one pass over every url per answer
    now[0] += 30 * 60 - 100  # the first 10,000 expire; the last 10,000 are still counted
    assert [uses.take("https://hooks/19999") for _ in range(5)] == [True] * 4 + [False]
    assert uses.take("https://hooks/0")


def test_a_request_interrupted_by_a_database_blip_is_told_the_truth_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lost = OperationalError("BEGIN", {}, ConnectionResetError("connection was closed"))

    text, _ = explain(lost, {"type": "block_actions"})

    assert text == INTERRUPTED  # not "nothing changed", not "something went wrong"
    [line] = caplog.records
    assert line.levelname == "WARNING" and line.exc_info is None
    assert "connection was closed" in line.getMessage() and "BEGIN" not in line.getMessage()


@pytest.mark.parametrize(
    "typed", ["freeze --all 2h INC-9 outage", "unfreeze", "lock maintenance", "unlock"]
)
def test_an_interrupted_lane_command_is_pointed_at_the_status_not_at_a_card(typed: str) -> None:
    """A freeze, an unfreeze, a lock or an unlock has no card: the person is sent to
    `/rollout status`, which shows the lane as it is (they were told to look at "the card")."""
    lost = OperationalError("BEGIN", {}, ConnectionResetError("connection was closed"))

    text, _ = explain(lost, {"command": "/rollout", "text": typed})

    assert "cannot tell whether it went through" in text and "card" not in text
    assert "`/rollout status`" in text
    assert explain(lost, {"command": "/rollout", "text": "promote"})[0] == INTERRUPTED


def test_a_request_held_up_by_a_busy_database_is_not_told_the_connection_was_lost(
    tmp_path: Path,
) -> None:
    """A burst of writers on SQLite: another connection held the write lock past this one's
    busy timeout. Its connection was there all along: the answer says the database did not
    answer in time (a click of fifty, at a load of 20, was told the connection was lost)."""
    path = tmp_path / "busy.db"
    with (
        closing(sqlite3.connect(path)) as holder,
        closing(sqlite3.connect(path, timeout=0)) as late,
    ):
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as locked:
            late.execute("BEGIN IMMEDIATE")
    busy = OperationalError("INSERT", {}, locked.value)

    text, _ = explain(busy, {"type": "block_actions"})

    assert text == UNANSWERED and "lost its connection" not in text


def test_an_unexpected_error_gets_a_reference_that_its_logged_traceback_carries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text, _ = explain(KeyError("stage"), {"command": "/rollout"})

    [line] = caplog.records
    assert line.levelname == "ERROR" and line.exc_info is not None
    reference = text.split("`")[1]
    assert reference in line.getMessage() and "/rollout" in line.getMessage()
