"""The npm walkthrough's Release after a click whose outcome was never recorded: the bot died
after claiming Release and before writing its first look (or lost its database meanwhile), so
no look settles the claim. A click once the claim's lease ran out looks at GitHub for a run of
Release started since that claim: found, it is followed; none yet while one may still be listed,
the click is told when to try again; none once the dispatch search ended, Release runs, once.

The sandbox GitHub answers the real PyGithub client; the bot's clock is the sandbox's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.adapters.slack.npm_views import NpmAction
from bot.domain.rollout import DISPATCH_SEARCH
from bot.services.records import Claim, ClaimState
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox
from sandbox.render import render_blocks
from sandbox.slack import ChannelMessage
from storage.claims import ClaimStore
from storage.db import create_engine, create_session_factory

LEASE = timedelta(minutes=1)
RUN_SEARCH = "/repos/*/actions/workflows/*/runs"
"""The listing of a workflow's runs, where the bot looks for a click's run."""
OTHER_MANAGER = "U0OTHER01"
SEARCH_ENDED = timedelta(seconds=11)
"""How long ago the two-replica test's unrecorded click claimed Release: past its lease and the
dispatch search of its replicas (`CLAIM_LEASE_SECONDS`, `DISPATCH_SEARCH_SECONDS`: 10 s each)."""


@pytest.fixture
async def box(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    env = {"CLAIM_LEASE_SECONDS": str(int(LEASE.total_seconds()))}
    async with Sandbox(workdir=tmp_path, database_url=database_url, extra_env=env) as sandbox:
        yield sandbox


async def died_after_its_claim(box: Sandbox) -> tuple[ChannelMessage, Claim]:
    """A walkthrough whose Release click claimed Release and wrote nothing more: the state the
    bot leaves when it dies between the claim and its first look."""
    assert "walkthrough posted" in await box.command("npm-token")
    (message,) = box.slack.messages(RELEASE_CHANNEL)
    claims = ClaimStore(box.services.database.sessions)
    claim = await claims.claim(
        key=f"npm_release:{message.channel}:{message.ts}:None",
        action="npm_release",
        actor=RELEASE_MANAGER,
        now=box.clock(),
    )
    assert claim is not None
    return message, claim


def held_until(claim: Claim) -> int:
    """When the claim's lease ended (a dispatch of its click was sent by then), as Slack's date."""
    return int((claim.claimed_at + LEASE).timestamp())


def step_5(message: ChannelMessage) -> str:
    (block,) = [b for b in message.blocks if b.get("block_id") == "npm_step_5"]
    return render_blocks([block])


async def release(box: Sandbox, message: ChannelMessage) -> str:
    answer = await box.click(str(NpmAction.RUN_RELEASE), message=message)
    assert answer is not None
    return answer


async def test_its_run_found_on_github_is_followed_and_not_dispatched_again(
    box: Sandbox,
) -> None:
    message, claim = await died_after_its_claim(box)
    run_id = box.github.create_foreign_run(
        workflow="release.yml", actor=box.github.actor, branch="main"
    )  # the dispatch went before the bot died
    await box.pass_time(LEASE * 2)

    answer = await release(box, message)

    assert answer.startswith(
        f":warning: This walkthrough is out of date: <@{RELEASE_MANAGER}> clicked it at "
    ), answer
    assert (
        "It was, as far as GitHub can tell: it lists one run of release.yml by the bot started "
        f"while that click held its claim (until <!date^{held_until(claim)}^"
    ) in answer, answer
    assert f"), run {run_id}, and step 5 follows it now" in answer
    await box.slack.wait_for(lambda: "ENEEDAUTH" in step_5(message), timeout=30)
    assert f"/actions/runs/{run_id}|" in step_5(message)
    assert box.github.dispatches == []
    stored = await ClaimStore(box.services.database.sessions).get(claim.key)
    assert stored is not None and stored.state is ClaimState.DONE


async def test_no_run_yet_while_one_may_still_be_listed_is_told_when_to_try_again(
    box: Sandbox,
) -> None:
    message, claim = await died_after_its_claim(box)
    await box.pass_time(LEASE * 2)

    answer = await release(box, message)

    assert "GitHub lists no run of it yet" in answer, answer
    gone = int((claim.claimed_at + DISPATCH_SEARCH).timestamp())
    assert f"Click Release again after <!date^{gone}^" in answer
    assert "if no run has appeared by then, it runs Release" in answer
    assert box.github.dispatches == []
    assert "Dispatching" not in step_5(message)


async def test_several_runs_since_the_claim_are_named_and_nothing_is_dispatched(
    box: Sandbox,
) -> None:
    """Which run is that click's cannot be told: none is taken for it, and none started."""
    message, _claim = await died_after_its_claim(box)
    runs = [
        box.github.create_foreign_run(workflow="release.yml", actor=box.github.actor, branch="main")
        for _ in range(2)
    ]
    await box.pass_time(DISPATCH_SEARCH + LEASE)

    answer = await release(box, message)

    assert "GitHub lists 2 runs of release.yml by the bot started while that click held" in answer
    assert f": {runs[0]}, {runs[1]}. So" in answer or f": {runs[1]}, {runs[0]}. So" in answer, (
        answer
    )
    assert box.github.dispatches == []
    assert "/actions/runs/" not in step_5(message)


