"""Database URLs, engines and the health probe."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.failures import TRANSIENT
from storage import db
from storage.audit_log import AuditLog
from storage.db import (
    InvalidDatabaseUrl,
    create_engine,
    default_database_url,
    engine_for_one_task,
    mask_database_url,
    normalize_database_url,
    ping,
)
from storage.migrate import upgrade


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///rollout-bot.db", "sqlite+aiosqlite:///rollout-bot.db"),
        ("sqlite:////var/lib/bot/bot.db", "sqlite+aiosqlite:////var/lib/bot/bot.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgres://bot:pw@db:5432/rollouts", "postgresql+asyncpg://bot:pw@db:5432/rollouts"),
        ("postgresql://bot:pw@db/rollouts", "postgresql+asyncpg://bot:pw@db/rollouts"),
        ("postgresql+asyncpg://bot@db/rollouts", "postgresql+asyncpg://bot@db/rollouts"),
        ("postgresql+psycopg://bot@db/rollouts", "postgresql+asyncpg://bot@db/rollouts"),
        (
            "postgresql://bot@db/rollouts?sslmode=require",
            "postgresql+asyncpg://bot@db/rollouts?ssl=require",
        ),
        (" postgresql://bot@db/rollouts\n", "postgresql+asyncpg://bot@db/rollouts"),
    ],
)
def test_urls_are_normalized_to_async_drivers(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:hunter2@db/rollouts",
        "not a url",
        "",
        "oracle://u:hunter2@h/x",
        "postgresql://u:hunter2@db:99999/rollouts",  # asyncpg would die of an OverflowError
        "postgresql://u:hunter2@db:pg/rollouts",
    ],
)
def test_unsupported_urls_are_refused_without_showing_the_password(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl) as refused:
        normalize_database_url(url)
    assert "hunter2" not in str(refused.value)


def test_masked_url_hides_the_password_only() -> None:
    masked = mask_database_url("postgresql://bot:s3cr%40t@db.internal:5432/rollouts")
    assert "s3cr" not in masked
    assert masked == "postgresql://bot:***@db.internal:5432/rollouts"
    assert mask_database_url("sqlite:///bot.db") == "sqlite:///bot.db"
    assert mask_database_url("::::") == "<unparsable database URL>"


async def test_default_database_is_a_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = default_database_url()
    await upgrade(url)
    assert (tmp_path / "rollout-bot.db").is_file()


async def test_sqlite_engine_enforces_foreign_keys_and_uses_wal(sqlite_database_url: str) -> None:
    engine = create_engine(sqlite_database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("PRAGMA foreign_keys")) == 1
            assert await connection.scalar(text("PRAGMA journal_mode")) == "wal"
            assert await connection.scalar(text("PRAGMA busy_timeout")) > 0
    finally:
        await engine.dispose()


async def test_ping_answers_true_when_the_database_answers(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert await ping(engine) is True
    finally:
        await engine.dispose()


@pytest.mark.parametrize("where", ["nothing listening", "an unopenable sqlite file"])
async def test_ping_is_false_when_no_database_answers(
    where: str, unused_tcp_port: int, tmp_path: Path
) -> None:
    url = {
        "nothing listening": f"postgresql://postgres@127.0.0.1:{unused_tcp_port}/test",
        "an unopenable sqlite file": f"sqlite:///{tmp_path}/missing-dir/bot.db",
    }[where]
    # The failed SQLite connection's thread is waited for, or its last answer would reach this
    # test's event loop after it closed (a thread traceback in a later test).
    async with engine_for_one_task(url) as engine:
        assert await ping(engine) is False


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never says a word: a hung database."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_ping_gives_up_quickly_on_a_hung_database(silent_server: int) -> None:
    engine = create_engine(f"postgresql://postgres@127.0.0.1:{silent_server}/test")
    started = time.monotonic()
    try:
        assert await ping(engine, within_s=0.5) is False
    finally:
        await engine.dispose()
    assert time.monotonic() - started < 3


async def test_datetimes_come_back_aware_in_utc(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    audit = AuditLog(session_factory)
    plus_two = timezone(timedelta(hours=2))
    at = datetime(2026, 6, 1, 14, 30, 15, 123456, tzinfo=plus_two)
    await audit.append(at=at, actor="U1", action="start", result="ok", rollout_id="r-1")
    (stored,) = await audit.list_for_rollout("r-1")
    assert stored.at == at
    assert stored.at.tzinfo is UTC
    assert stored.at.hour == 12


async def test_naive_datetimes_are_refused(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    audit = AuditLog(session_factory)
    with pytest.raises(StatementError, match="naive datetime"):
        await audit.append(at=datetime(2026, 1, 1), actor="U1", action="start", result="ok")


async def test_a_connection_the_server_terminates_fails_as_a_lost_connection(
    postgres_database_url: str,
) -> None:
    """Whatever moment the server's `FATAL: terminating connection` meets a statement (asyncpg
    answers `connection is closed`, or `another operation is in progress` while it still
    consumes the error), SQLAlchemy calls the connection lost and the failure is transient:
    one WARNING line, the next try on a new connection."""
    engine = create_engine(postgres_database_url)
    admin = create_engine(postgres_database_url)
    try:
        for attempt in range(6):
            with pytest.raises(DBAPIError) as failed:
                async with engine.begin() as connection:
                    pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar()
                    async with admin.connect() as other:
                        await other.execute(text(f"SELECT pg_terminate_backend({pid})"))
                    await asyncio.sleep(0.001 * (attempt % 4))
                    await connection.execute(text("SELECT 1"))
            assert failed.value.connection_invalidated
            assert isinstance(failed.value, TRANSIENT)
        async with engine.connect() as connection:  # the pool hands out a live connection
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()
        await admin.dispose()


async def test_a_task_on_a_database_that_cannot_open_leaves_no_sqlite_thread(
    tmp_path: Path,
) -> None:
    # aiosqlite stops a connection's thread without waiting when the file cannot be opened;
    # left running, its last answer reaches the event loop after `asyncio.run` closed it
    # (`serve` then printed a traceback under its one-line refusal).
    url = f"sqlite:///{tmp_path}/no-such-directory/bot.db"
    before = set(threading.enumerate())  # an earlier test's engine may still hold its own
    with pytest.raises(DBAPIError):
        async with engine_for_one_task(url) as engine, engine.connect():
            pass
    left = [t for t in threading.enumerate() if t not in before]
    assert not [t for t in left if "_connection_worker_thread" in t.name]


async def test_a_task_waits_for_its_own_sqlite_threads_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another engine of the process (the app's, another replica's, a task begun before) keeps
    # its connection's thread running: a one-task engine waiting for it as its own waited out
    # its whole bound (5 s) for each, three replicas' one-task engines 15 s.
    url = f"sqlite:///{tmp_path}/bot.db"
    waited: list[threading.Thread] = []

    def join(threads: list[threading.Thread], *, timeout: float) -> None:
        waited.extend(threads)
        db_join(threads, timeout=timeout)

    db_join = db._join
    monkeypatch.setattr(db, "_join", join)
    async with engine_for_one_task(url) as other:
        async with engine_for_one_task(url) as engine:
            async with other.connect() as going_on:  # opened after this task's engine
                await going_on.execute(text("SELECT 1"))
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert waited
        assert not [thread for thread in waited if thread.is_alive()]
        async with other.connect() as going_on:
            assert await going_on.scalar(text("SELECT 1")) == 1


@pytest.mark.postgres
@pytest.mark.parametrize(
    "query",
    [
        "command_timeout=30",  # asyncpg takes it as text (a number of seconds)
        "ssl=disable&target_session_attrs=read-write&prepared_statement_cache_size=0",
        "sslmode=disable&host=127.0.0.1:5432&host=127.0.0.1:5432",  # libpq's multi-host form
    ],
)
async def test_a_database_url_query_that_served_before_still_serves(
    postgres_server: str, query: str
) -> None:
    """The parameters asyncpg takes from a URL, as e750548d served with them: refusing one
    would leave the upgrade's `migrate` and every new replica refusing a DATABASE_URL the
    running ones serve on."""
    url = make_url(postgres_server)
    given = f"postgresql://{url.username}@/{url.database}?{query}"
    if "host=" not in query:
        given = f"postgresql://{url.username}@{url.host}:{url.port or 5432}/{url.database}?{query}"
    engine = create_engine(given)
    try:
        assert await ping(engine) is True
    finally:
        await engine.dispose()
