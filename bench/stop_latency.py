"""How long a Kill-switch takes to reach GitHub while the poller's read of the run hangs.

Each round runs the bot in this process against the sandbox's Slack and GitHub (SQLite, the
sandbox's GitHub timeout of 5 s, windows of an hour so nothing moves by itself), dispatches
a rollout, waits for its internal ring to observe, then has GitHub hold its answer to the
poller's next read of the run past the bot's timeout (the simulator's `timeout` fault, once:
the read is retried and answered). While that read hangs, `/rollout kill` is typed. Measured
from the command: the kill's line in the thread (the stop saved) and the rejection of the
beta ring reaching GitHub.

Usage: python bench/stop_latency.py [ROUNDS]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bot.domain.rollout import Phase, StageState
from sandbox.config import REPOSITORY
from sandbox.harness import Sandbox, fast_plan, write_figures

RINGS_OK = {"internal": {"crash_rate": "0.001"}, "beta": {"crash_rate": "0.0012"}}


async def until(holds: Callable[[], bool]) -> None:
    """Until `holds()`, looked at every 10 ms for two minutes at most."""
    for _ in range(12_000):
        if holds():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("not within two minutes")


async def one_round(workdir: Path) -> tuple[float, float]:
    """(seconds to the kill's line in the thread, seconds to the beta ring's rejection)."""
    plan = fast_plan(workdir / "figures.yml", window="1h")
    async with Sandbox(workdir=workdir, plan_yaml=plan) as box:
        write_figures(box.figures, "desktop", RINGS_OK)
        await box.command("start v1.4.2 --flags-ready")
        await box.wait_for_button("dispatch")
        await box.click("dispatch")
        rollout = await box.wait_until(lambda r: r.phase is Phase.RUNNING)
        await box.wait_until(
            lambda r: r.track("desktop").stage("internal").state is StageState.OBSERVING
        )
        path = f"/repos/{REPOSITORY}/actions/runs/{rollout.run_id}"
        box.github.fault_next("GET", path, "timeout")
        await until(lambda: box.github.faults_injected["timeout"] > 0)  # the poller's read hangs

        began = time.monotonic()
        kill = asyncio.create_task(box.command("kill bench", answered_within=120))
        await box.wait_for_thread("bench", timeout=120)
        saved = time.monotonic() - began
        await until(
            lambda: any(
                r.state == "rejected" and "desktop-beta" in r.environments
                for r in box.github.reviews
            )
        )
        rejected = time.monotonic() - began
        await kill
        return saved, rejected


async def main(rounds: int) -> None:
    saved: list[float] = []
    rejected: list[float] = []
    for n in range(rounds):
        with tempfile.TemporaryDirectory(prefix="stop-latency-") as tmp:
            told, sent = await one_round(Path(tmp))
        saved.append(told)
        rejected.append(sent)
        print(f"round {n + 1}: kill saved and told {told:.2f} s, beta rejected {sent:.2f} s")
    print(
        f"median of {rounds}: saved and told {statistics.median(saved):.2f} s, "
        f"rejected on GitHub {statistics.median(rejected):.2f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rounds", nargs="?", type=int, default=3)
    asyncio.run(main(parser.parse_args().rounds))
