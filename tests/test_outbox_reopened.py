"""A rollout's summary is drawn from the rollout as it ended, at delivery. A re-run (Re-run
rollback) reopens an ended rollout whose summary still waits in the outbox (Slack was away):
the summary then waits for the rollout's next end, counting no attempt, while the thread's
later messages (the re-run's lines, the card's redraws) go on; it is posted once the rollout
has ended again, drawn from that end."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import pytest
from test_outbox import CHANNEL, Scene, said, scene, slack  # noqa: F401 - fixtures

from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Phase, Rollout
from bot.services.outbox_messages import card, summary
from storage.rollout_store import RolloutStore


async def test_a_summary_of_a_reopened_rollout_waits_for_its_end_and_blocks_nothing(
    scene: Scene,  # noqa: F811
) -> None:
    rollout, outbox = await scene.card_posted()
    # Its summary was written when it ended; a re-run reopened it before Slack took it.
    await outbox.add([summary(rollout), *said(rollout, "re-ran the rollback"), card(rollout)])

    for _ in range(3):
        await outbox.deliver_due()
        scene.clock.advance(timedelta(seconds=10))

    assert scene.thread() == ["re-ran the rollback"]  # not held behind the summary
    (waiting,) = await scene.store.pending(rollout.id)
    assert (waiting.kind, waiting.attempts) == ("summary", 0)  # waits: no attempt counted

    rollouts = RolloutStore(scene.sessions, clock=scene.clock)
    found = await rollouts.get(rollout.id)
    assert found is not None
    ended = replace(found, phase=Phase.ENDED, ended_at=scene.clock())
    await rollouts.save(ended, outbox=said(ended, "rolled back"))
    await scene.deliver_all([outbox])

    # The summary's timeline chart follows it in the background: wait for it, then read all.
    await scene.slack.wait_for(lambda: len(scene.thread()) == 4)
    thread = scene.thread()
    assert thread[:2] == ["re-ran the rollback", "rolled back"]
    assert thread[2].startswith("*Report of `v1.4.2`*")  # the summary, after the ending's line
    assert thread[3].startswith("v1.4.2: the stages over time")  # its chart, after it
    assert not await scene.store.pending(rollout.id)
    assert scene.slack.messages(CHANNEL)  # one card


class _ReopenedOnRead(RolloutStore):
    """A re-run reopens the rollout just after the outbox claimed its summary: the read that
    draws it finds the rollout open."""

    async def with_plan(self, rollout_id: str) -> tuple[Rollout, RolloutPlan] | None:
        found = await super().with_plan(rollout_id)
        assert found is not None
        rollout, plan = found
        if rollout.ended_at is not None:
            rollout = await self.save(replace(rollout, phase=Phase.RUNNING, ended_at=None))
        return rollout, plan


async def test_a_summary_reopened_after_its_claim_is_given_back_without_an_attempt(
    scene: Scene,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    rollout, _ = await scene.card_posted()
    rollouts = RolloutStore(scene.sessions, clock=scene.clock)
    found = await rollouts.get(rollout.id)
    assert found is not None
    ended = replace(found, phase=Phase.ENDED, ended_at=scene.clock())
    await rollouts.save(ended, outbox=[summary(ended)])
    outbox = scene.replica("b", rollouts=_ReopenedOnRead(scene.sessions, clock=scene.clock))

    with caplog.at_level(logging.WARNING):
        assert await outbox.deliver_due() == 0

    (waiting,) = await scene.store.pending(rollout.id)
    assert (waiting.kind, waiting.attempts) == ("summary", 0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert await outbox.deliver_due() == 0  # it waits for the end: not claimed again
    assert scene.thread() == []
