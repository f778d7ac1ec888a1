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
from sqlalchemy import func, select, update
from test_rerun_rollback import RERUN, RERUNS, offered, rollback_failed

from bot.domain.controls import CardRef
from bot.domain.rollout import InvalidTransition, Phase, TrackState
from bot.services.outbox_messages import SUMMARY
from bot.services.requests import Origin, Via
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox
from sandbox.slack_records import ChannelMessage
from storage.db import create_engine, create_session_factory
from storage.models import OutboxRow

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


async def a_click_again_is_already_done(box: Sandbox, told: ChannelMessage) -> None:
    """A click of Re-run rollback on `told` once the bot followed the re-run: answered as
    already done, and still the one re-run sent to GitHub."""
    again = await box.click(RERUN, message=told)
    assert again is not None and "Already done by" in again, again
    assert posts(box) == 1


def past_the_lease(box: Sandbox) -> None:
    box.clock.advance(timedelta(seconds=box.settings().claim_lease_seconds + 1))


async def interrupted_once_sent(box: Sandbox, rollout_id: str) -> None:
    """A click of Re-run rollback on attempt 1, cancelled (as a shutdown ends it) while GitHub
    takes the re-run; back once GitHub runs attempt 2."""
    (run,) = box.github.runs.values()
    answered = box.github.hold("POST", RERUNS)
    clicker = Origin(actor=RELEASE_MANAGER, channel_id=RELEASE_CHANNEL, via=Via.CLICK)
    card = CardRef(rollout_id, "relay", attempt=1)
    try:
        work = asyncio.create_task(box.services.controls.rerun_failure_job(clicker, card))
        await until(lambda: box.github.holding)
        work.cancel()
        with pytest.raises(asyncio.CancelledError):
            await work
    finally:
        answered.set()
    await until(lambda: run.attempt == 2)


async def test_a_shutdown_while_github_takes_the_re_run_keeps_its_claim_and_says_so(
    sandbox: Sandbox,
) -> None:
    """The bot is stopped (its work cancelled, as `serve` ends it after its grace) while GitHub
    takes the re-run: the claim is kept, not released, and the thread says the bot does not
    know; GitHub runs attempt 2; once the claim's lease ran out, the bot looks at the run and
    follows attempt 2 on its own, sending nothing (before: the claim was released, attempt 2
    left unwatched, and a click refused it as a re-run made on GitHub)."""
    ended, told = await rollback_failed(sandbox)
    await interrupted_once_sent(sandbox, ended.id)

    said = await sandbox.wait_for_thread("The bot stopped")
    assert "does not know whether GitHub did" in said and "Click *Re-run rollback* again" in said
    assert await audit_results(sandbox, ended.id, RERUN, 1) == ["rerun_interrupted"]
    past_the_lease(sandbox)

    # Nobody clicks: the bot looks at the run once the claim's lease ran out, and follows it.
    await sandbox.wait_for_thread("the bot follows it now")
    done = await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
    assert (done.id, done.attempt, posts(sandbox)) == (ended.id, 2, 1)
    assert offered(told)
    await a_click_again_is_already_done(sandbox, told)


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


async def test_a_summary_given_up_at_the_first_end_is_written_at_the_end_after_a_re_run(
    sandbox: Sandbox,
) -> None:
    """The rollout's first summary was given up (a dead letter: Slack refused it, or it came
    due while a re-run had reopened the rollout and could not be drawn): when the rollout ends
    again after the re-run, its summary is written then (before: skipped because the audit
    trail had the re-run, so the rollout had none)."""
    ended, told = await rollback_failed(sandbox)
    await sandbox.wait_for_thread("*Report of `v1.4.2`*")
    engine = create_engine(sandbox.database_url)
    try:
        sessions = create_session_factory(engine)
        summaries = (OutboxRow.rollout_id == ended.id, OutboxRow.kind == SUMMARY)
        async with sessions.begin() as session:  # as the outbox gives one up
            await session.execute(
                update(OutboxRow).where(*summaries).values(dead_at=OutboxRow.created_at)
            )

        assert await sandbox.click(RERUN, message=told) is None

        await sandbox.wait_until(
            lambda r: r.phase is Phase.ENDED and r.track("relay").state is TrackState.ROLLED_BACK
        )
        alive = (*summaries, OutboxRow.dead_at.is_(None))
        async with sessions() as session:
            written = await session.scalar(select(func.count()).where(*alive))
        assert written == 1
    finally:
        await engine.dispose()


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


async def test_a_lapsed_re_run_the_lane_moved_past_is_told_once_not_refused_in_a_loop(
    sandbox: Sandbox,
) -> None:
    """The click is interrupted once GitHub took the re-run (attempt 2), and `v1.4.3` starts
    on the lane before the claim's lease runs out: the bot, looking on its own, cannot follow
    attempt 2 (it would take `v1.4.3` back), so `v1.4.2`'s thread is told that attempt 2 waits
    on GitHub unwatched, it is recorded `rerun_not_followed` once, and the claim is done (before:
    refused as "nothing was re-run", recorded as a refusal of the person who clicked, and the
    claim taken over and refused again at every lease)."""
    ended, told = await rollback_failed(sandbox)
    await interrupted_once_sent(sandbox, ended.id)
    assert "Preflight" in await sandbox.command("start v1.4.3 --flags-ready")
    past_the_lease(sandbox)

    (card, *_) = sandbox.slack.messages(RELEASE_CHANNEL)  # v1.4.2's
    await until(lambda: any("does not follow that attempt" in r.rendered for r in card.replies))
    (said,) = [r.rendered for r in card.replies if "does not follow that attempt" in r.rendered]
    assert "attempt 2" in said and "`v1.4.3`" in said
    for _ in range(3):  # more leases and polls (every 0.1 s): nothing more is recorded
        past_the_lease(sandbox)
        await asyncio.sleep(0.3)
    results = await audit_results(sandbox, ended.id, RERUN, 2)
    assert results == ["rerun_interrupted", "rerun_not_followed"], results
    await a_click_again_is_already_done(sandbox, told)


async def test_a_click_held_up_past_half_its_claim_is_refused_and_audited(
    sandbox: Sandbox,
) -> None:
    """The click's read of the run is slow: by the time the re-run would be sent, less than
    half the claim's lease is left. Nothing is sent, the click says so, and the refusal is
    audited `refused` with its reason, as the other refusals are (before: not audited)."""
    ended, _ = await rollback_failed(sandbox)
    read = sandbox.github.hold("GET", "/repos/*/actions/runs/*")
    clicker = Origin(actor=RELEASE_MANAGER, channel_id=RELEASE_CHANNEL, via=Via.CLICK)
    card = CardRef(ended.id, "relay", attempt=1)
    work = asyncio.create_task(sandbox.services.controls.rerun_failure_job(clicker, card))
    try:
        await until(lambda: sandbox.github.holding)
        sandbox.clock.advance(timedelta(seconds=sandbox.settings().claim_lease_seconds * 0.6))
    finally:
        read.set()
    with pytest.raises(InvalidTransition, match="waited too long"):
        await work

    assert posts(sandbox) == 0
    assert await audit_results(sandbox, ended.id, RERUN, 1) == ["refused"]
    (refused,) = [e for e in await sandbox.audit.list_for_rollout(ended.id) if e.action == RERUN]
    assert "waited too long" in str(refused.detail)
