"""A fresh database for one benchmark run: a SQLite file, or a PostgreSQL database on
127.0.0.1:5432 (user postgres), dropped afterwards."""

from __future__ import annotations

import contextlib
import secrets
import tempfile
from collections.abc import AsyncIterator

from storage.db import engine_for_one_task

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgres")


async def admin(statement: str) -> None:
    async with (
        engine_for_one_task(ADMIN_URL, isolation_level="AUTOCOMMIT") as engine,
        engine.connect() as connection,
    ):
        await connection.exec_driver_sql(statement)


@contextlib.asynccontextmanager
async def fresh_database(backend: str) -> AsyncIterator[str]:
    """The URL of an empty database of `backend` (`sqlite` or `postgres`)."""
    if backend == "postgres":
        name = f"rb_bench_{secrets.token_hex(4)}"
        await admin(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            await admin(f'DROP DATABASE "{name}" WITH (FORCE)')
    elif backend == "sqlite":
        with tempfile.TemporaryDirectory() as workdir:
            yield f"sqlite:///{workdir}/bench.db"
    else:
        raise SystemExit(f"unknown database {backend!r}: one of {', '.join(BACKENDS)}")
