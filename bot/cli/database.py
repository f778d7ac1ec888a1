"""The database check `serve` and `migrate` start with: a database that does not answer, or
whose migrations this binary must not serve on or migrate, is one line on stderr and exit 2,
never a traceback."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.services.failures import error_summary
from storage.db import engine_for_one_task
from storage.migrate import schema_problem


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
    """Why `serve` refuses to start on the database (its migrations behind or ahead of this
    version), or None."""
    async with engine_for_one_task(database_url) as engine:
        return await schema_problem(engine)
