"""The conditional GETs' memory: each URL's last answer (its ETag, JSON and `Link`'s pages), so
that GitHub's `304 Not Modified`, which costs no rate limit, is answered from it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

Kept = tuple[str, Any, dict[str, str]]
"""An answer kept: its ETag, its JSON, its `Link`'s pages."""

KEPT_ANSWERS = 512
"""Conditional GET answers kept (about four per run followed): the oldest go first."""


class KeptAnswers:
    """The last answer of each URL, newest last, for the GitHub workers' threads."""

    def __init__(self) -> None:
        self._answers: OrderedDict[str, Kept] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Kept | None:
        with self._lock:
            return self._answers.get(key)

    def keep(self, key: str, kept: Kept) -> None:
        with self._lock:
            self._answers[key] = kept
            self._answers.move_to_end(key)
            while len(self._answers) > KEPT_ANSWERS:
                self._answers.popitem(last=False)
