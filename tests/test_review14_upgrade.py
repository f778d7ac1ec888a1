"""Review of issue 14 (branch review14): `rollout-bot migrate`, the step every upgrade (and
compose's one-shot `migrate` service) starts with, answers bad situations with a traceback.

These tests FAIL on main: each names the defect it proves (see the review report).
"""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

from test_cli import full_env, run


async def test_review14_migrate_by_an_older_binary_says_so_in_one_line(tmp_path: Path) -> None:
    """A database a newer version migrated (a rollback of the image, or compose's `migrate`
    service of the old image): `serve` says it in one line, `migrate` dies with Alembic's
    ~80-line traceback ending in "Can't locate revision identified by ..."."""
    env = full_env(tmp_path)
    assert (await run("migrate", env=env, cwd=tmp_path))[0] == 0
    with sqlite3.connect(tmp_path / "bot.db") as db:
        db.execute("update alembic_version set version_num = '0099_from_the_future'")
    code, _, err = await run("migrate", env=env, cwd=tmp_path)
    assert code == 2
    assert "Traceback" not in err, err[-400:]
    (line,) = err.splitlines()
    assert "0099_from_the_future" in line and "newer" in line, line


async def test_review14_migrate_says_in_one_line_that_the_database_does_not_answer(
    tmp_path: Path,
) -> None:
    """`serve` says "the database does not answer" in one line; `migrate` prints a 120-line
    traceback of asyncpg's ConnectionRefusedError."""
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"postgresql://rollout:hunter2-secret@127.0.0.1:{port}/rollouts"
    code, _, err = await run(
        "migrate", env=full_env(tmp_path) | {"DATABASE_URL": url}, cwd=tmp_path
    )
    assert code == 2
    assert "Traceback" not in err, err[-400:]
    (line,) = err.splitlines()
    assert "the database does not answer" in line and "hunter2-secret" not in line
