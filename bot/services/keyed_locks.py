"""Locks per key (a rollout's id) that are dropped once idle: a bot that lives for months with
many services keeps a lock only while someone holds it or waits for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class _Held:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    """Who holds the lock or waits for it."""


class KeyedLocks:
    """One `asyncio.Lock` per key, in this process; forgotten when nobody holds or awaits it
    (a cancelled wait included)."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}

    @contextlib.asynccontextmanager
    async def __call__(self, key: str) -> AsyncIterator[None]:
        held = self._held.setdefault(key, _Held())
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if not held.users:
                del self._held[key]

    def __len__(self) -> int:
        """How many keys have a lock now (held, or waited for)."""
        return len(self._held)
