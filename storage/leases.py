"""Rows claimed with a lease, one replica at a time: what the timers and the outbox share.

A claim picks the claimable rows (oldest first) and marks them its owner's until the lease
ends; on PostgreSQL it locks the chosen rows and skips those another replica is claiming right
now, on SQLite (one writer at a time) the update's own subquery is the lock. Only the current
holder of a claim may change the row afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, and_, case, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from storage.models import Leased

Row = TypeVar("Row", bound=Leased)


class LeasedRows(Generic[Row]):
    """The lease operations on one table whose pending rows `pending` selects."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        table: type[Row],
        pending: ColumnElement[bool],
    ) -> None:
        self._sessions = sessions
        self._table: type[Row] = table
        self.pending = pending

    async def claim(
        self,
        session: AsyncSession,
        *,
        claimable: ColumnElement[bool],
        oldest_first: Sequence[InstrumentedAttribute[Any]],
        limit: int,
        values: Mapping[str, Any],
    ) -> list[Row]:
        """Set `values` (the owner, the lease's end, the attempts) on up to `limit` claimable
        rows, oldest first; each row goes to one caller, however many replicas claim at once."""
        table = self._table
        if session.get_bind().dialect.name == "postgresql":
            # Lock the chosen rows and skip those another replica is claiming right now.
            ids = list(
                await session.scalars(
                    select(table.id)
                    .where(claimable)
                    .order_by(*oldest_first)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if not ids:
                return []
            chosen: ColumnElement[bool] = table.id.in_(ids)
        else:
            # SQLite runs one writer at a time, so the update's own subquery is the lock.
            picked = select(table.id).where(claimable).order_by(*oldest_first).limit(limit)
            chosen = and_(table.id.in_(picked), claimable)
        claimed = await session.scalars(
            update(table)
            .where(chosen)
            .values(**values)
            .returning(table)
            .execution_options(synchronize_session=False)
        )
        return list(claimed)

    def claimable_at(self) -> ColumnElement[datetime]:
        """When a row can be claimed: its due time, or its lease's end while someone holds it."""
        return case(
            (self._table.claimed_by.is_(None), self._table.due_at), else_=self._table.lease_until
        )

    async def update_claimed(self, row_id: int, owner: str, **values: Any) -> bool:
        """Set `values` on a pending row; False unless `owner` still holds its claim."""
        table = self._table
        async with self._sessions.begin() as session:
            updated = await session.scalar(
                update(table)
                .where(table.id == row_id, table.claimed_by == owner, self.pending)
                .values(**values)
                .returning(table.id)
            )
            return updated is not None

    async def release_owned(self, owner: str) -> int:
        """Give back every pending row `owner` holds (a replica shutting down), due as they
        were, so any replica claims them at once instead of after the lease; how many."""
        table = self._table
        async with self._sessions.begin() as session:
            released = await session.scalars(
                update(table)
                .where(table.claimed_by == owner, self.pending)
                .values(claimed_by=None, lease_until=None)
                .returning(table.id)
            )
            return len(list(released))
