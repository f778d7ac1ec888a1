"""`rollout-bot migrate`: apply the database migrations to DATABASE_URL.

A database that does not answer, or that a newer version migrated (this binary does not know
its revision: an image rolled back, or the old image's one-shot `migrate`), is one line on
stderr and exit 2, as `serve` says them; nothing is changed.
"""

from __future__ import annotations

import asyncio
import sys
from functools import partial

from bot.cli.database import refused
from bot.cli.settings import load
from bot.config import DatabaseSettings
from storage.db import engine_for_one_task, mask_database_url
from storage.migrate import schema_problem, upgrade


def main() -> int:
    settings = load(DatabaseSettings)
    if settings is None:
        return 2
    if refused(partial(_newer_schema, settings.database_url), nothing="migrated"):
        return 2
    asyncio.run(upgrade(settings.database_url))
    sys.stdout.write(f"migrated {mask_database_url(settings.database_url)}\n")
    return 0


async def _newer_schema(database_url: str) -> str | None:
    async with engine_for_one_task(database_url) as engine:
        return await schema_problem(engine, behind_is_fine=True)
