"""Separate engines on one database, standing for separate replicas of the bot, and what the
replicas' pollers share in it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.bootstrap import create_app
from sandbox.harness import CHARTS, Sandbox
from storage.db import create_engine, create_session_factory
from storage.deliveries import DeliveryLog
from storage.looks import LookStore


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


@asynccontextmanager
async def in_process_replica(sandbox: Sandbox) -> AsyncIterator[web.Application]:
    """A second bot on the sandbox's database and clock, in this process, its scheduler
    running. It draws its charts in the worker the process's bots share (`CHARTS`), not in one
    of its own: a worker's start costs more than a second of CPU, and none of these tests is
    about which process draws."""
    app = create_app(sandbox.settings(), clock=sandbox.clock, charts=CHARTS)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        yield runner.app
    finally:
        await runner.cleanup()


class PollStores(TypedDict):
    """The stores a replica's poller shares with the others (`RunPoller`'s, `Scheduler`'s)."""

    looks: LookStore
    deliveries: DeliveryLog


def poll_stores(sessions: async_sessionmaker[AsyncSession]) -> PollStores:
    """The looks at runs and the webhook deliveries in the database of `sessions`."""
    return PollStores(looks=LookStore(sessions), deliveries=DeliveryLog(sessions))
