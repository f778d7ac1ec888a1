"""The scheduler's timer workers: C rollouts' window ends in chains (each end, after 5 ms on
its metrics source, schedules its rollout's next, due at once, and wakes its replica), N in
all, fired by 4 replicas, each in its timer loop of `Scheduler.fire_due` passes (8 workers,
most of them idle); prints the claims and reads of the next due time per timer fired, and
timers per second.
Usage: python bench/timer_workers.py [sqlite|postgres] [N, 500] [C, 8]"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from databases import fresh_database

from bot.adapters.slack import messages
from bot.services.clock import SystemClock, sleep_until_woken
from bot.services.scheduler import Scheduler
from storage.db import create_engine, create_session_factory
from storage.deliveries import DeliveryLog
from storage.looks import LookStore
from storage.migrate import upgrade
from storage.timers import Timer, TimerStore

REPLICAS = 4
WINDOW_END = 0.005  # seconds a window end waits on its metrics source


class CountingTimers(TimerStore):
    claims = 0
    reads = 0

    async def claim_due(self, **options: Any) -> list[Timer]:
        CountingTimers.claims += 1
        return await super().claim_due(**options)

    async def next_due(self, **options: Any) -> datetime | None:
        CountingTimers.reads += 1
        return await super().next_due(**options)


@dataclass
class Chains:
    """The window ends scheduled and fired so far, across the replicas."""

    count: int
    scheduled: int
    fired: list[str] = field(default_factory=list)


@dataclass
class WindowEnds:
    """The rollout service as one replica's scheduler sees it: each window end takes
    WINDOW_END, then schedules its chain's next (`chain:number`) and wakes this replica."""

    timers: TimerStore
    chains: Chains
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_timer(self, timer: Timer) -> None:
        await asyncio.sleep(WINDOW_END)
        self.chains.fired.append(timer.key)
        if self.chains.scheduled < self.chains.count:
            self.chains.scheduled += 1
            await schedule(self.timers, f"{timer.key.split(':')[0]}:{self.chains.scheduled}")
            self.wake.set()

    async def on_timer_dead(self, timer: Timer, **_: Any) -> None:
        raise AssertionError(f"timer {timer.key} dead-lettered")


async def schedule(timers: TimerStore, key: str) -> None:
    now = datetime.now(UTC)
    await timers.schedule(key=key, kind="window", due_at=now, now=now)


async def timers_loop(scheduler: Scheduler, follower: WindowEnds) -> int:
    """The scheduler's timer loop: a pass, then a sleep until a timer is scheduled here (or,
    for another replica's, a short while)."""
    fired = 0
    while len(follower.chains.fired) < follower.chains.count:
        fired += await scheduler.fire_due()
        await sleep_until_woken(follower.wake, 0.02)
        follower.wake.clear()
    return fired


async def run(url: str, count: int, chain_count: int) -> None:
    await upgrade(url)
    engines = [create_engine(url) for _ in range(REPLICAS)]
    sessions = [create_session_factory(engine) for engine in engines]
    chains = Chains(count, scheduled=chain_count)
    followers = [WindowEnds(TimerStore(s), chains) for s in sessions]
    for chain in range(chain_count):
        await schedule(followers[0].timers, f"{chain}:{chain}")
    schedulers = [
        Scheduler(
            timers=CountingTimers(s),
            service=follower,  # type: ignore[arg-type]
            words=messages,
            looks=LookStore(s),
            deliveries=DeliveryLog(s),
            clock=SystemClock(),
            poll_interval=timedelta(hours=1),
            rng=random.Random(7),
            owner=f"replica-{i}",
            wake=follower.wake,
        )
        for i, (s, follower) in enumerate(zip(sessions, followers, strict=True))
    ]
    start = time.perf_counter()
    fired = await asyncio.gather(*map(timers_loop, schedulers, followers))
    elapsed = time.perf_counter() - start
    for engine in engines:
        await engine.dispose()
    assert sum(fired) == count == len(set(chains.fired)), fired
    print(
        f"{url.split(':')[0]}: {count} window ends in {chain_count} chains by {REPLICAS} replicas "
        f"x 8 workers in {elapsed:.2f} s ({count / elapsed:.0f}/s): "
        f"{CountingTimers.claims / count:.2f} claims and {CountingTimers.reads / count:.2f} "
        "next-due reads per timer, each fired once"
    )


async def main(backend: str, count: int, chains: int) -> None:
    async with fresh_database(backend) as url:
        await run(url, count, chains)


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    asyncio.run(main(backend, count, int(sys.argv[3]) if len(sys.argv) > 3 else 8))
