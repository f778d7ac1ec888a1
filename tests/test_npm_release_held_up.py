"""A Release click held up before its dispatch (a GC pause, a starved event loop, a slow read of
GitHub before the POST) past its claim's lease: the walkthrough went on without it (its look's
search ended, or another click took Release), so it must send nothing then. Before, it sent its
dispatch all the same: a second Release beside the one another replica's click dispatched, two
npm publishes. Signed Slack requests, the real app on two replicas, the simulators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from held_calls import Held, hold_calls
from sqlalchemy.exc import OperationalError
from test_card_left_behind import served_replica
from test_npm_token import RELEASE_JOB, open_walkthrough, step

from bot.adapters.slack.npm_views import NpmAction
from bot.services.records import Claim
from sandbox.harness import Sandbox
from sandbox.slack import ChannelMessage

RELEASE = str(NpmAction.RUN_RELEASE)


@dataclass
class HeldUp:
    """A Release click whose dispatch this bot holds up (before anything is sent, nor its claim
    looked at) until `held.go_on` is set: what a stalled replica does."""

    message: ChannelMessage
    held: Held
    answer: asyncio.Task[str | None]
    """The click's answer, once it ends."""


@asynccontextmanager
async def held_up(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HeldUp]:
    box.github.set_job_duration("changesets", RELEASE_JOB)
    message = await open_walkthrough(box)
    held = hold_calls(monkeypatch, box.services.npm_token.looks.github, "dispatch")
    answer = asyncio.create_task(box.click(RELEASE, message=message))
    try:
        await asyncio.wait_for(held.asked.wait(), timeout=30)
        assert "Dispatching" in step(message, 5)
        yield HeldUp(message, held, answer)
    finally:
        held.go_on.set()
        await asyncio.wait([answer], timeout=30)


