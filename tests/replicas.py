"""Separate engines on one database, standing for separate replicas of the bot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.db import create_engine, create_session_factory


@asynccontextmanager
async def replica_sessions(
    database_url: str, count: int
) -> AsyncIterator[list[async_sessionmaker[AsyncSession]]]:
    """The session factories of `count` engines on `database_url`, disposed of afterwards."""
    engines = [create_engine(database_url) for _ in range(count)]
    try:
        yield [create_session_factory(engine) for engine in engines]
    finally:
        for engine in engines:
            await engine.dispose()
