"""The database's own failures: what a statement raises when the database, or the connection
to it, is away for a moment (refused, reset, a lost answer, a pool or statement timeout), as
opposed to a bug. Storage tells a lost answer by them (`storage.claims`); the services count
them among the failures a later try repairs (`bot.services.failures.TRANSIENT`)."""

from __future__ import annotations

import sqlite3

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

GAVE_UP_SQLSTATES = frozenset({"57014", "55P03"})
"""PostgreSQL's codes for a statement it gave up on, the server up and the connection kept:
query_canceled (its `statement_timeout`, a wait for a lock included), lock_not_available."""
SQLITE_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
"""SQLite's codes for a write lock another connection held past the busy timeout."""


def timed_out(error: BaseException) -> bool:
    """Whether `error` (one of `DATABASE_FAILURES`) is a wait for the database that ran out,
    not a connection refused, reset or lost: no pool connection free in time, a lock held
    elsewhere past the statement's bound (a burst of writers on SQLite), a statement or an
    answer that took too long."""
    if isinstance(error, (PoolTimeout, TimeoutError)):
        return True
    if not isinstance(error, DBAPIError):
        return False
    driver = error.orig
    if getattr(driver, "sqlstate", None) in GAVE_UP_SQLSTATES:
        return True
    code = getattr(driver, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in SQLITE_BUSY
