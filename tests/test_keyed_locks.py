"""Per-rollout locks forgotten once idle: never two holders of one key, even while waiters are
cancelled at every point (a lock dropped while another waits would be two locks for one key)."""

from __future__ import annotations

import asyncio
import random

from bot.services.keyed_locks import KeyedLocks


async def test_one_holder_per_key_while_waiters_are_cancelled_and_none_kept_once_idle() -> None:
    locks = KeyedLocks()
    inside = {"a": 0, "b": 0}
    most = 0
    shuffle = random.Random(7)

    async def hold(key: str) -> None:
        nonlocal most
        for _ in range(shuffle.randint(0, 6)):  # arrives while others hold, release or wait
            await asyncio.sleep(0)
        async with locks(key):
            inside[key] += 1
            most = max(most, inside[key])
            try:
                for _ in range(shuffle.randint(0, 3)):
                    await asyncio.sleep(0)
            finally:
                inside[key] -= 1

    for _ in range(200):
        tasks = [asyncio.create_task(hold(shuffle.choice("ab"))) for _ in range(20)]
        for _ in range(shuffle.randint(0, 6)):
            await asyncio.sleep(0)
            shuffle.choice(tasks).cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert len(locks) == 0
    assert most == 1
