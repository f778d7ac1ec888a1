"""Restart safety: a `rollout-bot serve` process SIGKILLed in the middle of an observation
window loses nothing. The window still ends, once; nothing is dispatched or approved twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.domain.rollout import StageState
from bot.sandbox.config import SECRETS
from bot.sandbox.harness import Sandbox, fast_plan, write_figures

RELAY = {
    "canary": {"crash_rate": "0.001", "error_rate": "0.002", "sample": 5000},
    "half": {"crash_rate": "0.001", "error_rate": "0.002", "sample": 5000},
}
RINGS = {"internal": {"crash_rate": "0.001"}, "beta": {"crash_rate": "0.001"}}


@pytest.mark.parametrize("back", ["after the window end", "before the window end"])
async def test_a_window_running_when_the_process_dies_ends_once_after_restart(
    tmp_path: Path, database_url: str, back: str
) -> None:
    plan = fast_plan(tmp_path / "figures.yml", window="3s")
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=plan, in_process=False
    ) as box:
        write_figures(box.figures, "relay", RELAY)
        write_figures(box.figures, "desktop", RINGS)
        await box.command("start v1.4.2 --flags-ready")
        await box.click("dispatch")
        observing = await box.wait_until(
            lambda r: r.track("relay").stage("canary").state is StageState.OBSERVING
        )
        window_end = observing.track("relay").stage("canary").window_ends_at
        assert window_end is not None

        await box.kill_process()
        if back == "after the window end":
            # Down past the window's end: it is evaluated as soon as the bot is back.
            down_for = (window_end - box.github.clock()).total_seconds() + 0.5
            await asyncio.sleep(max(down_for, 0))
        await box.start_process()

        held = await box.wait_until(
            lambda r: r.track("relay").stage("canary").state is StageState.HOLDING
        )
        canary = held.track("relay").stage("canary")
        assert canary.verdict is not None and canary.verdict.verdict == "PASS"
        # Let the restarted process poll and fire whatever it would fire twice.
        await asyncio.sleep(1)

    gates = [
        e
        for e in await box.audit.list_for_rollout(held.id)
        if e.action == "gate" and e.stage == "canary"
    ]
    assert len(gates) == 1
    assert gates[0].at >= window_end  # never early, whichever side of it the bot came back
    assert len(box.github.dispatches) == 1
    canary_reviews = [r for r in box.github.reviews if "relay-canary-5" in r.environments]
    assert len(canary_reviews) == 1
    passes = [t for t in box.thread() if "5% canary gate PASS" in t]
    assert len(passes) == 1
    logs = (tmp_path / "serve.log").read_text()
    assert "scheduler" in logs
    assert not any(secret in logs for secret in SECRETS)
