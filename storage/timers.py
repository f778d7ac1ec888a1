"""Durable timers shared by several replicas: scheduled once per key, claimed with a lease.

A replica claims due timers for a lease; while the lease runs, no other replica gets them.
When the owner dies, its lease runs out and another replica takes the timer over. Only the
current holder of a claim can mark a timer fired, so a replica that lost its lease cannot
finish work someone else has taken over. Every claim counts an attempt; a timer that failed
too often is dead-lettered (`dead_at`): it is never claimed again, and people are told. The
clock is always passed in.

Each timer carries its rollout's service. A store of one service sees and claims that
service's timers only; without one (the shared scheduler), every service's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.domain.service import DEFAULT_SERVICE
from bot.services.records import NewMessage, NewTimer, Timer
from storage.db import ServiceStore, from_row, insert_new, rows_changed
from storage.leases import LeasedRows, ServerOffset, same_clock
from storage.models import RolloutRow, TimerRow
from storage.outbox import enqueue


def pending_timer() -> ColumnElement[bool]:
    """A timer still to fire: not fired, cancelled or dead-lettered."""
    return and_(
        TimerRow.fired_at.is_(None), TimerRow.cancelled_at.is_(None), TimerRow.dead_at.is_(None)
    )


def new_timer_insert(
    session: AsyncSession,
    timer: NewTimer,
    *,
    service: str,
    now: datetime,
    rollout_id: str | None = None,
) -> Any:
    """The INSERT of `timer`, of `service` and `rollout_id` (if any), written at `now`: once
    per key (a second is a no-op), in the caller's transaction."""
    values = {
        "key": timer.key,
        "kind": timer.kind,
        "service": service,
        "rollout_id": rollout_id,
        "due_at": timer.due_at,
        "payload": dict(timer.payload),
        "attempts": 0,
        "created_at": now,
    }
    return insert_new(session, TimerRow, values, unique=TimerRow.key)


def _of(kinds: Collection[str] | None) -> ColumnElement[bool]:
    """Timers of these kinds (None: of every kind)."""
    return TimerRow.kind.in_(sorted(kinds)) if kinds is not None else true()


