"""Migrations build the schema the models describe, from an empty database, on both backends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, inspect
from sqlalchemy.engine import Connection

from storage.db import create_engine
from storage.migrate import alembic_config, current_revision, head_revision, upgrade
from storage.models import Base

TABLES = {
    "rollouts",
    "rollout_tracks",
    "stages",
    "timers",
    "audit_events",
    "github_deliveries",
    "action_claims",
    "outbox",
}


async def _on_connection(url: str, work: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(work)
    finally:
        await engine.dispose()


def _schema_diff(connection: Connection, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_from_empty_builds_exactly_the_models(empty_database_url: str) -> None:
    assert await current_revision(empty_database_url) is None

    await upgrade(empty_database_url)

    assert await current_revision(empty_database_url) == head_revision()
    assert await _on_connection(empty_database_url, _tables) == TABLES | {"alembic_version"}
    diff = await _on_connection(
        empty_database_url, lambda connection: _schema_diff(connection, Base.metadata)
    )
    assert diff == []


async def test_the_schema_comparison_notices_a_model_the_migrations_lack(
    empty_database_url: str,
) -> None:
    await upgrade(empty_database_url)
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["rollouts"].append_column(Column("note", String(20)))

    diff = await _on_connection(
        empty_database_url, lambda connection: _schema_diff(connection, drifted)
    )

    assert [entry[0] for entry in diff] == ["add_column"]


async def test_upgrade_twice_changes_nothing(empty_database_url: str) -> None:
    await upgrade(empty_database_url)
    await upgrade(empty_database_url)
    assert await current_revision(empty_database_url) == head_revision()


async def test_downgrade_to_base_then_upgrade_again(empty_database_url: str) -> None:
    await upgrade(empty_database_url)

    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    await _on_connection(empty_database_url, downgrade)
    assert await _on_connection(empty_database_url, _tables) == {"alembic_version"}

    await upgrade(empty_database_url)
    assert await _on_connection(empty_database_url, _tables) == TABLES | {"alembic_version"}


@pytest.mark.postgres
async def test_replicas_migrating_at_once_all_succeed(empty_postgres_database_url: str) -> None:
    url = empty_postgres_database_url
    await asyncio.gather(*(upgrade(url) for _ in range(3)))
    assert await current_revision(url) == head_revision()
