"""Where a look for an earlier post got to when Slack stopped it, so that the retry reads on
from that page.

A look reads `conversations.history` or `.replies` page by page. Installed as a distributed
non-Marketplace app, Slack allows those reads once a minute ("Rate limits"): a look that began
again from the first page after each 429 could never reach its end in a long thread. Slack's
cursors stay good for the same call, so the page reached is kept, in this process, for the
retry of the same look (another replica's retry starts from the first page).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

LOOKS_KEPT = 256
"""Looks stopped midway kept at most (the oldest forgotten first: begun again from page one)."""


@dataclass(frozen=True)
class Look:
    """How far a look got: the cursor of its next page, the messages and pages read."""

    cursor: str | None = None
    seen: int = 0
    pages: int = 0


class Looks:
    """The looks Slack stopped midway, by what they look for and where."""

    def __init__(self, size: int = LOOKS_KEPT) -> None:
        self._size = size
        self._stopped: dict[Hashable, Look] = {}

    def resume(self, key: Hashable) -> Look:
        """Where the look `key` goes on from (the first page when it was never stopped); a
        look is resumed once, and kept again if stopped again."""
        return self._stopped.pop(key, Look())

    def keep(self, key: Hashable, look: Look) -> None:
        if not look.pages:
            return  # stopped on its first page: nothing to go on from
        self._stopped[key] = look
        while len(self._stopped) > self._size:
            del self._stopped[next(iter(self._stopped))]  # the oldest
