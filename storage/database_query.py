"""The query parameters of a PostgreSQL DATABASE_URL, as the driver takes them.

SQLAlchemy hands every query parameter to asyncpg's `connect()` as a keyword argument, a
string: one it does not take (libpq's `connect_timeout`, `application_name`, `options`) failed
every connection with a TypeError, and one it takes only as a number or a mapping failed
later. `DATABASE_URL` may carry only those asyncpg takes as text; libpq's `sslmode` is
asyncpg's `ssl`.
"""

from __future__ import annotations

from collections.abc import Mapping

TAKEN = frozenset(
    {
        "command_timeout",  # asyncpg makes it a number (the bot's own bound wins under `serve`)
        "database",
        "gsslib",
        "host",
        "krbsrvname",
        "passfile",
        "password",
        "port",
        "prepared_statement_cache_size",  # SQLAlchemy's, made a number by it
        "service",
        "servicefile",
        "ssl",
        "target_session_attrs",
        "user",
    }
)
"""The parameters asyncpg's `connect()` takes as text (and SQLAlchemy's own)."""

Query = Mapping[str, str | tuple[str, ...]]


def asyncpg_query(query: Query) -> tuple[dict[str, str | tuple[str, ...]], str | None]:
    """The query as asyncpg takes it (`sslmode` named `ssl`), and why DATABASE_URL is refused
    when it has parameters asyncpg does not take (named, never their values), else None."""
    taken = {("ssl" if name == "sslmode" else name): value for name, value in query.items()}
    refused = sorted(name for name in taken if name not in TAKEN)
    if not refused:
        return taken, None
    return taken, (
        f"DATABASE_URL has {', '.join(f'`{name}`' for name in refused)} in its query, which "
        "the PostgreSQL driver (asyncpg) does not take: remove it (the bot bounds its own "
        "connects and statements)"
    )
