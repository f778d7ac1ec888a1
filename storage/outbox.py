"""The outbox: messages the channel must see, written in the same transaction as the state
change they tell of, then claimed with a lease and delivered by any replica, once.

Order per rollout: only the oldest undelivered message of a rollout can be claimed, so a later
message waits for its earlier ones (also while they back off); a rollout's summary comes after
its other messages, and waits while a re-run has reopened the rollout. A message without a rollout
is delivered on its own. The clock is always passed in.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, case, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot.services.records import SUMMARY, ClaimState, NewMessage, OutboxMessage
from storage.db import from_row, insert_new, rows_changed
from storage.leases import LeasedRows, ServerOffset, same_clock
from storage.models import ActionClaimRow, OutboxRow, RolloutRow

TOLD = "told_once"
"""The `action` of the claim that messages were written once (`add_once`)."""
REFUSAL_TOLD = "slack_channel_refused"
"""The `action` of the claim that a channel's refusal was told (`told_once`)."""


def refusal_told_key(
    refusing: str, channel: str, after: int, lost: int, *, kinds: Collection[str] | None = None
) -> str:
    """The claim that `refusing`'s refusal (of messages of `kinds` only: its thread replies)
    was told in `channel` (after message `after`), once; again under a new key for each such
    notice given up (`lost`)."""
    scope = "" if kinds is None else ":" + ",".join(sorted(kinds))
    told = f"{REFUSAL_TOLD}:{refusing}{scope}:{channel}:{after}"
    return told + (f":{lost}" if lost else "")


def _pending() -> ColumnElement[bool]:
    return and_(OutboxRow.delivered_at.is_(None), OutboxRow.dead_at.is_(None))


def _oldest_of_its_rollout() -> ColumnElement[bool]:
    """The message is the next its rollout owes the channel (or belongs to no rollout). A
    summary (`SUMMARY`, drawn from the rollout as it ended) comes after every other message of
    its rollout, and not while its rollout is open (a re-run reopened it): the later messages
    pass it by meanwhile, so it holds up nothing and waits without counting attempts."""
    earlier = aliased(OutboxRow)
    of_its_rollout = and_(
        earlier.rollout_id == OutboxRow.rollout_id,
        earlier.delivered_at.is_(None),
        earlier.dead_at.is_(None),
    )
    reopened = (
        select(RolloutRow.id)
        .where(RolloutRow.id == OutboxRow.rollout_id, RolloutRow.ended_at.is_(None))
        .exists()
    )
    return or_(
        OutboxRow.rollout_id.is_(None),
        and_(
            OutboxRow.kind != SUMMARY,
            OutboxRow.id
            == select(func.min(earlier.id))
            .where(of_its_rollout, earlier.kind != SUMMARY)
            .scalar_subquery(),
        ),
        and_(
            OutboxRow.kind == SUMMARY,
            ~reopened,
            ~select(earlier.id)
            .where(of_its_rollout, or_(earlier.kind != SUMMARY, earlier.id < OutboxRow.id))
            .exists(),
        ),
    )


async def enqueue(session: AsyncSession, messages: Sequence[NewMessage], *, now: datetime) -> None:
    """Write messages inside the caller's transaction (the state change they tell of)."""
    if not messages:
        return
    await session.execute(
        insert(OutboxRow),
        [
            {
                "rollout_id": message.rollout_id,
                "channel_id": message.channel_id,
                "kind": message.kind,
                "payload": dict(message.payload),
                "created_at": now,
                "due_at": now,
                "attempts": 0,
            }
            for message in messages
        ],
    )


class _Told(Exception):
    """Rolls back the claims of `add_each_once`: what it would write was told already."""


async def _claimed(session: AsyncSession, key: str, action: str, now: datetime) -> bool:
    """Claim `key` as done in `session`'s transaction: False when it was claimed before."""
    claim = {
        "key": key,
        "action": action,
        "actor": "outbox",
        "state": ClaimState.DONE.value,
        "holder": secrets.token_hex(8),
        "claimed_at": now,
        "done_at": now,
    }
    written = await session.execute(
        insert_new(session, ActionClaimRow, claim, unique=ActionClaimRow.key)
    )
    return rows_changed(written) > 0


