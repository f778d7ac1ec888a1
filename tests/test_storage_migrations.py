"""Migrations build the schema the models describe, from an empty database, on both backends."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, inspect, text
from sqlalchemy.engine import Connection

from bot.adapters.slack.audit_reasons import reason_mrkdwn
from bot.adapters.slack.messages import reason_text
from bot.adapters.slack.mrkdwn import escape_quoted
from bot.domain.reasons import Reason
from bot.domain.rollout import StopKind, StopReason, reason_from_json
from storage.db import create_engine
from storage.migrate import alembic_config, current_revision, head_revision, upgrade
from storage.models import Base

TABLES = {
    "rollouts",
    "rollout_tracks",
    "stages",
    "timers",
    "audit_events",
    "github_deliveries",
    "action_claims",
    "outbox",
    "lane_holds",
    "protection_rule_requests",
    "run_looks",
}


async def _on_connection(url: str, work: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(work)
    finally:
        await engine.dispose()


def _schema_diff(connection: Connection, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_upgrade_from_empty_builds_exactly_the_models(empty_database_url: str) -> None:
    assert await current_revision(empty_database_url) is None

    await upgrade(empty_database_url)

    assert await current_revision(empty_database_url) == head_revision()
    assert await _on_connection(empty_database_url, _tables) == TABLES | {"alembic_version"}
    diff = await _on_connection(
        empty_database_url, lambda connection: _schema_diff(connection, Base.metadata)
    )
    assert diff == []


async def test_the_schema_comparison_notices_a_model_the_migrations_lack(
    empty_database_url: str,
) -> None:
    await upgrade(empty_database_url)
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["rollouts"].append_column(Column("note", String(20)))

    diff = await _on_connection(
        empty_database_url, lambda connection: _schema_diff(connection, drifted)
    )

    assert [entry[0] for entry in diff] == ["add_column"]


async def test_upgrade_twice_changes_nothing(empty_database_url: str) -> None:
    await upgrade(empty_database_url)
    await upgrade(empty_database_url)
    assert await current_revision(empty_database_url) == head_revision()


async def test_an_upgrade_of_a_migrated_database_loads_no_migration_script(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every replica's start and every test's sandbox migrate a database already at the
    revision asked for: Alembic's command, which loads every migration script, is not run."""
    commands: list[str] = []
    run_command = command.upgrade

    def counted(config: Any, revision: str, **options: Any) -> None:
        commands.append(revision)
        run_command(config, revision, **options)

    monkeypatch.setattr(command, "upgrade", counted)
    await upgrade(empty_database_url)
    assert commands == ["head"]
    await upgrade(empty_database_url)
    await upgrade(empty_database_url, revision=head_revision())
    assert commands == ["head"]
    assert await current_revision(empty_database_url) == head_revision()


async def test_downgrade_to_base_then_upgrade_again(empty_database_url: str) -> None:
    await upgrade(empty_database_url)

    def downgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    await _on_connection(empty_database_url, downgrade)
    assert await _on_connection(empty_database_url, _tables) == {"alembic_version"}

    await upgrade(empty_database_url)
    assert await _on_connection(empty_database_url, _tables) == TABLES | {"alembic_version"}


async def test_the_rollback_command_of_docs_operating_brings_the_schema_back(
    empty_database_url: str,
) -> None:
    """docs/operating.md, Upgrades: the command that brings a database back to the previous
    version's head, from the newer image, before that version is deployed again."""
    await upgrade(empty_database_url)
    docs = (Path(__file__).parent.parent / "docs" / "operating.md").read_text(encoding="utf-8")
    # The same command, as `docker run` and as `docker compose run` give it.
    (snippet,) = {
        line.split(" -c ", 1)[1].strip().strip('"')
        for line in docs.splitlines()
        if "command.downgrade(" in line
    }
    previous = _previous_revision()
    snippet = snippet.replace("'0007'", f"'{previous}'")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        snippet,
        env={**os.environ, "DATABASE_URL": empty_database_url},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert await current_revision(empty_database_url) == previous


def _previous_revision() -> str:
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_revision(head_revision())
    assert head is not None and isinstance(head.down_revision, str)
    return head.down_revision


async def _migrated(url: str, revision: str, rows: str, *, down: bool) -> dict[str, Any]:
    """Up (or `down`) to `revision`, then the two columns `rows` selects, as a dict."""

    def run(connection: Connection) -> dict[str, Any]:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)
        return {key: value for key, value in connection.execute(text(rows))}

    found: dict[str, Any] = await _on_connection(url, run)
    return found


LEGACY_REASONS = {
    "relay": "rolled back by <@U2>: error spike",
    "desktop": "beta ring gate KILL_SWITCH: crash rate",
}


