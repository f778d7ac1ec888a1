"""Database URLs, engines and sessions for SQLite (the default) and PostgreSQL (several replicas).

Also the helpers every store shares: `insert_new` (a row written once, in either dialect, as
`insert_into` writes any `ON CONFLICT`), `from_row` (an ORM row as the frozen record callers
hold), `of_service` (what a store of one service adds to its queries) and `ServiceStore` (a
store of one service's rows, or of every service's).

Every URL is normalized to an async driver (aiosqlite, asyncpg) so the same code runs on both,
and every URL that reaches a log or an error message goes through `mask_database_url` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sqlalchemy import ColumnElement, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.orm import InstrumentedAttribute

from storage.database_query import asyncpg_query
from storage.models import Base

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Inserted = postgresql.Insert | sqlite.Insert
R = TypeVar("R", bound="DataclassInstance")

DEFAULT_SQLITE_FILE = "rollout-bot.db"
SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRES_DRIVER = "postgresql+asyncpg"
STATEMENT_TIMEOUT_S = 15.0
"""Seconds one statement may take, a wait for a lock included, unless the engine's maker says
otherwise (the app derives it from its lease, `bot.bootstrap`): SQLite's busy timeout (how long
a writer waits for another's write lock), PostgreSQL's `statement_timeout`. A statement held
up longer fails as a database error, which its caller's loop retries."""
CLIENT_TIMEOUT_SHARE = 1.25
"""asyncpg's own `command_timeout`, as a share of the statement's bound: the server cancels a
statement blocked on a lock first (its connection stays usable); asyncpg gives up only on a
server or a network that no longer answers at all."""
IDLE_IN_TRANSACTION_SHARE = 4
"""PostgreSQL's `idle_in_transaction_session_timeout`, as a share of the statement's bound (the
lease, in the app): no transaction of the bot's waits on anything but its own statements, so a
session left idle inside one (a task stuck between two statements) is ended by the server, and
the locks it holds go with it, by the time its replica's leases would have run out anyway."""
WRITE_LOCK_AT_BEGIN = "sqlite_write_lock_at_begin"
"""An engine's execution option: on SQLite its transactions take the write lock at `BEGIN`
(`BEGIN IMMEDIATE`). A transaction that reads, then writes (a migration: the revision, then
the DDL) waits there for another writer (the busy timeout), instead of failing `database is
locked` at its first write once another committed since its read."""
# Seconds asyncpg waits to open a connection: a dead server must not hang a request.
POSTGRES_CONNECT_TIMEOUT_S = 10.0

_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"}
_POSTGRES_DRIVERS = {
    "postgres",
    "postgresql",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
}


