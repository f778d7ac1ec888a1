"""Exactly once: concurrent identical clicks, two server processes on one PostgreSQL, Slack
retries, double clicks, stale buttons and a GitHub 500 each lead to one effect at most.

End to end: signed Slack requests to the real app (or to `rollout-bot serve` processes), the
GitHub simulator counting approvals. The claim store itself is tested on both databases.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from database_proxy import DatabaseProxy
from figures import passing_sandbox, running_sandbox, two_serve_processes
from replicas import replica_sessions
from sandbox_views import audit_results, begun, command_body, dispatched, held, value_of
from slack_bolt.request.async_request import AsyncBoltRequest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from bot.adapters.slack import messages
from bot.domain.controls import AlreadyDone, CardRef, Control, NothingDone, effect_key
from bot.domain.rollout import Rollout, StageState
from bot.services.exactly_once import ExactlyOnce
from bot.services.records import BOT, ClaimUnsettled
from bot.services.requests import Origin, Via
from handlers.origin import delivery
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER, SLACK_SIGNING_SECRET
from sandbox.harness import Sandbox
from sandbox.signing import slack_signature_headers
from storage.claims import ClaimState, ClaimStore
from storage.db import create_engine, create_session_factory, engine_for_one_task

GROUP = "S0RELEASE1"
CLICKERS = [RELEASE_MANAGER, *(f"U0CLICK{i:03d}" for i in range(49))]
APPROVERS_ENV = {"ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{GROUP}"}


def approvals(box: Sandbox, environment: str) -> list[str]:
    return [
        review.state
        for review in box.github.reviews
        if environment in review.environments and review.state == "approved"
    ]


async def both_holding(box: Sandbox) -> Rollout:
    """Both tracks held on a passed gate: nothing more happens on GitHub until a click. Up to
    120 s (a hang guard, ended as soon as both hold): at a load of 28 on 2 cores the default
    30 s ran out before the fifty clicks' first one."""
    return await box.wait_until(
        lambda r: (
            r.track("relay").stage("canary").state is StageState.HOLDING
            and r.track("desktop").stage("internal").state is StageState.HOLDING
        ),
        timeout=120,
    )


async def post_click(
    box: Sandbox,
    http: aiohttp.ClientSession,
    *,
    url: str,
    user: str,
    value: str,
    action_id: str = "promote",
) -> str:
    """One signed block_actions request to `url`; returns its response_url."""
    response_url, body = box.click_body(action_id, user=user, value=value)
    headers = slack_signature_headers(SLACK_SIGNING_SECRET, body)
    async with http.post(f"{url}/slack/events", data=body, headers=headers) as answer:
        assert answer.status == 200
    return response_url


def answers(box: Sandbox, urls: list[str]) -> list[str]:
    return [str(post.body.get("text", "")) for url in urls for post in box.slack.responses(url)]


async def fifty_promote_clicks(box: Sandbox, urls: list[str]) -> list[str]:
    """50 people click the same Promote at once, spread over the server URLs; the answers."""
    box.slack.usergroups[GROUP] = CLICKERS[1:]
    await dispatched(box)
    await both_holding(box)
    value = await value_of(box, "promote", "relay")
    async with aiohttp.ClientSession() as http:
        response_urls = await asyncio.gather(
            *(
                post_click(box, http, url=urls[i % len(urls)], user=user, value=value)
                for i, user in enumerate(CLICKERS)
            )
        )
    # Ends once the 49 are in: the bound is for a machine at a load of 20 on 2 cores.
    await box.slack.wait_for(lambda: len(answers(box, response_urls)) >= 49, timeout=120)
    await begun(box, "relay", "half")
    await nothing_more(box, seconds=0.5)  # a 50th answer or a second approval would be in
    return answers(box, response_urls)


async def nothing_more(box: Sandbox, *, seconds: float) -> None:
    """Until what the clicks would still do has been done: for the bot in this process, once
    the work of every click it acknowledged has ended (a wait for the event, not for time);
    with `serve` processes, which this process cannot look into, `seconds` of real time."""
    if not box.replicas:
        assert await box.acks.idle(within=60)
    else:
        await asyncio.sleep(seconds)