async def test_no_run_once_the_search_ended_runs_release_once(box: Sandbox) -> None:
    message, _claim = await died_after_its_claim(box)
    await box.pass_time(DISPATCH_SEARCH + LEASE)

    answer = await release(box, message)

    assert "it did not start, so Release runs now" in answer, answer
    assert answer.startswith(f"<@{RELEASE_MANAGER}> clicked it at "), answer
    (dispatch,) = box.github.dispatches
    await box.slack.wait_for(lambda: f"/actions/runs/{dispatch.run_id}|" in step_5(message))
    await asyncio.sleep(0.5)  # a second dispatch, if any, would be there by now
    assert len(box.github.dispatches) == 1


async def test_a_release_started_after_that_clicks_claim_lapsed_is_not_taken_for_its_run(
    box: Sandbox,
) -> None:
    """A run by the bot created after the click's claim ran out (another walkthrough's Release)
    was not dispatched by that click: it is neither followed here nor taken as a reason not to
    run Release."""
    message, claim = await died_after_its_claim(box)
    await box.pass_time(LEASE * 2)
    others = box.github.create_foreign_run(
        workflow="release.yml", actor=box.github.actor, branch="main"
    )  # another walkthrough's Release, a minute after that click's claim lapsed
    await box.pass_time(DISPATCH_SEARCH)

    answer = await release(box, message)

    assert "GitHub lists no run of release.yml by the bot started while that click held its " in (
        answer
    ), answer
    assert f"(until <!date^{held_until(claim)}^" in answer
    assert "it did not start, so Release runs now" in answer
    (dispatch,) = box.github.dispatches
    await box.slack.wait_for(lambda: f"/actions/runs/{dispatch.run_id}|" in step_5(message))
    assert f"/actions/runs/{others}|" not in step_5(message)


async def test_a_release_another_walkthrough_follows_is_not_taken_for_that_clicks_run(
    box: Sandbox,
) -> None:
    """Another walkthrough ran Release while that click held its claim: its run, whose id that
    walkthrough recorded and follows, is not that click's. With no other run, that click
    started nothing: once the search ended, Release runs for it."""
    message, claim = await died_after_its_claim(box)
    assert "walkthrough posted" in await box.command("npm-token")
    other = next(m for m in box.slack.messages(RELEASE_CHANNEL) if m.ts != message.ts)
    await box.click(str(NpmAction.RUN_RELEASE), message=other)  # recorded, and followed
    (theirs,) = box.github.dispatches
    await box.slack.wait_for(lambda: f"/actions/runs/{theirs.run_id}|" in step_5(other))
    await box.pass_time(DISPATCH_SEARCH + LEASE)

    answer = await release(box, message)

    assert f"until <!date^{held_until(claim)}^" in answer, answer
    assert f", besides run {theirs.run_id} that other walkthroughs follow, and the search" in (
        answer
    )
    assert "it did not start, so Release runs now" in answer
    assert len(box.github.dispatches) == 2
    ours = box.github.dispatches[1]
    await box.slack.wait_for(lambda: f"/actions/runs/{ours.run_id}|" in step_5(message))


