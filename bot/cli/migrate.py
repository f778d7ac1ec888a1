"""`rollout-bot migrate`: apply the database migrations to DATABASE_URL."""

from __future__ import annotations

import asyncio
import sys

from bot.cli.settings import load
from bot.config import DatabaseSettings
from storage.db import mask_database_url
from storage.migrate import upgrade


def main() -> int:
    settings = load(DatabaseSettings)
    if settings is None:
        return 2
    asyncio.run(upgrade(settings.database_url))
    sys.stdout.write(f"migrated {mask_database_url(settings.database_url)}\n")
    return 0
