"""Faults the GitHub simulator injects into its API answers, one request at a time.

The kinds are what a client of GitHub meets in the wild:

- `server_error`: 502 Bad Gateway; nothing was done.
- `timeout`: the answer comes after `delay` seconds (longer than the client waits); a write is
  carried out all the same, late, as GitHub does when the client has given up.
- `secondary_rate_limit`: 403 or 429 with `Retry-After` and GitHub's secondary-rate-limit
  message; nothing was done.
- `apply_then_502`: the request takes effect, but the answer is a 502.
- `accept_then_drop`: the request takes effect, then the TCP connection is closed without an
  answer (the client sees a reset or "remote end closed connection").

Faults are asked for one at a time (`fault_next`) or at random (`inject_faults`, seeded so a
chaos run can be repeated). A random fault may hit any API request, reads and writes alike:
a write that was applied but answered with an error (or not at all) is exactly what the bot
must survive, so dispatches and reviews get the "applied" kinds too. Webhook deliveries and
the log downloads (served from another host on github.com) are never faulted.
"""

from __future__ import annotations

import fnmatch
import random
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    SECONDARY_RATE_LIMIT = "secondary_rate_limit"
    APPLY_THEN_502 = "apply_then_502"
    ACCEPT_THEN_DROP = "accept_then_drop"


APPLIED = frozenset({FaultKind.TIMEOUT, FaultKind.APPLY_THEN_502, FaultKind.ACCEPT_THEN_DROP})
"""The kinds whose request takes effect although the client gets no clear answer."""

SECONDARY_RATE_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID {request_id}."
)


@dataclass
class _Planned:
    kind: FaultKind
    method: str
    pattern: str
    remaining: int


class FaultPlan:
    """Which request gets which fault: the queued ones first, then the seeded random draw."""

    def __init__(self) -> None:
        self.injected: Counter[str] = Counter()
        self._planned: list[_Planned] = []
        self._rate = 0.0
        self._kinds: tuple[FaultKind, ...] = tuple(FaultKind)
        self._random = random.Random(0)
        self._rate_limited = 0

    def next(self, method: str, path_pattern: str, kind: str, *, times: int = 1) -> None:
        self._planned.append(_Planned(FaultKind(kind), method.upper(), path_pattern, times))

    def clear(self) -> None:
        """Forget the faults still queued."""
        self._planned = []

    def random(self, *, rate: float, seed: int, kinds: Sequence[str] | None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        chosen = tuple(FaultKind(kind) for kind in kinds) if kinds is not None else tuple(FaultKind)
        if not chosen:
            raise ValueError("kinds must name at least one fault kind")
        self._rate, self._kinds, self._random = rate, chosen, random.Random(seed)

    def draw(self, method: str, path: str) -> FaultKind | None:
        """The fault for this request, if any (and counted)."""
        kind = self._take_planned(method, path)
        if kind is None and self._rate and self._random.random() < self._rate:
            kind = self._random.choice(self._kinds)
        if kind is not None:
            self.injected[kind.value] += 1
        return kind

    def rate_limit_status(self) -> int:
        """GitHub answers a secondary rate limit with 403 or 429: both, taking turns."""
        self._rate_limited += 1
        return 403 if self._rate_limited % 2 else 429

    def _take_planned(self, method: str, path: str) -> FaultKind | None:
        for planned in self._planned:
            if planned.method in ("*", method) and fnmatch.fnmatchcase(path, planned.pattern):
                planned.remaining -= 1
                self._planned = [p for p in self._planned if p.remaining > 0]
                return planned.kind
        return None


def request_id() -> str:
    """A request id shaped like GitHub's (`X-GitHub-Request-Id`)."""
    return ":".join(secrets.token_hex(n).upper() for n in (2, 2, 4, 4, 4))