async def test_a_click_held_up_past_its_claim_sends_nothing_once_another_click_ran_release(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held up past its lease, the click's look searched for its run, found none and gave its
    claim up; a click on the other replica then ran Release. The first click, going on, must
    not dispatch a second Release: it is told nothing was sent, and step 5 follows the other
    click's run."""
    async with (
        Sandbox(workdir=tmp_path, database_url=database_url) as box,
        served_replica(box) as other,
        held_up(box, monkeypatch) as click,
    ):
        message = click.message

        await box.pass_time(timedelta(minutes=6))  # past the claim's lease and its look's search
        await box.slack.wait_for(lambda: "Could not start" in step(message, 5), timeout=30)
        await box.click(RELEASE, message=message, replica=other, wait=False)
        await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
        (theirs,) = box.github.dispatches

        click.held.go_on.set()
        answer = await asyncio.wait_for(click.answer, timeout=30)

        assert len(box.github.dispatches) == 1, "a second Release was dispatched"
        assert answer is not None and "Nothing was sent" in answer, answer
        assert "step 5 follows" in answer, answer
        assert f"/actions/runs/{theirs.run_id}|" in step(message, 5)
        assert "is in progress" in step(message, 5)


async def test_a_click_held_up_until_its_claim_nearly_ran_out_gives_it_back_unsent(
    tmp_path: Path, sqlite_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held up until less than half its claim's lease was left (a dispatch sent then could
    still be on its way when the claim lapses): nothing is sent, its answer and step 5 say
    why, and the click can be repeated at once (its claim given back); the looks written for
    it follow nothing, not the next click's run."""
    async with (
        Sandbox(workdir=tmp_path, database_url=sqlite_database_url) as box,
        held_up(box, monkeypatch) as click,
    ):
        message = click.message

        await box.pass_time(timedelta(minutes=3))  # of its 5 minutes: its look searches on
        click.held.go_on.set()
        answer = await asyncio.wait_for(click.answer, timeout=30)
        assert answer is not None and "held up before it could send the dispatch" in answer
        assert "Could not start" in step(message, 5)
        assert "held up before it could send the dispatch" in step(message, 5)
        assert box.github.dispatches == []

        answer = await box.click(RELEASE, message=message)
        assert answer is None, answer
        await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
        (dispatch,) = box.github.dispatches
        await box.pass_time(timedelta(seconds=1))  # a look of the first click left would fire
        assert f"/actions/runs/{dispatch.run_id}|" in step(message, 5)
        assert "is in progress" in step(message, 5)


async def test_a_held_up_click_whose_redraw_slack_drops_still_says_in_step_5_nothing_was_sent(
    tmp_path: Path, sqlite_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held up until less than half its claim was left, the click sends nothing, and Slack
    drops its redraw of step 5 (a network error, tried once more): its look, rewritten, draws
    step 5 and only then gives the claim back. Before, the claim was given back first and
    nothing redrew the message: step 5 said *Dispatching* for good."""
    async with (
        Sandbox(workdir=tmp_path, database_url=sqlite_database_url) as box,
        held_up(box, monkeypatch) as click,
    ):
        message = click.message

        await box.pass_time(timedelta(minutes=3))  # of its 5 minutes: its look searches on
        box.slack.drop_next("chat.update", count=2)
        given_back = claim_given_back(box, monkeypatch)
        click.held.go_on.set()
        answer = await asyncio.wait_for(click.answer, timeout=30)
        assert answer is not None and "nothing was sent" in answer, answer
        assert "Slack did not take step 5's redraw" in answer, answer

        # Its look draws step 5 a poll interval later, then gives the claim back.
        await asyncio.wait_for(given_back.wait(), timeout=30)
        assert "Could not start" in step(message, 5)
        assert "held up before it could send the dispatch" in step(message, 5)
        assert_told_unsent(step(message, 5))
        assert box.github.dispatches == []

        answer = await box.click(RELEASE, message=message)
        assert answer is None, answer
        await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
        assert len(box.github.dispatches) == 1


async def test_a_click_whose_claim_cannot_be_read_before_its_dispatch_sends_nothing_and_says_so(
    sqlite_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database away for the look at the click's claim right before its dispatch (a
    statement timeout, a connection reset: `TimeoutError` and `OSError` among the database's
    failures): nothing was sent, so GitHub is neither said to have given no answer nor searched
    for a run the click "may have started" (one another click dispatched meanwhile would be
    taken for it). The claim stays held, its look gives it back once it finds no run, and a
    click then runs Release once. Before, the blink read as GitHub's unclear answer."""
    async with Sandbox(workdir=tmp_path, database_url=sqlite_database_url) as box:
        box.github.set_job_duration("changesets", RELEASE_JOB)
        message = await open_walkthrough(box)
        blinked = blink_claim_read(box, monkeypatch)
        await box.click(RELEASE, message=message)
        assert blinked.is_set()
        assert box.github.dispatches == []
        assert "GitHub gave no answer" not in step(message, 5), step(message, 5)
        assert "Dispatching" in step(message, 5)

        await box.pass_time(timedelta(minutes=6))  # its look gives the claim back
        await box.slack.wait_for(lambda: "Could not start" in step(message, 5), timeout=30)
        assert box.github.dispatches == []
        assert_told_unsent(step(message, 5))
        answer = await box.click(RELEASE, message=message)
        assert answer is None, answer
        await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
        assert len(box.github.dispatches) == 1


def claim_given_back(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Set once a Release click's claim is given back (from now on)."""
    claims = box.services.npm_token.looks.claims
    release, given_back = claims.release, asyncio.Event()

    async def releasing(claim: Claim) -> bool:
        released: bool = await release(claim)
        if released:
            given_back.set()
        return released

    monkeypatch.setattr(claims, "release", releasing)
    return given_back


def blink_claim_read(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """The database fails the first read of a Release click's claim (right before its POST);
    the event is set then."""
    claims = box.services.npm_token.looks.claims
    read, blinked = claims.get, asyncio.Event()

    async def blinking(key: str) -> Any:
        if key.startswith("npm_release:") and not blinked.is_set():
            blinked.set()
            raise TimeoutError  # asyncpg's command_timeout
        return await read(key)

    monkeypatch.setattr(claims, "get", blinking)
    return blinked


async def test_a_click_that_cannot_record_it_sent_nothing_is_not_said_unclearly_answered(
    sqlite_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails the look at the click's claim right before its POST and then the
    write that records that nothing was sent: the look written before the dispatch, left to
    give the claim back, says the bot could not record whether it sent it, not that GitHub's
    answer was unclear (GitHub was never asked)."""
    async with Sandbox(workdir=tmp_path, database_url=sqlite_database_url) as box:
        box.github.set_job_duration("changesets", RELEASE_JOB)
        message = await open_walkthrough(box)
        blinked = blink_claim_read(box, monkeypatch)
        timers = box.services.npm_token.looks.timers
        schedule, refused = timers.schedule, asyncio.Event()

        async def refusing(**timer: Any) -> Any:
            if blinked.is_set() and not refused.is_set():
                refused.set()
                raise TimeoutError
            return await schedule(**timer)

        monkeypatch.setattr(timers, "schedule", refusing)
        await box.click(RELEASE, message=message)

        await box.pass_time(timedelta(minutes=6))  # its look finds no run and gives it back
        await box.slack.wait_for(lambda: "Could not start" in step(message, 5), timeout=30)
        assert box.github.dispatches == []
        shown = step(message, 5)
        assert "did not answer the dispatch" not in shown, shown
        assert "could not record whether it sent the dispatch" in shown, shown
        assert refused.is_set()


async def test_a_click_that_sent_nothing_is_told_in_step_5_though_slack_drops_that_redraw(
    sqlite_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look that settles a click which sent nothing (its claim's read failed) has its
    redraw dropped by Slack: fired again, it redraws step 5, and only then gives the claim
    back. Given back first, the look fired again found no claim and did nothing: step 5 said
    *Dispatching* for good, and other replicas refused Release there."""
    async with Sandbox(workdir=tmp_path, database_url=sqlite_database_url) as box:
        box.github.set_job_duration("changesets", RELEASE_JOB)
        message = await open_walkthrough(box)
        blink_claim_read(box, monkeypatch)
        await box.click(RELEASE, message=message)
        assert "Dispatching" in step(message, 5)

        box.slack.drop_next("chat.update", count=2)  # the client tries a dropped call once more
        await box.pass_time(timedelta(minutes=6))
        await box.slack.wait_for(lambda: "Could not start" in step(message, 5), timeout=30)
        assert_told_unsent(step(message, 5))


def assert_told_unsent(shown: str) -> None:
    """Step 5 says the dispatch was never sent, not that GitHub's answer to it was unclear."""
    assert "did not answer the dispatch" not in shown, shown
    assert "nothing was sent" in shown, shown


def stall_claim_read(box: Sandbox, monkeypatch: pytest.MonkeyPatch, *, at: int = 1) -> None:
    """The replica stalls for 3 minutes (of the claim's 5) while it reads a Release click's
    claim right before a POST of its dispatch (the `at`th such read only)."""
    claims = box.services.npm_token.looks.claims
    read, reads = claims.get, []

    async def stalling(key: str) -> Any:
        if key.startswith("npm_release:"):
            reads.append(key)
            if len(reads) == at:
                box.clock.advance(timedelta(minutes=3))
        return await read(key)

    monkeypatch.setattr(claims, "get", stalling)


async def test_a_click_held_up_while_its_claim_is_read_sends_nothing(
    sqlite_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stall falls in the look at the claim itself (its read waits for the database, the
    replica stalls meanwhile): what is left of the lease is reckoned after that read, right
    before the POST, so the click sends nothing and gives its claim back."""
    async with Sandbox(workdir=tmp_path, database_url=sqlite_database_url) as box:
        box.github.set_job_duration("changesets", RELEASE_JOB)
        message = await open_walkthrough(box)
        stall_claim_read(box, monkeypatch)
        answer = await box.click(RELEASE, message=message)
        assert box.github.dispatches == [], "sent with less than half its claim left"
        assert answer is not None and "held up before it could send the dispatch" in answer


async def test_a_held_up_click_whose_claim_cannot_be_given_back_leaves_its_look_to_do_it(
    sqlite_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held up past half its claim before its first look was due (LEASE_SECONDS longer than
    that), the click's give-back of its claim fails (the database blinks): its look, still
    written, gives the claim back once it finds no run, and step 5 says it did not start; a
    click then runs Release once. Before, the look was cancelled first: nothing settled the
    claim, step 5 showed "Dispatching" for good, and Release was refused on the walkthrough."""
    env = {"LEASE_SECONDS": "200"}  # the first look is due 200 s after the click
    async with Sandbox(workdir=tmp_path, database_url=sqlite_database_url, extra_env=env) as box:
        box.github.set_job_duration("changesets", RELEASE_JOB)
        message = await open_walkthrough(box)
        stall_claim_read(box, monkeypatch)
        claims = box.services.npm_token.looks.claims
        give_back, blinked = claims.release, asyncio.Event()

        async def blinking(claim: Claim) -> bool:
            if not blinked.is_set():
                blinked.set()
                raise OperationalError("DELETE FROM action_claims", {}, ConnectionResetError())
            return await give_back(claim)

        monkeypatch.setattr(claims, "release", blinking)
        given_back = claim_given_back(box, monkeypatch)
        await box.click(RELEASE, message=message)
        assert blinked.is_set()
        assert box.github.dispatches == []

        await box.pass_time(timedelta(minutes=6))  # its look gives the claim back
        await asyncio.wait_for(given_back.wait(), timeout=30)
        assert "Could not start" in step(message, 5)
        assert_told_unsent(step(message, 5))
        answer = await box.click(RELEASE, message=message)
        assert answer is None, answer
        await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
        assert len(box.github.dispatches) == 1


async def test_on_enterprise_server_a_click_held_up_after_the_refused_first_post_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub Enterprise Server refuses the first POST (it takes no `return_run_details`): the
    claim is looked at again before the second one, and a click held up in between sends
    nothing."""
    async with Sandbox(workdir=tmp_path, enterprise=True) as box:
        box.github.set_job_duration("changesets", RELEASE_JOB)
        message = await open_walkthrough(box)
        stall_claim_read(box, monkeypatch, at=2)
        answer = await box.click(RELEASE, message=message)
        assert box.github.dispatches == [], "sent with less than half its claim left"
        assert answer is not None and "held up before it could send the dispatch" in answer