async def test_github_failing_the_search_longer_than_its_retries_dispatches_nothing(
    box: Sandbox,
) -> None:
    """GitHub cannot be asked whether that click started a run (the listing fails beyond every
    retry): nothing is dispatched, the click is told so, and the claim is left as it was; a
    click once GitHub answers again looks anew and runs Release."""
    message, claim = await died_after_its_claim(box)
    await box.pass_time(DISPATCH_SEARCH + LEASE)
    box.github.fault_next("GET", RUN_SEARCH, "server_error", times=50)  # beyond every retry

    answer = await release(box, message)

    assert box.github.faults_injected["server_error"] > 1  # the reads were retried
    assert "GitHub could not be asked whether it started that run (" in answer, answer
    assert "502" in answer
    assert "Release is not dispatched again yet. Click Release again in a minute." in answer
    assert answer.startswith(f":warning: This walkthrough is out of date: <@{RELEASE_MANAGER}>")
    assert box.github.dispatches == []
    assert "Dispatching" not in step_5(message)
    stored = await ClaimStore(box.services.database.sessions).get(claim.key)
    assert stored is not None and stored.holder == claim.holder  # not taken over

    box.github.clear_faults()  # GitHub answers again
    again = await release(box, message)

    assert "it did not start, so Release runs now" in again, again
    (dispatch,) = box.github.dispatches
    await box.slack.wait_for(lambda: f"/actions/runs/{dispatch.run_id}|" in step_5(message))


async def test_a_claim_taken_over_and_lapsed_while_the_click_looked_is_not_taken_over_unseen(
    box: Sandbox,
) -> None:
    """Two leases lapsing in a row: while this click asks GitHub about the lapsed claim, another
    click (another replica) takes that claim over and dies in turn. This click does not take the
    second claim over without looking for its run: it looks, and finds that one may still be
    listed, so nothing is dispatched."""
    message, first = await died_after_its_claim(box)
    await box.pass_time(DISPATCH_SEARCH + LEASE)
    box.github.fault_next("GET", RUN_SEARCH, "timeout")  # holds the click's search a moment
    clicked = asyncio.create_task(release(box, message))
    while box.github.faults_injected["timeout"] == 0:  # the click is asking GitHub now
        await asyncio.sleep(0.05)
        assert not clicked.done(), clicked.result()
    claims = ClaimStore(box.services.database.sessions, lease=LEASE)
    second = await claims.claim(
        key=first.key, action="npm_release", actor=OTHER_MANAGER, now=box.clock()
    )
    assert second is not None  # the other click took it over...
    box.clock.advance(LEASE * 2)  # ...and died: its claim lapsed too

    answer = await clicked

    assert box.github.dispatches == []
    assert f"<@{OTHER_MANAGER}> clicked it at " in answer, answer
    gone = int((second.claimed_at + DISPATCH_SEARCH).timestamp())
    assert f"Click Release again after <!date^{gone}^" in answer
    stored = await claims.get(first.key)
    assert stored is not None and stored.holder == second.holder


async def test_two_replicas_clicked_at_once_after_the_search_run_release_once(
    tmp_path: Path, postgres_database_url: str
) -> None:
    """The same walkthrough's Release clicked on two `rollout-bot serve` replicas at once, once
    the search for the unrecorded click's run ended: one takes the claim over and dispatches."""
    # A claim lease of 10 s: a dispatch is sent with half its claim's lease left at least,
    # and the system's clock runs on between the takeover and the POST (a loaded machine).
    env = {"CLAIM_LEASE_SECONDS": "10", "DISPATCH_SEARCH_SECONDS": "10", "LEASE_SECONDS": "2"}
    async with Sandbox(
        workdir=tmp_path, database_url=postgres_database_url, in_process=False, extra_env=env
    ) as box:
        other = await box.start_replica()
        assert "walkthrough posted" in await box.command("npm-token")
        (message,) = box.slack.messages(RELEASE_CHANNEL)
        engine = create_engine(postgres_database_url)
        try:
            claim = await ClaimStore(create_session_factory(engine)).claim(
                key=f"npm_release:{message.channel}:{message.ts}:None",
                action="npm_release",
                actor=RELEASE_MANAGER,
                # The replicas keep the system's clock: a claim made 11 s ago has its lease
                # and the dispatch search (10 s each) behind it, without waiting them out.
                now=datetime.now(UTC) - SEARCH_ENDED,
            )
        finally:
            await engine.dispose()
        assert claim is not None

        answers = await asyncio.gather(
            box.click(str(NpmAction.RUN_RELEASE), message=message),
            box.click(str(NpmAction.RUN_RELEASE), message=message, replica=other),
        )

        ran = [a for a in answers if a is not None and "so Release runs now" in a]
        assert len(ran) == 1, answers
        (dispatch,) = box.github.dispatches
        await box.slack.wait_for(lambda: f"/actions/runs/{dispatch.run_id}|" in step_5(message))
        await asyncio.sleep(0.5)  # a second dispatch, if any, would be there by now
        assert len(box.github.dispatches) == 1
