"""Retrying after a failure: exponential backoff with full jitter, shared by the timers and the
scheduled starts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: retry n waits a random time between `floor` and
    min(`cap`, `base` * 2**(n-1)), so replicas that failed together do not retry together."""

    base: timedelta = timedelta(seconds=10)
    cap: timedelta = timedelta(minutes=5)
    floor: timedelta = timedelta(seconds=1)
    """Never at once: a failed timer is not claimed again in the same pass."""

    def delay(self, attempt: int, rng: random.Random) -> timedelta:
        floor = self.floor.total_seconds()
        ceiling = min(self.cap.total_seconds(), self.base.total_seconds() * 2.0 ** (attempt - 1))
        return timedelta(seconds=floor + max(ceiling - floor, 0.0) * rng.random())

    def longest(self, attempt: int) -> timedelta:
        """The longest the retries before attempt `attempt` can have waited in all."""
        return sum(
            (min(self.cap, self.base * 2 ** (n - 1)) for n in range(1, attempt)), timedelta()
        )
