"""The outbox's storage port: what must be said, written with the state change that says it,
delivered by one replica at a time (`storage.outbox` implements it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from bot.services.records import NewMessage, OutboxMessage


class Outboxes(Protocol):
    """The outbox table: messages claimed by one deliverer at a time (`storage.outbox`)."""

    async def add(self, messages: Sequence[NewMessage], *, now: datetime) -> None:
        """Write messages that go with no state change of their own."""
        ...

    async def add_once(
        self, messages: Sequence[NewMessage], *, once: str, now: datetime, action: str
    ) -> bool:
        """Write `messages` unless a call of the key `once` wrote them already (any replica),
        the key's claim (of `action`) and the messages in one transaction; True when written."""
        ...

    async def claim(
        self,
        *,
        now: datetime,
        owner: str,
        lease: timedelta,
        rollout_id: str | None = None,
        limit: int = 20,
    ) -> list[OutboxMessage]: ...

    async def superseded(self, message: OutboxMessage) -> bool: ...

    async def renew(
        self, *, message_id: int, owner: str, now: datetime, lease: timedelta
    ) -> bool: ...

    async def delivered(self, *, message_id: int, owner: str, now: datetime) -> bool: ...

    async def retry(
        self, *, message_id: int, owner: str, due_at: datetime, error: str, failed: bool = True
    ) -> bool: ...

    async def dead(self, *, message_id: int, owner: str, now: datetime, error: str) -> bool: ...

    async def next_due(self) -> datetime | None: ...

    async def pending(self, rollout_id: str | None = None) -> list[OutboxMessage]: ...

    async def kept(self, rollout_id: str, kind: str) -> bool:
        """Whether a message of `kind` of the rollout was delivered or is still to be (not
        given up as a dead letter)."""
        ...

    async def told_once(
        self,
        notice: NewMessage,
        *,
        refusing: str,
        now: datetime,
        kinds: frozenset[str] | None = None,
    ) -> bool:
        """Write the notice that `refusing` refuses the bot (its messages of `kinds` only, when
        given), once per refusal (any replica)."""
        ...

    async def refused(self, channel: str, *, after: int) -> list[OutboxMessage]:
        """Messages to `channel` given up since message `after` (dead letters), oldest first."""
        ...
