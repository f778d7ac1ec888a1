"""How a stopped track ends, end to end: signed Slack requests through the real app, PyGithub
against the GitHub simulator, the bot's own poller asleep so each look at the run is one the
test asks for. What the card, `/rollout status` and the thread say of where the release is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from figures import CANARY_OK, RINGS_OK
from sandbox_views import deploying_canary, dispatched, reviews, stage_state
from sqlalchemy import select

from bot.domain.rollout import Phase, Rollout, StageState, TrackState
from sandbox.harness import Sandbox, fast_plan, write_figures
from sandbox.workflows import Workflow, deployment_strategy_workflow, release_workflow
from storage.db import create_engine, create_session_factory
from storage.models import RolloutRow

pytestmark = pytest.mark.story
"""Stories: the database only keeps the rollout between two commands (SQLite alone)."""


def rollback_once_deployed() -> list[Workflow]:
    """Scriptum's workflows, its relay rollback only once the canary deployed:
    `if: failure() && needs.relay-canary-5.result == 'success'` (nothing to roll back before)."""
    strategy = deployment_strategy_workflow()
    jobs = tuple(
        replace(job, if_succeeded=("relay-canary-5",)) if job.key == "relay-rollback" else job
        for job in strategy.jobs
    )
    return [replace(strategy, jobs=jobs), release_workflow()]


@asynccontextmanager
async def quiet(tmp_path: Path, workflows: list[Workflow] | None = None) -> AsyncIterator[Sandbox]:
    """The bot with hour-long windows, its poller asleep, the first gates' figures passing."""
    async with Sandbox(
        workdir=tmp_path,
        poll_interval=3600,
        plan_yaml=fast_plan(tmp_path / "figures.yml", window="1h"),
        workflows=workflows,
    ) as box:
        write_figures(box.figures, "relay", {"canary": CANARY_OK})
        write_figures(box.figures, "desktop", {"internal": RINGS_OK["internal"]})
        yield box


async def looked(box: Sandbox, rollout: Rollout, times: int = 2) -> Rollout:
    for _ in range(times):
        await box.services.rollouts.reconcile(rollout.id)
    return await box.rollout()


async def test_a_roll_back_before_the_canary_deployed_ends_rolled_back_not_failed(
    tmp_path: Path,
) -> None:
    """Roll back while the preflight still ran: the bot rejected the canary, the plan's
    rollback job was skipped (nothing had deployed), and the track ended *failed*."""
    async with quiet(tmp_path, rollback_once_deployed()) as box:
        box.github.set_job_duration("relay-preflight", timedelta(minutes=10))
        rollout = await dispatched(box)
        assert stage_state(rollout, "relay", "canary") is StageState.APPROVING

        await box.command("rollback")
        await box.pass_time(timedelta(minutes=11))
        ended = await looked(box, rollout, times=3)

        assert reviews(box, "relay") == [("relay-canary-5", "rejected")]
        relay = ended.track("relay")
        assert relay.state is TrackState.ROLLED_BACK
        told = await box.wait_for_thread("*Relay auto-rollback* was skipped on GitHub")
        assert "nothing of Hosted relay had been deployed, so there was nothing to roll back" in (
            told
        )
        await box.slack.wait_for(
            lambda: (
                "*Hosted relay*: rolled back, nothing was deployed" in box.card_message().rendered
            )
        )
        status = await box.command("status")
        assert "rolled back, nothing was deployed" in status, status


async def test_a_roll_back_after_100_was_approved_says_it_reached_100(tmp_path: Path) -> None:
    """A person approved 50% and then 100% on github.com during the canary's window; Roll back
    came before the bot looked. 100% deployed, nothing failed, GitHub skipped the rollback:
    the track ends failed, and the card and `/rollout status` said `Relay auto-rollback ended
    skipped (rolled back by @you)`, though nothing was rolled back and the release is at 100%."""
    async with quiet(tmp_path) as box:
        rollout = await deploying_canary(box)
        assert rollout.run_id is not None
        observing = await looked(box, rollout, times=1)
        assert stage_state(observing, "relay", "canary") is StageState.OBSERVING
        for environment in ("relay-rollout-50", "relay-rollout-100"):
            box.github.review(rollout.run_id, [environment], "approved", actor="octocat")

        await box.command("rollback")
        ended = await looked(box, rollout)

        relay = ended.track("relay")
        assert relay.state is TrackState.FAILED
        assert stage_state(ended, "relay", "full") is StageState.STOPPED
        words = "the release reached 100% before the stop took hold; nothing was rolled back"
        told = await box.wait_for_thread("*Relay auto-rollback* ended `skipped`")
        assert "Hosted relay reached *100%* before the stop took hold; nothing was" in told
        await box.slack.wait_for(lambda: words in box.card_message().rendered)
        card = box.card_message().rendered
        assert "rolled back by" not in card.split("Hosted relay", 1)[1].split("\n", 1)[0]
        status = await box.command("status")
        assert words in status, status