class TimerStore(ServiceStore):
    """Timers in the database, safe for any number of replicas on PostgreSQL or SQLite."""

    service_column = TimerRow.service

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        service: str | None = None,
        server_offset: ServerOffset = same_clock,
    ) -> None:
        """`server_offset`: the database server's clock minus this replica's, which the
        leases' ends are written and compared on (`storage.leases`)."""
        super().__init__(sessions, service=service)
        self._leases = LeasedRows(
            sessions, TimerRow, and_(pending_timer(), *self._scope), server_offset=server_offset
        )
        earliest_first = (TimerRow.due_at, TimerRow.id)
        self._claim = self._leases.claims(
            oldest_first=earliest_first, attempts=TimerRow.attempts + 1
        )
        self._claim_of_kinds = self._leases.claims(
            TimerRow.kind.in_(bindparam("kinds", expanding=True)),
            oldest_first=earliest_first,
            attempts=TimerRow.attempts + 1,
        )

    def _pending(self) -> ColumnElement[bool]:
        """Pending timers of the store's service (of every service without one)."""
        return self._leases.pending

    async def schedule(
        self,
        *,
        key: str,
        kind: str,
        due_at: datetime,
        now: datetime,
        rollout_id: str | None = None,
        payload: Mapping[str, Any] | None = None,
        outbox: Sequence[NewMessage] = (),
        service: str | None = None,
        cancel: Collection[str] = (),
    ) -> Timer:
        """Schedule a timer once per key: a second call returns the stored one unchanged.
        `outbox`: what the channel is told of it, written in the same transaction by the call
        that wrote the timer only. `service`: the service it belongs to (the store's when it
        has one); not given, its rollout's, else the default service. `cancel`: the keys of
        pending timers it replaces, cancelled in the same transaction (all or none)."""
        async with self._sessions.begin() as session:
            if cancel:
                await self._cancel(session, cancel, now)
            written = await session.execute(
                insert_new(
                    session,
                    TimerRow,
                    {
                        "key": key,
                        "kind": kind,
                        "service": self._service_of(service, rollout_id),
                        "rollout_id": rollout_id,
                        "due_at": due_at,
                        "payload": dict(payload) if payload is not None else None,
                        "attempts": 0,
                        "created_at": now,
                    },
                    unique=TimerRow.key,
                )
            )
            if rows_changed(written) == 1:
                await enqueue(session, outbox, now=now)
            row = await session.scalar(select(TimerRow).where(TimerRow.key == key))
            assert row is not None
            return self._timer(row)

    def _service_of(self, service: str | None, rollout_id: str | None) -> Any:
        """The service a new timer is written for (a value, or its rollout's, read in the
        INSERT itself); a store of one service writes for that service only."""
        chosen = self._written_for(service, "a timer")
        if chosen is not None or rollout_id is None:
            return chosen or DEFAULT_SERVICE
        return func.coalesce(
            select(RolloutRow.service).where(RolloutRow.id == rollout_id).scalar_subquery(),
            literal(DEFAULT_SERVICE),
        )

    async def settle(
        self,
        *,
        key: str,
        payload: Mapping[str, Any],
        now: datetime,
        cancel: bool = False,
        outbox: Sequence[NewMessage] = (),
    ) -> None:
        """Record in the timer's payload what became of what it waits for (cancelling it, if
        still pending, when `cancel`), with `outbox`, what the channel is told of it, in one
        transaction."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(TimerRow)
                .where(TimerRow.key == key, *self._scope)
                .values(payload=dict(payload))
            )
            if cancel:
                await session.execute(
                    update(TimerRow)
                    .where(TimerRow.key == key, self._pending())
                    .values(cancelled_at=now, claimed_by=None, lease_until=None)
                )
            await enqueue(session, outbox, now=now)

    async def get(self, *, key: str) -> Timer | None:
        async with self._sessions() as session:
            row = await session.scalar(select(TimerRow).where(TimerRow.key == key, *self._scope))
            return self._timer(row) if row is not None else None

    async def claim_due(
        self,
        *,
        now: datetime,
        owner: str,
        lease: timedelta,
        limit: int = 10,
        kinds: Collection[str] | None = None,
    ) -> list[Timer]:
        """Claim up to `limit` due timers for `owner` until `now + lease`, earliest first.

        A timer is claimable when it is due, pending, of one of `kinds` (None: any kind), and
        unclaimed or its lease has run out. Each timer goes to exactly one caller, however many
        replicas claim at once.
        """
        async with self._sessions.begin() as session:
            claim, bound = (
                (self._claim, {})
                if kinds is None
                else (self._claim_of_kinds, {"kinds": sorted(kinds)})
            )
            claimed = await claim(session, now=now, owner=owner, lease=lease, limit=limit, **bound)
            timers = [self._timer(row) for row in claimed]
        return sorted(timers, key=lambda timer: (timer.due_at, timer.id))

    async def complete(self, *, timer_id: int, owner: str, now: datetime) -> bool:
        """Mark the timer fired; False unless `owner` still holds its claim."""
        return await self._leases.update_claimed(timer_id, owner, fired_at=now, lease_until=None)

    async def renew(self, *, timer_id: int, owner: str, lease_until: datetime) -> bool:
        """Extend the claim of a timer still being worked on until `lease_until` (on this
        replica's clock); False unless `owner` holds it."""
        return await self._leases.update_claimed(
            timer_id, owner, lease_until=self._leases.lease_end(lease_until)
        )

    async def release(
        self,
        *,
        timer_id: int,
        owner: str,
        due_at: datetime | None = None,
        error: str | None = None,
    ) -> bool:
        """Give the claim back (the work failed) so any replica retries, at `due_at` if given;
        `error` says why (an error's class and message, never a secret)."""
        values: dict[str, Any] = {"claimed_by": None, "lease_until": None}
        if due_at is not None:
            values["due_at"] = due_at
        if error is not None:
            values["last_error"] = error
        return await self._leases.update_claimed(timer_id, owner, **values)

    async def release_owned(self, *, owner: str) -> int:
        return await self._leases.release_owned(owner)

    async def bury(self, *, timer_id: int, owner: str, now: datetime, error: str) -> bool:
        """Dead-letter the timer its owner gave up on: it is never claimed again (a person
        acts on it), and it stays in the table for the record; False unless `owner` holds it."""
        return await self._leases.update_claimed(
            timer_id, owner, dead_at=now, last_error=error, claimed_by=None, lease_until=None
        )

    async def retold(self, *, timer_id: int, error: str) -> None:
        """Rewrite a dead-lettered timer's `last_error` once its holder was told again (it is
        not told a third time)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(TimerRow)
                .where(TimerRow.id == timer_id, TimerRow.dead_at.is_not(None))
                .values(last_error=error[:1000])
            )

    async def dead_by_service(self) -> dict[str, int]:
        """How many dead-lettered timers belong to a rollout that has not ended, by service:
        the stages they hold still wait for a person (for the bot's own metrics, which name
        the service: one taken out of the services file is followed by nobody)."""
        running = select(RolloutRow.id).where(RolloutRow.ended_at.is_(None))
        async with self._sessions() as session:
            counted = await session.execute(
                select(TimerRow.service, func.count())
                .where(
                    TimerRow.dead_at.is_not(None), TimerRow.rollout_id.in_(running), *self._scope
                )
                .group_by(TimerRow.service)
            )
            return {str(service): int(count) for service, count in counted}

    async def dead_of_active(self, *, kinds: Collection[str]) -> list[Timer]:
        """The dead-lettered timers of `kinds` whose rollout has not ended, earliest first (to
        tell their holder again: one whose service was not configured when it died was told
        nobody)."""
        running = select(RolloutRow.id).where(RolloutRow.ended_at.is_(None))
        async with self._sessions() as session:
            rows = await session.scalars(
                select(TimerRow)
                .where(
                    _of(kinds),
                    TimerRow.dead_at.is_not(None),
                    TimerRow.rollout_id.in_(running),
                    *self._scope,
                )
                .order_by(TimerRow.due_at, TimerRow.id)
            )
            return [self._timer(row) for row in rows]

    async def cancel(self, *, key: str, now: datetime) -> bool:
        """Cancel a pending timer; the key stays taken, so scheduling it again is a no-op."""
        async with self._sessions.begin() as session:
            return await self._cancel(session, [key], now) > 0

    async def cancel_all(self, *, keys: Collection[str], now: datetime) -> int:
        """Cancel the pending timers of `keys` in one transaction (all or none); how many."""
        async with self._sessions.begin() as session:
            return await self._cancel(session, keys, now)

    async def _cancel(self, session: AsyncSession, keys: Collection[str], now: datetime) -> int:
        cancelled = await session.scalars(
            update(TimerRow)
            .where(TimerRow.key.in_(list(keys)), self._pending())
            .values(cancelled_at=now, claimed_by=None, lease_until=None)
            .returning(TimerRow.id)
        )
        return len(cancelled.all())

    async def prune(self, *, kinds: Collection[str], before: datetime) -> int:
        """Forget the timers of `kinds` that fired or were cancelled before `before`; how many.
        For the kinds written often and of no use once ended (the looks at a Release run);
        dead-lettered ones stay."""
        ended = or_(
            and_(TimerRow.fired_at.is_not(None), TimerRow.fired_at < before),
            and_(TimerRow.cancelled_at.is_not(None), TimerRow.cancelled_at < before),
        )
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(TimerRow).where(_of(kinds), TimerRow.dead_at.is_(None), ended, *self._scope)
            )
            return rows_changed(result)

    async def backlog(self, *, now: datetime, overdue_after: timedelta) -> tuple[int, int]:
        """In one query (for the metrics' scrape)."""
        late = now - overdue_after
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(case((TimerRow.due_at <= late, 1), else_=0)), 0),
                    ).where(self._pending(), TimerRow.due_at <= now)
                )
            ).one()
        return int(row[0]), int(row[1])

    async def of_kind(self, *, kind: str, due_since: datetime) -> list[Timer]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(TimerRow)
                .where(TimerRow.kind == kind, TimerRow.due_at >= due_since, *self._scope)
                .order_by(TimerRow.due_at, TimerRow.id)
            )
            return [self._timer(row) for row in rows]

    async def next_due(self, *, kinds: Collection[str] | None = None) -> datetime | None:
        """When the next timer (of one of `kinds`; None: any) can be claimed: its due time, or
        its lease end if it is claimed.

        The scheduler sleeps until then (or until it is woken), so a timer another replica
        holds, or one only a newer replica knows, does not make it spin.
        """
        return await self._leases.next_claimable(_of(kinds))

    async def due_kinds(self, *, now: datetime) -> set[str]:
        """The kinds of the pending timers due by `now`."""
        async with self._sessions() as session:
            found = await session.scalars(
                select(TimerRow.kind).where(self._pending(), TimerRow.due_at <= now).distinct()
            )
            return set(found)

    def _timer(self, row: TimerRow) -> Timer:
        return from_row(Timer, row, lease_until=self._leases.held_until(row.lease_until))
