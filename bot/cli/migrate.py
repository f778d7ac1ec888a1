"""`rollout-bot migrate`: apply the database migrations to DATABASE_URL.

A database that does not answer, or that a newer version migrated (this binary does not know
its revision: an image rolled back, or the old image's one-shot `migrate`), is one line on
stderr and exit 2, as `serve` says them; nothing is changed. A run that fails (a migration's
error, or, on PostgreSQL, a lock it waited for longer than MIGRATE_LOCK_TIMEOUT_SECONDS) is
rolled back: one line saying which migration, why and where the database is now, exit 1.
"""

from __future__ import annotations

import asyncio
import sys
from functools import partial

from pydantic import Field
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.cli.database import refused
from bot.cli.settings import load
from bot.config import DatabaseSettings
from bot.services.failures import error_summary
from storage.db import engine_for_one_task, mask_database_url
from storage.migrate import (
    LOCK_TIMEOUT_S,
    MigrationFailed,
    current_revision,
    revision_of,
    schema_problem,
    upgrade,
)


class MigrateSettings(DatabaseSettings):
    """What `migrate` reads: DATABASE_URL, and how long a migration waits for a lock."""

    migrate_lock_timeout_seconds: float = Field(
        default=LOCK_TIMEOUT_S, gt=0, le=3600, allow_inf_nan=False
    )


def main() -> int:
    settings = load(MigrateSettings)
    if settings is None:
        return 2
    url = settings.database_url
    before: list[str | None] = []
    if refused(partial(_newer_schema, url, before), nothing="migrated"):
        return 2
    try:
        asyncio.run(upgrade(url, lock_timeout_s=settings.migrate_lock_timeout_seconds))
    except MigrationFailed as failed:
        line = asyncio.run(_failure(failed, url, before[0]))
        password = make_url(url).password
        if password:  # a driver's message may quote the URL it was given
            line = line.replace(str(password), "***")
        sys.stderr.write(f"rollout-bot: {line}\n")
        return 1
    sys.stdout.write(f"migrated {mask_database_url(url)}\n")
    return 0


async def _newer_schema(database_url: str, before: list[str | None]) -> str | None:
    async with engine_for_one_task(database_url) as engine:
        before.append(await revision_of(engine))
        return await schema_problem(engine, behind_is_fine=True)


async def _failure(failed: MigrationFailed, database_url: str, before: str | None) -> str:
    """One line: which migration failed and why, where the database is now (read back, not
    assumed), and what to do."""
    which = f"migration {failed.revision}" if failed.revision else "the migration run"
    if failed.lock_timeout_s is not None:
        said = (
            f"{which} waited more than {failed.lock_timeout_s:g}s for a lock another session "
            "holds on a table it alters (a long transaction: a replica's, an operator's)"
        )
        todo = (
            ": run `rollout-bot migrate` again, or find the long transaction (pg_stat_activity: "
            "an old xact_start, state 'idle in transaction') and end it; "
            "MIGRATE_LOCK_TIMEOUT_SECONDS sets the wait"
        )
    else:
        said = f"{which} failed ({error_summary(failed.__cause__ or failed)})"
        todo = ": fix the cause and run `rollout-bot migrate` again"
    return f"{said}; {await _where(database_url, before)}{todo}"


async def _where(database_url: str, before: str | None) -> str:
    """Where the failed run left the database, as it answers now."""
    try:
        now = await current_revision(database_url)
    except (OSError, SQLAlchemyError) as error:
        return (
            f"where it stands could not be read back ({error_summary(error)}): "
            "`rollout-bot doctor` says which migration it is at"
        )
    if now == before:
        return (
            "nothing was migrated (the run is one transaction, rolled back): the database "
            f"is still at migration {now or 'none'}"
        )
    return (
        f"the database is now at migration {now or 'none'} (it was at {before or 'none'}): "
        "the migrations up to it were kept"
    )
