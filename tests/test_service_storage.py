"""The database carries the service of every rollout, hold, timer, request and audit event
(migration 0010), and a store of one service never reads or writes another's."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from cleared import cleared_rollout
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_audit import audit_cli
from test_storage_migrations import _on_connection

from bot.domain.errors import RolloutInProgress
from bot.domain.freeze import LANE_FREEZE, LANE_LOCK, LaneHold
from bot.domain.protection_rules import RuleRequest
from bot.domain.rollout import Rollout, cancel_preflight
from bot.plan_file import load_plan
from bot.services.records import NewAuditEvent, NewTimer
from storage.audit_log import AuditLog
from storage.db import create_engine, create_session_factory
from storage.errors import RolloutNotFound
from storage.lane_holds import LaneHoldStore
from storage.migrate import alembic_config, current_revision, head_revision
from storage.protection_rules import ProtectionRuleStore
from storage.rollout_repository import RolloutRepository
from storage.rollout_store import RolloutStore
from storage.timers import TimerStore

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PLAN = load_plan(None)
BILLING = "billing-api"


def _rollout(rollout_id: str, *, service: str = "default", tag: str = "v1.4.2") -> Rollout:
    return replace(cleared_rollout(PLAN, now=NOW, rollout_id=rollout_id, tag=tag), service=service)


def _store(sessions: async_sessionmaker[AsyncSession], service: str | None = None) -> RolloutStore:
    return RolloutStore(sessions, clock=lambda: NOW + timedelta(minutes=1), service=service)


# -- migration 0010 ----------------------------------------------------------------------------


def _migrate(revision: str, *, down: bool = False) -> Any:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    return run


def _rows_before_services(connection: Connection) -> None:
    at = {"at": NOW}
    for statement in (
        "INSERT INTO rollouts (id, tag, channel_id, started_by, state, plan, created_at,"
        " updated_at, version) VALUES ('r-1', 'v1', 'C1', 'U1', 'running', '{}', :at, :at, 1)",
        "INSERT INTO rollout_tracks (rollout_id, track, position, state)"
        " VALUES ('r-1', 'relay', 0, 'running')",
        "INSERT INTO lane_holds (kind, actor, reason, since) VALUES ('lock', 'U1', 'x', :at)",
        "INSERT INTO audit_events (at, actor, action, rollout_id, result)"
        " VALUES (:at, 'U1', 'start', 'r-1', 'ok')",
        "INSERT INTO audit_events (at, actor, action, rollout_id, result)"
        " VALUES (:at, 'U2', 'command:start', 'r-unknown', 'refused')",
        "INSERT INTO timers (key, kind, rollout_id, created_at, due_at, attempts)"
        " VALUES ('window:r-1', 'window_end', 'r-1', :at, :at, 0)",
        "INSERT INTO protection_rule_requests (run_id, environment, deployment_id, event,"
        " sender, requested_at) VALUES (7, 'canary', 1, 'push', 'octo', :at)",
    ):
        connection.execute(text(statement), at)


def _services(connection: Connection) -> dict[str, list[str | None]]:
    return {
        table: list(connection.execute(text(f"SELECT service FROM {table}")).scalars())  # noqa: S608
        for table in (
            "rollouts",
            "rollout_tracks",
            "lane_holds",
            "audit_events",
            "timers",
            "protection_rule_requests",
        )
    }


async def test_rows_from_before_services_belong_to_the_default_service(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    await _on_connection(url, _migrate("0009"))
    await _on_connection(url, _rows_before_services)

    await _on_connection(url, _migrate("head"))

    assert await _on_connection(url, _services) == {
        "rollouts": ["default"],
        "rollout_tracks": ["default"],
        "lane_holds": ["default"],
        "audit_events": ["default", "default"],
        "timers": ["default"],
        "protection_rule_requests": ["default"],
    }
    async with _sessions(url) as sessions:
        records = await RolloutRepository(sessions).list_active()
        assert [r.service for r in records] == ["default"]

    await _on_connection(url, _migrate("0009", down=True))
    assert await current_revision(url) == "0009"
    lock = "SELECT kind FROM lane_holds"
    assert await _on_connection(url, lambda c: list(c.execute(text(lock)).scalars())) == ["lock"]


@contextlib.asynccontextmanager
async def _sessions(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def test_the_downgrade_refuses_while_another_service_has_rows(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    await _on_connection(url, _migrate("head"))
    async with _sessions(url) as sessions:
        await _store(sessions).create(rollout=_rollout("r-b", service=BILLING), plan=PLAN)

    with pytest.raises(RuntimeError, match=r"\(rollouts: 1\)") as refused:
        await _on_connection(url, _migrate("0009", down=True))

    assert "Nothing was changed" in str(refused.value)
    assert await current_revision(url) == head_revision()
    tables = await _on_connection(url, _services)
    assert tables["rollouts"] == [BILLING]


# -- rollouts -------------------------------------------------------------------------------


async def test_two_services_may_each_hold_the_relay_track_but_not_twice(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    store = _store(session_factory)
    mine = await store.create(rollout=_rollout("r-d"), plan=PLAN)
    theirs = await store.create(rollout=_rollout("r-b", service=BILLING), plan=PLAN)

    assert (mine.service, theirs.service) == ("default", BILLING)
    with pytest.raises(RolloutInProgress) as busy:
        await store.create(rollout=_rollout("r-b2", service=BILLING, tag="v1.5.0"), plan=PLAN)
    assert busy.value.active_rollout_id == "r-b"
    billing = _store(session_factory, BILLING)
    assert (await billing.active_on_track("relay")) == theirs
    assert (await _store(session_factory, "default").active_on_track("relay")) == mine
    # Once billing's ends, billing may start again; the default service's is untouched.
    await billing.save(cancel_preflight(theirs, actor="U1", now=NOW))
    again = await billing.create(rollout=_rollout("r-b3", service=BILLING), plan=PLAN)
    assert again.service == BILLING
    assert {r.id for r in await store.active()} == {"r-d", "r-b3"}


async def test_a_store_of_one_service_never_returns_anothers_rollout(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    everyone = _store(session_factory)
    billing = _store(session_factory, BILLING)
    theirs = await billing.create(rollout=_rollout("r-b", service=BILLING), plan=PLAN)
    mine = await everyone.create(rollout=_rollout("r-d"), plan=PLAN)
    ended = (await everyone.save(cancel_preflight(mine, actor="U1", now=NOW))).ended_at
    assert ended is not None

    assert await billing.get("r-d") is None
    assert await billing.with_plan("r-d") is None
    assert [r.id for r in await billing.active()] == ["r-b"]
    assert [r.id for r, _ in await billing.active_with_plans()] == ["r-b"]
    assert [r.id for r in await billing.recent()] == ["r-b"]
    assert [r.id for r in await billing.by_tag("v1.4.2")] == ["r-b"]
    assert await billing.ended_between(NOW - timedelta(days=1), NOW + timedelta(days=1)) == []
    assert await billing.active_on_track("desktop") == theirs
    with pytest.raises(RolloutNotFound):
        await billing.save(mine)
    with pytest.raises(RolloutNotFound):
        await billing.set_message_ts("r-d", "1.2")
    with pytest.raises(ValueError, match="given to the store of billing-api"):
        await billing.create(rollout=_rollout("r-x"), plan=PLAN)
    # Without a service, every service's, each carrying its own.
    assert {r.id: r.service for r in await everyone.recent()} == {
        "r-b": BILLING,
        "r-d": "default",
    }
    assert (await everyone.get("r-b")) == theirs


# -- lane holds -----------------------------------------------------------------------------


async def test_the_lane_holds_of_two_services_are_independent(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    default, billing = (
        LaneHoldStore(session_factory, service="default"),
        LaneHoldStore(session_factory, service=BILLING),
    )
    mine = await default.take(LaneHold(LANE_LOCK, "U1", "hotfix", NOW))
    theirs = await billing.take(LaneHold(LANE_LOCK, "U2", "audit", NOW))
    frozen = await billing.take(LaneHold(LANE_FREEZE, "U2", "quarter end", NOW))

    assert (mine.actor, mine.service) == ("U1", "default")
    assert (theirs.actor, theirs.service) == ("U2", BILLING)
    assert [h.kind for h in await default.current()] == [LANE_LOCK]
    assert [(h.service, h.kind) for h in await LaneHoldStore(session_factory).current()] == [
        (BILLING, LANE_FREEZE),
        (BILLING, LANE_LOCK),
        ("default", LANE_LOCK),
    ]
    # A second lock of the same service still finds the first holder.
    assert (await billing.take(LaneHold(LANE_LOCK, "U3", "mine", NOW))).actor == "U2"
    assert await default.release(LANE_FREEZE) is None
    assert await default.release(LANE_LOCK, actor="U2") is None
    assert await billing.release(LANE_LOCK, actor="U2") == theirs
    assert await default.current() == [mine]
    assert await billing.current() == [frozen]


# -- timers ---------------------------------------------------------------------------------


async def test_timers_carry_their_rollouts_service(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    store = _store(session_factory)
    start = NewTimer(key="start:r-b", kind="scheduled_start", due_at=NOW)
    await store.create(rollout=_rollout("r-b", service=BILLING), plan=PLAN, timers=[start])
    await store.create(rollout=_rollout("r-d"), plan=PLAN)
    timers = TimerStore(session_factory)

    window = await timers.schedule(
        key="window:r-b", kind="window_end", due_at=NOW, now=NOW, rollout_id="r-b"
    )
    given = await timers.schedule(
        key="rule:7", kind="unfollowed", due_at=NOW, now=NOW, service=BILLING
    )
    mine = await timers.schedule(
        key="window:r-d", kind="window_end", due_at=NOW, now=NOW, rollout_id="r-d"
    )
    alone = await timers.schedule(key="alone", kind="window_end", due_at=NOW, now=NOW)

    assert (window.service, given.service, mine.service, alone.service) == (
        BILLING,
        BILLING,
        "default",
        "default",
    )
    assert (await timers.get(key="start:r-b")).service == BILLING  # type: ignore[union-attr]
    billing = TimerStore(session_factory, service=BILLING)
    claimed = await billing.claim_due(now=NOW, owner="a", lease=timedelta(minutes=1), limit=10)
    assert sorted(t.key for t in claimed) == ["rule:7", "start:r-b", "window:r-b"]
    assert await billing.get(key="window:r-d") is None
    rest = await timers.claim_due(now=NOW, owner="b", lease=timedelta(minutes=1), limit=10)
    assert {t.key: t.service for t in rest} == {"window:r-d": "default", "alone": "default"}


# -- protection rules' requests -------------------------------------------------------------


async def test_protection_rule_requests_carry_their_service(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    request = RuleRequest(run_id=7, environment="canary", deployment_id=1, requested_at=NOW)
    assert await ProtectionRuleStore(session_factory).remember(replace(request, service=BILLING))
    assert await ProtectionRuleStore(session_factory).remember(replace(request, run_id=8))

    billing = ProtectionRuleStore(session_factory, service=BILLING)
    assert [(r.run_id, r.service) for r in await billing.without_timer("rule")] == [(7, BILLING)]
    assert await billing.open_for_run(8) == []
    assert await billing.close(run_id=8, environment="canary", answer="approved", at=NOW) == 0
    everyone = await ProtectionRuleStore(session_factory).without_timer("rule")
    assert [(r.run_id, r.service) for r in everyone] == [(7, BILLING), (8, "default")]


# -- the audit trail ------------------------------------------------------------------------


async def _two_services_released_v142(sessions: async_sessionmaker[AsyncSession]) -> None:
    store = _store(sessions)
    for rollout in (_rollout("r-d"), _rollout("r-b", service=BILLING)):
        created = await store.create(rollout=rollout, plan=PLAN)
        event = NewAuditEvent(at=NOW, actor="U1", action="cancel", result="ok")
        stopped = cancel_preflight(created, actor="U1", now=NOW)
        await store.save(stopped, audit=[replace(event, rollout_id=rollout.id)])


async def test_audit_events_carry_their_service_and_list_by_service(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    await _two_services_released_v142(session_factory)
    log = AuditLog(session_factory)
    told = await log.append(
        at=NOW, actor="U2", action="click:promote", result="ok", rollout_id="r-b"
    )
    unknown = await log.append(
        at=NOW, actor="U2", action="command:promote", result="refused", rollout_id="r-none"
    )
    named = await AuditLog(session_factory, service=BILLING).append(
        at=NOW, actor="U2", action="command:status", result="ok"
    )

    assert (told.service, unknown.service, named.service) == (BILLING, None, BILLING)
    saved = await log.list_for_rollout("r-d")
    assert [(e.action, e.service) for e in saved] == [("cancel", "default")]
    billing = AuditLog(session_factory, service=BILLING)
    assert await billing.list_for_rollout("r-d") == []
    assert [e.action for e in await billing.list_for_actor("U2")] == [
        "click:promote",
        "command:status",
    ]


async def test_the_audit_export_filters_by_service(sqlite_database_url: str) -> None:
    async with _sessions(sqlite_database_url) as sessions:
        await _two_services_released_v142(sessions)

    exported = await asyncio.to_thread(
        audit_cli, sqlite_database_url, "v1.4.2", "--service", BILLING, "--json"
    )
    assert exported.returncode == 0, exported.stderr
    timeline = json.loads(exported.stdout)
    assert (timeline["rollout"]["id"], timeline["rollout"]["service"]) == ("r-b", BILLING)
    assert [e["action"] for e in timeline["events"]] == ["cancel"]

    other = await asyncio.to_thread(audit_cli, sqlite_database_url, "v1.4.2", "--service", "search")
    assert other.returncode == 2
    assert "No rollout of v1.4.2 of the service search is on record" in other.stderr

    bad = await asyncio.to_thread(audit_cli, sqlite_database_url, "v1.4.2", "--service", "Bad!")
    assert bad.returncode == 2
    assert "--service 'Bad!' is not a service name" in bad.stderr
