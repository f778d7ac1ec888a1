"""Rows claimed with a lease, one replica at a time: what the timers and the outbox share.

A claim picks the claimable rows (oldest first) and marks them its owner's until the lease
ends; on PostgreSQL it locks the chosen rows and skips those another replica is claiming right
now, on SQLite (one writer at a time) the update's own subquery is the lock. Only the current
holder of a claim may change the row afterwards. A store builds its claims' statements once
(`Claim`); each call binds its own values.

A lease's end is written and compared on the database server's clock, not on the replica's:
every replica's lease times are its clock's corrected by `ServerOffset` (the server's clock
minus its own, measured and carried on between readings), so a replica whose clock runs ahead
does not take over a lease another holds, and one that runs behind does not keep it longer.
The due times, and what the callers are given back, stay on the replica's clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    String,
    and_,
    bindparam,
    case,
    func,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from storage.models import Leased, UTCDateTime

Row = TypeVar("Row", bound=Leased)

ServerOffset = Callable[[], timedelta]
"""The database server's clock minus this replica's, as measured and carried on between
readings (`bot.services.clock_skew.DatabaseClock.offset`)."""


def same_clock() -> timedelta:
    """The offset where the replica's clock is the database's (SQLite, a test's clock)."""
    return timedelta(0)


# A claim's values, bound at each call (none is named after a column: an UPDATE would set it).
_NOW = bindparam("now", type_=UTCDateTime())
_LEASE_NOW = bindparam("lease_now", type_=UTCDateTime())
_OWNER = bindparam("owner", type_=String())
_LEASE_END = bindparam("lease_end", type_=UTCDateTime())
_LIMIT = bindparam("limit", type_=Integer())
_IDS: BindParameter[int] = bindparam("ids", expanding=True)


class Claim(Generic[Row]):
    """One claim's statements, built once and run with each call's values as bind parameters.

    A claim runs at every turn of the outbox (once per message a flush delivers) and of the
    scheduler: building its statements anew each time, and the cache key SQLAlchemy derives
    from a new statement, took most of the CPU a claim costs a replica's event loop.
    """

    def __init__(
        self,
        table: type[Row],
        claimable: ColumnElement[bool],
        oldest_first: Sequence[InstrumentedAttribute[Any]],
        values: Mapping[str, Any],
        server_offset: ServerOffset,
    ) -> None:
        self._server_offset = server_offset
        picked = select(table.id).where(claimable).order_by(*oldest_first).limit(_LIMIT)
        setting = (
            update(table)
            .values(**values)
            .returning(table)
            .execution_options(synchronize_session=False)
        )
        # PostgreSQL: lock the chosen rows and skip those another replica is claiming right now.
        self._locking = picked.with_for_update(skip_locked=True)
        self._setting_chosen = setting.where(table.id.in_(_IDS))
        # SQLite runs one writer at a time, so the update's own subquery is the lock.
        self._setting_picked = setting.where(table.id.in_(picked), claimable)

    async def __call__(
        self,
        session: AsyncSession,
        *,
        now: datetime,
        owner: str,
        lease: timedelta,
        limit: int,
        **bound: Any,
    ) -> list[Row]:
        """Claim up to `limit` rows due by `now` for `owner`, for `lease` on the server's
        clock, oldest first; `bound`: the values of the claim's own criteria. Each row goes to
        one caller, however many replicas claim at once."""
        lease_now = now + self._server_offset()
        params = {
            "now": now,
            "lease_now": lease_now,
            "owner": owner,
            "lease_end": lease_now + lease,
            "limit": limit,
            **bound,
        }
        if session.get_bind().dialect.name == "postgresql":
            ids = list(await session.scalars(self._locking, params))
            if not ids:
                return []
            return list(await session.scalars(self._setting_chosen, {**params, "ids": ids}))
        return list(await session.scalars(self._setting_picked, params))


class LeasedRows(Generic[Row]):
    """The lease operations on one table whose pending rows `pending` selects."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        table: type[Row],
        pending: ColumnElement[bool],
        server_offset: ServerOffset = same_clock,
    ) -> None:
        self._sessions = sessions
        self._table: type[Row] = table
        self.pending = pending
        self._server_offset = server_offset

    def claims(
        self,
        *criteria: ColumnElement[bool],
        oldest_first: Sequence[InstrumentedAttribute[Any]],
        attempts: ColumnElement[int],
    ) -> Claim[Row]:
        """The claim of the pending rows that meet `criteria` and are due, unclaimed or their
        lease run out, `oldest_first`; it sets the owner, the lease's end and `attempts`. Built
        once by its store, then called with the values of each claim."""
        table = self._table
        claimable = and_(
            self.pending,
            table.due_at <= _NOW,
            or_(table.claimed_by.is_(None), table.lease_until <= _LEASE_NOW),
            *criteria,
        )
        return Claim(
            table,
            claimable,
            oldest_first,
            {"claimed_by": _OWNER, "lease_until": _LEASE_END, "attempts": attempts},
            self._server_offset,
        )

    def lease_end(self, until: datetime) -> datetime:
        """A lease's end `until` on this replica's clock, as written: on the server's."""
        return until + self._server_offset()

    def held_until(self, lease_until: datetime | None) -> datetime | None:
        """A lease's end as written, on this replica's clock."""
        return None if lease_until is None else lease_until - self._server_offset()

    async def next_claimable(self, *criteria: ColumnElement[bool]) -> datetime | None:
        """When the first pending row that meets `criteria` can be claimed, on this replica's
        clock: its due time, or, while someone holds it, its lease's end if that is later (a
        holder whose clock runs ahead claims a row before it is due by this one's). In one
        read: the earliest due time of the rows nobody holds, and each held row (a few: the
        work in hand)."""
        table = self._table
        free = select(
            func.min(case((table.claimed_by.is_(None), table.due_at))),
            null().cast(table.lease_until.type),
        ).where(self.pending, *criteria)
        held = select(table.due_at, table.lease_until).where(
            self.pending, table.claimed_by.is_not(None), *criteria
        )
        async with self._sessions() as session:
            rows = (await session.execute(union_all(free, held))).all()
        offset = self._server_offset()  # a lease's end as written is on the server's clock
        ends = [due if leased is None else max(due, leased - offset) for due, leased in rows]
        return min((end for end in ends if end is not None), default=None)

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
        """Give back every pending row `owner` holds, due as they were (why:
        `Timers.release_owned`); how many."""
        table = self._table
        async with self._sessions.begin() as session:
            released = await session.scalars(
                update(table)
                .where(table.claimed_by == owner, self.pending)
                .values(claimed_by=None, lease_until=None)
                .returning(table.id)
            )
            return len(list(released))