@pytest.fixture
async def sandbox(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with passing_sandbox(tmp_path, database_url=database_url, extra_env=APPROVERS_ENV) as box:
        yield box


ALREADY = ("Already done by <@", "Already being done by <@")
"""A repeated click is told who did it, or who is doing it while the first click works."""


@pytest.mark.postgres_burst
async def test_fifty_concurrent_promote_clicks_approve_the_next_stage_once(
    sandbox: Sandbox,
) -> None:
    texts = await fifty_promote_clicks(sandbox, [sandbox.url])

    assert approvals(sandbox, "relay-rollout-50") == ["approved"]
    assert len(texts) == 49
    assert [text for text in texts if not text.startswith(ALREADY)] == []
    rollout = await sandbox.rollout()
    clicks = await audit_results(sandbox, rollout.id, "click:promote", 50)
    assert sorted(clicks) == ["duplicate"] * 49 + ["ok"]
    events = await sandbox.audit.list_for_rollout(rollout.id)
    assert [e.result for e in events if e.action == "promote"] == ["ok"]


@pytest.mark.postgres_burst
@pytest.mark.postgres
async def test_fifty_clicks_on_two_server_processes_sharing_postgresql_approve_once(
    tmp_path: Path, postgres_database_url: str
) -> None:
    async with two_serve_processes(tmp_path, postgres_database_url, APPROVERS_ENV) as (
        box,
        second,
    ):
        assert second != box.url

        texts = await fifty_promote_clicks(box, [box.url, second])

        assert approvals(box, "relay-rollout-50") == ["approved"]
        assert len(texts) == 49
        # What interrupted a click is in its process's log, not in this one's.
        interrupted = [
            line
            for replica in box.replicas
            for line in replica.log.read_text().splitlines()
            if "was interrupted" in line
        ]
        assert [text for text in texts if not text.startswith(ALREADY)] == [], interrupted


async def test_a_slack_retry_of_a_command_promotes_once(sandbox: Sandbox) -> None:
    await dispatched(sandbox)
    await both_holding(sandbox)
    response_url, body = command_body(sandbox.slack, "promote")
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    async with aiohttp.ClientSession() as http:
        for extra in ({}, retry):  # Slack sends the same body again, marked as a retry
            headers: Mapping[str, str] = slack_signature_headers(SLACK_SIGNING_SECRET, body)
            async with http.post(
                f"{sandbox.url}/slack/events", data=body, headers={**headers, **extra}
            ) as answer:
                assert answer.status == 200
            await sandbox.slack.wait_for_response(response_url, count=1 if not extra else 2)

    first, second = (str(post.body["text"]) for post in sandbox.slack.responses(response_url))
    assert first.startswith("Promoted `v1.4.2`")
    assert second.startswith("Already done by <@U0RELMGR01>") and "retry 1" in second
    assert await sandbox.acks.idle(within=60)  # a second approval would be made by now
    assert approvals(sandbox, "relay-rollout-50") == ["approved"]
    assert approvals(sandbox, "desktop-beta") == ["approved"]
    rollout = await sandbox.rollout()
    events = await sandbox.audit.list_for_rollout(rollout.id)
    retried = [e for e in events if e.action == "command:promote" and e.result == "duplicate"]
    assert len(retried) == 1 and retried[0].detail is not None
    assert retried[0].detail["slack_retry"] == 1


async def test_a_trigger_id_sent_again_with_another_body_is_another_request(
    sandbox: Sandbox,
) -> None:
    """Slack makes a trigger_id per interaction. A client or a Slack double that sends one
    again with another request is not retrying: the lock and then the unlock both happen."""
    said = []
    for typed in ("lock release train", "unlock release train done"):
        response_url, body = command_body(
            sandbox.slack,
            typed,
            trigger_id="13345224609.738474920.8088930838d88f008e0",  # Slack's docs' example
        )
        assert await sandbox.post_signed(body) == 200
        (post,) = await sandbox.slack.wait_for_response(response_url)
        said.append(str(post.body["text"]))

    assert not any(text.startswith(ALREADY) for text in said), said
    assert "unlocked" in said[1].lower(), said


def test_in_socket_mode_a_delivery_is_its_trigger_id_and_its_payload() -> None:
    """Socket Mode has no signed bytes: the payload itself tells a resent request (the same)
    from another one under the same trigger_id."""
    trigger = "13345224609.738474920.8088930838d88f008e0"
    clicks = [
        {"type": "block_actions", "trigger_id": trigger, "actions": [{"action_ts": ts}]}
        for ts in ("1.1", "1.1", "2.2")
    ]
    first, again, other = (
        delivery(trigger, AsyncBoltRequest(body=click, mode="socket_mode")) for click in clicks
    )
    assert first == again != other
    assert first is not None and first.startswith(trigger)


async def test_a_double_click_acts_once_and_tells_the_second_click(sandbox: Sandbox) -> None:
    await dispatched(sandbox)
    await both_holding(sandbox)
    value = await value_of(sandbox, "promote", "relay")
    async with aiohttp.ClientSession() as http:
        first = await post_click(sandbox, http, url=sandbox.url, user=RELEASE_MANAGER, value=value)
        await begun(sandbox, "relay", "half")
        second = await post_click(sandbox, http, url=sandbox.url, user=RELEASE_MANAGER, value=value)
    (answer,) = await sandbox.slack.wait_for_response(second)
    assert str(answer.body["text"]).startswith("Already done by <@U0RELMGR01> at <!date^")
    assert sandbox.slack.responses(first) == []  # the card and the thread tell the winner
    assert approvals(sandbox, "relay-rollout-50") == ["approved"]


async def test_a_stale_card_says_where_the_rollout_stands_and_changes_nothing(
    tmp_path: Path, database_url: str
) -> None:
    # An hour's window, which ends when the test passes its time: a window of seconds could
    # end, in real time, before a wait under load saw the card offer Extend.
    async with running_sandbox(tmp_path, database_url, window="1h") as box:
        await dispatched(box)
        observing = await box.wait_until(
            lambda r: r.track("relay").stage("canary").state is StageState.OBSERVING
        )
        extend = await value_of(box, "extend_window", "relay")
        await box.pass_time(timedelta(hours=1))
        await held(box, "relay", "canary")

        answer = await box.click("extend_window", value=extend)

        assert answer is not None and answer.startswith(":warning: This card is out of date:")
        assert "5% canary holding" in answer
        now = await box.rollout()
        ends = now.track("relay").stage("canary").window_ends_at
        assert ends == observing.track("relay").stage("canary").window_ends_at
        assert await audit_results(box, now.id, "click:extend", 1) == ["stale"]


async def test_an_old_promote_button_is_answered_with_who_promoted_it(sandbox: Sandbox) -> None:
    sandbox.slack.usergroups[GROUP] = CLICKERS[1:]
    await dispatched(sandbox)
    await both_holding(sandbox)
    canary = await value_of(sandbox, "promote", "relay")
    await sandbox.click("promote", value=canary)
    await begun(sandbox, "relay", "half")

    answer = await sandbox.click("promote", value=canary, user=CLICKERS[1])

    assert answer is not None and "Already done by <@U0RELMGR01>" in answer
    assert "from 5% canary to 50%" in answer
    assert approvals(sandbox, "relay-rollout-50") == ["approved"]


async def test_a_github_500_during_a_promote_changes_nothing_and_the_click_can_be_repeated(
    sandbox: Sandbox,
) -> None:
    await dispatched(sandbox)
    await both_holding(sandbox)
    value = await value_of(sandbox, "promote", "relay")
    sandbox.github.fail_next("POST", "/repos/*/actions/runs/*/pending_deployments", 500)

    answer = await sandbox.click("promote", value=value)

    assert answer is not None and "GitHub answered 500" in answer
    assert "it was not applied: try again" in answer
    still = await sandbox.rollout()
    assert still.track("relay").stage("canary").state is StageState.HOLDING
    assert still.track("relay").stage("half").state is StageState.PENDING
    assert approvals(sandbox, "relay-rollout-50") == []
    assert "[Promote to 50%]" in sandbox.card_message().rendered

    again = await sandbox.click("promote", value=value)

    assert again is None  # no error this time: the card and the thread show the promotion
    await begun(sandbox, "relay", "half")
    assert approvals(sandbox, "relay-rollout-50") == ["approved"]
    clicks = await audit_results(sandbox, still.id, "click:promote", 2)
    assert clicks == ["github_error", "ok"]
    events = await sandbox.audit.list_for_rollout(still.id)
    failed = next(e for e in events if e.action == "github_approved" and e.result == "error")
    assert failed.detail is not None and failed.detail["environment"] == "relay-rollout-50"


# -- the claim store on both databases -----------------------------------------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def test_one_of_many_concurrent_claims_wins(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    claims = ClaimStore(session_factory)
    won = await asyncio.gather(
        *(
            claims.claim(key="promote:r-1:relay:canary", action="promote", actor=f"U{i}", now=NOW)
            for i in range(20)
        )
    )
    winners = [claim for claim in won if claim is not None]
    assert len(winners) == 1
    held = await claims.get("promote:r-1:relay:canary")
    assert held is not None and held.actor == winners[0].actor
    assert held.state is ClaimState.CLAIMED


async def test_a_released_claim_can_be_claimed_again_and_a_done_one_cannot(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    claims = ClaimStore(session_factory)
    first = await claims.claim(key="k", action="promote", actor="U1", now=NOW)
    assert first is not None
    await claims.release(first)
    second = await claims.claim(key="k", action="promote", actor="U2", now=NOW)
    assert second is not None
    await claims.release(first)  # the first attempt's late release does not free the second's
    assert await claims.claim(key="k", action="promote", actor="U3", now=NOW) is None
    await claims.complete(second, now=NOW + timedelta(seconds=1))
    done = await claims.get("k")
    assert done is not None and done.state is ClaimState.DONE and done.actor == "U2"
    assert done.done_at == NOW + timedelta(seconds=1)
    later = NOW + timedelta(hours=1)
    assert await claims.claim(key="k", action="promote", actor="U3", now=later) is None


async def test_a_claim_whose_owner_died_is_taken_over_after_its_lease(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    claims = ClaimStore(session_factory, lease=timedelta(minutes=5))
    assert await claims.claim(key="k", action="dispatch", actor="U1", now=NOW) is not None
    soon = NOW + timedelta(minutes=4)
    assert await claims.claim(key="k", action="dispatch", actor="U2", now=soon) is None
    late = NOW + timedelta(minutes=6)
    taken = await claims.claim(key="k", action="dispatch", actor="U2", now=late)
    assert taken is not None and taken.actor == "U2"


async def test_a_takeover_of_the_claim_looked_at_never_takes_over_the_one_that_replaced_it(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """Two leases lapsing in a row: a click looks at a lapsed claim (and at what its request
    did); meanwhile another request takes that claim over and dies too. The click's takeover
    names the claim it looked at, so it does not take over the second one, whose request
    nobody looked into."""
    claims = ClaimStore(session_factory, lease=timedelta(minutes=5))
    assert await claims.claim(key="k", action="npm_release", actor="U1", now=NOW) is not None
    looked_at = await claims.get("k")  # 6 minutes later, the lease ran out: the click looks
    assert looked_at is not None
    meanwhile = await claims.claim(
        key="k", action="npm_release", actor="U2", now=NOW + timedelta(minutes=6)
    )
    assert meanwhile is not None  # another replica took it over, and died in turn
    late = NOW + timedelta(minutes=12)

    refused = await claims.claim(
        key="k", action="npm_release", actor="U3", now=late, replacing=looked_at
    )

    assert refused is None
    held = await claims.get("k")
    assert held is not None and held.holder == meanwhile.holder and held.actor == "U2"
    taken = await claims.claim(key="k", action="npm_release", actor="U3", now=late, replacing=held)
    assert taken is not None
    now_held = await claims.get("k")
    assert now_held is not None and now_held.holder == taken.holder and now_held.actor == "U3"


async def test_a_claim_the_bots_schedule_holds_is_named_for_the_schedule(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    claims = ClaimStore(session_factory)
    once = ExactlyOnce(claims=claims, clock=lambda: NOW, words=messages, holder_wait=timedelta(0))
    card = CardRef("r-1", version=3)
    held = await claims.claim(
        key=effect_key(Control.DISPATCH, card), action="dispatch", actor=BOT, now=NOW
    )
    assert held is not None
    clicker = Origin(actor=RELEASE_MANAGER, channel_id=RELEASE_CHANNEL, via=Via.CLICK)

    async def dispatch() -> None:
        raise AssertionError("dispatched a second time")

    with pytest.raises(AlreadyDone) as caught:
        await once.once(clicker, Control.DISPATCH, card, "dispatch `v1.4.2`", dispatch)
    assert "Already being done by the bot's schedule since" in caught.value.message
    assert "<@rollout-bot>" not in caught.value.message
    # A claim's holder may have died in the middle: the answer says when its claim lapses.
    lapses = messages.slack_time(NOW + claims.lease)
    assert caught.value.message.endswith(
        f"its claim lapses at {lapses}: click again after that."
    ), caught.value.message


# -- a claim whose answer the database lost ------------------------------------------------------

PROMOTE_CARD = CardRef("r-1", "relay", "canary", 3)
PROMOTING = "promote Hosted relay of `v1.4.2` from 5% canary to 50%"
CLICKER = Origin(actor=RELEASE_MANAGER, channel_id=RELEASE_CHANNEL, via=Via.CLICK)
REFUSE_DELETES = (
    "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "RAISE EXCEPTION 'could not write to file: No space left on device'; END $$",
    "CREATE TRIGGER refuse_delete BEFORE DELETE ON action_claims "
    "FOR EACH ROW EXECUTE FUNCTION refuse_delete()",
)
"""The database fails every withdrawal of a claim (a disk full), for as long as it lasts."""


@asynccontextmanager
async def losing_commit_answers(
    database_url: str,
) -> AsyncIterator[tuple[ClaimStore, DatabaseProxy]]:
    """Claims on PostgreSQL through a proxy that can lose the answer to a COMMIT."""
    url = make_url(database_url)
    proxy = DatabaseProxy(url.port or 5432)
    through = url.set(port=await proxy.start()).render_as_string(hide_password=False)
    engine = create_engine(through)
    try:
        async with engine.connect() as connection:  # set up: the next COMMIT is a claim's
            await connection.execute(text("SELECT 1"))
        yield ClaimStore(create_session_factory(engine)), proxy
    finally:
        await engine.dispose()
        await proxy.close()


def promote_clicks(claims: ClaimStore) -> tuple[Callable[[], Awaitable[None]], list[str]]:
    """A click on the card's Promote, exactly once through `claims`, and the promotions made."""
    once = ExactlyOnce(claims=claims, clock=lambda: NOW, words=messages, holder_wait=timedelta(0))
    promoted: list[str] = []

    async def promote() -> None:
        promoted.append(CLICKER.actor)

    async def click() -> None:
        await once.once(CLICKER, Control.PROMOTE, PROMOTE_CARD, PROMOTING, promote)

    return click, promoted


@pytest.mark.postgres
async def test_a_claim_whose_commit_answer_was_lost_is_withdrawn_and_the_click_can_be_repeated(
    postgres_database_url: str,
) -> None:
    """PostgreSQL commits a Promote's claim and the connection drops before the bot hears so:
    the click is told nothing was done (it never acted), and the next click promotes, once,
    instead of being told for the claim's lease (5 minutes) that it is already being done."""
    async with losing_commit_answers(postgres_database_url) as (claims, proxy):
        click, promoted = promote_clicks(claims)
        proxy.lose_the_next_commit()
        with pytest.raises(NothingDone) as told:
            await click()
        assert isinstance(told.value.__cause__, ClaimUnsettled)
        assert isinstance(told.value.__cause__.__cause__, DBAPIError)  # the connection, lost
        assert told.value.message == (
            f"The bot lost its connection to its database while it took this request "
            f"({PROMOTING}), before acting on it: nothing was done. Try again."
        )
        assert promoted == []
        assert await claims.get(effect_key(Control.PROMOTE, PROMOTE_CARD)) is None

        await click()
        assert promoted == [CLICKER.actor]
        with pytest.raises(AlreadyDone, match="Already done by"):
            await click()
        assert promoted == [CLICKER.actor]


async def test_a_claim_held_up_by_another_writer_past_its_bound_is_not_told_as_a_lost_connection(
    sqlite_database_url: str,
) -> None:
    """A burst of clicks on SQLite: another connection holds the write lock longer than the
    claim's statement may wait for it (the busy timeout; a quarter of the lease in the app).
    Nothing was done, and the click is told the database did not answer in time: its
    connection was there all along (a click of fifty, at a load of 20, was told it was lost)."""
    engine = create_engine(sqlite_database_url, statement_timeout_s=0.1)
    path = make_url(sqlite_database_url).database or ""
    try:
        click, promoted = promote_clicks(ClaimStore(create_session_factory(engine)))
        with closing(sqlite3.connect(path)) as other_writer:
            other_writer.execute("BEGIN IMMEDIATE")
            with pytest.raises(NothingDone) as told:
                await click()
        assert isinstance(told.value.__cause__, ClaimUnsettled)
        assert told.value.message.startswith(
            "The bot's database did not answer the bot in time while it took this request "
            f"({PROMOTING}), before acting on it: nothing was done."
        )
        assert promoted == []
        assert (
            await ClaimStore(create_session_factory(engine)).get(
                effect_key(Control.PROMOTE, PROMOTE_CARD)
            )
            is None
        )
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_slack_retry_after_its_deliverys_claim_lost_its_answer_is_acted_on(
    postgres_database_url: str,
) -> None:
    """The answer to the claim of a command's delivery is lost: nothing was done, so Slack's
    retry of it is acted on, not told that the first was "handled once"."""
    async with losing_commit_answers(postgres_database_url) as (claims, proxy):
        once = ExactlyOnce(claims=claims, clock=lambda: NOW, words=messages)
        command = Origin(
            actor=RELEASE_MANAGER, channel_id=RELEASE_CHANNEL, via=Via.COMMAND, delivery="t-1"
        )
        proxy.lose_the_next_commit()
        with pytest.raises(NothingDone, match=r"nothing was done\. Try again\."):
            await once.delivery(command, Control.PROMOTE, PROMOTE_CARD, PROMOTING)
        retried = replace(command, retry=1)
        await once.delivery(retried, Control.PROMOTE, PROMOTE_CARD, PROMOTING)  # acted on
        with pytest.raises(AlreadyDone, match="Slack delivered this request again"):
            await once.delivery(retried, Control.PROMOTE, PROMOTE_CARD, PROMOTING)


@pytest.mark.postgres
async def test_a_lost_claim_withdrawn_never_takes_another_replicas_claim_with_it(
    postgres_database_url: str,
) -> None:
    """Another replica holds the Promote's claim when this one's answer is lost: the withdrawal
    looks for this click's holder token only, so the other's claim (and its promotion) stand."""
    async with (
        replica_sessions(postgres_database_url, 1) as (other,),
        losing_commit_answers(postgres_database_url) as (claims, proxy),
    ):
        key = effect_key(Control.PROMOTE, PROMOTE_CARD)
        theirs = await ClaimStore(other).claim(key=key, action="promote", actor="U2", now=NOW)
        assert theirs is not None
        click, promoted = promote_clicks(claims)
        proxy.lose_the_next_commit()
        with pytest.raises(NothingDone):
            await click()
        assert await claims.get(key) == theirs
        assert promoted == []


@pytest.mark.postgres
async def test_a_lost_claim_that_cannot_be_withdrawn_is_told_with_the_end_of_its_lease(
    postgres_database_url: str,
) -> None:
    """The database commits the claim, loses the answer, then refuses to delete it: the claim
    stands (the COMMIT did go through) and the click is told until when it may block a try."""
    async with losing_commit_answers(postgres_database_url) as (claims, proxy):
        click, promoted = promote_clicks(claims)
        async with claims_refuse_deletes(postgres_database_url):
            proxy.lose_the_next_commit()
            with pytest.raises(NothingDone) as told:
                await click()
        until = messages.slack_time(NOW + timedelta(minutes=5))
        assert told.value.message.endswith(
            "before acting on it: nothing was done. The database may still hold the request as "
            f"under way until {until} (it could not be withdrawn): until then, a try is told it "
            f"is being done. Try again after {until}."
        )
        held = await claims.get(effect_key(Control.PROMOTE, PROMOTE_CARD))
        assert held is not None and held.state is ClaimState.CLAIMED  # committed, answer lost
        assert promoted == []


@asynccontextmanager
async def claims_refuse_deletes(database_url: str) -> AsyncIterator[None]:
    async with engine_for_one_task(database_url) as engine:
        async with engine.begin() as connection:
            for statement in REFUSE_DELETES:
                await connection.exec_driver_sql(statement)
        try:
            yield
        finally:
            async with engine.begin() as connection:
                await connection.execute(text("DROP FUNCTION refuse_delete() CASCADE"))


async def test_a_click_cancelled_once_its_claim_committed_leaves_no_claim_behind(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """The click's task is cancelled (its replica shutting down) right after its claim's
    COMMIT, the one way SQLite loses the answer: nothing was done, and the claim is withdrawn
    rather than left to tell every click for a lease that the promotion is under way."""
    claims = ClaimStore(session_factory)
    click, promoted = promote_clicks(claims)
    cancelled: list[asyncio.Task[object]] = []

    def cancel_the_click(session: Session) -> None:
        task = asyncio.current_task()
        if not cancelled and task is not None:
            cancelled.append(task)
            task.cancel()

    event.listen(Session, "after_commit", cancel_the_click)
    try:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(click())
    finally:
        event.remove(Session, "after_commit", cancel_the_click)
    assert cancelled and promoted == []
    assert await claims.get(effect_key(Control.PROMOTE, PROMOTE_CARD)) is None
    await click()
    assert promoted == [CLICKER.actor]
