"""A protection rule request whose installation GitHub could not confirm as it came (the lookup
failed, or was slower than the webhook's wait) is held, not lost: its delivery is remembered
with a durable timer, nothing answers, approves, posts or keeps it, and the timer asks GitHub
again with backoff until GitHub tells: then it is taken in as if confirmed at once (a run no
rollout follows gets its card), or dropped when it names another installation. End to end: the
bot as the App against the sandbox's GitHub, whose installation lookup fails or stalls. A
story on SQLite (the race of two replicas on both; tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from replicas import in_process_replica
from test_protection_rules import answers, app_box
from test_rule_installation import LOOKUP, OTHER, request_naming
from test_unfollowed_runs import TAG, run_cards

from bot.domain.protection_rules import EVENT, UNCONFIRMED_TIMER
from bot.domain.reasons import Reason
from bot.services.records import Timer
from handlers.app_keys import SERVICES
from sandbox.config import REPOSITORY
from sandbox.github_rules import AppDelivery
from sandbox.harness import Sandbox
from storage.timers import TimerStore

pytestmark = pytest.mark.story

RULES_LOG = "bot.services.webhooks"


@pytest.fixture
async def box(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    """The bot as the App, every environment on its rule, its installation not looked up yet."""
    async with app_box(tmp_path, database_url) as sandbox:
        yield sandbox


def github_down(box: Sandbox) -> None:
    """Every installation lookup fails from now on (until `clear_failures`)."""
    box.github.fail_next("GET", LOOKUP, 502, times=10_000)


async def rule_deliveries(box: Sandbox, count: int) -> list[AppDelivery]:
    """The first `count` protection rule requests delivered, once answered."""

    def delivered() -> list[AppDelivery]:
        return [d for d in box.github.app_hook.deliveries if d.event == EVENT][:count]

    async with asyncio.timeout(30):
        while len(delivered()) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return delivered()


async def started_on_github(box: Sandbox) -> tuple[int, list[AppDelivery]]:
    """A run dispatched on github.com, and its two first requests (relay's, desktop's)."""
    box.github.push_tag(TAG)
    run_id = box.github.create_foreign_run(actor="octocat", branch=TAG)
    return run_id, await rule_deliveries(box, 2)


async def held(box: Sandbox) -> list[Timer]:
    """The asks for unconfirmed requests still to come."""
    timers = TimerStore(box.services.database.sessions)
    asks = await timers.of_kind(kind=UNCONFIRMED_TIMER, due_since=box.clock() - timedelta(days=400))
    return [t for t in asks if t.fired_at is None and t.cancelled_at is None and t.dead_at is None]


async def asked(box: Sandbox, *, again: int) -> None:
    """Wait until the first asks have been made, `again` next ones to come. (`pass_time` does
    not wait for a scheduler that was busy as the clock moved.)"""

    def made(asks: list[Timer]) -> bool:
        return len(asks) == again and not any(t.key.endswith(":1") for t in asks)

    async with asyncio.timeout(30):
        while not made(await held(box)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def kept(box: Sandbox, run_id: int) -> list[str]:
    return sorted(r.environment for r in await box.services.webhooks.rules.for_run(run_id))


async def test_a_request_github_could_not_confirm_is_held_and_taken_in_once_github_answers(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    github_down(box)
    run_id, first = await started_on_github(box)

    assert {d.result for d in first} == {"unconfirmed"}
    assert "GitHub could not confirm" in caplog.text and "held unconfirmed" in caplog.text
    # Inert while unconfirmed: nothing kept, answered or posted.
    assert await kept(box, run_id) == [] and len(await held(box)) == 2
    again = [await box.github.app_hook.redeliver(d.guid) for d in first]
    assert {d.result for d in again} == {"duplicate"}  # a redelivery changes nothing
    assert len(await held(box)) == 2

    await box.pass_time(timedelta(minutes=2, seconds=1))  # the first asks: GitHub still down
    await asked(box, again=2)
    assert await kept(box, run_id) == [] and run_cards(box) == [] and answers(box) == []
    assert "still could not confirm" in caplog.text
    assert len(await held(box)) == 2  # the next asks

    box.github.clear_failures()
    await box.pass_time(timedelta(hours=1))  # asks at most an hour apart
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)

    assert await kept(box, run_id) == ["desktop-internal", "relay-canary-5"]
    assert f"Run {run_id} of Deployment Strategy, dispatched by @octocat" in run_cards(box)[0].text
    assert len(run_cards(box)) == 1 and answers(box) == []
    assert await held(box) == []
    assert "which GitHub now confirms: taken in" in caplog.text


@pytest.mark.database_matters
@pytest.mark.parametrize("with_deployment", [True, False], ids=["deployment", "no-deployment"])
async def test_a_held_request_sent_again_under_a_new_delivery_id_starts_no_second_ask(
    box: Sandbox, with_deployment: bool
) -> None:
    """One request, one chain of asks: its body sent again under a new `X-GitHub-Delivery`
    (the id is outside the signature) while it is held is the same deployment's request, so it
    is `duplicate`; once GitHub confirms, it is taken in once, its run's card posted once."""
    box.github.requests_without_deployment = not with_deployment
    github_down(box)
    run_id, first = await started_on_github(box)
    assert {d.result for d in first} == {"unconfirmed"}

    again = [await box.github.app_hook.replay(d.guid) for d in first]

    assert {d.result for d in again} == {"duplicate"}
    assert len(await held(box)) == 2
    box.github.clear_failures()
    await box.pass_time(timedelta(minutes=2, seconds=1))
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    await asked(box, again=0)
    await box.services.webhooks.settled()
    assert await kept(box, run_id) == ["desktop-internal", "relay-canary-5"]
    assert len(run_cards(box)) == 1 and answers(box) == []


