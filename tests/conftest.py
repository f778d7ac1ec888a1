"""Shared database fixtures: a test where the database matters runs on SQLite and PostgreSQL.

- `database_url`: a migrated database with empty tables, parametrized `sqlite` / `postgres`;
  `sqlite` only for a test marked `story` (below).
  SQLite: a copy of a migrated template file in the test's tmp dir. PostgreSQL: one fresh
  database per test session (`rb_test_<hex>`, dropped at the end), every table truncated
  before each test.
- `postgres_database_url` / `sqlite_database_url`: the same for one backend only.
- `empty_database_url` (and `empty_postgres_database_url`): a database with no tables at all,
  for migration tests.
- `migrated_engine`, `session_factory`: an engine and sessions on `database_url`.
- `slack_markup_valid` (every test): fails a test whose bot sent a sandbox Slack mrkdwn that
  Slack would render badly (`sandbox.slack_markup`).
- `chart_worker`: the chart worker process the session's tests and in-process bots share
  (`sandbox.harness.CHARTS`), ended with the session.

Which tests run on both: storage, migrations, two replicas or concurrent requests on one
database, exactly-once claims, restarts, leases, reports computed by queries, and chaos. An
end-to-end story, where the database only keeps the rollout between two clicks, is marked
`story` (most of them module-wide, `pytestmark = pytest.mark.story`) and runs on SQLite alone:
twice would prove nothing more and double its time. Within such a module a test marked
`database_matters` runs on both again.

The bounded chaos runs (real processes, real time) are collected first, so that with several
workers they run beside the rest instead of ending the run alone. (Not beside the fuzzing: that
one is CPU-bound and would starve the chaos runs' replicas.)

PostgreSQL allows 100 connections and a `serve` replica may open 28 (docs/operating.md): a
test marked `postgres_burst` (two replicas taking fifty clicks fill both pools: 56) has the
server to itself among the tests on `postgres_database_url` (`_postgres_turn`); only the chaos
run (about 25) may run beside it.

PostgreSQL is expected at `postgresql://postgres@127.0.0.1:5432/test` (trust auth; override
with TEST_POSTGRES_URL). When it cannot be reached the postgres cases are skipped, or fail
when REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from command_line import loggers_kept
from figures import quiet_sandbox
from hypothesis import HealthCheck, settings
from services import missing
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from bot.adapters.chart_worker import ChartWorker
from sandbox import slack_markup
from sandbox.config import SECRETS, SENTRY_TOKEN, SLACK_APP_TOKEN, SLACK_BOT_TOKEN
from sandbox.harness import CHARTS, Sandbox
from sandbox.sentry import SentryTestServer
from sandbox.slack import SlackTestServer
from storage.db import create_engine, create_session_factory, mask_database_url
from storage.migrate import upgrade
from storage.timers import TimerStore

T = TypeVar("T")

# Hypothesis's deadline and its too-slow health check time each example by the wall clock: on
# a machine whose two cores the run keeps busy, an example that waited for a core fails them,
# which says nothing of the code (no wall-clock limits in tests: bench/ measures speed).
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_configure(config: pytest.Config) -> None:
    """Every record at DEBUG is made, for the secret scan (`no_secret_in_any_log_line`). Set
    before pytest's own log capture starts: it puts back the level it found after each phase
    of a test (and captures INFO and above for its reports, `log_level` in pyproject.toml)."""
    logging.getLogger().setLevel(logging.DEBUG)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The chaos run first (see the module docstring); the rest keep their order."""
    items.sort(key=lambda item: item.get_closest_marker("chaos") is None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`database_url` on both backends, or on SQLite alone for a `story` (module docstring)."""
    if "database_url" not in metafunc.fixturenames:
        return
    story = metafunc.definition.get_closest_marker("story") is not None
    matters = metafunc.definition.get_closest_marker("database_matters") is not None
    backends = ["sqlite"] if story and not matters else BACKENDS
    metafunc.parametrize("database_url", backends, indirect=True)


def pg_url(database: str) -> str:
    """The URL of `database` on the test PostgreSQL server (plain libpq form)."""
    return make_url(POSTGRES_ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync fixture code, on a loop of its own.

    A worker thread keeps it away from the loop pytest-asyncio manages for the test.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _execute(url: str, *statements: str) -> None:
    """Run statements outside any transaction (CREATE/DROP DATABASE need that), without the
    app's bound on a statement: on a loaded machine a DROP DATABASE took longer than its 15 s
    and failed the session's teardown."""
    engine = create_engine(
        url, statement_timeout_s=None, poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


async def _truncate_all(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            # A test that leaked an open transaction makes this fail instead of hang.
            await connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            names = (
                await connection.exec_driver_sql(
                    "SELECT quote_ident(tablename) FROM pg_tables "
                    "WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
                )
            ).scalars()
            tables = ", ".join(names)
            if tables:
                await connection.exec_driver_sql(
                    f"TRUNCATE TABLE {tables} RESTART IDENTITY CASCADE"
                )
    finally:
        await engine.dispose()


@pytest.fixture(autouse=True)
def _loggers_restored() -> Iterator[None]:
    """A command run in-process (`backtest`, `doctor`, `metrics`) configures logging as its
    process would (the root at ERROR with its own handler, the chatty libraries at WARNING):
    give the next test in this worker the loggers as they were, so `caplog` sees its WARNING
    lines and the secret scan every library's DEBUG records again. (During such a test the
    scan sees what the production setup lets through.)"""
    with loggers_kept():
        yield


@pytest.fixture(scope="session", autouse=True)
def chart_worker() -> Iterator[ChartWorker]:
    """One chart worker per test process (each imports matplotlib, about a second), not one
    per test; no worker outlives the session."""
    yield CHARTS
    run_async(CHARTS.close())


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL, or a skip (a failure with REQUIRE_SERVICES=1)."""

    try:
        run_async(_execute(POSTGRES_ADMIN_URL, "SELECT 1"))
    except (OSError, SQLAlchemyError) as error:
        missing(
            f"PostgreSQL not reachable at {mask_database_url(POSTGRES_ADMIN_URL)}: "
            f"{type(error).__name__}: {error}"
        )
    return POSTGRES_ADMIN_URL


def _create_database(prefix: str) -> str:
    name = f"{prefix}_{secrets.token_hex(6)}"
    run_async(_execute(POSTGRES_ADMIN_URL, f'CREATE DATABASE "{name}"'))
    return name


def _drop_database(name: str) -> None:
    run_async(_execute(POSTGRES_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def _postgres_session_database(postgres_server: str) -> Iterator[str]:
    """One migrated database for the whole session; tests share it, tables truncated."""
    name = _create_database("rb_test")
    try:
        url = pg_url(name)
        run_async(upgrade(url))
        yield url
    finally:
        _drop_database(name)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file each test copies (faster than migrating per test)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    run_async(upgrade(sqlite_url(path)))
    return path


@contextmanager
def _postgres_turn(folder: Path, *, alone: bool) -> Iterator[None]:
    """Held for a test on PostgreSQL: shared, or `alone` (no other holder meanwhile), across
    the run's worker processes. One waiting to be alone holds the door, so no test comes in
    after it and it cannot wait for ever behind a stream of shared holders."""
    with (
        open(folder / "postgres-door.lock", "a") as door,
        open(folder / "postgres-room.lock", "a") as room,
    ):
        fcntl.flock(door, fcntl.LOCK_EX)
        fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        fcntl.flock(door, fcntl.LOCK_UN)
        yield


@pytest.fixture(scope="session")
def _postgres_turns(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """The folder of the run's turn locks: shared by its workers (each one's base temp folder
    is inside the run's). Read from the config, not xdist's `worker_id` fixture, so that a test
    measured alone with `-p no:xdist` still runs."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(pytestconfig, "workerinput") else base


@pytest.fixture
def postgres_database_url(
    _postgres_session_database: str, _postgres_turns: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A migrated PostgreSQL database with every table empty, and a turn on the server."""
    alone = request.node.get_closest_marker("postgres_burst") is not None
    with _postgres_turn(_postgres_turns, alone=alone):
        run_async(_truncate_all(_postgres_session_database))
        yield _postgres_session_database


@pytest.fixture
def sqlite_database_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite file of this test's own."""
    path = tmp_path / "rollout-bot.db"
    shutil.copyfile(_sqlite_template, path)
    return sqlite_url(path)


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database: a SQLite file, then PostgreSQL (`pytest_generate_tests`)."""
    fixture = "sqlite_database_url" if request.param == "sqlite" else "postgres_database_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
def empty_postgres_database_url(postgres_server: str) -> Iterator[str]:
    """A new PostgreSQL database with no tables, dropped after the test."""
    name = _create_database("rb_empty")
    try:
        yield pg_url(name)
    finally:
        _drop_database(name)


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no tables, not even Alembic's: a new SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "empty.db")
    url: str = request.getfixturevalue("empty_postgres_database_url")
    return url


@pytest.fixture
async def migrated_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for requests to a sandbox's bot, as Slack, GitHub or Prometheus send."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def slack() -> AsyncIterator[SlackTestServer]:
    """The sandbox's Slack, knowing the sandbox's bot and app-level tokens."""
    async with SlackTestServer(bot_token=SLACK_BOT_TOKEN, app_token=SLACK_APP_TOKEN) as server:
        yield server


@pytest.fixture
def timers(session_factory: async_sessionmaker[AsyncSession]) -> TimerStore:
    return TimerStore(session_factory)


@pytest.fixture
def session_factory(migrated_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(migrated_engine)


AIOSQLITE_DONE = "operation %s completed"
"""aiosqlite's DEBUG line after each call on its connection thread: the same call (SQL and
parameters) as its line just before, `executing %s`. aiosqlite's lines are most of the records
of a test on SQLite (about 7,000 in an end-to-end one), each about 10 µs to format, so the
scan reads the first of the two."""


class _LeakScan(logging.Handler):
    """Formats every log record of the run (tracebacks included) and keeps the lines that
    carry a sandbox secret."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "aiosqlite" and record.msg == AIOSQLITE_DONE:
            return  # the same call its "executing" line showed just before (and was scanned)
        line = self.format(record)
        if any(secret in line for secret in SECRETS):
            self.leaks.append(line)


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log_line() -> Iterator[None]:
    """Scan the logs of the whole test run (at DEBUG, libraries included) for the sandbox
    secrets. The records are read raw, before the production scrubber, so this proves the
    code never logs a secret rather than that the scrubber caught it."""
    scan = _LeakScan()
    root = logging.getLogger()
    assert root.level == logging.DEBUG, "pytest_configure sets it: a scan at DEBUG or none"
    root.addHandler(scan)
    try:
        yield
    finally:
        root.removeHandler(scan)
    leaks = scan.leaks
    assert not leaks, f"{len(leaks)} log lines carry a sandbox secret, e.g. {leaks[0][:300]}"


@pytest.fixture(autouse=True)
def slack_markup_valid(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every mrkdwn text the bot sends to a sandbox Slack (messages, cards, forms, answers on
    a response_url, acknowledgements) is one Slack renders as meant: no `<...>` that is not a
    link, mention or date, no unescaped `&`, `<`, `>` (`sandbox.slack_markup`). Slack takes
    such a message and shows it broken, so the sandbox records it and the test fails here
    (unless marked `bad_markup`: a test of the check itself)."""
    with slack_markup.watching() as seen:
        yield
    if request.node.get_closest_marker("bad_markup") is None:
        assert not seen, f"mrkdwn Slack would render badly:\n{slack_markup.described(seen)}"


@pytest.fixture
async def quiet(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    """The bot with hour-long windows and its own poller asleep: nothing moves by itself."""
    async with quiet_sandbox(tmp_path, database_url) as box:
        yield box


@pytest.fixture
async def sentry() -> AsyncIterator[SentryTestServer]:
    """A local Sentry answering the sessions API (`sandbox.sentry`), with the sandbox's token."""
    async with SentryTestServer(token=SENTRY_TOKEN) as server:
        yield server