class InvalidDatabaseUrl(ValueError):
    """DATABASE_URL is not a SQLite or PostgreSQL URL; the message never shows a password."""


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise InvalidDatabaseUrl(
            "DATABASE_URL is not a database URL (expected sqlite:///... or postgresql://...)"
        ) from None
    if parsed.host is not None and "@" in parsed.host:
        # SQLAlchemy ends the password at its first `@`: the rest would be taken for the host,
        # and shown as such (masked URLs, a resolver's error), a part of the password in clear.
        raise InvalidDatabaseUrl(
            "DATABASE_URL has an `@` in its password (or the user before it), where SQLAlchemy "
            "ends the password: write each `@` of the password as %40 "
            "(postgresql://USER:PA%40SS@HOST/DB)"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidDatabaseUrl(
            f"DATABASE_URL has the port {parsed.port}; a port is 1 to 65535 "
            f"(got {mask_database_url(parsed)})"
        )
    return parsed


QUERY_PASSWORD = "password"  # noqa: S105 - a query parameter's name, not a password
"""The query parameter libpq and asyncpg take a password from (`?user=bot&password=…`):
SQLAlchemy hands asyncpg every query parameter, so that password is the one it signs in with."""


def mask_database_url(url: str | URL) -> str:
    """The URL with its password replaced by `***` (the one before the host, and the query's
    `password`), safe for logs and messages."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url.strip())
    except ArgumentError:
        return "<unparsable database URL>"
    if QUERY_PASSWORD not in parsed.query:
        return parsed.render_as_string(hide_password=True)
    masked = parsed.update_query_dict({QUERY_PASSWORD: "***"})
    # The query's values are rendered percent-encoded; the mask reads as the one before the host.
    shown = masked.render_as_string(hide_password=True)
    return shown.replace(f"{QUERY_PASSWORD}=%2A%2A%2A", f"{QUERY_PASSWORD}=***")


def normalize_database_url(url: str) -> str:
    """Rewrite a SQLite or PostgreSQL URL to its async driver (aiosqlite or asyncpg).

    Accepts `sqlite:///file.db`, `sqlite+aiosqlite:///...`, `postgres://...`,
    `postgresql://...` and `postgresql+asyncpg://...`; libpq's `sslmode` becomes asyncpg's `ssl`.
    """
    parsed = _parse(url)
    if parsed.drivername in _SQLITE_DRIVERS:
        _sqlite_file(parsed)
        parsed = parsed.set(drivername=SQLITE_DRIVER)
    elif parsed.drivername in _POSTGRES_DRIVERS:
        query, refused = asyncpg_query(parsed.query)
        if refused is not None:
            raise InvalidDatabaseUrl(refused)
        parsed = parsed.set(drivername=POSTGRES_DRIVER, query=query)
    else:
        raise InvalidDatabaseUrl(
            f"DATABASE_URL uses {parsed.drivername!r}; expected sqlite or postgresql "
            f"(got {mask_database_url(parsed)})"
        )
    return parsed.render_as_string(hide_password=False)


def _sqlite_file(url: URL) -> None:
    """Refuse a SQLite URL that names no file: in memory, each process has its own, empty and
    gone when it exits (`migrate` said "migrated", then `serve` found its own never migrated);
    with a host (`sqlite://bot.db`), SQLAlchemy refuses it only once it opens it."""
    if url.host or url.database in (None, "", ":memory:"):
        but = "a host" if url.host else "a database in memory, each process's own, gone at exit"
        raise InvalidDatabaseUrl(
            f"DATABASE_URL names no SQLite file but {but}: write three slashes before a "
            "relative path (sqlite:///rollout-bot.db), four before an absolute one "
            "(sqlite:////var/lib/rollout-bot/bot.db)"
        )


def default_database_url() -> str:
    """A SQLite file `rollout-bot.db` in the working directory: zero setup for one replica."""
    return f"{SQLITE_DRIVER}:///{Path.cwd() / DEFAULT_SQLITE_FILE}"


def create_engine(
    url: str, *, statement_timeout_s: float | None = STATEMENT_TIMEOUT_S, **engine_options: Any
) -> AsyncEngine:
    """An async engine for the URL; SQLite gets foreign keys, WAL and a busy timeout.

    No statement waits longer than `statement_timeout_s` (a lock held elsewhere, a server
    that hangs): on PostgreSQL the server cancels it (`statement_timeout`) and asyncpg gives
    up a quarter later (`command_timeout`); on SQLite it is the busy timeout. On PostgreSQL a
    session idle inside a transaction for four bounds is ended by the server. None: no bound
    on PostgreSQL (a migration: an index built on a large table, a wait for another
    replica's migration), the default busy timeout on SQLite.

    SQLite's own implicit transactions are switched off and SQLAlchemy emits `BEGIN`, so a
    read-only transaction sees one snapshot and a transaction that writes first waits for
    the write lock instead of failing.
    """
    parsed = make_url(normalize_database_url(url))
    if parsed.get_backend_name() == "sqlite":
        busy_s = STATEMENT_TIMEOUT_S if statement_timeout_s is None else statement_timeout_s
        return _create_sqlite_engine(parsed, engine_options, busy_s=busy_s)
    connect_args: dict[str, Any] = {"timeout": POSTGRES_CONNECT_TIMEOUT_S}
    if statement_timeout_s is not None:
        connect_args["command_timeout"] = statement_timeout_s * CLIENT_TIMEOUT_SHARE
    connect_args.update(engine_options.pop("connect_args", {}))
    engine = _create_async_engine(
        parsed, pool_pre_ping=True, connect_args=connect_args, **engine_options
    )
    if statement_timeout_s is not None:
        _bound_statements(engine, statement_timeout_s)
    return engine


def _bound_statements(engine: AsyncEngine, seconds: float) -> None:
    """Each new PostgreSQL connection sets `statement_timeout` and
    `idle_in_transaction_session_timeout` for its session. With `SET`, not as startup
    parameters (asyncpg's `server_settings`): PgBouncer refuses a startup parameter it does
    not know, and would refuse every connection."""
    settings = {
        "statement_timeout": seconds,
        "idle_in_transaction_session_timeout": seconds * IDLE_IN_TRANSACTION_SHARE,
    }

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for name, bound in settings.items():
                cursor.execute(f"SET {name} = {max(int(bound * 1000), 1)}")
        finally:
            cursor.close()
        dbapi_connection.commit()  # the driver's adapter began a transaction for the SET


def _create_sqlite_engine(
    url: URL, engine_options: dict[str, Any], *, busy_s: float
) -> AsyncEngine:
    connect_args = {"timeout": busy_s, **engine_options.pop("connect_args", {})}
    engine = _create_async_engine(url, connect_args=connect_args, **engine_options)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(WRITE_LOCK_AT_BEGIN, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextlib.asynccontextmanager
async def engine_for_one_task(
    url: str, *, statement_timeout_s: float | None = STATEMENT_TIMEOUT_S, **engine_options: Any
) -> AsyncIterator[AsyncEngine]:
    """An engine (`create_engine`) for one short task, a command or a check: disposed after it,
    and the threads aiosqlite ran its connections in waited for. A connection that failed to
    open stops its thread without waiting for it, and that thread's last answer, to an event
    loop already closed after a short task, would be a traceback on stderr. Only this engine's
    threads: another engine's in the process (the app's, a replica's) may run on for long."""
    engine = create_engine(url, statement_timeout_s=statement_timeout_s, **engine_options)
    threads: list[threading.Thread] = []
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "do_connect", _threads_kept(threads))
    try:
        yield engine
    finally:
        await engine.dispose()
        if threads:
            await asyncio.to_thread(_join, threads, timeout=5.0)


def _threads_kept(threads: list[threading.Thread]) -> Callable[..., None]:
    """A `do_connect` listener that keeps, in `threads`, the thread each connection is opened
    in (aiosqlite opens it in its connection's own thread), whether it opens or fails."""

    class _Kept(sqlite3.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            threads.append(threading.current_thread())
            super().__init__(*args, **kwargs)

    def _connecting(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        params["factory"] = _Kept

    return _connecting


def _join(threads: Sequence[threading.Thread], *, timeout: float) -> None:
    for thread in threads:
        thread.join(timeout)


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit (`expire_on_commit=False`)."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine, *, within_s: float = 2.0) -> bool:
    """True when `SELECT 1` answers within `within_s` seconds; False on any database error."""
    try:
        async with asyncio.timeout(within_s), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    # Any failure (refused, auth, timeout, driver error) means "not healthy", never a crash.
    except Exception as error:
        logger.warning("database ping failed: %s", type(error).__name__)
        return False
    return True


@contextlib.asynccontextmanager
async def server_clock(engine: AsyncEngine) -> AsyncIterator[Callable[[], Awaitable[datetime]]]:
    """PostgreSQL's clock, read on one connection held for the readings (taking it from the
    pool, a ping, is not in their round trips): `clock_timestamp()`, the time as the statement
    runs (`now()` is its transaction's start). SQLite has no server, so no clock of its own."""
    if engine.dialect.name != "postgresql":
        raise ValueError(f"{engine.dialect.name} has no server clock")
    async with engine.connect() as connection:

        async def now() -> datetime:
            read: datetime = await connection.scalar(text("SELECT clock_timestamp()"))
            return read

        yield now


@dataclass(frozen=True)
class Database:
    """The engine and its sessions, as the app holds them; implements `ports.Database`."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    async def ping(self) -> bool:
        return await ping(self.engine)


def insert_new(
    session: AsyncSession,
    table: type[Base],
    values: Mapping[str, Any],
    *,
    unique: InstrumentedAttribute[Any] | Sequence[InstrumentedAttribute[Any]],
    where: ColumnElement[bool] | None = None,
) -> Inserted:
    """`INSERT ... ON CONFLICT (unique) DO NOTHING` in the session's dialect (PostgreSQL or
    SQLite): the row is written once, by whichever writer comes first. `where` names a partial
    unique index (its columns `unique`, its condition `where`)."""
    columns = list(unique) if isinstance(unique, Sequence) else [unique]
    return (
        insert_into(session, table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=columns, index_where=where)
    )


def insert_into(session: AsyncSession, table: type[Base]) -> Inserted:
    """An `INSERT` in the session's dialect, which can say what to do `ON CONFLICT`."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def rows_changed(result: object) -> int:
    """How many rows an INSERT, UPDATE or DELETE changed: its cursor's `rowcount` (for an
    `INSERT ... ON CONFLICT DO NOTHING`, 1 when it wrote the row). `AsyncSession.execute` is
    typed as returning a `Result`, which has no `rowcount`."""
    return int(getattr(result, "rowcount", 0) or 0)


def of_service(
    column: InstrumentedAttribute[Any], service: str | None
) -> tuple[ColumnElement[bool], ...]:
    """The criteria of a store of one `service` (none for a store of every service)."""
    return () if service is None else (column == service,)


class ServiceStore:
    """A store of one `service`'s rows, or (None) of every service's: its queries add
    `_scope`, and it writes for its own service only (`_written_for`)."""

    service_column: ClassVar[InstrumentedAttribute[Any]]
    """The column naming the service a row belongs to."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, service: str | None = None
    ) -> None:
        self._sessions = sessions
        self._service = service
        self._scope = of_service(type(self).service_column, service)

    def _written_for(self, service: str | None, row: str) -> str | None:
        """The service a new `row` (`a timer`) is written for: the one asked, which must be
        the store's when it has one; None when neither names one."""
        if self._service is not None and service not in (None, self._service):
            raise ValueError(f"{row} of {service} given to the store of {self._service}")
        return service or self._service


def from_row(record: type[R], row: object, **converted: Any) -> R:
    """The frozen record of an ORM row (or of a stored record, as the domain value it holds):
    each field read from the attribute of the same name, except those given `converted`."""
    values = {f.name: getattr(row, f.name) for f in fields(record) if f.name not in converted}
    return record(**values, **converted)