async def test_a_held_request_whose_run_was_cancelled_meanwhile_is_answered_by_nothing(
    box: Sandbox,
) -> None:
    """Someone cancels the run on GitHub while its request is held: once GitHub confirms the
    installation, the request is taken in and found over; no card, no answer to GitHub."""
    github_down(box)
    run_id, first = await started_on_github(box)
    assert {d.result for d in first} == {"unconfirmed"}
    box.github.engine.cancel(run_id)

    box.github.clear_failures()
    await box.pass_time(timedelta(minutes=2, seconds=1))
    await asked(box, again=0)
    await box.services.webhooks.settled()

    assert run_cards(box) == [] and answers(box) == []
    assert [r.answer for r in await box.services.webhooks.rules.for_run(run_id)] == [
        "gone",
        "gone",
    ]


async def test_a_request_held_while_the_lookup_was_slow_is_taken_in_after_it(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The lookup outlives the webhook's 5 s wait (real seconds: the wait is GitHub's limit),
    then answers: the next ask finds the installation known, and asks GitHub nothing more."""
    assert box.github.app is not None
    answered = box.github.app.stall_lookups()
    run_id, first = await started_on_github(box)
    assert {d.result for d in first} == {"unconfirmed"}
    answered.set()
    found = f"GitHub App installation on {REPOSITORY}: {box.github.app.installation_id}"
    async with asyncio.timeout(30):
        while found not in caplog.text:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await box.pass_time(timedelta(minutes=2, seconds=1))
    # Each request's ask is a timer of its own: the card comes with the first taken in.
    await asked(box, again=0)
    await box.services.webhooks.settled()
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)

    assert await kept(box, run_id) == ["desktop-internal", "relay-canary-5"]
    assert len(run_cards(box)) == 1 and await held(box) == []
    assert caplog.text.count(found) == 1  # the asks found it known: GitHub not asked again


async def test_a_held_request_of_another_installation_is_dropped_once_github_answers(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    github_down(box)
    sent = await box.github.app_hook.send(EVENT, request_naming(box, OTHER))
    assert sent.result == "unconfirmed"

    box.github.clear_failures()
    with caplog.at_level(logging.WARNING, logger=RULES_LOG):
        await box.pass_time(timedelta(minutes=2, seconds=1))
        await asked(box, again=0)

    assert await kept(box, 9001000777) == []
    assert (
        "protection rule request for relay-canary-5 of run 9001000777 names GitHub App "
        f"installation {OTHER}, which GitHub does not give as the App's installation"
    ) in caplog.text
    assert run_cards(box) == []


async def test_a_request_github_says_is_of_another_installation_is_refused_at_once(
    box: Sandbox,
) -> None:
    sent = await box.github.app_hook.send(EVENT, request_naming(box, OTHER))

    assert sent.result == "ignored"
    assert await held(box) == [] and await kept(box, 9001000777) == []


async def test_a_request_github_never_confirms_is_dropped_when_its_run_cannot_wait_longer(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """GitHub fails a job not approved within 30 days: the asking stops then."""
    github_down(box)
    assert box.github.app is not None
    sent = await box.github.app_hook.send(
        EVENT, request_naming(box, box.github.app.installation_id)
    )
    assert sent.result == "unconfirmed"

    await box.pass_time(timedelta(days=30, minutes=1))
    await asked(box, again=0)

    assert await kept(box, 9001000777) == []
    assert "which GitHub has not confirmed in 30 days" in caplog.text


async def test_a_request_held_past_its_run_s_limit_while_the_bot_was_down_is_dropped(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Its ask comes due while the bot is down for 30 days; GitHub answers again by then, but
    GitHub has failed the job: the bot neither takes it in nor posts its run's card."""
    github_down(box)
    run_id, first = await started_on_github(box)
    assert {d.result for d in first} == {"unconfirmed"}
    await box.stop_bot()
    box.github.clear_failures()
    box.clock.advance(timedelta(days=30, minutes=5))
    await box.start_bot()

    await box.pass_time(timedelta(seconds=1))
    await asked(box, again=0)
    await box.services.webhooks.settled()

    assert await kept(box, run_id) == [] and run_cards(box) == []
    assert "which GitHub now confirms" not in caplog.text
    assert caplog.text.count("which GitHub has not confirmed in 30 days: dropped") == 2


