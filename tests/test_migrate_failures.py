"""`rollout-bot migrate` that cannot finish: a lock held by a long transaction (PostgreSQL), a
migration that fails half-way. One line that says which migration, why, where the database is
(read back) and what to do; exit 1; nothing of the run applied; never the password."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from command_line import run_here
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.db import create_engine
from storage.migrate import current_revision, head_revision, upgrade

PASSWORD = "s3cret-Pw-9f2"  # PostgreSQL's trust authentication ignores it; SQLite has none


def _environment(url: str, **more: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": url, **more}


def _with_password(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return url
    return parsed.set(password=PASSWORD).render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def _session(url: str) -> AsyncIterator[AsyncConnection]:
    """A connection of its own to the database, as another replica or `psql` has one."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()


async def _columns(url: str, table: str) -> set[str]:
    def read(sync: Connection) -> set[str]:
        return {column["name"] for column in inspect(sync).get_columns(table)}

    async with _session(url) as connection:
        return await connection.run_sync(read)


@pytest.mark.postgres
async def test_migrate_gives_up_on_a_lock_a_long_transaction_holds_and_says_so(
    empty_postgres_database_url: str, tmp_path: Path
) -> None:
    """A replica mid-transaction on `stages` (its lock held): 0015's ALTER TABLE would wait for
    it, and every later query on `stages` would queue behind the ALTER. It gives up after
    MIGRATE_LOCK_TIMEOUT_SECONDS instead, rolled back, in one line; then, the transaction
    over, the next `migrate` completes."""
    url = _with_password(empty_postgres_database_url)
    await upgrade(url, revision="0014")
    async with _session(url) as long_transaction:
        await long_transaction.execute(text("BEGIN"))
        await long_transaction.execute(text("SELECT count(*) FROM stages"))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "migrate",
            env=_environment(url, MIGRATE_LOCK_TIMEOUT_SECONDS="0.5"),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=30)
        except TimeoutError:
            process.kill()
            await process.wait()
            pytest.fail("migrate waited behind the long transaction with no bound")
        # The replica's transaction was not disturbed: it goes on, and ends as it likes.
        assert (await long_transaction.execute(text("SELECT 1"))).scalar() == 1
        await long_transaction.execute(text("ROLLBACK"))

    lines = err.decode().splitlines()
    assert process.returncode == 1, err.decode()
    assert out == b""
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "rollout-bot: migration 0015 waited more than 0.5s for a lock another session holds"
    ), lines[0]
    assert "nothing was migrated" in lines[0]
    assert "the database is still at migration 0014" in lines[0]
    assert "run `rollout-bot migrate` again, or find the long transaction" in lines[0]
    assert PASSWORD not in err.decode()
    assert await current_revision(url) == "0014"
    assert "observed_from" not in await _columns(url, "stages")

    code, _, err_text = await asyncio.to_thread(
        run_here, ["migrate"], env=_environment(url), cwd=tmp_path
    )
    assert (code, err_text) == (0, ""), err_text
    assert await current_revision(url) == head_revision()


async def test_a_migration_that_fails_is_one_line_naming_it_and_nothing_is_applied(
    empty_database_url: str, tmp_path: Path
) -> None:
    """0014 applies, then 0015 fails (the column it adds is there already: a hand-made
    change): the run is rolled back, 0014 included, on SQLite as on PostgreSQL; the line says
    which migration failed, why, and that the database is still at 0013; no traceback."""
    url = _with_password(empty_database_url)
    await upgrade(url, revision="0013")
    async with _session(url) as by_hand:
        await by_hand.execute(text("ALTER TABLE stages ADD COLUMN observed_from TEXT"))
        await by_hand.commit()

    code, out, err = await asyncio.to_thread(
        run_here, ["migrate"], env=_environment(url), cwd=tmp_path
    )

    lines = err.splitlines()
    assert code == 1, err
    assert out == ""
    assert len(lines) == 1, lines
    assert lines[0].startswith("rollout-bot: migration 0015 failed ("), lines[0]
    assert "observed_from" in lines[0]
    assert "nothing was migrated (the run is one transaction, rolled back)" in lines[0]
    assert "the database is still at migration 0013" in lines[0]
    assert PASSWORD not in err
    assert await current_revision(url) == "0013"


async def test_a_bad_lock_timeout_is_a_configuration_problem(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bot.db"
    for bad in ("0", "-1", "abc", "inf"):
        env = _environment(url, MIGRATE_LOCK_TIMEOUT_SECONDS=bad)
        code, _, err = await asyncio.to_thread(run_here, ["migrate"], env=env, cwd=tmp_path)
        assert code == 2, (bad, err)
        assert "MIGRATE_LOCK_TIMEOUT_SECONDS" in err, (bad, err)
        assert not (tmp_path / "bot.db").exists()
