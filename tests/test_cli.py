"""The operator commands, run as an operator runs them: with an environment of their own, and
as a real process where the process is what a test proves (signals, `.env` in the working
directory, the collector at start) and for at least one test of each command; the others run
the same command line in this process (`tests/command_line.py`: a process costs a second or
more of CPU)."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from command_line import run_here
from sandbox_views import command_body

from sandbox.config import (
    RELEASE_CHANNEL,
    SECRETS,
    SLACK_SIGNING_SECRET,
    bot_environment,
)
from sandbox.replica import ServeProcess
from sandbox.signing import slack_signature_headers
from sandbox.slack import SlackTestServer

REQUIRED = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "GITHUB_TOKEN",
    "GITHUB_REPOSITORY",
    "RELEASE_CHANNELS",
    "ROLLOUT_APPROVERS",
)


def base_env() -> dict[str, str]:
    """Only what a process needs to start; none of the bot's variables."""
    return {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}


def full_env(tmp_path: Path, *, slack_api_url: str = "http://127.0.0.1:9/api/") -> dict[str, str]:
    return base_env() | bot_environment(
        slack_api_url=slack_api_url,
        github_api_url="http://127.0.0.1:9/",
        database_url=f"sqlite:///{tmp_path}/bot.db",
        port=free_port(),
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def start(*args: str, env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    """`rollout-bot ARGS` as a process of its own, its output kept."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_process(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """`rollout-bot ARGS` as a process of its own: its exit status, stdout and stderr."""
    process = await start(*args, env=env, cwd=cwd)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def run(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """`rollout-bot ARGS` in this process, as its process would run it (`run_here`)."""
    return await asyncio.to_thread(run_here, args, env=env, cwd=cwd)


async def test_check_config_with_an_empty_environment_names_every_missing_variable(
    tmp_path: Path,
) -> None:
    code, out, err = await run("check-config", env=base_env(), cwd=tmp_path)
    assert code == 2
    assert out == ""
    for name in REQUIRED:
        assert f"{name}: missing" in err, name


async def test_check_config_lists_every_malformed_value_at_once(tmp_path: Path) -> None:
    env = full_env(tmp_path) | {
        "RELEASE_CHANNELS": f"{RELEASE_CHANNEL},general",
        "GITHUB_REPOSITORY": "scriptum",
        "ROLLOUT_PLAN": str(tmp_path / "missing-plan.yml"),
        "ROLLOUT_APPROVERS": "alice",
        "PORT": "http",
        "GITHUB_DISPATCH_LOOK_INTERVAL": "0",
    }
    code, _, err = await run("check-config", env=env, cwd=tmp_path)
    assert code == 2
    assert "RELEASE_CHANNELS: general: not a Slack channel id" in err
    assert "GITHUB_REPOSITORY: 'scriptum' is not owner/name" in err
    assert "ROLLOUT_PLAN:" in err and "missing-plan.yml" in err
    assert "ROLLOUT_APPROVERS: alice" in err
    assert "PORT:" in err
    assert "GITHUB_DISPATCH_LOOK_INTERVAL:" in err


async def test_check_config_prints_the_configuration_with_no_secret_visible(
    tmp_path: Path,
) -> None:
    code, out, err = await run("check-config", env=full_env(tmp_path), cwd=tmp_path)
    assert code == 0, err
    assert "GITHUB_REPOSITORY" in out and "scriptum/scriptum" in out
    assert "SLACK_BOT_TOKEN" in out and "********" in out
    for secret in SECRETS:
        assert secret not in out + err


@pytest.mark.parametrize("command", ["check-config", "migrate", "serve"])
async def test_a_dotenv_file_that_cannot_be_read_is_one_problem_not_a_traceback(
    tmp_path: Path, command: str
) -> None:
    """A `.env` saved as UTF-16 (Windows' PowerShell writes `>` so) failed every command with a
    UnicodeDecodeError traceback from pydantic-settings, as did one the bot's user may not read
    (a root-owned 0600 file mounted into the image, which runs as 10001: here a read that
    fails with EIO stands for it)."""
    env = full_env(tmp_path)
    written = "\n".join(f"{name}={env.pop(name)}" for name in REQUIRED) + "\n"
    (tmp_path / ".env").write_text(written, encoding="utf-16")
    code, out, err = await run(command, env=env, cwd=tmp_path)
    assert code == 2 and out == ""
    assert "Traceback" not in err
    assert err == (
        "configuration problems:\n  - .env: cannot read the file .env: it is not UTF-8 text; "
        "nothing was read from it: save it as UTF-8 text that the bot's user may read\n"
    )
    (tmp_path / ".env").unlink()
    (tmp_path / ".env").symlink_to("/proc/self/mem")  # a regular file whose read fails
    code, _, err = await run(command, env=env, cwd=tmp_path)
    assert code == 2
    assert "Traceback" not in err
    assert "  - .env: cannot read the file .env: Input/output error; nothing was read" in err


@pytest.mark.parametrize("blank", ["", "  \n"])
async def test_an_empty_slack_bot_token_is_a_configuration_problem_not_a_traceback(
    tmp_path: Path, blank: str
) -> None:
    """A Kubernetes Secret's key left blank: `check-config` passed it ("(empty)"), and `serve`
    died of Bolt's BoltError with a traceback, once every other check had passed."""
    env = full_env(tmp_path)
    assert (await run("migrate", env=env, cwd=tmp_path))[0] == 0
    for command in ("check-config", "serve"):
        code, _, err = await run(command, env=env | {"SLACK_BOT_TOKEN": blank}, cwd=tmp_path)
        assert code == 2, command
        assert "Traceback" not in err
        assert "  - SLACK_BOT_TOKEN: empty: set the Slack app's Bot User OAuth Token" in err


async def test_check_config_reads_a_dotenv_file(tmp_path: Path) -> None:
    env = full_env(tmp_path)
    dotenv = "\n".join(f"{name}={env.pop(name)}" for name in REQUIRED)
    (tmp_path / ".env").write_text(dotenv + "\n")
    code, out, err = await run_process("check-config", env=env, cwd=tmp_path)
    assert code == 0, err
    assert RELEASE_CHANNEL in out


async def test_socket_lists_a_missing_app_token_with_every_other_problem(tmp_path: Path) -> None:
    env = full_env(tmp_path)
    del env["SLACK_APP_TOKEN"], env["SLACK_BOT_TOKEN"]
    code, _, err = await run_process("socket", env=env, cwd=tmp_path)
    assert code == 2
    assert "SLACK_BOT_TOKEN: missing" in err
    assert "SLACK_APP_TOKEN: Socket Mode needs an app-level token (xapp-...)" in err
    code, _, err = await run("socket", env=env | {"SLACK_APP_TOKEN": "xoxb-1"}, cwd=tmp_path)
    assert "SLACK_APP_TOKEN: Socket Mode needs an app-level token (xapp-...)" in err
    assert "xoxb-1" not in err


async def test_socket_says_in_one_line_that_slack_refused_its_app_token(
    tmp_path: Path, slack: SlackTestServer
) -> None:
    """A revoked (or wrong) app-level token: `socket` exits 2 at once, naming Slack's error and
    the fix, where it kept asking Slack every 10 seconds for ever, a traceback each time,
    without ever serving; what it had opened on the way (the database, the scheduler) is
    closed again."""
    revoked = "xapp-1-A0REVOKED-0123456789-abcdef"
    env = full_env(tmp_path, slack_api_url=slack.api_url) | {"SLACK_APP_TOKEN": revoked}
    assert (await run("migrate", env=env, cwd=tmp_path))[0] == 0
    code, _, err = await asyncio.wait_for(run("socket", env=env, cwd=tmp_path), 30)
    assert code == 2, err
    (refused,) = [line for line in err.splitlines() if "SLACK_APP_TOKEN" in line]
    assert "Slack refused SLACK_APP_TOKEN for Socket Mode (invalid_auth)" in refused
    assert "connections:write" in refused
    assert "Traceback" not in err and "Retrying" not in err and revoked not in err
    assert [c.method for c in slack.calls].count("apps.connections.open") == 1


async def test_serve_refuses_a_bad_configuration_before_starting(tmp_path: Path) -> None:
    env = full_env(tmp_path) | {"RELEASE_CHANNELS": "general"}
    code, _, err = await run("serve", env=env, cwd=tmp_path)
    assert code == 2
    assert "RELEASE_CHANNELS" in err
    assert not (tmp_path / "bot.db").exists()


@pytest.mark.parametrize("command", ["check-config", "serve"])
async def test_a_user_or_password_in_github_api_url_is_refused(
    tmp_path: Path, command: str
) -> None:
    """PyGithub does not send them, and the bot's checks of GitHub's page links and redirections
    compare the whole host with them: it silently read the first page only."""
    env = full_env(tmp_path) | {"GITHUB_API_URL": "https://proxy:Pr0xyPassw0rd@ghe.example/api/v3"}
    code, out, err = await run(command, env=env, cwd=tmp_path)
    assert code == 2
    assert "GITHUB_API_URL: has a user or password in it" in err
    assert "Pr0xyPassw0rd" not in out + err
    assert not (tmp_path / "bot.db").exists()
    env["GITHUB_API_URL"] = "https://x-token@ghe.example/api/v3"  # a user alone, too
    code, _, err = await run("check-config", env=env, cwd=tmp_path)
    assert code == 2 and "GITHUB_API_URL: has a user or password in it" in err


async def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    env = base_env() | {"DATABASE_URL": f"sqlite:///{tmp_path}/fresh.db"}
    code, out, err = await run_process("migrate", env=env, cwd=tmp_path)
    assert code == 0, err
    assert out.startswith("migrated sqlite")
    with sqlite3.connect(tmp_path / "fresh.db") as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master")}
    assert {"rollouts", "stages", "timers", "audit_events"} <= tables


async def test_serve_refuses_a_database_whose_migrations_are_behind(tmp_path: Path) -> None:
    env = full_env(tmp_path)
    with sqlite3.connect(tmp_path / "bot.db"):  # a database never migrated
        pass
    code, _, err = await run("serve", env=env, cwd=tmp_path)
    assert code == 2
    (line,) = err.splitlines()
    assert line.endswith("run `rollout-bot migrate`"), line

    # One migration short of head: the same refusal, naming where the database is.
    with sqlite3.connect(tmp_path / "bot.db") as db:
        db.execute("create table alembic_version (version_num varchar(32) primary key)")
        db.execute("insert into alembic_version values ('0005')")
    code, _, err = await run("serve", env=env, cwd=tmp_path)
    assert code == 2
    assert "at migration 0005" in err and "run `rollout-bot migrate`" in err


@pytest.mark.parametrize("command", ["serve", "socket"])
async def test_serve_refuses_a_sqlite_database_that_does_not_exist_and_creates_none(
    tmp_path: Path, command: str
) -> None:
    """A volume not mounted, or another working directory than the bot's (the default
    DATABASE_URL is rollout-bot.db in it): an empty file created there, then `migrate` as the
    line said, would be a bot that knows none of the rollouts under way."""
    env = full_env(tmp_path)
    code, _, err = await run(command, env=env, cwd=tmp_path)
    assert code == 2
    (line,) = err.splitlines()
    assert line == (
        f"rollout-bot: the database sqlite+aiosqlite:///{tmp_path}/bot.db does not exist; "
        "nothing was served: point DATABASE_URL at the bot's database (a volume not mounted? "
        "the default is rollout-bot.db in the working directory), or run `rollout-bot migrate` "
        "to create a new one"
    )
    assert not (tmp_path / "bot.db").exists()


@pytest.mark.parametrize("command", ["serve", "migrate"])
async def test_serve_and_migrate_refuse_a_database_a_newer_version_migrated(
    tmp_path: Path, command: str
) -> None:
    """An image rolled back, or the old image's one-shot `migrate`: one line, nothing changed."""
    env = full_env(tmp_path)
    assert (await run("migrate", env=env, cwd=tmp_path))[0] == 0
    with sqlite3.connect(tmp_path / "bot.db") as db:
        db.execute("update alembic_version set version_num = '0099_from_the_future'")
    code, _, err = await run(command, env=env, cwd=tmp_path)
    assert code == 2
    (line,) = err.splitlines()
    assert "0099_from_the_future" in line and "newer than this version's" in line
    assert line.endswith("this binary is older than the database: deploy the newer version")
    with sqlite3.connect(tmp_path / "bot.db") as db:
        assert db.execute("select version_num from alembic_version").fetchall() == [
            ("0099_from_the_future",)
        ]


@pytest.mark.parametrize(("command", "nothing"), [("serve", "served"), ("migrate", "migrated")])
async def test_serve_and_migrate_say_in_one_line_that_the_database_does_not_answer(
    tmp_path: Path, command: str, nothing: str
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = f"postgresql://rollout:hunter2-secret@127.0.0.1:{port}/rollouts"
    unopenable = f"sqlite:///{tmp_path}/no-such-directory/bot.db"
    # `serve` says a SQLite file is missing before it opens it (the test above).
    for url in (unreachable, unopenable) if command == "migrate" else (unreachable,):
        code, _, err = await run(
            command, env=full_env(tmp_path) | {"DATABASE_URL": url}, cwd=tmp_path
        )
        assert code == 2
        (line,) = err.splitlines()
        assert "the database does not answer" in line and "hunter2-secret" not in line
        assert line.endswith(f"nothing was {nothing}"), line


async def test_migrate_refuses_a_bad_database_url_in_one_line(tmp_path: Path) -> None:
    url = "postgresql://rollout:hunter2-secret@127.0.0.1:99999/rollouts"
    code, _, err = await run(
        "migrate", env=full_env(tmp_path) | {"DATABASE_URL": url}, cwd=tmp_path
    )
    assert code == 2
    assert "Traceback" not in err and "hunter2-secret" not in err
    assert "DATABASE_URL has the port 99999; a port is 1 to 65535" in err


async def test_serve_says_in_one_line_that_its_port_is_taken(tmp_path: Path) -> None:
    env = full_env(tmp_path)
    assert (await run("migrate", env=env, cwd=tmp_path))[0] == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = await run(
            "serve", env=env | {"HOST": "127.0.0.1", "PORT": str(port)}, cwd=tmp_path
        )
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}: " in err and "address already in use" in err
    assert "Traceback" not in err


async def test_a_command_loads_with_the_collector_off_and_runs_with_it_on() -> None:
    """`rollout-bot` loads a command's modules with the cyclic collector off (a seventh of a
    start), then freezes what they made and turns the collector on again for the run."""
    probe = (
        "import gc\n"
        "from bot.cli.main import _load\n"
        "collections = lambda: sum(s['collections'] for s in gc.get_stats())\n"
        "before = collections()\n"
        "_load('check_config')\n"
        "print(collections() - before, gc.get_freeze_count() > 1000, gc.isenabled())\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", probe, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert out.decode().split() == ["0", "True", "True"]


async def test_unknown_command_exits_2(tmp_path: Path) -> None:
    code, _, err = await run_process("deploy", env=base_env(), cwd=tmp_path)
    assert code == 2
    assert "unknown command 'deploy'" in err


async def test_serve_answers_signed_help_and_stops_cleanly_on_sigterm(
    tmp_path: Path, slack: SlackTestServer
) -> None:
    """Started as the restart tests start a replica (`ServeProcess`): the wait for `/healthz`
    ends when it answers or the process exits, its port taken by another process meanwhile is
    tried once more on another, and its stderr goes to a file, not a pipe nobody reads."""
    env = full_env(tmp_path, slack_api_url=slack.api_url)
    assert (await run("migrate", env=env, cwd=tmp_path))[0] == 0
    async with aiohttp.ClientSession() as http:
        process = ServeProcess(
            environment=lambda port: env | {"PORT": str(port)},
            workdir=tmp_path,
            log=tmp_path / "serve.log",
            http=http,
        )
        base = await process.start()
        try:
            url, body = command_body(slack, "help")
            headers = slack_signature_headers(SLACK_SIGNING_SECRET, body)
            async with http.post(f"{base}/slack/events", data=body, headers=headers) as answer:
                assert answer.status == 200
            (post,) = await slack.wait_for_response(url)
            assert "npm-token" in str(post.body["blocks"])
        finally:
            status = await process.stop() if process.running else None  # SIGTERM
    err = process.log.read_text()
    assert status == 0, err
    for secret in SECRETS:
        assert secret not in err
    # Without METRICS_TOKEN, one WARNING at start says /metrics is open, what it shows, the fix.
    (open_metrics,) = [line for line in err.splitlines() if "GET /metrics" in line]
    assert "WARNING" in open_metrics and "Set METRICS_TOKEN" in open_metrics


async def test_a_serve_whose_start_times_out_is_killed_and_reaped(
    tmp_path: Path,
    slack: SlackTestServer,
    sqlite_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replica that never answers `/healthz` on its port (here: told to listen on another)
    fails its start at the bound, saying what it waited for, and leaves no process behind to
    eat CPU and hold ports and database connections for the rest of the run."""
    spawned: list[asyncio.subprocess.Process] = []
    spawn = asyncio.create_subprocess_exec

    async def spawning(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        spawned.append(process := await spawn(*args, **kwargs))
        return process

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spawning)
    env = full_env(tmp_path, slack_api_url=slack.api_url) | {
        "DATABASE_URL": sqlite_database_url,
        "PORT": str(free_port()),  # not the port it is asked at
    }
    async with aiohttp.ClientSession() as http:
        process = ServeProcess(
            environment=lambda _port: env, workdir=tmp_path, log=tmp_path / "serve.log", http=http
        )
        try:
            with pytest.raises(TimeoutError) as failed:
                await process.start(timeout=1.0)
            (serve,) = spawned
            assert serve.returncode is not None  # killed, and reaped: not even a zombie
            with pytest.raises(ProcessLookupError):
                os.kill(serve.pid, 0)
        finally:
            await process.kill()  # without the fix, the process left running
    assert not process.running
    assert str(failed.value).startswith("after 1.0 s, rollout-bot serve does not answer GET ")
    assert str(failed.value).endswith(f"/healthz; see {process.log}")


async def test_check_config_masks_passwords_inside_urls(tmp_path: Path) -> None:
    env = full_env(tmp_path) | {
        "PROMETHEUS_URL": "http://admin:hunter2pass@127.0.0.1:9090/",
        "DATABASE_URL": "postgresql://bot:db-pass-77@127.0.0.1:5432/rollouts",
    }
    code, out, err = await run("check-config", env=env, cwd=tmp_path)
    assert code == 0, err
    assert "hunter2pass" not in out + err and "db-pass-77" not in out + err
    assert "http://admin:***@127.0.0.1:9090/" in out