@pytest.mark.database_matters
async def test_a_held_request_whose_asks_gave_up_is_taken_in_when_redelivered(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Its asks failed every attempt (the database) and were dead-lettered, the ERROR line
    saying to redeliver it from the App's delivery log: that redelivery (the same GUID) is
    taken in, not refused as a delivery seen before (no run's card, nothing kept, for ever)."""
    github_down(box)
    run_id, first = await started_on_github(box)
    assert {d.result for d in first} == {"unconfirmed"}
    timers = TimerStore(box.services.database.sessions)
    due = box.clock() + timedelta(minutes=3)  # the scheduler's clock does not reach them
    asks = await timers.claim_due(
        now=due, owner="tests", lease=timedelta(hours=1), kinds={UNCONFIRMED_TIMER}
    )
    assert len(asks) == 2
    unconfirmed = box.services.webhooks.unconfirmed
    assert unconfirmed is not None
    for ask in asks:  # as the scheduler gives a timer up (`GivingUp.give_up`)
        await unconfirmed.on_timer_dead(ask, reason=Reason("the database is down"))
        assert await timers.bury(timer_id=ask.id, owner="tests", now=box.clock(), error="down")
    assert "redeliver it from the App's delivery log" in caplog.text
    box.github.clear_failures()
    await box.pass_time(timedelta(minutes=1, seconds=1))  # past the last lookup's minute

    again = [await box.github.app_hook.redeliver(d.guid) for d in first]

    assert {d.result for d in again} == {"kept"}
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    await box.services.webhooks.settled()
    assert await kept(box, run_id) == ["desktop-internal", "relay-canary-5"]
    assert len(run_cards(box)) == 1 and answers(box) == []


async def test_a_pending_ask_whose_payload_does_not_read_holds_no_other_request_up(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """One ask's payload does not read (written by another version, or by hand): the requests
    held after it are held as ever, the bad ask named in one WARNING line (not its payload);
    every hold failed with a 500 to GitHub, for as long as the ask was pending."""
    timers = TimerStore(box.services.database.sessions)
    bad = f"{UNCONFIRMED_TIMER}:garbled:1"
    await timers.schedule(
        key=bad,
        kind=UNCONFIRMED_TIMER,
        due_at=box.clock() + timedelta(days=1),
        now=box.clock(),
        payload={"delivery_id": "garbled", "request": "s3cret-looking"},
        service=box.services.service.name,
    )
    github_down(box)

    run_id, first = await started_on_github(box)

    assert {d.result for d in first} == {"unconfirmed"}
    assert len(await held(box)) == 3 and await kept(box, run_id) == []
    skipped = [r for r in caplog.records if bad in r.getMessage()]
    assert skipped and {r.levelno for r in skipped} == {logging.WARNING}
    assert "s3cret-looking" not in caplog.text


@pytest.mark.database_matters
async def test_two_replicas_take_a_held_request_in_once(box: Sandbox) -> None:
    """Both schedulers wake for the asks and race for them; and one ask fired on both at once
    (a lease run out mid-fire) still keeps each request once, with one card."""
    async with in_process_replica(box) as second_replica:
        github_down(box)
        run_id, _ = await started_on_github(box)
        asks = await held(box)
        assert len(asks) == 2
        box.github.clear_failures()

        box.clock.advance(max(t.due_at for t in asks) - box.clock() + timedelta(seconds=1))
        first, second = box.services.rollouts, second_replica[SERVICES].rollouts
        await asyncio.gather(*(replica.on_timer(asks[0]) for replica in (first, second)))
        await box.clock.settle()
        await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
        await box.services.webhooks.settled()
        await second_replica[SERVICES].webhooks.settled()

        assert await kept(box, run_id) == ["desktop-internal", "relay-canary-5"]
        assert len(run_cards(box)) == 1 and answers(box) == []
        assert await held(box) == []
        bodies = [json.loads(d.body)["environment"] for d in box.github.app_hook.deliveries]
        assert sorted(bodies) == ["desktop-internal", "relay-canary-5"]


async def test_a_rerun_s_request_held_behind_its_first_attempt_s_asks_has_its_own_30_days(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """GitHub's request names no deployment, so a re-run's request repeats the first attempt's
    body: while the first is still asked about, the re-run's is `duplicate` (one request, one
    chain of asks), but the asking goes on 30 days from the newest request, not the first:
    GitHub holds the re-run's job that long. Once GitHub answers, the re-run's is taken in."""
    github_down(box)
    assert box.github.app is not None
    body = request_naming(box, box.github.app.installation_id)
    body["deployment"] = None
    assert (await box.github.app_hook.send(EVENT, body)).result == "unconfirmed"
    await box.stop_bot()
    box.clock.advance(timedelta(days=20))  # the first attempt is cancelled, then re-run
    await box.start_bot()
    await asked(box, again=1)  # the chain's first ask, overdue, made: GitHub still down
    rerun_at = box.clock()

    assert (await box.github.app_hook.send(EVENT, body)).result == "duplicate"

    await box.stop_bot()
    box.clock.advance(timedelta(days=11))  # 31 days after the first request, 11 after this
    box.github.clear_failures()
    await box.start_bot()  # the chain's next ask is overdue: made at once
    await asked(box, again=0)
    await box.services.webhooks.settled()

    assert "has not confirmed in 30 days" not in caplog.text
    # Once: moving the clock an hour on as the replica claimed the ask (its 60 s lease on the
    # clock before) let a second worker take it over as if the first had stalled.
    assert caplog.text.count("which GitHub now confirms: taken in") == 1
    (request,) = await box.services.webhooks.rules.for_run(9001000777)
    assert request.environment == "relay-canary-5"
    assert rerun_at <= request.requested_at <= rerun_at + timedelta(seconds=5)