async def test_reasons_stored_as_text_become_data_and_come_back(empty_database_url: str) -> None:
    """0006: a reason that names who acted becomes data; other text stays readable; the
    downgrade writes back the text the previous version wrote."""

    def migrate(revision: str, *, down: bool = False) -> Any:
        rows = "SELECT track, ended_reason FROM rollout_tracks"
        return _migrated(empty_database_url, revision, rows, down=down)

    await migrate("0005")

    def legacy_rows(connection: Connection) -> None:
        connection.execute(
            text(
                "INSERT INTO rollouts (id, tag, channel_id, started_by, state, plan, created_at,"
                " updated_at, ended_at, version) VALUES ('r-1', 'v1', 'C1', 'U1', 'ended',"
                " '{}', :at, :at, :at, 1)"
            ),
            {"at": datetime(2026, 1, 1, tzinfo=UTC)},
        )
        for position, (track, reason) in enumerate(LEGACY_REASONS.items()):
            connection.execute(
                text(
                    "INSERT INTO rollout_tracks (rollout_id, track, position, state,"
                    " ended_reason, ended_at) VALUES ('r-1', :track, :position, 'failed',"
                    " :reason, :at)"
                ),
                {
                    "track": track,
                    "position": position,
                    "reason": reason,
                    "at": datetime(2026, 1, 1, tzinfo=UTC),
                },
            )

    await _on_connection(empty_database_url, legacy_rows)

    upgraded = await migrate("head")
    assert reason_from_json(upgraded["relay"]) == StopReason(
        StopKind.ROLLED_BACK, actor="U2", detail="error spike"
    )
    assert reason_text(reason_from_json(upgraded["relay"])) == LEGACY_REASONS["relay"]
    assert reason_from_json(upgraded["desktop"]) == StopReason(
        StopKind.LEGACY, detail=LEGACY_REASONS["desktop"]
    )
    assert await migrate("0005", down=True) == LEGACY_REASONS


async def test_replicas_migrating_at_once_all_succeed(empty_database_url: str) -> None:
    """Two `rollout-bot migrate` at once (a deploy's one-shot and an operator's) take turns:
    on SQLite the second waited for the first's write lock, not failed `database is locked`."""
    url = empty_database_url
    await asyncio.gather(*(upgrade(url) for _ in range(3)))
    assert await current_revision(url) == head_revision()


# A `rollout-bot migrate` killed between two statements of 0010 (after rollouts' new column,
# before timers'): the process dies, no exception, no rollback of its own.
KILLED_HALF_WAY = """
import asyncio, os, sys
from sqlalchemy import event
import storage.db
from storage.migrate import upgrade

opened = storage.db.create_engine

def killed_half_way(*args, **kwargs):
    engine = opened(*args, **kwargs)

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def after(connection, cursor, statement, *rest):
        if "ALTER TABLE timers ADD COLUMN service" in statement:
            os._exit(9)

    return engine

storage.db.create_engine = killed_half_way
asyncio.run(upgrade(sys.argv[1]))
"""


async def test_a_migration_killed_half_way_leaves_the_schema_as_it_was(
    empty_database_url: str,
) -> None:
    """Each `upgrade` is one transaction, on SQLite too: the next start finds the previous
    revision and its schema, not half of the next, and migrates from there."""
    url = empty_database_url
    await upgrade(url, revision="0009")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_HALF_WAY, url, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    assert process.returncode == 9, err.decode()

    def columns(connection: Connection) -> set[str]:
        return {column["name"] for column in inspect(connection).get_columns("rollouts")}

    assert await current_revision(url) == "0009"
    assert "service" not in await _on_connection(url, columns)
    await upgrade(url)
    assert await current_revision(url) == head_revision()
    assert "service" in await _on_connection(url, columns)


# Operations that take away or tighten what the previous version reads and writes: an upgrade
# must not use them (expand first; contract in a later release, docs/operating.md).
CONTRACTING = {
    "drop_table",
    "drop_column",
    "rename_table",
    "alter_column",
    "drop_constraint",
    "create_unique_constraint",
    "create_check_constraint",
    "create_foreign_key",
}


def contracting_steps(source: str) -> list[str]:
    """What an `upgrade()` does that a replica of the previous version could trip over."""
    upgrade_function = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name == "upgrade"
    )
    steps = []
    for call in ast.walk(upgrade_function):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
            continue
        if call.func.attr in CONTRACTING:
            steps.append(f"op.{call.func.attr}")
        if call.func.attr == "add_column":
            column = call.args[1] if len(call.args) > 1 else None
            keywords = {
                k.arg: k.value for k in getattr(column, "keywords", []) if k.arg is not None
            }
            nullable = keywords.get("nullable")
            may_be_null = not (isinstance(nullable, ast.Constant) and nullable.value is False)
            if not may_be_null and "server_default" not in keywords:
                steps.append("op.add_column of a NOT NULL column without a server default")
    return steps


# The contract steps a release calls out (docs/operating.md, Migration 0010): lane_holds' key
# widens from (kind) to (service, kind), on which the previous version cannot take a hold.
CALLED_OUT = {"0010_services.py": ["op.drop_constraint"]}


