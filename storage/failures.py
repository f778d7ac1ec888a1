"""The database's own failures: what a statement raises when the database, or the connection
to it, is away for a moment (refused, reset, a lost answer, a pool or statement timeout), as
opposed to a bug. Storage tells a lost answer by them (`storage.claims`); the services count
them among the failures a later try repairs (`bot.services.failures.TRANSIENT`)."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

DATABASE_FAILURES: tuple[type[BaseException], ...] = (
    DBAPIError,  # OperationalError, InterfaceError: the server or the connection to it
    # asyncpg's own, unwrapped: a connection killed while SQLAlchemy sets it up (its JSON
    # codec, in the pool's connect hook) raises "connection is closed" as asyncpg raised it.
    asyncpg.InterfaceError,
    PoolTimeout,  # no connection free in the pool in time
    OSError,  # connection refused or reset before the driver wrapped it
    TimeoutError,  # asyncpg's `command_timeout`, asyncio.timeout (asyncio.TimeoutError)
)
"""Failures of the database or of the connection to it: a later try may find it back."""
