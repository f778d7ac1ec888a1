"""Durable timer throughput: schedule N due timers, then let 4 replicas (engines) drain them
with `claim_due` + `complete`; prints timers per second and checks each fired once.
Usage: python bench/timers.py [sqlite|postgres] [N]"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta

from databases import fresh_database

from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.timers import TimerStore

REPLICAS = 4


async def drain(store: TimerStore, owner: str, now: datetime) -> int:
    fired = 0
    while due := await store.claim_due(now=now, owner=owner, lease=timedelta(minutes=1), limit=20):
        for timer in due:
            fired += await store.complete(timer_id=timer.id, owner=owner, now=now)
    return fired


async def run(url: str, count: int) -> None:
    await upgrade(url)
    engines = [create_engine(url) for _ in range(REPLICAS)]
    stores = [TimerStore(create_session_factory(engine)) for engine in engines]
    now = datetime.now(UTC)
    for index in range(count):
        await stores[0].schedule(
            key=f"bench:{now.timestamp()}:{index}", kind="bench", due_at=now, now=now
        )
    start = time.perf_counter()
    fired = await asyncio.gather(*(drain(s, f"replica-{i}", now) for i, s in enumerate(stores)))
    elapsed = time.perf_counter() - start
    for engine in engines:
        await engine.dispose()
    assert sum(fired) == count, fired
    print(
        f"{url.split(':')[0]}: {count} timers by {REPLICAS} replicas in {elapsed:.2f} s "
        f"({count / elapsed:.0f}/s), split {fired}, each fired once"
    )


async def main(backend: str, count: int) -> None:
    async with fresh_database(backend) as url:
        await run(url, count)


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    asyncio.run(main(backend, int(sys.argv[2]) if len(sys.argv) > 2 else 1000))
