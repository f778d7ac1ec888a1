"""Apply the Alembic migrations, from inside a running event loop or from the command line.

Alembic is configured in code (no alembic.ini at runtime). `upgrade` opens an async engine and
runs Alembic's synchronous command API on that connection through `run_sync`, so the app and
the tests can migrate without a nested `asyncio.run`.
"""

from __future__ import annotations

import functools
import logging

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import (
    WRITE_LOCK_AT_BEGIN,
    engine_for_one_task,
    mask_database_url,
    normalize_database_url,
)

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = "storage:migrations"
# Key of the PostgreSQL advisory lock held while migrating: replicas starting together
# migrate one after the other instead of racing on the same DDL.
MIGRATION_LOCK_KEY = 0x726F6C6C6F7574  # "rollout"


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic configuration for this package's migrations (for `command.*` calls)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if database_url is not None:
        # ConfigParser interpolates `%`; a URL-encoded password must survive it.
        url = normalize_database_url(database_url).replace("%", "%%")
        config.set_main_option("sqlalchemy.url", url)
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest migration shipped with this version of the bot."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


async def upgrade(database_url: str, *, revision: str = "head") -> None:
    """Migrate the database to `revision` (default: the newest)."""
    logger.info("migrating %s to %s", mask_database_url(database_url), revision)
    # No bound on a statement: an index built on a large table, or the wait for another
    # replica's migration (the advisory lock), may take longer than a served statement may.
    # On SQLite the write lock, taken at BEGIN, is what another migration waits for.
    async with (
        engine_for_one_task(
            database_url,
            statement_timeout_s=None,
            execution_options={WRITE_LOCK_AT_BEGIN: True},
        ) as engine,
        engine.begin() as connection,
    ):
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        await connection.run_sync(_run_upgrade, revision)


def _run_upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def current_revision(database_url: str) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    async with engine_for_one_task(database_url) as engine:
        return await revision_of(engine)


async def revision_of(engine: AsyncEngine) -> str | None:
    """The revision the database behind `engine` is at; None when it was never migrated."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def schema_problem(
    engine: AsyncEngine, *, newer_is_fine: bool = False, behind_is_fine: bool = False
) -> str | None:
    """Why this binary must not serve on the database, or None when it is at head.

    Behind (never migrated, or an older revision): run `rollout-bot migrate` (`behind_is_fine`:
    that is what `migrate` is for). Ahead (a revision this binary does not ship): a newer
    version migrated it, so this one is too old to start on it, or to migrate it. A replica
    already serving stays ready on a newer schema (`newer_is_fine`): migrations are additive,
    and the rolling restart that follows replaces it.
    """
    current = await revision_of(engine)
    head = head_revision()
    if current == head:
        return None
    if current is None or _known(current):
        if behind_is_fine:
            return None
        return (
            f"the database is at migration {current or 'none'}, this version needs {head}: "
            "run `rollout-bot migrate`"
        )
    if newer_is_fine:
        return None
    return (
        f"the database is at migration {current}, newer than this version's {head}: "
        "this binary is older than the database: deploy the newer version"
    )


def _known(revision: str) -> bool:
    """Whether `revision` is one of the migrations this binary ships."""
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False
