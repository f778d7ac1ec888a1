"""The release lane's freezes, lock and overrides (`bot.domain.freeze`), shared by replicas."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from dataclasses import replace as replaced
from datetime import datetime

from sqlalchemy import delete, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.freeze import LaneHold, override_kind, roll_back_kind
from bot.services.records import NewAuditEvent, NewMessage, NewTimer, Told
from storage.audit_log import audit_row
from storage.db import ServiceStore, from_row, insert_new
from storage.models import LaneHoldRow, RolloutRow
from storage.outbox import enqueue
from storage.timers import new_timer_insert


def _untold(_: list[LaneHold]) -> Sequence[NewMessage]:
    return ()


def _no_timer(*_: LaneHold) -> NewTimer | None:
    return None


class LaneHoldStore(ServiceStore):
    """One row per service and kind: the first writer of a kind holds it (a lock taken once).

    A store of one `service` is that service's lane: it reads, takes and releases that
    service's holds only (and takes every hold for it); without one, every service's (a hold
    taken is its `service`'s).
    """

    service_column = LaneHoldRow.service

    async def current(self) -> list[LaneHold]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(LaneHoldRow)
                .where(*self._scope)
                .order_by(LaneHoldRow.service, LaneHoldRow.kind)
            )
            return [from_row(LaneHold, row) for row in rows]

    async def take(
        self,
        hold: LaneHold,
        *,
        replace: bool = False,
        later: bool = False,
        timer: NewTimer | None = None,
    ) -> LaneHold:
        """Write `hold` unless its kind is held (then, with `replace`, overwrite it; with
        `later`, overwrite it only when it ends before `hold`): the hold stored afterwards,
        which is someone else's when they came first. `timer`: written in the same
        transaction when `hold` is the one stored (all or none)."""
        if self._service is not None:
            hold = replaced(hold, service=self._service)
        async with self._sessions.begin() as session:
            stored = await _take(session, hold, replace=replace, later=later)
            if timer is not None and stored == hold:
                await session.execute(
                    new_timer_insert(session, timer, service=hold.service, now=hold.since)
                )
            return stored

    async def take_all(
        self,
        holds: Sequence[LaneHold],
        audited: Callable[[LaneHold, LaneHold], NewAuditEvent],
        *,
        now: datetime,
        told: Told = _untold,
        timer: Callable[[LaneHold, LaneHold], NewTimer | None] = _no_timer,
    ) -> list[LaneHold]:
        """Take each of `holds` (each its own service's) as `take(later=True)` does, and write
        the audit event `audited(asked, stored)` of each, its service's timer `timer(asked,
        stored)` if any, and the outbox messages `told(stored)`, all in ONE transaction: an
        error (a database failure, an event that cannot be written) takes none and writes
        none. The holds stored afterwards, in the order of `holds`."""
        async with self._sessions.begin() as session:
            stored = []
            for hold in holds:
                if self._service is not None and hold.service != self._service:
                    raise ValueError(f"a hold of {hold.service} given to {self._service}'s lane")
                in_force = await _take(session, hold, later=True)
                session.add(audit_row(audited(hold, in_force), service=hold.service))
                if (new := timer(hold, in_force)) is not None:
                    await session.execute(
                        new_timer_insert(session, new, service=hold.service, now=now)
                    )
                stored.append(in_force)
            await enqueue(session, told(stored), now=now)
            await session.flush()  # an event that cannot be written fails here, in the transaction
            return stored

    async def release_all(
        self,
        kind: str,
        services: Sequence[str],
        audited: Callable[[LaneHold], NewAuditEvent],
        *,
        now: datetime,
        told: Told = _untold,
        timer: Callable[[LaneHold], NewTimer | None] = _no_timer,
    ) -> list[LaneHold]:
        """Remove the hold of `kind` of each of `services` and write the audit event
        `audited(removed)` and the timer `timer(removed)` (if any) of each removed, and the
        outbox messages `told(removed)`, in ONE transaction (all or none). What was removed (a
        service's hold already gone is not: nothing is said of it)."""
        held = [LaneHoldRow.kind == kind, LaneHoldRow.service.in_(services), *self._scope]
        async with self._sessions.begin() as session:
            rows = await session.execute(
                delete(LaneHoldRow).where(*held).returning(*LaneHoldRow.__table__.c)
            )
            removed = sorted(
                (from_row(LaneHold, row) for row in rows),
                key=lambda hold: list(services).index(hold.service),
            )
            for hold in removed:
                session.add(audit_row(audited(hold), service=hold.service))
            await _timers(session, removed, timer)
            await enqueue(session, told(removed), now=now)
            await session.flush()
            return removed

    async def release(
        self,
        kind: str,
        *,
        actor: str | None = None,
        timer: Callable[[LaneHold], NewTimer | None] = _no_timer,
    ) -> LaneHold | None:
        """Remove the hold of `kind` (an override is left to end at its `until`), only while
        `actor` holds it when given, and write the timer `timer(removed)` (if any) of each
        removed in the same transaction: what was removed, or None when nothing was held (by
        them). Without a service, the kind is removed from every service's lane (the first
        removed is returned). One DELETE ... RETURNING: a write first, so SQLite never has to
        upgrade a read lock."""
        held = [LaneHoldRow.kind == kind, *self._scope]
        if actor is not None:
            held.append(LaneHoldRow.actor == actor)
        async with self._sessions.begin() as session:
            rows = await session.execute(
                delete(LaneHoldRow).where(*held).returning(*LaneHoldRow.__table__.c)
            )
            removed = [from_row(LaneHold, row) for row in rows]
            await _timers(session, removed, timer)
            return removed[0] if removed else None

    async def forget_ended(self) -> int:
        """Remove the overrides and roll-back passes (`override:<id>`, `rollback:<id>`) of
        rollouts that have ended: nothing dispatches an ended rollout, and every judgement of
        the lane reads every hold. One DELETE: two replicas pruning at once delete each row
        once (the other deletes nothing). How many were removed."""
        ended = (
            select(RolloutRow.id)
            .where(
                RolloutRow.service == LaneHoldRow.service,
                RolloutRow.ended_at.is_not(None),
                or_(
                    LaneHoldRow.kind == literal(override_kind("")) + RolloutRow.id,
                    LaneHoldRow.kind == literal(roll_back_kind("")) + RolloutRow.id,
                ),
            )
            .exists()
        )
        async with self._sessions.begin() as session:
            removed = await session.execute(
                delete(LaneHoldRow).where(ended, *self._scope).returning(LaneHoldRow.kind)
            )
            return len(removed.all())


async def _timers(
    session: AsyncSession, holds: Sequence[LaneHold], timer: Callable[[LaneHold], NewTimer | None]
) -> None:
    """Write the timer `timer(hold)` (if any) of each of `holds`, of its service, written as it
    is due (at once)."""
    for hold in holds:
        if (new := timer(hold)) is not None:
            await session.execute(
                new_timer_insert(session, new, service=hold.service, now=new.due_at)
            )


async def _take(
    session: AsyncSession, hold: LaneHold, *, replace: bool = False, later: bool = False
) -> LaneHold:
    """`LaneHoldStore.take` within `session`'s transaction."""
    await session.execute(
        insert_new(
            session, LaneHoldRow, asdict(hold), unique=[LaneHoldRow.service, LaneHoldRow.kind]
        )
    )
    row = await session.get(LaneHoldRow, (hold.service, hold.kind), with_for_update=True)
    assert row is not None  # just written, or held
    ends_before = row.until is not None and hold.until is not None and row.until < hold.until
    if replace or (later and ends_before):
        for name, value in asdict(hold).items():
            setattr(row, name, value)
    return from_row(LaneHold, row)