async def test_a_re_run_of_a_run_that_ended_while_the_bot_was_down_is_said_not_followed(
    tmp_path: Path,
) -> None:
    """The canary observed; the bot went down; the run was cancelled on GitHub and re-run
    (attempt 2). Back up, the bot kept the rollout running at the canary's window while
    attempt 2 waited at the canary for its review, which never came, and said nothing."""
    async with quiet(tmp_path) as box:
        rollout = await re_run_while_down(box)
        assert rollout.run_id is not None
        engine = box.github.engine

        ended = await looked(box, rollout)

        assert ended.phase is Phase.ENDED
        assert {t.state for t in ended.tracks} == {TrackState.FAILED}
        told = await box.wait_for_thread("was re-run on GitHub (attempt 2)")
        assert "The bot does not follow a re-run, so this rollout ends here" in told
        assert "Hosted relay: failed, last seen at *5% canary*" in told
        assert "Attempt 2 waits at `desktop-internal`, `relay-canary-5`" in told, told
        assert "/rollout start v1.4.2" in told
        # Nothing approved attempt 2 on the bot's behalf.
        assert "relay-canary-5" in {job.environment for job in engine.waiting_jobs(rollout.run_id)}
        await box.slack.wait_for(
            lambda: "the bot does not follow a re-run" in box.card_message().rendered
        )


async def re_run_while_down(box: Sandbox, *, stored_before: bool = False) -> Rollout:
    """The canary observed; the bot down (for an upgrade, its row as the version before wrote
    it when `stored_before`); five minutes later the run cancelled on GitHub and re-run
    (attempt 2); the bot back up."""
    rollout = await deploying_canary(box)
    assert rollout.run_id is not None
    observing = await looked(box, rollout, times=1)
    assert stage_state(observing, "relay", "canary") is StageState.OBSERVING
    await box.stop_bot()
    if stored_before:
        await stored_before_attempts(box, rollout)
    engine = box.github.engine
    box.clock.advance(timedelta(minutes=5))
    engine.cancel(rollout.run_id)
    engine.rerun(rollout.run_id, by="octo-release")
    engine.process()
    await box.start_bot()
    return rollout


async def stored_before_attempts(box: Sandbox, rollout: Rollout) -> None:
    """The rollout's row as a version before the attempt was kept wrote it (no `attempt`)."""
    engine = create_engine(box.database_url)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            row = (await session.execute(select(RolloutRow).filter_by(id=rollout.id))).scalar_one()
            row.context = {k: v for k, v in (row.context or {}).items() if k != "attempt"}
    finally:
        await engine.dispose()


async def test_a_rollout_stored_before_the_upgrade_is_not_fooled_by_a_re_run_while_down(
    tmp_path: Path,
) -> None:
    """The canary observed under the version before; the bot went down for the upgrade; the
    run was cancelled on GitHub and re-run (attempt 2). Back up, the upgraded bot took attempt
    2 for the attempt the rollout always followed: it kept the rollout at the canary's window,
    attempt 2 waited at the canary unanswered, and the thread said nothing."""
    async with quiet(tmp_path) as box:
        rollout = await re_run_while_down(box, stored_before=True)
        assert rollout.run_id is not None
        engine = box.github.engine

        ended = await looked(box, rollout)

        assert ended.phase is Phase.ENDED, ended
        assert {t.state for t in ended.tracks} == {TrackState.FAILED}
        told = await box.wait_for_thread("was re-run on GitHub (attempt 2)")
        assert "Hosted relay: failed, last seen at *5% canary*" in told
        assert "relay-canary-5" in {job.environment for job in engine.waiting_jobs(rollout.run_id)}
