"""What reading and saving one rollout, and claiming its outbox messages and timers, cost: a
rollout of the built-in plan (2 tracks x 3 stages) on a fresh database, each call timed over
CALLS calls, the best of 3, in wall time and in the CPU time of this process (what a replica's
event loop spends on it). A claim finds nothing (none is due yet), or finds one: its lease
ends as it is taken, so the next claim takes it over.

Usage: python bench/rollout_reads.py [sqlite|postgres] [CALLS]
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from databases import fresh_database

from bot.domain.rollout import Check, CheckState, Preflight, new_rollout
from bot.plan_file import load_plan
from bot.services.effects import TIMER_KINDS, WINDOW_TIMER
from bot.services.records import NewMessage
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.outbox import OutboxStore
from storage.rollout_store import RolloutStore
from storage.timers import TimerStore

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
BEFORE = NOW - timedelta(hours=1)
PASSED = Check(CheckState.PASS)
NO_LEASE = timedelta(0)


async def timed(call: Callable[[], Awaitable[object]], calls: int) -> tuple[float, float]:
    """The best of 3 runs of `calls` calls: microseconds per call, wall and CPU."""
    for _ in range(50):
        await call()
    runs = []
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            await call()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(r[0] for r in runs) / calls * 1e6, min(r[1] for r in runs) / calls * 1e6


async def main(backend: str, calls: int) -> None:
    async with fresh_database(backend) as url:
        await upgrade(url)
        engine = create_engine(url)
        try:
            plan = load_plan(None)
            sessions = create_session_factory(engine)
            store = RolloutStore(sessions, clock=lambda: NOW)
            outbox, timers = OutboxStore(sessions), TimerStore(sessions)
            rollout = new_rollout(
                rollout_id="r-bench",
                tag="v1.4.2",
                channel_id="C0BENCH",
                started_by="U0BENCH",
                plan=plan,
                preflight=Preflight(flags=PASSED, migrations=PASSED, image=PASSED),
                now=NOW,
            )
            saved = [await store.create(rollout=rollout, plan=plan)]
            await outbox.add([NewMessage("note", "C0BENCH", "r-bench")], now=NOW)
            await timers.schedule(
                key="r-bench:window", kind=WINDOW_TIMER, due_at=NOW, now=NOW, rollout_id="r-bench"
            )

            async def save() -> None:
                later = replace(saved[0], message_ts="1700000000.000100")
                saved[0] = await store.save(later)

            print(f"{backend}, {calls} calls, µs per call (wall / CPU):")
            for name, call in (
                ("get", lambda: store.get("r-bench")),
                ("plan", lambda: store.plan("r-bench")),
                ("with_plan", lambda: store.with_plan("r-bench")),
                ("save (nothing changed)", save),
                (
                    "outbox claim (none)",
                    lambda: outbox.claim(now=BEFORE, owner="b", lease=NO_LEASE),
                ),
                ("outbox claim (one)", lambda: outbox.claim(now=NOW, owner="b", lease=NO_LEASE)),
                (
                    "outbox claim of a rollout (one)",
                    lambda: outbox.claim(now=NOW, owner="b", lease=NO_LEASE, rollout_id="r-bench"),
                ),
                (
                    "timers claim (none)",
                    lambda: timers.claim_due(
                        now=BEFORE, owner="b", lease=NO_LEASE, limit=1, kinds=TIMER_KINDS
                    ),
                ),
                (
                    "timers claim (one)",
                    lambda: timers.claim_due(
                        now=NOW, owner="b", lease=NO_LEASE, limit=1, kinds=TIMER_KINDS
                    ),
                ),
            ):
                wall, cpu = await timed(call, calls)
                print(f"  {name:32} {wall:8.0f} / {cpu:8.0f}")
        finally:
            await engine.dispose()


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1] if len(sys.argv) > 1 else "postgres",
            int(sys.argv[2]) if len(sys.argv) > 2 else 1000,
        )
    )