class OutboxStore:
    """The outbox table, safe for any number of replicas on PostgreSQL or SQLite."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        server_offset: ServerOffset = same_clock,
    ) -> None:
        """`server_offset`: the database server's clock minus this replica's, which the
        leases' ends are written and compared on (`storage.leases`)."""
        self._sessions = sessions
        self._leases = LeasedRows(sessions, OutboxRow, _pending(), server_offset=server_offset)
        attempts = case(
            (OutboxRow.claimed_by.is_(None), OutboxRow.attempts), else_=OutboxRow.attempts + 1
        )
        self._claim = self._leases.claims(
            _oldest_of_its_rollout(), oldest_first=(OutboxRow.id,), attempts=attempts
        )
        self._claim_of_rollout = self._leases.claims(
            _oldest_of_its_rollout(),
            OutboxRow.rollout_id == bindparam("of_rollout"),
            oldest_first=(OutboxRow.id,),
            attempts=attempts,
        )

    async def add(self, messages: Sequence[NewMessage], *, now: datetime) -> None:
        async with self._sessions.begin() as session:
            await enqueue(session, messages, now=now)

    async def add_once(
        self, messages: Sequence[NewMessage], *, once: str, now: datetime, action: str = TOLD
    ) -> bool:
        """Write `messages` unless a call of the key `once` wrote them already (any replica):
        the claim of the key (`action_claims`, done at once) and the messages in one
        transaction. True when written."""
        async with self._sessions.begin() as session:
            if not await _claimed(session, once, action, now):
                return False
            await enqueue(session, messages, now=now)
            return True

    async def add_each_once(
        self,
        groups: Mapping[str, Sequence[str]],
        messages: Callable[[list[str]], Sequence[NewMessage]],
        *,
        now: datetime,
        unless: Collection[str] = (),
    ) -> list[str]:
        """Claim every key of each group and write what `messages` makes of the groups none
        of whose keys any call claimed before (any replica), in one transaction; nothing at
        all while a key of `unless` is claimed (by `add_once`). The groups written, in order.
        The claims are written first: SQLite never has to upgrade a read lock."""
        try:
            async with self._sessions.begin() as session:
                new = [
                    name
                    for name, keys in groups.items()
                    if all([await _claimed(session, key, TOLD, now) for key in keys])
                ]
                if unless and await session.scalar(
                    select(ActionClaimRow.key).where(ActionClaimRow.key.in_(unless)).limit(1)
                ):
                    raise _Told
                await enqueue(session, messages(new) if new else [], now=now)
                return new
        except _Told:
            return []

    async def claim(
        self,
        *,
        now: datetime,
        owner: str,
        lease: timedelta,
        rollout_id: str | None = None,
        limit: int = 20,
    ) -> list[OutboxMessage]:
        """Claim due messages for `owner` until `now + lease`: the oldest undelivered message
        of each rollout (of `rollout_id` only, when given), oldest first. Each message goes
        to one caller, however many replicas claim at once. Taking over a claim whose lease
        ran out counts an attempt: its owner may have posted it before it died."""
        async with self._sessions.begin() as session:
            claim, bound = (
                (self._claim, {})
                if rollout_id is None
                else (self._claim_of_rollout, {"of_rollout": rollout_id})
            )
            claimed = await claim(session, now=now, owner=owner, lease=lease, limit=limit, **bound)
            messages = [self._message(row) for row in claimed]
        return sorted(messages, key=lambda message: message.id)

    async def superseded(self, message: OutboxMessage) -> bool:
        """Whether a newer message of the same kind waits for the same rollout (a card redraw
        that a later redraw makes pointless)."""
        if message.rollout_id is None:
            return False
        async with self._sessions() as session:
            newer = await session.scalar(
                select(OutboxRow.id)
                .where(
                    _pending(),
                    OutboxRow.rollout_id == message.rollout_id,
                    OutboxRow.kind == message.kind,
                    OutboxRow.id > message.id,
                )
                .limit(1)
            )
            return newer is not None

    async def renew(self, *, message_id: int, owner: str, now: datetime, lease: timedelta) -> bool:
        """Hold the claim until `now + lease`; False when `owner` lost it (its lease ran out
        and another replica took the message over)."""
        return await self._leases.update_claimed(
            message_id, owner, lease_until=self._leases.lease_end(now + lease)
        )

    async def delivered(self, *, message_id: int, owner: str, now: datetime) -> bool:
        """Mark the message delivered; False unless `owner` still holds its claim."""
        return await self._leases.update_claimed(
            message_id, owner, delivered_at=now, lease_until=None
        )

    async def retry(
        self, *, message_id: int, owner: str, due_at: datetime, error: str, failed: bool = True
    ) -> bool:
        """Give the claim back to be delivered at `due_at`; `failed` counts an attempt (a
        429's wait does not)."""
        values: dict[str, Any] = {
            "claimed_by": None,
            "lease_until": None,
            "due_at": due_at,
            "last_error": error,
        }
        if failed:
            values["attempts"] = OutboxRow.attempts + 1
        return await self._leases.update_claimed(message_id, owner, **values)

    async def dead(self, *, message_id: int, owner: str, now: datetime, error: str) -> bool:
        """Give up on the message (dead letter): the rollout's later messages go on."""
        return await self._leases.update_claimed(
            message_id,
            owner,
            dead_at=now,
            lease_until=None,
            last_error=error,
            attempts=OutboxRow.attempts + 1,
        )

    async def told_once(
        self,
        notice: NewMessage,
        *,
        refusing: str,
        now: datetime,
        kinds: frozenset[str] | None = None,
    ) -> bool:
        """Write `notice` of the channel `refusing` the bot, unless a notice of the same
        refusal was written already to the same channel (by any replica): one per refusal and
        failure channel, a refusal told apart by the last message delivered there before it,
        which the notice's payload keeps as `after`. A refusal of some `kinds` only (a
        channel that refuses the bot's thread replies, not its cards) is told apart from a
        whole channel's, by the last message of those kinds delivered there: the cards posted
        meanwhile do not make it a new one. Services that share a release channel
        but not a failure channel each tell their own. True when written. The claim and the
        message are written in one transaction.

        A notice given up undelivered (a replica of the previous version knows no such kind,
        and gives it up at once) does not count: the next message given up there writes
        another. What is read comes before the transaction that writes: on SQLite, a write
        after a read in one transaction fails at once ("database is locked") when another
        connection wrote in between, instead of waiting its turn."""
        async with self._sessions() as session:
            delivered = [OutboxRow.channel_id == refusing, OutboxRow.delivered_at.is_not(None)]
            if kinds is not None:
                delivered.append(OutboxRow.kind.in_(sorted(kinds)))
            after = await session.scalar(select(func.max(OutboxRow.id)).where(*delivered))
            notices = await session.scalars(
                select(OutboxRow.payload).where(
                    OutboxRow.kind == notice.kind,
                    OutboxRow.channel_id == notice.channel_id,
                    OutboxRow.dead_at.is_not(None),
                )
            )
            lost = sum(
                1
                for payload in notices
                if payload.get("channel") == refusing
                and payload.get("after") == (after or 0)
                and bool(payload.get("replies")) == (kinds is not None)
            )
        payload = {**notice.payload, "after": after or 0}
        return await self.add_once(
            [replace(notice, payload=payload)],
            once=refusal_told_key(refusing, notice.channel_id, after or 0, lost, kinds=kinds),
            now=now,
            action=REFUSAL_TOLD,
        )

    async def refused(self, channel: str, *, after: int) -> list[OutboxMessage]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(OutboxRow)
                .where(
                    OutboxRow.channel_id == channel,
                    OutboxRow.id > after,
                    OutboxRow.dead_at.is_not(None),
                )
                .order_by(OutboxRow.id)
            )
            return [self._message(row) for row in rows]

    async def next_due(self) -> datetime | None:
        """When the next message can be claimed: its due time, or its lease end if claimed.
        Only the next message of each rollout counts (the later ones wait for it)."""
        return await self._leases.next_claimable(_oldest_of_its_rollout())

    async def pending(self, rollout_id: str | None = None) -> list[OutboxMessage]:
        """Undelivered, not dead messages (of one rollout when given), oldest first."""
        criteria = [_pending()]
        if rollout_id is not None:
            criteria.append(OutboxRow.rollout_id == rollout_id)
        async with self._sessions() as session:
            rows = await session.scalars(select(OutboxRow).where(*criteria).order_by(OutboxRow.id))
            return [self._message(row) for row in rows]

    async def kept(self, rollout_id: str, kind: str) -> bool:
        async with self._sessions() as session:
            found = await session.scalar(
                select(OutboxRow.id)
                .where(
                    OutboxRow.rollout_id == rollout_id,
                    OutboxRow.kind == kind,
                    OutboxRow.dead_at.is_(None),
                )
                .limit(1)
            )
            return found is not None

    def _message(self, row: OutboxRow) -> OutboxMessage:
        return from_row(
            OutboxMessage,
            row,
            payload=dict(row.payload),
            lease_until=self._leases.held_until(row.lease_until),
        )
