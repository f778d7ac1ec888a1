"""The next look at each rollout's run, claimed by one replica at a time (`run_looks`).

A pass of a replica's poller claims the looks it is about to make, all in one statement: an
`INSERT ... ON CONFLICT DO UPDATE` whose every column is the claim's when the claim wins and
stays as it was otherwise, so the statement gives back, for each rollout, either the claim or
the other replica's look, whose due time the loser adopts. A conflicting row is locked while
the statement decides (PostgreSQL), or the writer is alone (SQLite): two replicas claiming at
once cannot both win. The rows are claimed in rollout order, so two passes never wait on each
other's rows crosswise. The claims are bound once each, in a `claims` table expression that the
insert and the test of a look cut short both read (a pass claims hundreds of looks, and binding
the cut-short ids again in each column's test took four times as many parameters).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import Boolean, Integer, String, and_, case, column, false, or_, select, update
from sqlalchemy import values as table_of
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.records import RunLook
from storage.db import from_row, insert_into
from storage.models import RunLookRow, UTCDateTime

COLUMNS = ("version", "looked_at", "due_at", "holder")
"""What a won claim writes (the rollout id is the key)."""

CLAIMED = ("rollout_id", *COLUMNS)

_CLAIMS = table_of(
    column("rollout_id", String()),
    column("version", Integer()),
    column("looked_at", UTCDateTime()),
    column("due_at", UTCDateTime()),
    column("holder", String()),
    column("cut_short", Boolean()),
    name="claims",
)
"""A pass's claims, each with whether its rollout's pace may be cut short."""


class LookStore:
    """Claims and records the looks at runs (`bot.services.store_ports.RunLooks`)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def claim(
        self,
        looks: Sequence[RunLook],
        *,
        now: datetime,
        cut_short: Collection[str] = (),
        paced_before: datetime | None = None,
    ) -> list[RunLook]:
        if not looks:
            return []
        cut = set(cut_short) if paced_before is not None else set()
        claims = _CLAIMS.data(
            [
                (*(getattr(look, name) for name in CLAIMED), look.rollout_id in cut)
                for look in sorted(looks, key=lambda look: look.rollout_id)
            ]
        ).cte("claims")
        async with self._sessions.begin() as session:
            claiming = insert_into(session, RunLookRow).from_select(
                list(CLAIMED),
                # WHERE: SQLite reads the ON CONFLICT of an INSERT ... SELECT only after one.
                select(*(claims.c[name] for name in CLAIMED))
                .where(claims.c.rollout_id.is_not(None))
                .order_by(claims.c.rollout_id),
            )
            claimed = claiming.excluded
            stale = (
                and_(
                    RunLookRow.rollout_id.in_(
                        select(claims.c.rollout_id).where(claims.c.cut_short)
                    ),
                    RunLookRow.looked_at <= paced_before,
                )
                if cut
                else false()
            )
            won = or_(
                RunLookRow.due_at <= now,
                RunLookRow.version < claimed.version,
                RunLookRow.holder == claimed.holder,
                stale,
            )
            statement = claiming.on_conflict_do_update(
                index_elements=[RunLookRow.rollout_id],
                set_={
                    name: case((won, claimed[name]), else_=getattr(RunLookRow, name))
                    for name in COLUMNS
                },
            ).returning(RunLookRow)
            recorded = {
                row.rollout_id: from_row(RunLook, row) for row in await session.scalars(statement)
            }
        return [recorded[look.rollout_id] for look in looks]

    async def record(self, look: RunLook) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(RunLookRow)
                .where(RunLookRow.rollout_id == look.rollout_id, RunLookRow.holder == look.holder)
                .values(version=look.version, looked_at=look.looked_at, due_at=look.due_at)
            )
