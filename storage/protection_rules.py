"""Custom deployment protection rules' requests, shared by replicas and kept across restarts.

The database decides what is new: a delivery taken in before (its `X-GitHub-Delivery` id, in
the deliveries table, in the same transaction) changes nothing, nor does a request of a
deployment the bot holds one of (a body sent again under a new id), and a partial unique index
keeps at most one request open per run and environment, so a second replica or a request
recovered after its delivery was lost finds the open one. A request is closed once, by
whoever answers it first.

A request carries the service whose repository's run asked. A store of one service keeps and
reads that service's requests only; without one, every service's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    cast,
    delete,
    exists,
    literal,
    or_,
    select,
    update,
)

from bot.domain.protection_rules import EVENT, RuleAnswer, RuleRequest
from bot.services.records import AsksFor, NewTimer
from storage.db import ServiceStore, from_row, insert_new, rows_changed
from storage.models import GitHubDeliveryRow, RolloutRow, TimerRow
from storage.models import ProtectionRuleRequestRow as Row
from storage.timers import new_timer_insert, pending_timer

log = logging.getLogger(__name__)


class ProtectionRuleStore(ServiceStore):
    """The `ProtectionRuleRequests` port on the bot's database."""

    service_column = Row.service

    async def remember(self, request: RuleRequest, *, delivery_id: str | None = None) -> bool:
        """For the store's service when it has one, else the request's."""
        values = {
            "service": self._service or request.service,
            "run_id": request.run_id,
            "environment": request.environment,
            "deployment_id": request.deployment_id,
            "event": request.event,
            "sender": request.sender,
            "requested_at": request.requested_at,
            "answer": request.answer,
            "answered_at": request.answered_at,
        }
        if request.deployment_id and await self._asked_for(request):
            return False
        async with self._sessions.begin() as session:
            if delivery_id is not None:
                delivery = _delivery(delivery_id, request)
                seen = await session.execute(
                    insert_new(
                        session, GitHubDeliveryRow, delivery, unique=GitHubDeliveryRow.delivery_id
                    )
                )
                if rows_changed(seen) != 1:
                    return False
            result = await session.execute(
                insert_new(
                    session,
                    Row,
                    values,
                    unique=[Row.run_id, Row.environment],
                    where=Row.answer.is_(None),
                )
            )
            return rows_changed(result) == 1

    async def hold(
        self, request: RuleRequest, *, delivery_id: str, timer: NewTimer, asks_for: AsksFor
    ) -> bool:
        """The delivery is written first, so that on SQLite the read after it sees every hold
        committed before; on PostgreSQL two deliveries of one request held at the same instant
        may still both start asking (each is kept once). A re-run's request that repeats the
        first attempt's body (no deployment) moves its chain's end to 30 days after itself."""
        if request.deployment_id and await self._asked_for(request):
            return False
        service = self._service or request.service
        async with self._sessions.begin() as session:
            seen = await session.execute(
                insert_new(
                    session,
                    GitHubDeliveryRow,
                    _delivery(delivery_id, request),
                    unique=GitHubDeliveryRow.delivery_id,
                )
            )
            if rows_changed(seen) != 1:
                return False
            asking = await session.execute(
                select(TimerRow.key, TimerRow.payload).where(
                    TimerRow.kind == timer.kind, TimerRow.service == service, pending_timer()
                )
            )
            going = False
            for key, payload in asking:
                carried = _asks(asks_for, key, payload)
                going = going or carried is not None
                if carried is not None and dict(carried) != payload:
                    await session.execute(
                        update(TimerRow).where(TimerRow.key == key).values(payload=dict(carried))
                    )
            if going:
                return False
            await session.execute(
                new_timer_insert(session, timer, service=service, now=request.requested_at)
            )
            return True

    async def forget_delivery(self, delivery_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                delete(GitHubDeliveryRow).where(
                    GitHubDeliveryRow.delivery_id == delivery_id, GitHubDeliveryRow.event == EVENT
                )
            )

    async def _asked_for(self, request: RuleRequest) -> bool:
        """Whether a request of the deployment was kept before (open or answered). Read in a
        transaction of its own, before `remember` writes: on SQLite a transaction that reads
        and then writes fails at once ("database is locked") when another connection wrote
        in between, where one that writes first waits for the lock."""
        async with self._sessions() as session:
            return bool(
                await session.scalar(
                    select(
                        exists().where(
                            Row.run_id == request.run_id,
                            Row.deployment_id == request.deployment_id,
                        )
                    )
                )
            )

    async def open_for_run(self, run_id: int) -> list[RuleRequest]:
        """The run's requests nobody answered yet, oldest first."""
        return [r for r in await self.for_run(run_id) if r.open]

    async def without_timer(self, prefix: str) -> list[RuleRequest]:
        """One query on the open requests' partial index, each looked up by the timers' unique
        key and the rollouts' run id index."""
        key = literal(f"{prefix}:") + cast(Row.run_id, String)
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Row)
                .where(
                    Row.answer.is_(None),
                    *self._scope,
                    ~exists().where(TimerRow.key == key),
                    ~exists().where(RolloutRow.run_id == Row.run_id, RolloutRow.ended_at.is_(None)),
                )
                .order_by(Row.requested_at, Row.id)
            )
            return [from_row(RuleRequest, row) for row in rows]

    async def for_run(self, run_id: int) -> list[RuleRequest]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Row)
                .where(Row.run_id == run_id, *self._scope)
                .order_by(Row.requested_at, Row.id)
            )
            return [from_row(RuleRequest, row) for row in rows]

    async def close(
        self, *, run_id: int, environment: str, answer: RuleAnswer, at: datetime
    ) -> int:
        """`environment` is matched as stored (SQL's lower() knows ASCII only). One UPDATE, a
        write first, so SQLite never has to upgrade a read lock."""
        closable: ColumnElement[bool] = Row.answer.is_(None)
        if answer != "gone":
            closable = or_(closable, Row.answer == "gone")
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Row)
                .where(Row.run_id == run_id, Row.environment == environment, closable, *self._scope)
                .values(answer=answer, answered_at=at)
            )
            return rows_changed(result)

    async def sending(
        self,
        *,
        run_id: int,
        environment: str,
        answer: RuleAnswer | None,
        ends_by: datetime | None = None,
    ) -> None:
        await self._update_open(
            run_id, Row.environment == environment, sent=answer, sent_at=ends_by
        )

    async def unknown(self, *, run_id: int, environment: str, at: datetime) -> None:
        await self._update_open(run_id, Row.environment == environment, sent_at=at)

    async def not_applied(self, *, run_id: int, environment: str, sent_at: datetime) -> int:
        return await self._update_open(
            run_id, Row.environment == environment, Row.sent_at == sent_at, sent=None, sent_at=None
        )

    async def close_run(self, *, run_id: int, asked_by: datetime, at: datetime) -> int:
        return await self._update_open(
            run_id, Row.requested_at <= asked_by, answer="gone", answered_at=at
        )

    async def _update_open(self, run_id: int, *where: ColumnElement[bool], **values: object) -> int:
        """Set `values` on the run's open requests that match `where`; how many it changed."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Row)
                .where(Row.run_id == run_id, Row.answer.is_(None), *where, *self._scope)
                .values(**values)
            )
            return rows_changed(result)

    async def answer_of(self, *, run_id: int, environment: str) -> RuleAnswer | None:
        async with self._sessions() as session:
            row = await session.scalar(
                select(Row)
                .where(Row.run_id == run_id, Row.environment == environment, *self._scope)
                .order_by(Row.id.desc())
                .limit(1)
            )
            return None if row is None else row.answer  # type: ignore[return-value]

    async def prune(self, *, before: datetime, open_before: datetime) -> int:
        forgettable = or_(Row.answer.is_not(None), Row.requested_at < open_before)
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(Row).where(Row.requested_at < before, forgettable, *self._scope)
            )
            return rows_changed(result)


def _asks(asks_for: AsksFor, key: str, payload: dict[str, Any] | None) -> Mapping[str, Any] | None:
    """What the pending timer `key` carries when it asks for the request (`asks_for`); a payload
    that does not read
    (`asks_for` raised ValueError) asks for nothing, said in a WARNING line naming the timer,
    never its payload: one bad timer must not fail every request held after it."""
    try:
        return asks_for(payload or {})
    except ValueError as error:
        log.warning(
            "pending timer %s has a payload that does not read (%s): skipped",
            key,
            type(error).__name__,
        )
        return None


def _delivery(delivery_id: str, request: RuleRequest) -> dict[str, object]:
    """The deliveries table's row of a request's delivery."""
    return {
        "delivery_id": delivery_id,
        "event": EVENT,
        "rollout_id": None,
        "received_at": request.requested_at,
    }
