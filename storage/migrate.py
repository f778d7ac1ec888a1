"""Apply the Alembic migrations, from inside a running event loop or from the command line.

Alembic is configured in code (no alembic.ini at runtime). `upgrade` opens an async engine and
runs Alembic's synchronous command API on that connection through `run_sync`, so the app and
the tests can migrate without a nested `asyncio.run`.
"""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from storage.db import create_engine, mask_database_url, normalize_database_url

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


def head_revision() -> str:
    """The newest migration shipped with this version of the bot."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def upgrade(database_url: str, *, revision: str = "head") -> None:
    """Migrate the database to `revision` (default: the newest)."""
    logger.info("migrating %s to %s", mask_database_url(database_url), revision)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            await connection.run_sync(_run_upgrade, revision)
    finally:
        await engine.dispose()


def _run_upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def current_revision(database_url: str) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()
