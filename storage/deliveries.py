"""The GitHub webhook deliveries already taken in, by `X-GitHub-Delivery` id.

GitHub retries a delivery it thinks failed and people redeliver by hand; several replicas may
receive the same one. The primary key decides, in the database, which receiver acts on it. The
id is outside the signature, so a signed body is known by its digest too: the same body sent
again under a new id (anyone who saw it can) is taken in before.
The deliveries also tell the replicas' pollers whose webhook is arriving (`bot.services.polling`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.db import insert_into, rows_changed
from storage.models import GitHubDeliveryRow, RolloutRow


class DeliveryLog:
    """Remembers webhook deliveries so that each is processed once."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def remember(
        self,
        *,
        delivery_id: str,
        event: str,
        rollout_id: str | None,
        received_at: datetime,
        body_digest: str | None = None,
    ) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                insert_into(session, GitHubDeliveryRow)
                .values(
                    delivery_id=delivery_id,
                    event=event,
                    rollout_id=rollout_id,
                    received_at=received_at,
                    body_digest=body_digest,
                )
                .on_conflict_do_nothing()  # on either unique key
            )
            return rows_changed(result) == 1

    async def prune(self, *, before: datetime) -> int:
        """Forget deliveries received before `before` (retention); returns how many. GitHub
        redelivers within days, not weeks."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(GitHubDeliveryRow).where(GitHubDeliveryRow.received_at < before)
            )
            return rows_changed(result)

    async def services_with_deliveries(self, *, since: datetime) -> set[str]:
        """One statement: every delivery remembered is about a rollout the bot follows, so
        the join finds each one's service."""
        async with self._sessions() as session:
            services = await session.scalars(
                select(RolloutRow.service)
                .distinct()
                .join(GitHubDeliveryRow, GitHubDeliveryRow.rollout_id == RolloutRow.id)
                .where(GitHubDeliveryRow.received_at >= since)
            )
            return set(services)
