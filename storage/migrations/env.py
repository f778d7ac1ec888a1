"""Alembic's environment for rollout-bot.

`storage.migrate` runs migrations on a connection it opened (inside an already running event
loop) and hands it over in `config.attributes["connection"]`; the alembic command line, with
no connection given, opens its own async engine from `sqlalchemy.url`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from storage.db import create_engine
from storage.models import Base, UTCDateTime

target_metadata = Base.metadata


def render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render UTCDateTime as its plain column type, so migrations never import the models."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters tables by copying them; later migrations need batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
        # `storage.migrate` counts the migrations applied, to name the one that failed.
        on_version_apply=context.config.attributes.get("on_version_apply", ()),
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine(url: str) -> None:
    engine = create_engine(url, statement_timeout_s=None)  # as `storage.migrate.upgrade`
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


def run_offline(url: str) -> None:
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    config = context.config
    given: Connection | None = config.attributes.get("connection")
    if given is not None:
        run_on(given)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: set sqlalchemy.url or pass a connection")
    if context.is_offline_mode():
        run_offline(url)
    else:
        asyncio.run(run_with_own_engine(url))


main()