def test_every_migration_is_additive_so_the_previous_version_keeps_serving() -> None:
    versions = sorted((Path(__file__).parent.parent / "storage/migrations/versions").glob("0*.py"))
    assert versions
    found = {path.name: contracting_steps(path.read_text(encoding="utf-8")) for path in versions}
    assert {name: steps for name, steps in found.items() if steps} == CALLED_OUT
    # The check itself sees a contracting step.
    assert contracting_steps(
        "def upgrade():\n    op.drop_column('timers', 'dead_at')\n"
        "    op.add_column('t', sa.Column('c', sa.Text(), nullable=False))\n"
    ) == ["op.drop_column", "op.add_column of a NOT NULL column without a server default"]


LEGACY_WHYS = {
    "click:promote": (
        ":no_entry: The plan's two-person rule: <@U0RELMGR01> started `v1.4.2`, so another "
        "approver promotes to *100%*."
    ),
    "click:extend": (
        "This card is out of date: 5% canary holding since "
        "<!date^1764590400^{time} ({date_short_pretty})|2025-12-01 12:00 UTC>. Use `/rollout "
        "start &lt;tag&gt;` in <#C0RELEASES>, see "
        "<https://slack.com/archives/C0RELEASES/p1764590400123456|r-0123456789ab>."
    ),
    "command:start": "Slack sent this again: `a <b>` &amp; c, by <@U0SECOND01>",
}


async def test_reasons_of_refusals_stored_as_slack_text_become_data_and_come_back(
    empty_database_url: str,
) -> None:
    """0013: an audit event's `why` written as Slack text becomes words without markup and
    the ids they name; the downgrade writes back Slack text the previous version shows alike."""

    async def migrate(revision: str, *, down: bool = False) -> dict[str, Any]:
        rows = "SELECT action, detail FROM audit_events"
        found = await _migrated(empty_database_url, revision, rows, down=down)
        return {action: d if isinstance(d, dict) else json.loads(d) for action, d in found.items()}

    await migrate("0012")

    def legacy_rows(connection: Connection) -> None:
        plain = [("gate", {"sample": 5000}), ("abort_relay", {"why": "completed"})]
        for action, detail in [
            *((action, {"why": why, "slack_retry": 1}) for action, why in LEGACY_WHYS.items()),
            *plain,
        ]:
            connection.execute(
                text(
                    "INSERT INTO audit_events (at, actor, action, result, detail)"
                    " VALUES (:at, 'U0RELMGR01', :action, 'refused', :detail)"
                ),
                {
                    "at": datetime(2026, 1, 1, tzinfo=UTC),
                    "action": action,
                    "detail": json.dumps(detail),
                },
            )

    await _on_connection(empty_database_url, legacy_rows)

    upgraded = await migrate("head")

    assert upgraded["click:promote"] == {
        "why": ":no_entry: The plan's two-person rule: @U0RELMGR01 started `v1.4.2`, so another "
        "approver promotes to *100%*.",
        "names": {"people": ["U0RELMGR01"]},
        "slack_retry": 1,
    }
    assert upgraded["click:extend"]["why"] == (
        "This card is out of date: 5% canary holding since 2025-12-01 12:00 UTC. Use `/rollout "
        "start <tag>` in #C0RELEASES, see r-0123456789ab."
    )
    assert upgraded["click:extend"]["names"] == {
        "channels": ["C0RELEASES"],
        "times": ["2025-12-01T12:00:00+00:00"],
        "cards": [
            {"channel_id": "C0RELEASES", "ts": "1764590400.123456", "label": "r-0123456789ab"}
        ],
    }
    assert upgraded["command:start"]["why"] == "Slack sent this again: `a <b>` & c, by @U0SECOND01"
    assert upgraded["gate"] == {"sample": 5000}
    assert upgraded["abort_relay"] == {"why": "completed"}  # no markup: left as it reads
    for detail in upgraded.values():
        assert not re.search(r"<[@#!]|slack\.com/archives", str(detail)), detail
    assert (
        reason_mrkdwn(Reason.from_detail(upgraded["click:extend"])) == LEGACY_WHYS["click:extend"]
    )
    assert await migrate("head") == upgraded  # converted once

    downgraded = await migrate("0012", down=True)
    assert downgraded["click:promote"] == {"why": LEGACY_WHYS["click:promote"], "slack_retry": 1}
    assert downgraded["click:extend"]["why"] == LEGACY_WHYS["click:extend"]
    # What it quotes is escaped now: the previous version shows it as it did.
    assert downgraded["command:start"]["why"] == (
        "Slack sent this again: `a &lt;b&gt;` &amp; c, by <@U0SECOND01>"
    )
    assert escape_quoted(downgraded["command:start"]["why"]) == escape_quoted(
        LEGACY_WHYS["command:start"]
    )
