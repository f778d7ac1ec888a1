"""Apply the Alembic migrations, from inside a running event loop or from the command line.

Alembic is configured in code (no alembic.ini at runtime). `upgrade` opens an async engine and
runs Alembic's synchronous command API on that connection through `run_sync`, so the app and
the tests can migrate without a nested `asyncio.run`.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import (
    WRITE_LOCK_AT_BEGIN,
    engine_for_one_task,
    mask_database_url,
    normalize_database_url,
)

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = "storage:migrations"
# Key of the PostgreSQL advisory lock held while migrating: replicas starting together
# migrate one after the other instead of racing on the same DDL.
MIGRATION_LOCK_KEY = 0x726F6C6C6F7574  # "rollout"
LOCK_TIMEOUT_S = 5.0
"""Seconds a migration's statement waits for a lock on PostgreSQL (`lock_timeout`) before the
run gives up (`MIGRATE_LOCK_TIMEOUT_SECONDS`). An `ALTER TABLE` waiting behind a long
transaction queues every later query on that table behind itself, each replica's included,
so it must give up well within the bound on a served statement (15 s)."""
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout


class MigrationFailed(Exception):
    """A migration run that stopped and was rolled back: the revision it was applying (None:
    it failed before the first), and whether that was a wait for a lock that timed out
    (`lock_timeout_s`, else None). The cause is `__cause__`."""

    def __init__(self, revision: str | None, *, lock_timeout_s: float | None = None) -> None:
        super().__init__(f"migration {revision or '(none started)'} failed")
        self.revision = revision
        self.lock_timeout_s = lock_timeout_s


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic configuration for this package's migrations (for `command.*` calls)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if database_url is not None:
        # ConfigParser interpolates `%`; a URL-encoded password must survive it.
        url = normalize_database_url(database_url).replace("%", "%%")
        config.set_main_option("sqlalchemy.url", url)
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def _revision_id(target: str) -> str | None:
    """The revision `target` names (`head`, an id or a unique prefix of one); None when it
    names none this binary ships (Alembic's own command then says what is wrong)."""
    try:
        script = _scripts().get_revision(target)
    except CommandError:
        return None
    return script.revision if script is not None else None


def head_revision() -> str:
    """The newest migration shipped with this version of the bot."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


async def upgrade(
    database_url: str, *, revision: str = "head", lock_timeout_s: float | None = LOCK_TIMEOUT_S
) -> None:
    """Migrate the database to `revision` (default: the newest), in one transaction: a failure
    rolls the whole run back and raises `MigrationFailed`. On PostgreSQL no statement waits
    longer than `lock_timeout_s` for a lock (None: no bound)."""
    logger.info("migrating %s to %s", mask_database_url(database_url), revision)
    run = _Run(revision)
    # No bound on a statement: an index built on a large table, or the wait for another
    # replica's migration (the advisory lock), may take longer than a served statement may.
    # On SQLite the write lock, taken at BEGIN, is what another migration waits for.
    try:
        async with (
            engine_for_one_task(
                database_url,
                statement_timeout_s=None,
                execution_options={WRITE_LOCK_AT_BEGIN: True},
            ) as engine,
            engine.begin() as connection,
        ):
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
                if lock_timeout_s is not None:  # set after the advisory lock: that wait is fine
                    bound = max(int(lock_timeout_s * 1000), 1)
                    await connection.execute(text(f"SET LOCAL lock_timeout = {bound}"))
            await connection.run_sync(run.upgrade)
    # A migration may fail in any way (its data, the DDL, the connection): whichever, the run
    # was rolled back, and the caller is told which revision failed with its cause.
    except Exception as error:
        timed_out = _lock_not_available(error)
        raise MigrationFailed(
            run.failing(), lock_timeout_s=lock_timeout_s if timed_out else None
        ) from error


class _Run:
    """One `upgrade`'s migrations: those it had to apply, and those applied so far."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.pending: list[str] = []
        self.applied: list[str] = []

    def upgrade(self, connection: Connection) -> None:
        current = MigrationContext.configure(connection).get_current_revision()
        if current is not None and current == _revision_id(self.target):
            # Nothing to apply: Alembic's command would load every migration script again
            # (each replica's start, each `rollout-bot migrate` on a migrated database).
            return
        walked = _scripts().iterate_revisions(self.target, current)
        self.pending = [script.revision for script in reversed(list(walked))]
        config = alembic_config()
        config.attributes["connection"] = connection
        config.attributes["on_version_apply"] = [self._applied]
        command.upgrade(config, self.target)

    def _applied(self, *, step: Any, **_: Any) -> None:
        self.applied.append(step.up_revision_id)

    def failing(self) -> str | None:
        """The revision being applied when the run stopped; None before the first."""
        done = len(self.applied)
        return self.pending[done] if self.pending and done < len(self.pending) else None


def _lock_not_available(error: BaseException) -> bool:
    """Whether PostgreSQL gave up waiting for a lock (`lock_timeout`)."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    return getattr(cause, "sqlstate", None) == _LOCK_NOT_AVAILABLE or (
        getattr(cause, "pgcode", None) == _LOCK_NOT_AVAILABLE
    )


async def current_revision(database_url: str) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    async with engine_for_one_task(database_url) as engine:
        return await revision_of(engine)


async def revision_of(engine: AsyncEngine) -> str | None:
    """The revision the database behind `engine` is at; None when it was never migrated."""
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def schema_problem(
    engine: AsyncEngine, *, newer_is_fine: bool = False, behind_is_fine: bool = False
) -> str | None:
    """Why this binary must not serve on the database, or None when it is at head.

    Behind (never migrated, or an older revision): run `rollout-bot migrate` (`behind_is_fine`:
    that is what `migrate` is for). Ahead (a revision this binary does not ship): a newer
    version migrated it, so this one is too old to start on it, or to migrate it. A replica
    already serving stays ready on a newer schema (`newer_is_fine`): migrations are additive,
    and the rolling restart that follows replaces it.
    """
    current = await revision_of(engine)
    head = head_revision()
    if current == head:
        return None
    if current is None or _known(current):
        if behind_is_fine:
            return None
        return (
            f"the database is at migration {current or 'none'}, this version needs {head}: "
            "run `rollout-bot migrate`"
        )
    if newer_is_fine:
        return None
    return (
        f"the database is at migration {current}, newer than this version's {head}: "
        "this binary is older than the database: deploy the newer version"
    )


async def read_only_problem(engine: AsyncEngine) -> str | None:
    """Why the bot could write nothing to the database, or None: a read replica (a hot
    standby, a cluster's reader endpoint, the old primary after a failover) answers its reads,
    its migrations read at head, and every write fails, a rollout's click and the scheduler's
    claims among them."""
    if engine.dialect.name != "postgresql":
        return None
    async with engine.connect() as connection:
        # A locking read: a pooler that balances reads (Pgpool-II) sends it to the primary,
        # where the writes go, never to a standby that would answer "on" (a plain SHOW is a
        # read it may balance).
        setting = "SELECT current_setting('transaction_read_only') FOR UPDATE"
        if await connection.scalar(text(setting)) != "on":
            return None
    return (
        "the database takes no writes (transaction_read_only is on: a read replica, or "
        "default_transaction_read_only set on the database or its role): point DATABASE_URL "
        "at the primary"
    )


def _known(revision: str) -> bool:
    """Whether `revision` is one of the migrations this binary ships."""
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


async def serving_problem(engine: AsyncEngine) -> str | None:
    """Why a replica is not ready on the database (`/readyz`), or None: its schema behind this
    binary (ahead is a rolling upgrade under way: migrations are additive), or a database that
    takes no writes (a failover left DATABASE_URL on a standby)."""
    return await schema_problem(engine, newer_is_fine=True) or await read_only_problem(engine)
