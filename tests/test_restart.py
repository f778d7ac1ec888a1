"""Restart safety: a `rollout-bot serve` process SIGKILLed in the middle of an observation
window loses nothing, and neither does a rolling restart (SIGTERM) of two replicas. The window
still ends, once; nothing is dispatched or approved twice."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest
from sandbox_views import dispatched, holding

from bot.domain.rollout import Rollout, StageState
from sandbox.config import SECRETS
from sandbox.harness import Sandbox, fast_plan, write_figures

RELAY = {
    "canary": {"crash_rate": "0.001", "error_rate": "0.002", "sample": 5000},
    "half": {"crash_rate": "0.001", "error_rate": "0.002", "sample": 5000},
}
RINGS = {"internal": {"crash_rate": "0.001"}, "beta": {"crash_rate": "0.001"}}


def serve_process(tmp_path: Path, database_url: str, *, window: str, lease_seconds: int) -> Sandbox:
    """The bot as a `serve` process of its own, with `window`-long observation windows; what a
    process holds (a timer, an outbox message) is taken over after `lease_seconds`."""
    return Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        plan_yaml=fast_plan(tmp_path / "figures.yml", window=window),
        in_process=False,
        extra_env={"LEASE_SECONDS": str(lease_seconds)},
    )


@pytest.mark.parametrize("back", ["after the window end", "before the window end"])
async def test_a_window_running_when_the_process_dies_ends_once_after_restart(
    tmp_path: Path, database_url: str, back: str
) -> None:
    # What the killed process held (a timer, an outbox message the thread's next lines wait
    # behind) is taken over once its lease runs out: 3 s, as in the chaos run (a live
    # process renews its lease every second; the test waits through it, not 10 s).
    async with serve_process(tmp_path, database_url, window="3s", lease_seconds=3) as box:
        window_end = await canary_observing(box)
        await box.kill_process()
        if back == "after the window end":
            # Down past the window's end: it is evaluated as soon as the bot is back.
            down_for = (window_end - box.github.clock()).total_seconds() + 0.5
            await asyncio.sleep(max(down_for, 0))
        await box.start_process()

        held = await box.wait_until(holding("relay", "canary"))
        # The outbox tells the thread after the save; then let the restarted process poll and
        # fire whatever it would fire twice.
        await box.wait_for_thread("5% canary gate PASS")
        await asyncio.sleep(1)

    # Never early, whichever side of the window's end the bot came back.
    await assert_evaluated_once(box, held, window_end)
    logs = (tmp_path / "serve.log").read_text()
    assert "scheduler" in logs
    assert not any(secret in logs for secret in SECRETS)


async def test_a_window_ending_during_a_rolling_restart_of_two_replicas_is_evaluated_once(
    tmp_path: Path, postgres_database_url: str
) -> None:
    # A lease far longer than the test: a timer a stopping replica kept would stall it.
    async with serve_process(
        tmp_path, postgres_database_url, window="6s", lease_seconds=600
    ) as box:
        await box.start_replica()
        window_end = await canary_observing(box)
        first, second = box.replicas

        # Roll the first replica, then the second across the window's end.
        assert await first.stop() == 0
        await box.start_process()
        await asyncio.sleep(max((window_end - box.github.clock()).total_seconds() - 0.5, 0))
        assert await second.stop() == 0
        held = await box.wait_until(holding("relay", "canary"))
        assert box.github.clock() >= window_end  # it did end while the second was away
        await second.start()
        await box.wait_for_thread("5% canary gate PASS")
        await asyncio.sleep(1)  # both replicas poll and fire whatever they would fire twice
        assert holding("relay", "canary")(await box.rollout())

    await assert_evaluated_once(box, held, window_end)
    logs = "".join(replica.log.read_text() for replica in box.replicas)
    assert logs.count("draining: /readyz answers 503") == 2
    assert not any(secret in logs for secret in SECRETS)


async def canary_observing(box: Sandbox) -> datetime:
    """Start v1.4.2 with passing figures; once its canary observes, when its window ends."""
    write_figures(box.figures, "relay", RELAY)
    write_figures(box.figures, "desktop", RINGS)
    await dispatched(box)
    observing = await box.wait_until(
        lambda r: r.track("relay").stage("canary").state is StageState.OBSERVING
    )
    window_end = observing.track("relay").stage("canary").window_ends_at
    assert window_end is not None
    return window_end


async def assert_evaluated_once(box: Sandbox, held: Rollout, window_end: datetime) -> None:
    """One gate, never early; one dispatch, one canary approval (a review, or the App's answer
    to its rule), one PASS line in the thread."""
    canary = held.track("relay").stage("canary")
    assert canary.verdict is not None and canary.verdict.verdict == "PASS"
    gates = [
        e
        for e in await box.audit.list_for_rollout(held.id)
        if e.action == "gate" and e.stage == "canary"
    ]
    assert len(gates) == 1
    assert gates[0].at >= window_end
    assert len(box.github.dispatches) == 1
    # Through the token's review, or (App mode) the App's answer to its protection rule.
    answers = [*box.github.reviews, *box.github.engine.rule_reviews]
    canary_reviews = [r for r in answers if "relay-canary-5" in r.environments]
    assert len(canary_reviews) == 1
    passes = [t for t in box.thread() if "5% canary gate PASS" in t]
    assert len(passes) == 1
