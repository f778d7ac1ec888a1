"""The report afterwards, end to end: a rollout that ends gets one summary in its thread
(stages, verdicts, people, time held, lead time), posted once across a restart of the bot and
across two `rollout-bot serve` replicas on one PostgreSQL.

Signed Slack requests through the real app, PyGithub against the GitHub simulator, one-second
windows on the sandbox's clock. A story on SQLite; the restart on both (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from figures import CANARY_CRASHING, passing_sandbox, running_sandbox
from sandbox_views import dispatched
from sqlalchemy import func, select

from bot.adapters.charts import PNG_SIGNATURE
from bot.domain.rollout import Phase, Rollout, StageState, TrackState
from bot.services.outbox_messages import SUMMARY
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox, fast_plan
from storage.db import create_engine, create_session_factory
from storage.models import OutboxRow

pytestmark = pytest.mark.story

REPORT = "*Report of `v1.4.2`*"

DELIVERED_WITHIN = 30
"""Seconds until a `serve` replica has delivered what an ended rollout owes the channel (and
answered the click that ended it). The summary's timeline is not waited for: it is drawn in
that replica's own chart worker, at the bot's lower priority, and uploaded after the summary,
in the background."""


def summaries(box: Sandbox) -> list[str]:
    """The summaries in the card's thread, as Slack shows them."""
    (card,) = box.slack.messages(RELEASE_CHANNEL)
    return [reply.rendered for reply in card.replies if REPORT in reply.rendered]


def timelines(box: Sandbox) -> int:
    """How many timeline images were shared."""
    return sum(f.filename == "timeline.png" and f.completed for f in box.slack.files.values())


def both_holding(first: str, second: str):  # type: ignore[no-untyped-def]
    def check(rollout: Rollout) -> bool:
        return (
            rollout.track("relay").stage(first).state is StageState.HOLDING
            and rollout.track("desktop").stage(second).state is StageState.HOLDING
        )

    return check


@pytest.mark.database_matters
async def test_a_rollout_to_100_percent_gets_one_summary_even_after_a_restart(
    tmp_path: Path, database_url: str
) -> None:
    async with running_sandbox(tmp_path, database_url) as box:
        await dispatched(box)
        await box.wait_until(both_holding("canary", "internal"))
        assert "Promoted" in await box.command("promote")
        await box.wait_until(both_holding("half", "beta"))
        assert "Promoted" in await box.command("promote")
        ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)
        assert ended.track("relay").state is TrackState.COMPLETED

        report = await box.wait_for_thread(REPORT)
        assert "completed in" in report.split("\n")[0]
        for stage in ("Hosted relay 5% canary", "Hosted relay 50%", "Hosted relay 100%"):
            assert f"• {stage}: deployed" in report
        assert "Desktop app and CLI GA ring: deployed" in report
        assert report.count("PASS (") == 4  # canary, 50%, internal and beta rings
        manager = f"<@{RELEASE_MANAGER}>"
        assert f"{manager} started" in report and f"{manager} dispatched" in report
        assert report.count(f"{manager} promoted (") == 4
        assert f"promoted by {manager} after" in report
        assert "<@metrics:" not in report and "<@rollout-bot>" not in report  # people only
        # With the charts extra (installed for the tests): one timeline image in the thread.
        await box.slack.wait_for(lambda: timelines(box) == 1)
        (upload,) = [f for f in box.slack.files.values() if f.filename == "timeline.png"]
        assert upload.completed and upload.data is not None
        assert upload.data.startswith(PNG_SIGNATURE) and len(upload.data) > 5000

        # A restarted bot finds nothing owed: the summary went out with the change that ended
        # the rollout, once.
        await box.stop_bot()
        await box.start_bot()
        await box.command("status")
        await box.wait_for_thread(REPORT)
    assert len(summaries(box)) == 1
    assert timelines(box) == 1


async def test_a_rollback_and_a_kill_are_in_the_summary_with_their_reasons(
    tmp_path: Path, database_url: str
) -> None:
    relay = {
        "canary": CANARY_CRASHING,
        "half": {"crash_rate": "0.001", "error_rate": "0.001", "sample": 5000},
    }
    async with running_sandbox(tmp_path, database_url, relay=relay) as box:
        await dispatched(box)
        await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
        await box.wait_until(
            lambda r: r.track("desktop").stage("internal").state is StageState.HOLDING
        )
        # Typed markup is the person's words: the summary shows it, it never notifies.
        typed = "kill the relay went back <!channel> & <https://evil.example|see>"
        assert "kill" in (await box.command(typed)).lower()
        await box.wait_until(lambda r: r.phase is Phase.ENDED)
        report = await box.wait_for_thread(REPORT)
    assert "ended in" in report.split("\n")[0]
    assert "Hosted relay: rolled back (the 5% canary gate failed: see the verdicts)" in report
    assert "5% canary gate ROLLBACK" not in report  # the verdict's own line said it once
    assert "ROLLBACK (crash rate 0.0021 exceeds" in report
    assert f"<@{RELEASE_MANAGER}> tripped the kill-switch (Desktop app and CLI)" in report
    assert "the relay went back &lt;!channel&gt; &amp; &lt;https://evil.example|see&gt;" in report
    assert "<!channel>" not in report and "<https://evil" not in report
    assert "• Hosted relay 50%" not in report  # never reached
    assert len(summaries(box)) == 1


@pytest.mark.postgres
async def test_two_replicas_ending_a_rollout_post_one_summary(
    tmp_path: Path, postgres_database_url: str
) -> None:
    plan = fast_plan(tmp_path / "figures.yml", window="1s", extension="1s")
    async with passing_sandbox(
        tmp_path, database_url=postgres_database_url, plan_yaml=plan, in_process=False
    ) as box:
        second = await box.start_replica()
        await dispatched(box)
        await box.wait_until(both_holding("canary", "internal"))
        assert "Promoted" in await box.command("promote", replica=second)
        await box.wait_until(both_holding("half", "beta"))
        # Both replicas follow the run: each may see it finish and try to end the rollout.
        promoted = await box.command("promote", replica=second, answered_within=DELIVERED_WITHIN)
        assert "Promoted" in promoted
        ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)
        await box.wait_for_thread(REPORT)

        engine = create_engine(box.database_url)
        try:
            sessions = create_session_factory(engine)

            async def count(*criteria: object) -> int:
                async with sessions() as session:
                    query = select(func.count()).select_from(OutboxRow)
                    where = [OutboxRow.rollout_id == ended.id, *criteria]
                    return int(await session.scalar(query.where(*where)) or 0)

            owed = (OutboxRow.delivered_at.is_(None), OutboxRow.dead_at.is_(None))
            async with asyncio.timeout(DELIVERED_WITHIN):
                # Polls the rows other processes deliver: both replicas owe nothing more.
                while await count(*owed):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            assert await count(OutboxRow.kind == SUMMARY) == 1
        finally:
            await engine.dispose()
    assert len(summaries(box)) == 1
