"""The append-only audit trail: every command, click, refusal, verdict and GitHub call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.records import AuditEvent, NewAuditEvent
from storage.db import from_row
from storage.models import AuditEventRow


class AuditLog:
    """The append-only audit trail: every command, click, refusal, verdict and GitHub call."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def append(self, **event: Any) -> AuditEvent:
        """One event (`NewAuditEvent`'s fields) that goes with no saved state change."""
        return (await self.add([NewAuditEvent(**event)]))[0]

    async def add(self, events: Sequence[NewAuditEvent]) -> list[AuditEvent]:
        """Write events that go with no saved state change, in one transaction."""
        async with self._sessions.begin() as session:
            rows = [audit_row(event) for event in events]
            session.add_all(rows)
            await session.flush()
            return [_audit_event(row) for row in rows]

    async def list_for_rollout(self, rollout_id: str) -> list[AuditEvent]:
        """The rollout's events in the order they happened."""
        return await self._list(AuditEventRow.rollout_id == rollout_id)

    async def list_for_actor(self, actor: str) -> list[AuditEvent]:
        """Everything one person did or was refused, in order (rollout or not)."""
        return await self._list(AuditEventRow.actor == actor)

    async def _list(self, criterion: ColumnElement[bool]) -> list[AuditEvent]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(AuditEventRow).where(criterion).order_by(AuditEventRow.at, AuditEventRow.id)
            )
            return [_audit_event(row) for row in rows]


def audit_row(event: NewAuditEvent) -> AuditEventRow:
    """The row of an event to write, alone or in a rollout's save (`storage.rollout_repository`)."""
    return AuditEventRow(
        at=event.at,
        actor=event.actor,
        action=event.action,
        result=event.result,
        rollout_id=event.rollout_id,
        track=event.track,
        stage=event.stage,
        detail=dict(event.detail) if event.detail is not None else None,
    )


def _audit_event(row: AuditEventRow) -> AuditEvent:
    return from_row(AuditEvent, row)
