"""The database check `serve` and `migrate` start with: a database that does not answer, or
whose migrations this binary must not serve on or migrate, or (`serve`) a SQLite file that
does not exist or a database that takes no writes, is one line on stderr and exit 2, never a
traceback."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.services.failures import error_summary
from storage.db import engine_for_one_task, mask_database_url
from storage.migrate import read_only_problem, schema_problem


def refused(check: Callable[[], Coroutine[Any, Any, str | None]], *, nothing: str) -> bool:
    """Run `check` (what is wrong, or None) before logging is configured, so a refusal is its
    one line, not Alembic's chatter too; True after printing that line. `nothing`: what was
    not done ("served", "migrated")."""
    try:
        problem = asyncio.run(check())
    except (OSError, SQLAlchemyError) as error:
        problem = f"the database does not answer ({error_summary(error)}); nothing was {nothing}"
    if problem is None:
        return False
    sys.stderr.write(f"rollout-bot: {problem}\n")
    return True


async def serve_refusal(database_url: str) -> str | None:
    """Why `serve` refuses to start on the database (a SQLite file that does not exist, its
    migrations behind or ahead of this version), or None."""
    if sqlite_file_missing(database_url):
        return (
            f"the database {mask_database_url(database_url)} does not exist; nothing was "
            "served: point DATABASE_URL at the bot's database (a volume not mounted? the "
            "default is rollout-bot.db in the working directory), or run `rollout-bot "
            "migrate` to create a new one"
        )
    async with engine_for_one_task(database_url) as engine:
        return await schema_problem(engine) or await read_only_problem(engine)


def sqlite_file_missing(database_url: str) -> bool:
    """Whether DATABASE_URL names a SQLite file that does not exist: opening it would create
    an empty one, where a volume was not mounted or in another working directory."""
    url = make_url(database_url)
    return url.get_backend_name() == "sqlite" and not Path(str(url.database)).exists()
