"""The sweep of unrecorded claims (`ClaimStore.unrecorded`), run at every poll on every
replica, reads `action_claims` through its index (migration 0019), not the whole table of 30
days of claims: on SQLite and on PostgreSQL (its planner told not to prefer a scan of the
small test table)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.services.records import ClaimState
from storage.models import ActionClaimRow

INDEX = "ix_action_claims_action_state_claimed_at"


async def test_the_sweep_of_unrecorded_claims_reads_its_index(migrated_engine: AsyncEngine) -> None:
    query = select(ActionClaimRow).where(
        ActionClaimRow.action == "rerun_failure_job",
        ActionClaimRow.state == ClaimState.CLAIMED.value,
        ActionClaimRow.claimed_at < datetime(2026, 12, 6, tzinfo=UTC),
    )
    sql = str(query.compile(migrated_engine.sync_engine, compile_kwargs={"literal_binds": True}))
    async with migrated_engine.connect() as connection:
        if migrated_engine.dialect.name == "postgresql":
            await connection.execute(text("SET LOCAL enable_seqscan = off"))
            plan = await connection.execute(text(f"EXPLAIN {sql}"))
        else:
            plan = await connection.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
        lines = " ".join(str(row) for row in plan)
    assert INDEX in lines
