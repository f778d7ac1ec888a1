"""Re-run rollback end to end: the relay rollback job fails on GitHub, a release engineer
clicks Re-run rollback under the thread's message (or on the card's lane), GitHub runs the job
again as the run's next attempt, the bot approves its environment as it did the first time,
and the rollout ends rolled back. Signed Slack requests through the real app, PyGithub against
the GitHub simulator (`POST .../actions/jobs/{job_id}/rerun`).

The stories run on SQLite alone; the one that reopens an ended rollout (its lane's open-track
index, the claim of the re-run) runs on PostgreSQL too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sandbox_views import audit_results, button, dispatched, reviews, value_of
from sqlalchemy.exc import OperationalError

from bot.domain.rollout import Phase, Rollout, TrackState
from sandbox.config import BYSTANDER, RELEASE_CHANNEL
from sandbox.github_app import SandboxApp
from sandbox.harness import Sandbox, write_figures
from sandbox.slack_records import ChannelMessage

pytestmark = pytest.mark.story

RERUN = "rerun_failure_job"
RERUNS = "/repos/*/actions/jobs/*/rerun"
CANARY_FAILS = {"crash_rate": "0.0021", "error_rate": "0.001", "sample": 5000}
INTERNAL_FAILS = {"internal": {"crash_rate": "0.01"}}
"""The desktop ring's gate fails too: its kill-switch ends the rings, so the run ends."""


@pytest.fixture
async def sandbox(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with Sandbox(workdir=tmp_path, database_url=database_url) as box:
        yield box


async def rollback_failed(box: Sandbox) -> tuple[Rollout, ChannelMessage]:
    """`v1.4.2` dispatched; its canary gate fails, and so does the relay rollback job on
    GitHub; the rings' kill-switch halts the desktop track: the rollout ended, the relay
    failed. With the thread's message that tells the rollback failed (and offers Re-run)."""
    box.github.fail_job("next", "Relay auto-rollback", log="helm rollback: timed out")
    write_figures(box.figures, "relay", {"canary": CANARY_FAILS})
    write_figures(box.figures, "desktop", INTERNAL_FAILS)
    await dispatched(box)
    ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)
    assert ended.track("relay").state is TrackState.FAILED
    assert ended.track("desktop").state is TrackState.HALTED
    await box.wait_for_thread("*Relay auto-rollback* ended `failure`")
    (told,) = [
        reply
        for reply in box.card_message().replies
        if "*Relay auto-rollback* ended `failure`" in reply.text
    ]
    return ended, told


def offered(message: ChannelMessage) -> bool:
    return any(
        element.get("action_id") == RERUN
        for block in message.blocks
        for element in block.get("elements", [])
    )


@pytest.mark.database_matters
async def test_re_run_rollback_runs_the_job_again_and_the_rollout_ends_rolled_back(
    sandbox: Sandbox,
) -> None:
    ended, told = await rollback_failed(sandbox)
    (run,) = sandbox.github.runs.values()
    assert offered(told)
    assert '"attempt":1' in await value_of(sandbox, RERUN, "relay")  # the card's lane too

    assert await sandbox.click(RERUN, message=told) is None

    said = await sandbox.wait_for_thread("re-ran *Relay auto-rollback*")
    assert "attempt 2" in said and "Hosted relay may still be on *5% canary*" in said
    done = await sandbox.wait_until(
        lambda r: r.phase is Phase.ENDED and r.track("relay").state is TrackState.ROLLED_BACK
    )
    assert (done.id, done.attempt, run.attempt) == (ended.id, 2, 2)
    assert reviews(sandbox, "relay-rollback") == [("relay-rollback", "approved")] * 2
    assert run.job("relay-rollback").conclusion == "success"
    assert run.job("relay-canary-5").conclusion == "success"  # kept from attempt 1
    await sandbox.wait_for_thread("*Relay auto-rollback* finished.")
    assert not any("not follow a re-run" in line for line in sandbox.thread())
    assert button(sandbox, RERUN, "relay") is None

    # The same message clicked again (a double click, another replica, after a restart):
    # nothing more.
    again = await sandbox.click(RERUN, message=told)
    assert again is not None and "Already done by" in again
    await sandbox.stop_bot()
    await sandbox.start_bot()
    restarted = await sandbox.click(RERUN, message=told)
    assert restarted is not None and "Already done by" in restarted
    assert run.attempt == 2
    assert await audit_results(sandbox, ended.id, RERUN, 1) == ["ok"]


