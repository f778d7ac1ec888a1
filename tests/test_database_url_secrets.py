"""DATABASE_URL's password, wherever the URL carries it: never shown by `check-config`,
`migrate` or a log line, and a URL the database driver would split inside its password is
refused as a configuration problem that shows no part of it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from command_line import run_here
from test_cli import full_env

from bot.config import Settings, load_settings
from bot.logs import configure_logging
from storage.db import InvalidDatabaseUrl, mask_database_url, normalize_database_url

PASSWORD_IN_QUERY = "qPass-7731-zz"
"""A password given as libpq's (and asyncpg's) `password` parameter: `?user=bot&password=…`."""


def test_a_password_in_the_query_is_masked() -> None:
    masked = mask_database_url(
        f"postgresql://db.internal/rollouts?user=bot&password={PASSWORD_IN_QUERY}"
    )
    assert PASSWORD_IN_QUERY not in masked
    assert masked == "postgresql://db.internal/rollouts?password=***&user=bot"


async def test_check_config_and_migrate_never_show_a_password_given_in_the_query(
    tmp_path: Path, empty_postgres_database_url: str
) -> None:
    """asyncpg takes the query's `password` (SQLAlchemy hands it every query parameter): it is
    the password the bot signs in with, and `check-config` and `migrate` printed it whole."""
    url = f"{empty_postgres_database_url}?password={PASSWORD_IN_QUERY}"
    env = full_env(tmp_path) | {"DATABASE_URL": url}
    for command in ("check-config", "migrate"):
        code, out, err = await asyncio.to_thread(run_here, [command], env=env, cwd=tmp_path)
        assert code == 0, err
        assert PASSWORD_IN_QUERY not in out + err, command
        assert "password=***" in out, command


def test_a_log_line_never_shows_a_password_given_in_the_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in full_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://127.0.0.1/x?password={PASSWORD_IN_QUERY}")
    settings = load_settings(Settings, env_file=None)
    configure_logging(level="INFO", fmt="text", secrets=settings.secret_values())
    logging.getLogger("bot.test").warning("cannot connect to %s", settings.database_url)
    assert PASSWORD_IN_QUERY not in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bot:Xy@Secret99@db.internal:5432/rollouts",
        "postgresql://bot:Xy@Secret99@db.internal/rollouts",
    ],
)
def test_an_at_sign_inside_the_password_is_refused_without_showing_any_part_of_it(
    url: str,
) -> None:
    """SQLAlchemy ends the password at its first `@`: the bot signed in with `Xy` to the host
    `Secret99@db.internal`, which does not resolve, and the masked URL that `check-config`, the
    doctor and the start log showed held `Secret99` in clear."""
    with pytest.raises(InvalidDatabaseUrl) as refused:
        normalize_database_url(url)
    said = str(refused.value)
    assert "Secret99" not in said and "Xy" not in said
    assert "write each `@` of the password as %40" in said
    # Written as the message says, the URL is taken, its password whole.
    assert "bot:Xy%40Secret99@db.internal" in normalize_database_url(url.replace("Xy@", "Xy%40"))


async def test_check_config_says_an_at_sign_in_the_password_is_to_be_written_encoded(
    tmp_path: Path,
) -> None:
    env = full_env(tmp_path) | {"DATABASE_URL": "postgresql://bot:Xy@Secret99@db/rollouts"}
    code, out, err = await asyncio.to_thread(run_here, ["check-config"], env=env, cwd=tmp_path)
    assert code == 2
    assert "Secret99" not in out + err
    assert "DATABASE_URL: " in err and "as %40" in err


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("sqlite://", "names no SQLite file but a database in memory"),
        ("sqlite:///:memory:", "names no SQLite file but a database in memory"),
        ("sqlite://rollout-bot.db", "names no SQLite file but a host"),
    ],
)
async def test_a_sqlite_url_that_keeps_no_file_is_refused_before_migrate_says_migrated(
    tmp_path: Path, url: str, said: str
) -> None:
    """`sqlite://` and `:memory:`: `migrate` said "migrated", of a database that was gone once
    it exited, and `serve` then refused its own, never migrated: "run `rollout-bot migrate`",
    for ever. `sqlite://rollout-bot.db` (two slashes): check-config took it, and `migrate` and
    `serve` said the database "does not answer"."""
    env = full_env(tmp_path) | {"DATABASE_URL": url}
    for command in ("check-config", "migrate", "serve"):
        code, out, err = await asyncio.to_thread(run_here, [command], env=env, cwd=tmp_path)
        assert code == 2, command
        assert "migrated" not in out and "does not answer" not in err
        assert f"  - DATABASE_URL: DATABASE_URL {said}" in err, err
        assert "sqlite:///rollout-bot.db" in err  # what to write instead


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("connect_timeout=10", "connect_timeout"),
        (f"application_name=rollout-bot&password={PASSWORD_IN_QUERY}", "application_name"),
        ("options=-c%20statement_timeout%3D5000", "options"),
    ],
)
async def test_a_libpq_parameter_the_driver_does_not_take_is_a_configuration_problem(
    tmp_path: Path, query: str, named: str
) -> None:
    """libpq's URLs take `connect_timeout`, `application_name` and `options`; SQLAlchemy hands
    every query parameter to asyncpg's `connect()`, which takes none of them: `migrate` and
    `serve` died of an 84-line traceback (`TypeError: connect() got an unexpected keyword
    argument 'connect_timeout'`). Now each command says which parameter, before anything is
    asked of the database, never with the password."""
    url = f"postgresql://bot:Pw-5512-q@127.0.0.1:1/rollouts?{query}"
    env = full_env(tmp_path) | {"DATABASE_URL": url}
    for command in ("check-config", "migrate", "serve"):
        code, out, err = await asyncio.to_thread(run_here, [command], env=env, cwd=tmp_path)
        assert code == 2, (command, err)
        assert "Traceback" not in err, err
        assert f"`{named}`" in err and "DATABASE_URL: " in err, err
        assert "Pw-5512-q" not in out + err and PASSWORD_IN_QUERY not in out + err
