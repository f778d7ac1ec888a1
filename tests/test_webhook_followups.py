"""A webhook burst and the per-rollout locks: one follow-up in flight per rollout, the burst's
other deliveries coalesced into the next one (none of their news lost), and the rollout's locks
forgotten once idle. A story through the real app, deliveries signed as GitHub signs them."""

from __future__ import annotations

import asyncio
import json

import pytest
from test_webhooks import Delivery, GitHubHook, observing, reading_held

from bot.domain.rollout import TrackState
from sandbox.config import REPOSITORY
from sandbox.harness import Sandbox

__all__ = ["observing"]  # the fixtures this module's tests use (and conftest's http)

pytestmark = pytest.mark.story


async def a_look_held(box: Sandbox, hook: GitHubHook) -> tuple[int, Delivery, asyncio.Event]:
    """A job's delivery followed, its follow-up's look held by GitHub: the rollout's run, that
    delivery, and the event that lets GitHub answer."""
    run_id = (await box.rollout()).run_id
    assert run_id is not None
    [job] = [d for d in hook.followed() if d.event == "workflow_job"][-1:]
    answered = box.github.hold("GET", f"/repos/{REPOSITORY}/actions/runs/*/pending_deployments")
    first = await hook.post(job.event, hook.unseen(job))
    assert first.answer["result"] == "followed"
    await reading_held(box)
    return run_id, job, answered


async def test_a_burst_holds_one_follow_up_per_rollout_and_acts_on_its_last_news(
    observing: tuple[Sandbox, GitHubHook],
) -> None:
    """GitHub holds the look of the burst's first delivery; its other deliveries wait in one
    follow-up, not one task (and, later, one GitHub read) each. The last delivery's news (the
    run cancelled on GitHub) is acted on once GitHub answers."""
    box, hook = observing
    webhooks = box.services.webhooks
    run_id, job, answered = await a_look_held(box, hook)
    try:
        steps = [json.dumps({**json.loads(job.body), "step": n}).encode() for n in range(20)]
        burst = await asyncio.gather(*(hook.post(job.event, step) for step in steps))
        assert {d.answer["result"] for d in burst} == {"followed"}
        assert len(webhooks._tasks) == 1  # one follow-up in flight; the burst waits in it
        box.github.engine.cancel(run_id)  # the last news: the run cancelled on GitHub
        await box.github.settle()
        assert len(webhooks._tasks) == 1
    finally:
        answered.set()
    await hook.settled()
    after = await box.rollout()
    assert after.track("relay").state is not TrackState.ACTIVE
    assert "cancelled" in "\n".join(box.thread())


async def test_the_locks_of_a_rollout_are_forgotten_once_idle(
    observing: tuple[Sandbox, GitHubHook],
) -> None:
    """Deliveries, a reconcile and a person's stop each take the rollout's locks; once they
    are done, no lock of the rollout is kept (a long-lived bot with many services)."""
    box, hook = observing
    rollouts = box.services.rollouts
    follower = rollouts.reconcile.__self__  # type: ignore[attr-defined]
    [job] = [d for d in hook.followed() if d.event == "workflow_job"][-1:]
    await hook.post(job.event, hook.unseen(job))
    await hook.settled()
    rollout = await box.rollout()
    await rollouts.reconcile(rollout.id)
    assert "Kill-switch tripped" in await box.command("kill crash spike")
    await hook.settled()
    assert len(rollouts.effects._locks) == 0
    assert len(follower._reading) == 0


async def test_follow_ups_a_shutdown_drops_are_acted_on_by_the_next_poll(
    observing: tuple[Sandbox, GitHubHook],
) -> None:
    """A shutdown cancels the follow-up in flight (GitHub holds its look) and drops the
    deliveries queued behind it (the run cancelled on GitHub): nothing is lost, as the
    reconcile is level-triggered, and the restarted bot's first poll acts on that news."""
    box, hook = observing
    run_id, _, answered = await a_look_held(box, hook)
    try:
        box.github.engine.cancel(run_id)  # its deliveries wait behind the held look
        await box.github.settle()
        webhooks = box.services.webhooks
        assert len(webhooks._tasks) == 1 and webhooks._queued
        await webhooks.close(grace=0)  # the shutdown's grace is over: the follow-up cancelled
        assert not webhooks._tasks and not webhooks._queued
    finally:
        answered.set()
    assert (await box.rollout()).track("relay").state is TrackState.ACTIVE
    assert "cancelled" not in "\n".join(box.thread())

    await box.restart_bot({})  # its first poll looks at every run it follows

    after = await box.wait_until(lambda r: r.track("relay").state is not TrackState.ACTIVE)
    assert after.track("desktop").state is not TrackState.ACTIVE
    assert "cancelled" in "\n".join(box.thread())
