"""Durable timers shared by several replicas: scheduled once per key, claimed with a lease.

A replica claims due timers for a lease; while the lease runs, no other replica gets them.
When the owner dies, its lease runs out and another replica takes the timer over. Only the
current holder of a claim can mark a timer fired, so a replica that lost its lease cannot
finish work someone else has taken over. Every claim counts an attempt; a timer that failed
too often is dead-lettered (`dead_at`): it is never claimed again, and people are told. The
clock is always passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import TimerRow


@dataclass(frozen=True, slots=True)
class Timer:
    """A timer as stored. `payload` is whatever the scheduler needs to act when it fires."""

    id: int
    key: str
    kind: str
    due_at: datetime
    created_at: datetime
    attempts: int
    rollout_id: str | None = None
    payload: dict[str, Any] | None = None
    claimed_by: str | None = None
    lease_until: datetime | None = None
    fired_at: datetime | None = None
    cancelled_at: datetime | None = None
    last_error: str | None = None
    dead_at: datetime | None = None

    @property
    def is_pending(self) -> bool:
        return self.fired_at is None and self.cancelled_at is None and self.dead_at is None


def _pending() -> ColumnElement[bool]:
    return and_(
        TimerRow.fired_at.is_(None), TimerRow.cancelled_at.is_(None), TimerRow.dead_at.is_(None)
    )


class TimerStore:
    """Timers in the database, safe for any number of replicas on PostgreSQL or SQLite."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def schedule(
        self,
        *,
        key: str,
        kind: str,
        due_at: datetime,
        now: datetime,
        rollout_id: str | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> Timer:
        """Schedule a timer once per key: a second call returns the stored one unchanged."""
        async with self._sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            await session.execute(
                insert(TimerRow)
                .values(
                    key=key,
                    kind=kind,
                    rollout_id=rollout_id,
                    due_at=due_at,
                    payload=dict(payload) if payload is not None else None,
                    attempts=0,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=[TimerRow.key])
            )
            row = await session.scalar(select(TimerRow).where(TimerRow.key == key))
            assert row is not None
            return _timer(row)

    async def get(self, *, key: str) -> Timer | None:
        async with self._sessions() as session:
            row = await session.scalar(select(TimerRow).where(TimerRow.key == key))
            return _timer(row) if row is not None else None

    async def claim_due(
        self, *, now: datetime, owner: str, lease: timedelta, limit: int = 10
    ) -> list[Timer]:
        """Claim up to `limit` due timers for `owner` until `now + lease`, earliest first.

        A timer is claimable when it is due, pending, and unclaimed or its lease has run out.
        Each timer goes to exactly one caller, however many replicas claim at once.
        """
        claimable = and_(
            TimerRow.due_at <= now,
            _pending(),
            or_(TimerRow.claimed_by.is_(None), TimerRow.lease_until <= now),
        )
        oldest_first = (TimerRow.due_at, TimerRow.id)
        async with self._sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                # Lock the chosen rows and skip those another replica is claiming right now.
                ids = list(
                    await session.scalars(
                        select(TimerRow.id)
                        .where(claimable)
                        .order_by(*oldest_first)
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                )
                if not ids:
                    return []
                chosen: ColumnElement[bool] = TimerRow.id.in_(ids)
            else:
                # SQLite runs one writer at a time, so the update's own subquery is the lock.
                chosen = and_(
                    TimerRow.id.in_(
                        select(TimerRow.id).where(claimable).order_by(*oldest_first).limit(limit)
                    ),
                    claimable,
                )
            claimed = await session.scalars(
                update(TimerRow)
                .where(chosen)
                .values(
                    claimed_by=owner,
                    lease_until=now + lease,
                    attempts=TimerRow.attempts + 1,
                )
                .returning(TimerRow)
                .execution_options(synchronize_session=False)
            )
            timers = [_timer(row) for row in claimed]
        return sorted(timers, key=lambda timer: (timer.due_at, timer.id))

    async def complete(self, *, timer_id: int, owner: str, now: datetime) -> bool:
        """Mark the timer fired; False unless `owner` still holds its claim."""
        return await self._update_claimed(timer_id, owner, fired_at=now, lease_until=None)

    async def renew(self, *, timer_id: int, owner: str, lease_until: datetime) -> bool:
        """Extend the claim of a timer still being worked on; False unless `owner` holds it."""
        return await self._update_claimed(timer_id, owner, lease_until=lease_until)

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
        return await self._update_claimed(timer_id, owner, **values)

    async def bury(self, *, timer_id: int, owner: str, now: datetime, error: str) -> bool:
        """Dead-letter the timer its owner gave up on: it is never claimed again (a person
        acts on it), and it stays in the table for the record; False unless `owner` holds it."""
        return await self._update_claimed(
            timer_id, owner, dead_at=now, last_error=error, claimed_by=None, lease_until=None
        )

    async def dead_count(self) -> int:
        """How many timers were dead-lettered (for the bot's own metrics)."""
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(TimerRow).where(TimerRow.dead_at.is_not(None))
            )
            return int(count or 0)

    async def cancel(self, *, key: str, now: datetime) -> bool:
        """Cancel a pending timer; the key stays taken, so scheduling it again is a no-op."""
        async with self._sessions.begin() as session:
            cancelled = await session.scalar(
                update(TimerRow)
                .where(TimerRow.key == key, _pending())
                .values(cancelled_at=now, claimed_by=None, lease_until=None)
                .returning(TimerRow.id)
            )
            return cancelled is not None

    async def next_due(self) -> datetime | None:
        """When the next timer can be claimed: its due time, or its lease end if it is claimed.

        The scheduler sleeps until then (or until it is woken), so a timer another replica
        holds does not make it spin.
        """
        claimable_at = case(
            (TimerRow.claimed_by.is_(None), TimerRow.due_at),
            else_=TimerRow.lease_until,
        )
        async with self._sessions() as session:
            result: datetime | None = await session.scalar(
                select(func.min(claimable_at)).where(_pending())
            )
            return result

    async def _update_claimed(self, timer_id: int, owner: str, **values: Any) -> bool:
        async with self._sessions.begin() as session:
            updated = await session.scalar(
                update(TimerRow)
                .where(TimerRow.id == timer_id, TimerRow.claimed_by == owner, _pending())
                .values(**values)
                .returning(TimerRow.id)
            )
            return updated is not None


def _timer(row: TimerRow) -> Timer:
    return Timer(
        id=row.id,
        key=row.key,
        kind=row.kind,
        due_at=row.due_at,
        created_at=row.created_at,
        attempts=row.attempts,
        rollout_id=row.rollout_id,
        payload=row.payload,
        claimed_by=row.claimed_by,
        lease_until=row.lease_until,
        fired_at=row.fired_at,
        cancelled_at=row.cancelled_at,
        last_error=row.last_error,
        dead_at=row.dead_at,
    )
