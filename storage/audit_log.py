"""The append-only audit trail: every command, click, refusal, verdict and GitHub call."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, insert, or_, select

from bot.services.records import AuditEvent, Claim, NewAuditEvent
from storage.db import ServiceStore, from_row
from storage.models import AuditEventRow, RolloutRow


class AuditLog(ServiceStore):
    """The append-only audit trail: every command, click, refusal, verdict and GitHub call.

    A log of one `service` lists that service's events only, and writes its events for it;
    without one, every service's, and an event that names no service is its rollout's.
    """

    service_column = AuditEventRow.service

    async def append(self, **event: Any) -> AuditEvent:
        """One event (`NewAuditEvent`'s fields) that goes with no saved state change."""
        return (await self.add([NewAuditEvent(**event)]))[0]

    async def add(self, events: Sequence[NewAuditEvent]) -> list[AuditEvent]:
        async with self._sessions.begin() as session:
            written = []
            for event in events:
                service: Any = event.service or self._service
                if service is None and event.rollout_id is not None:
                    service = (
                        select(RolloutRow.service)
                        .where(RolloutRow.id == event.rollout_id)
                        .scalar_subquery()
                    )
                row = await session.scalar(
                    insert(AuditEventRow)
                    .values(**_values(event), service=service)
                    .returning(AuditEventRow)
                )
                assert row is not None
                written.append(_audit_event(row))
            return written

    async def list_for_rollout(self, rollout_id: str) -> list[AuditEvent]:
        """The rollout's events in the order they happened."""
        return await self._list(AuditEventRow.rollout_id == rollout_id)

    async def list_for_claim(
        self, claim: Claim, *, action: str, results: Collection[str], limit: int
    ) -> list[AuditEvent]:
        """The events of `action` with one of `results` written under `claim`: their detail
        names its holder (`claim`). An e248966 replica's name no claim: theirs are the claim's
        person's since it was taken, by the clock of the replica that took it. Those naming the
        claim come first, so that unnamed ones never fill `limit` ahead of them."""
        named = AuditEventRow.detail["claim"].as_string()
        unnamed = and_(named.is_(None), AuditEventRow.at >= claim.claimed_at)
        async with self._sessions() as session:
            rows = await session.scalars(
                select(AuditEventRow)
                .where(
                    AuditEventRow.rollout_id == claim.rollout_id,
                    AuditEventRow.action == action,
                    AuditEventRow.actor == claim.actor,
                    AuditEventRow.result.in_(results),
                    or_(named == claim.holder, unnamed),
                    *self._scope,
                )
                .order_by(named.is_(None), AuditEventRow.id)
                .limit(limit)
            )
            return [_audit_event(row) for row in rows]

    async def list_for_actor(self, actor: str) -> list[AuditEvent]:
        """Everything one person did or was refused, in order (rollout or not)."""
        return await self._list(AuditEventRow.actor == actor)

    async def _list(self, criterion: ColumnElement[bool]) -> list[AuditEvent]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(AuditEventRow)
                .where(criterion, *self._scope)
                .order_by(AuditEventRow.at, AuditEventRow.id)
            )
            return [_audit_event(row) for row in rows]


def audit_row(event: NewAuditEvent, *, service: str) -> AuditEventRow:
    """The row of an event written in a rollout's save (`storage.rollout_repository`): of
    the rollout's `service` unless the event names one."""
    return AuditEventRow(**_values(event), service=event.service or service)


def _values(event: NewAuditEvent) -> dict[str, Any]:
    return {
        "at": event.at,
        "actor": event.actor,
        "action": event.action,
        "result": event.result,
        "rollout_id": event.rollout_id,
        "track": event.track,
        "stage": event.stage,
        "detail": dict(event.detail) if event.detail is not None else None,
    }


def _audit_event(row: AuditEventRow) -> AuditEvent:
    return from_row(AuditEvent, row)