async def test_an_unclear_answer_after_github_re_ran_it_is_read_back_not_sent_again(
    sandbox: Sandbox,
) -> None:
    """GitHub re-runs the job but answers 502: the bot reads the run back, finds attempt 2,
    and follows it as its own; it never asks for a second re-run."""
    _, told = await rollback_failed(sandbox)
    (run,) = sandbox.github.runs.values()
    sandbox.github.fault_next("POST", RERUNS, "apply_then_502")

    assert await sandbox.click(RERUN, message=told) is None

    await sandbox.wait_for_thread("re-ran *Relay auto-rollback*")
    await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
    assert sandbox.github.faults_injected == {"apply_then_502": 1}
    posts = [r for r in sandbox.github.requests if r.method == "POST" and "/rerun" in r.path]
    assert len(posts) == 1 and run.attempt == 2


@pytest.mark.database_matters
async def test_a_re_run_the_bot_could_not_save_is_followed_by_the_next_click_not_sent_again(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub takes the re-run as attempt 2, then saving the rollout as following it fails
    (as a restart between the two would leave it): the click is told so and its claim is
    kept. Once the claim lapses, the next click (or a poll before it) follows attempt 2 as the
    bot's own (it was refused as "re-run on GitHub since"), and nothing is sent to GitHub
    twice."""
    ended, told = await rollback_failed(sandbox)
    (run,) = sandbox.github.runs.values()
    effects = sandbox.services.rollouts.effects
    apply = effects.apply

    async def lost(*args: object, **kwargs: object) -> Rollout:
        monkeypatch.setattr(effects, "apply", apply)
        raise OperationalError("UPDATE rollouts", {}, ConnectionResetError("connection lost"))

    monkeypatch.setattr(effects, "apply", lost)

    first = await sandbox.click(RERUN, message=told)

    assert first is not None and "could not save" in first and "attempt 2" in first, first
    assert "Click it again after" in first and run.attempt == 2
    (still,) = [r for r in await sandbox.rollouts() if r.id == ended.id]
    assert (still.phase, still.attempt) == (Phase.ENDED, 1)
    sandbox.clock.advance(timedelta(seconds=sandbox.settings().claim_lease_seconds + 1))

    answer = await sandbox.click(RERUN, message=told)
    # A poll may look first (`bot.services.lapsed_reruns`): the click is then told it is done.
    assert answer is None or "Already done by" in answer, answer

    said = await sandbox.wait_for_thread("the bot follows it now")
    assert "The re-run of *Relay auto-rollback* the bot sent before" in said
    assert "attempt 2" in said
    done = await sandbox.wait_until(
        lambda r: r.phase is Phase.ENDED and r.track("relay").state is TrackState.ROLLED_BACK
    )
    assert (done.id, done.attempt, run.attempt) == (ended.id, 2, 2)
    posts = [r for r in sandbox.github.requests if r.method == "POST" and "/rerun" in r.path]
    assert len(posts) == 1
    assert not any("re-run on GitHub since" in line for line in sandbox.thread())


async def test_a_re_run_github_applies_after_its_read_back_is_followed_by_the_next_click(
    sandbox: Sandbox,
) -> None:
    """GitHub takes the re-run after the bot gave up on its answer and read the run back (still
    attempt 1): the click says it may still come, and keeps its claim. GitHub runs attempt 2;
    the click after the claim's lease (or a poll before it) follows it (it was told to try
    again, then refused as "re-run on GitHub since"), and nothing is sent twice."""
    ended, told = await rollback_failed(sandbox)
    (run,) = sandbox.github.runs.values()
    sandbox.github.fault_next("POST", RERUNS, "timeout")

    first = await sandbox.click(RERUN, message=told)

    assert first is not None and "not re-run yet" in first and "Click it again after" in first
    for _ in range(1000):  # GitHub applies it once its late answer goes
        if run.attempt == 2:
            break
        await asyncio.sleep(0.01)
    assert run.attempt == 2
    sandbox.clock.advance(timedelta(seconds=sandbox.settings().claim_lease_seconds + 1))

    answer = await sandbox.click(RERUN, message=told)
    # A poll may look first (`bot.services.lapsed_reruns`): the click is then told it is done.
    assert answer is None or "Already done by" in answer, answer

    await sandbox.wait_for_thread("the bot follows it now")
    done = await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
    assert (done.id, done.attempt) == (ended.id, 2)
    posts = [r for r in sandbox.github.requests if r.method == "POST" and "/rerun" in r.path]
    assert len(posts) == 1 and run.attempt == 2


async def test_a_run_a_person_re_ran_after_an_unseen_re_run_is_not_followed_as_the_bots(
    sandbox: Sandbox,
) -> None:
    """The re-run's answer was a 502 and GitHub never made it (the claim kept unrecorded);
    a person then re-runs the whole run on GitHub. The click after the claim's lease does not
    follow that attempt as the re-run the bot sent: it is refused as re-run on GitHub since."""
    ended, told = await rollback_failed(sandbox)
    (run,) = sandbox.github.runs.values()
    sandbox.github.fault_next("POST", RERUNS, "server_error", times=10)

    first = await sandbox.click(RERUN, message=told)

    assert first is not None and "not re-run yet" in first, first
    sandbox.github.clear_faults()
    sandbox.github.engine.rerun(run.id, by="octocat")
    sandbox.clock.advance(timedelta(seconds=sandbox.settings().claim_lease_seconds + 1))

    again = await sandbox.click(RERUN, message=told)

    assert again is not None and "re-run on GitHub since" in again, again
    assert not any("the bot sent before" in line for line in sandbox.thread())
    (still,) = [r for r in await sandbox.rollouts() if r.id == ended.id]
    assert (still.phase, still.attempt) == (Phase.ENDED, 1)


async def test_a_click_while_the_run_still_goes_is_refused_and_changes_nothing(
    sandbox: Sandbox,
) -> None:
    """The relay rollback failed while the desktop rings still deploy: GitHub re-runs a job
    only once its run has ended, so the click says why and nothing changes."""
    sandbox.github.fail_job("next", "Relay auto-rollback", log="helm rollback: timed out")
    sandbox.github.set_job_duration("desktop-cli-ring-internal", timedelta(hours=1))
    write_figures(sandbox.figures, "relay", {"canary": CANARY_FAILS})
    await dispatched(sandbox)
    before = await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.FAILED)
    await sandbox.wait_for_thread("*Relay auto-rollback* ended `failure`")
    (told,) = [r for r in sandbox.card_message().replies if offered(r)]
    assert button(sandbox, RERUN, "relay") is None  # the lane offers it once it can be done

    answer = await sandbox.click(RERUN, message=told)

    assert answer is not None and "is still going" in answer
    assert "GitHub re-runs Relay auto-rollback only once its run has ended" in answer
    after = await sandbox.rollout()
    assert (after.phase, after.attempt, after.version) == (Phase.RUNNING, 1, before.version)
    (run,) = sandbox.github.runs.values()
    assert run.attempt == 1
    assert not [r for r in sandbox.github.requests if "/rerun" in r.path]
    assert await audit_results(sandbox, before.id, RERUN, 1) == ["refused"]


async def test_github_refusing_the_re_run_says_why_and_a_bystander_may_not(
    sandbox: Sandbox,
) -> None:
    ended, told = await rollback_failed(sandbox)

    refused = await sandbox.click(RERUN, message=told, user=BYSTANDER)
    assert refused is not None and "Only release approvers may re-run" in refused

    await sandbox.pass_time(timedelta(days=31))  # GitHub re-runs within 30 days only
    answer = await sandbox.click(RERUN, message=told)

    assert answer is not None and "created over a month ago" in answer
    after = await sandbox.rollout()
    assert (after.phase, after.attempt) == (Phase.ENDED, 1)
    assert after.track("relay").state is TrackState.FAILED
    assert await audit_results(sandbox, ended.id, RERUN, 1) == ["github_error"]
    # GitHub's refusal changed nothing: the click may be tried again (the claim is released).
    assert offered(told) and await value_of(sandbox, RERUN, "relay")


async def test_a_rollout_started_on_the_lane_since_keeps_the_old_rollback_from_running(
    sandbox: Sandbox,
) -> None:
    """`v1.4.3` started after `v1.4.2`'s rollback failed: re-running `v1.4.2`'s rollback would
    take `v1.4.3` back, so the click is refused, naming it, and nothing is sent to GitHub."""
    ended, told = await rollback_failed(sandbox)
    assert "Preflight" in await sandbox.command("start v1.4.3 --flags-ready")

    answer = await sandbox.click(RERUN, message=told)

    assert answer is not None and "`v1.4.3` has rolled out on Hosted relay since `v1.4.2`" in answer
    assert not [r for r in sandbox.github.requests if "/rerun" in r.path]
    assert await audit_results(sandbox, ended.id, RERUN, 1) == ["refused"]


@pytest.mark.database_matters
async def test_a_rollout_started_while_github_re_runs_the_rollback_is_told_not_lost(
    sandbox: Sandbox,
) -> None:
    """`v1.4.3` starts on the lane while GitHub takes the re-run of `v1.4.2`'s rollback (its
    answer slow): GitHub re-ran it, but the lane is `v1.4.3`'s, so `v1.4.2` cannot follow it.
    The click and `v1.4.2`'s thread say so (the re-run waits on GitHub, unwatched by the bot),
    it is on record, and a second click sends nothing."""
    ended, told = await rollback_failed(sandbox)
    (run,) = sandbox.github.runs.values()
    answered = sandbox.github.hold("POST", RERUNS)
    try:
        click = asyncio.create_task(sandbox.click(RERUN, message=told))
        for _ in range(3000):
            if sandbox.github.holding:
                break
            await asyncio.sleep(0.01)
        assert "Preflight" in await sandbox.command("start v1.4.3 --flags-ready")
        answered.set()
        answer = await click
    finally:
        answered.set()

    assert answer is not None and "`v1.4.3`" in answer and "attempt 2" in answer
    assert "does not follow" in answer
    (card, *_) = sandbox.slack.messages(RELEASE_CHANNEL)  # v1.4.2's, the one told
    (said,) = [r.rendered for r in card.replies if "does not follow" in r.rendered]
    assert "*Relay auto-rollback*" in said and "attempt 2" in said and "`v1.4.3`" in said
    (after,) = [r for r in await sandbox.rollouts() if r.id == ended.id]
    assert (after.phase, after.attempt) == (Phase.ENDED, 1)
    assert after.track("relay").state is TrackState.FAILED
    assert run.attempt == 2
    assert await audit_results(sandbox, ended.id, RERUN, 1) == ["rerun_not_followed"]
    again = await sandbox.click(RERUN, message=told)
    assert again is not None and "Already done by" in again
    posts = [r for r in sandbox.github.requests if r.method == "POST" and "/rerun" in r.path]
    assert len(posts) == 1


async def test_as_the_github_app_the_rollback_re_run_is_answered_through_its_rule(
    tmp_path: Path, database_url: str
) -> None:
    """The App answers the rollback environment's protection rule for attempt 2 as for attempt
    1 (its request may come before the rollout is saved as following attempt 2): no card of a
    run the bot does not follow is posted for it."""
    async with Sandbox(workdir=tmp_path, database_url=database_url, github_app=SandboxApp()) as box:
        box.github.protection_rule(set(box.github.engine.protected), reviewers=False)
        _, told = await rollback_failed(box)

        assert await box.click(RERUN, message=told) is None

        done = await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
        assert done.attempt == 2
        assert len(box.slack.messages(RELEASE_CHANNEL)) == 1  # the card only: no run card
