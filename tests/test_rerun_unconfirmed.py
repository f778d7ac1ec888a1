"""Re-run rollback when the bot does not know whether GitHub took the re-run: a shutdown in
the middle of the click, an unclear answer from GitHub, a claim whose lease ran out while its
holder still worked; and the rollout's summary, posted once however often it ends (the stories
of `test_rerun_rollback`, through the real app and the GitHub simulator)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sandbox_views import audit_results
from test_rerun_rollback import RERUN, RERUNS, offered, rollback_failed

from bot.domain.controls import CardRef
from bot.domain.rollout import Phase, TrackState
from bot.services.requests import Origin, Via
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story


@pytest.fixture
async def sandbox(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(workdir=tmp_path, database_url=database_url) as box:
        yield box


def posts(box: Sandbox) -> int:
    return len([r for r in box.github.requests if r.method == "POST" and "/rerun" in r.path])


async def until(condition: object) -> None:
    for _ in range(3000):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never came")


def past_the_lease(box: Sandbox) -> None:
    box.clock.advance(timedelta(seconds=box.settings().claim_lease_seconds + 1))


async def test_a_shutdown_while_github_takes_the_re_run_keeps_its_claim_and_says_so(
    sandbox: Sandbox,
) -> None:
    """The bot is stopped (its work cancelled, as `serve` ends it after its grace) while GitHub
    takes the re-run: the claim is kept, not released, and the thread says the bot does not
    know; GitHub runs attempt 2; once the claim's lease ran out, the bot looks at the run and
    follows attempt 2 on its own, sending nothing (before: the claim was released, attempt 2
    left unwatched, and a click refused it as a re-run made on GitHub)."""
    ended, told = await rollback_failed(sandbox)
    (run,) = sandbox.github.runs.values()
    answered = sandbox.github.hold("POST", RERUNS)
    clicker = Origin(actor=RELEASE_MANAGER, channel_id=RELEASE_CHANNEL, via=Via.CLICK)
    card = CardRef(ended.id, "relay", attempt=1)
    try:
        work = asyncio.create_task(sandbox.services.controls.rerun_failure_job(clicker, card))
        await until(lambda: sandbox.github.holding)
        work.cancel()
        with pytest.raises(asyncio.CancelledError):
            await work
    finally:
        answered.set()
    await until(lambda: run.attempt == 2)

    said = await sandbox.wait_for_thread("The bot stopped")
    assert "does not know whether GitHub did" in said and "Click *Re-run rollback* again" in said
    assert await audit_results(sandbox, ended.id, RERUN, 1) == ["rerun_interrupted"]
    past_the_lease(sandbox)

    # Nobody clicks: the bot looks at the run once the claim's lease ran out, and follows it.
    await sandbox.wait_for_thread("the bot follows it now")
    done = await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
    assert (done.id, done.attempt, posts(sandbox)) == (ended.id, 2, 1)
    assert offered(told)
    again = await sandbox.click(RERUN, message=told)
    assert again is not None and "Already done by" in again, again
    assert posts(sandbox) == 1


async def test_an_unclear_answer_tells_the_thread_what_is_known_and_what_people_may_do(
    sandbox: Sandbox,
) -> None:
    """GitHub answers the re-run 502 and never makes it: the click is told, and so is the
    thread: what is known (attempt 1 still), what the bot does (asks nothing by itself; a
    click after the lease looks first), and that a person may re-run the job on GitHub."""
    ended, told = await rollback_failed(sandbox)
    sandbox.github.fault_next("POST", RERUNS, "server_error", times=10)

    first = await sandbox.click(RERUN, message=told)

    assert first is not None and "not re-run yet" in first, first
    said = await sandbox.wait_for_thread("did not answer clearly")
    assert "the run still shows attempt 1" in said
    assert "The bot does not ask GitHub again on its own" in said
    assert "Click *Re-run rollback* again after" in said
    assert "You may re-run *Relay auto-rollback* yourself" in said
    assert "does not follow an attempt made there" in said
    (still,) = [r for r in await sandbox.rollouts() if r.id == ended.id]
    assert (still.phase, still.attempt) == (Phase.ENDED, 1)


async def test_the_summary_is_posted_once_though_the_rollout_ends_again_after_a_re_run(
    sandbox: Sandbox,
) -> None:
    """The rollout ends (its summary posted), its rollback is re-run, and it ends again rolled
    back: the thread says so, but the summary is not posted a second time."""
    _, told = await rollback_failed(sandbox)
    await sandbox.wait_for_thread("*Report of `v1.4.2`*")

    assert await sandbox.click(RERUN, message=told) is None

    await sandbox.wait_until(
        lambda r: r.phase is Phase.ENDED and r.track("relay").state is TrackState.ROLLED_BACK
    )
    await sandbox.wait_for_thread("Hosted relay: rolled back; Desktop app")
    for _ in range(100):  # the outbox posts the summary with the ending's line, if at all
        await asyncio.sleep(0.01)
    reports = [line for line in sandbox.thread() if line.startswith("*Report of")]
    assert len(reports) == 1, reports


async def test_a_click_whose_claim_lapsed_before_it_sent_sends_nothing_after_a_takeover(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas (no lock shared between them): the first click holds its claim while
    GitHub is slow to show the run, its lease runs out, and a second click takes the claim
    over; both then read the run at attempt 1. The first, no longer holding its claim, sends
    nothing; the second re-runs the job: one POST."""
    _, told = await rollback_failed(sandbox)
    effects = sandbox.services.rollouts.effects
    monkeypatch.setattr(effects, "lock", lambda rollout_id: asyncio.Lock())
    shown = sandbox.github.hold("GET", "/repos/*/actions/runs/*")
    try:
        first = asyncio.create_task(sandbox.click(RERUN, message=told))
        await until(lambda: sandbox.github.holding)
        past_the_lease(sandbox)
        second = asyncio.create_task(sandbox.click(RERUN, message=told))
        await until(lambda: sandbox.github.holding >= 2)
    finally:
        shown.set()
    answers = await asyncio.gather(first, second)

    await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
    assert posts(sandbox) == 1, answers
    assert answers[1] is None
    assert answers[0] is not None and "nothing was sent" in answers[0]
