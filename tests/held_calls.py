"""A bot's call held on its way (a GitHub dispatch, say), for a story in which something happens
meanwhile: a replica stalled before it sends, GitHub slow to answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class Held:
    """The calls `hold_calls` holds: `asked` is set once one was made, and each goes on (the
    method called as it was) once `go_on` is set."""

    asked: asyncio.Event = field(default_factory=asyncio.Event)
    go_on: asyncio.Event = field(default_factory=asyncio.Event)


def hold_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> Held:
    """Hold every call of the coroutine method `owner.name` (called with keywords) until
    `go_on` is set."""
    call = getattr(owner, name)
    held = Held()

    async def holding(**request: Any) -> Any:
        held.asked.set()
        await held.go_on.wait()
        return await call(**request)

    monkeypatch.setattr(owner, name, holding)
    return held
