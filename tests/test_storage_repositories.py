"""Rollouts and the audit trail survive a round trip, and concurrent writers cannot both win."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cleared import cleared_rollout
from pydantic import ValidationError
from replicas import replica_sessions
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.domain.plan import RolloutPlan
from bot.plan_file import load_plan
from bot.services.records import Claim, ClaimState
from sandbox.idle import statements
from storage.audit_log import AuditLog
from storage.errors import RolloutNotFound, StaleRollout, TrackBusy
from storage.models import RolloutRow
from storage.rollout_records import NewStage, NewTrack, RolloutRecord
from storage.rollout_repository import RolloutRepository
from storage.rollout_store import RolloutStore

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PLAN = {"tracks": {"relay": {"stages": ["canary-5", "rollout-50", "rollout-100"]}}, "v": 1}


def pending_track(name: str, environments: dict[str, str]) -> NewTrack:
    """A new track whose stages (key: environment) are all pending."""
    stages = tuple(
        NewStage(key=key, environment=environment, state="pending")
        for key, environment in environments.items()
    )
    return NewTrack(name=name, state="pending", stages=stages)


RELAY = pending_track(
    "relay",
    {
        "canary-5": "relay-canary-5",
        "rollout-50": "relay-rollout-50",
        "rollout-100": "relay-rollout-100",
    },
)
DESKTOP = pending_track(
    "desktop", {"internal": "desktop-internal", "beta": "desktop-beta", "ga": "desktop-ga"}
)


@pytest.fixture
def rollouts(session_factory: async_sessionmaker[AsyncSession]) -> RolloutRepository:
    return RolloutRepository(session_factory)


async def _start(
    rollouts: RolloutRepository,
    tag: str = "v1.4.2",
    *,
    now: datetime = NOW,
    tracks: tuple[NewTrack, ...] = (RELAY, DESKTOP),
) -> RolloutRecord:
    return await rollouts.create(
        tag=tag,
        channel_id="C0RELEASE",
        started_by="U0MANAGER",
        state="preflight",
        plan=PLAN,
        tracks=tracks,
        now=now,
    )


async def test_a_rollout_comes_back_as_it_was_stored(rollouts: RolloutRepository) -> None:
    created = await _start(rollouts)

    loaded = await rollouts.get(created.id)

    assert loaded == created
    assert re.fullmatch(r"r-[0-9a-f]{12}", created.id)
    assert (loaded.tag, loaded.state, loaded.version, loaded.plan) == (
        "v1.4.2",
        "preflight",
        1,
        PLAN,
    )
    assert loaded.created_at == NOW and loaded.created_at.tzinfo is UTC
    assert [t.name for t in loaded.tracks] == ["relay", "desktop"]
    assert [s.key for s in loaded.track("relay").stages] == [
        "canary-5",
        "rollout-50",
        "rollout-100",
    ]
    assert [s.environment for s in loaded.track("desktop").stages] == [
        "desktop-internal",
        "desktop-beta",
        "desktop-ga",
    ]
    assert loaded.is_active
    assert await rollouts.get("r-000000000000") is None


async def test_a_track_holds_one_open_rollout_until_it_ends(rollouts: RolloutRepository) -> None:
    first = await _start(rollouts)

    with pytest.raises(TrackBusy) as busy:
        await _start(rollouts, "v1.4.3", tracks=(RELAY,))
    assert (busy.value.track, busy.value.active_rollout_id) == ("relay", first.id)
    assert await rollouts.list_by_tag("v1.4.3") == []

    found = await rollouts.find_active_by_track("desktop")
    assert found is not None and found.id == first.id

    await rollouts.update_state(
        rollout_id=first.id, expected_version=1, state="completed", now=NOW, ended=True
    )
    assert await rollouts.find_active_by_track("relay") is None
    second = await _start(rollouts, "v1.4.3", tracks=(RELAY,))
    assert (await rollouts.find_active_by_track("relay")) == second


async def test_concurrent_starts_on_one_track_open_exactly_one(database_url: str) -> None:
    async with replica_sessions(database_url, 3) as sessions:
        repositories = [RolloutRepository(factory) for factory in sessions]
        results = await asyncio.gather(
            *(_start(repositories[i % 3], f"v1.{i}") for i in range(9)),
            return_exceptions=True,
        )
    started = [r for r in results if isinstance(r, RolloutRecord)]
    refused = [r for r in results if isinstance(r, TrackBusy)]
    assert len(started) == 1
    assert len(refused) == 8
    assert {r.active_rollout_id for r in refused} == {started[0].id}


async def test_update_state_checks_the_version(rollouts: RolloutRepository) -> None:
    created = await _start(rollouts)
    later = NOW + timedelta(minutes=3)

    updated = await rollouts.update_state(
        rollout_id=created.id, expected_version=1, state="dispatched", now=later
    )
    assert (updated.state, updated.version, updated.updated_at) == ("dispatched", 2, later)

    with pytest.raises(StaleRollout) as stale:
        await rollouts.update_state(
            rollout_id=created.id, expected_version=1, state="cancelled", now=later
        )
    assert (stale.value.expected_version, stale.value.actual_version) == (1, 2)
    reloaded = await rollouts.get(created.id)
    assert reloaded is not None and reloaded.state == "dispatched"

    with pytest.raises(RolloutNotFound):
        await rollouts.update_state(
            rollout_id="r-ffffffffffff", expected_version=1, state="x", now=later
        )


async def test_ending_a_rollout_closes_its_open_tracks(rollouts: RolloutRepository) -> None:
    created = await _start(rollouts)
    killed_at = NOW + timedelta(minutes=5)
    desktop = replace(
        created.track("desktop"), state="killed", ended_reason="kill-switch", ended_at=killed_at
    )
    halfway = await rollouts.save(rollout=created.with_track(desktop), now=killed_at)

    ended = await rollouts.update_state(
        rollout_id=created.id,
        expected_version=halfway.version,
        state="rolled_back",
        now=NOW + timedelta(hours=1),
        ended=True,
    )

    assert ended.ended_at == NOW + timedelta(hours=1)
    assert ended.track("desktop").ended_reason == "kill-switch"
    assert ended.track("desktop").ended_at == killed_at
    assert ended.track("relay").ended_reason == "rolled_back"
    assert not ended.is_active
    assert await rollouts.list_active() == []


async def test_save_writes_windows_verdicts_and_run(rollouts: RolloutRepository) -> None:
    created = await _start(rollouts)
    plus_one = timezone(timedelta(hours=1))
    window_start = datetime(2026, 3, 2, 13, 5, 7, 250000, tzinfo=plus_one)
    later = NOW + timedelta(minutes=40)
    canary = replace(
        created.track("relay").stage("canary-5"),
        state="observing",
        window_started_at=window_start,
        window_ends_at=window_start + timedelta(minutes=30),
        extensions=1,
        observed_from=window_start + timedelta(hours=2),
        verdict="PASS",
        verdict_detail={"crash_rate": 0.001, "error_rate": 0.004, "sample": 12000},
    )
    changed = replace(
        created.with_stage(canary).with_track(
            replace(
                created.with_stage(canary).track("relay"), state="running", current_stage="canary-5"
            )
        ),
        state="running",
        run_id=9_876_543_210,
        run_url="https://github.com/scriptum/scriptum/actions/runs/9876543210",
        message_ts="1767355200.000100",
    )

    saved = await rollouts.save(rollout=changed, now=later)

    assert saved == await rollouts.get(created.id)
    assert (saved.version, saved.updated_at, saved.state) == (2, later, "running")
    assert (saved.run_id, saved.message_ts) == (9_876_543_210, "1767355200.000100")
    relay = saved.track("relay")
    assert (relay.state, relay.current_stage) == ("running", "canary-5")
    stored = relay.stage("canary-5")
    assert stored.window_started_at == window_start
    assert stored.window_started_at is not None and stored.window_started_at.tzinfo is UTC
    assert stored.window_ends_at == window_start + timedelta(minutes=30)
    assert (stored.extensions, stored.verdict) == (1, "PASS")
    assert stored.observed_from == window_start + timedelta(hours=2)
    assert stored.observed_from is not None and stored.observed_from.tzinfo is UTC
    assert stored.verdict_detail == {"crash_rate": 0.001, "error_rate": 0.004, "sample": 12000}
    assert stored.updated_at == later
    # Stages that did not change keep their time of last change.
    assert relay.stage("rollout-50").updated_at == NOW
    assert await rollouts.find_by_run_id(9_876_543_210) == saved
    assert await rollouts.find_by_run_id(1) is None


async def test_two_saves_from_the_same_read_cannot_both_win(database_url: str) -> None:
    async with replica_sessions(database_url, 2) as sessions:
        first, second = (RolloutRepository(factory) for factory in sessions)
        created = await _start(first)
        promote = created.with_stage(
            replace(created.track("relay").stage("canary-5"), state="promoted")
        )
        roll_back = replace(created, state="rolling_back")

        results = await asyncio.gather(
            first.save(rollout=promote, now=NOW),
            second.save(rollout=roll_back, now=NOW),
            return_exceptions=True,
        )
        assert sum(isinstance(r, RolloutRecord) for r in results) == 1
        assert sum(isinstance(r, StaleRollout) for r in results) == 1
        stored = await first.get(created.id)
        assert stored is not None and stored.version == 2
        promoted = stored.track("relay").stage("canary-5").state == "promoted"
        rolled_back = stored.state == "rolling_back"
        assert promoted != rolled_back


async def test_save_refuses_a_stale_record_and_changes_nothing(
    rollouts: RolloutRepository,
) -> None:
    created = await _start(rollouts)
    await rollouts.update_state(
        rollout_id=created.id, expected_version=1, state="dispatched", now=NOW
    )
    stale = created.with_stage(replace(created.track("relay").stage("canary-5"), state="approved"))

    with pytest.raises(StaleRollout):
        await rollouts.save(rollout=stale, now=NOW)

    stored = await rollouts.get(created.id)
    assert stored is not None
    assert stored.track("relay").stage("canary-5").state == "pending"


async def test_save_refuses_an_ended_rollout_with_open_tracks(
    rollouts: RolloutRepository,
) -> None:
    created = await _start(rollouts)
    with pytest.raises(ValueError, match="open tracks"):
        await rollouts.save(rollout=replace(created, ended_at=NOW), now=NOW)
    assert (await rollouts.get(created.id)) == created


async def test_listings(rollouts: RolloutRepository) -> None:
    old = await _start(rollouts, "v1.0.0", tracks=(RELAY,))
    await rollouts.update_state(
        rollout_id=old.id, expected_version=1, state="completed", now=NOW, ended=True
    )
    relay = await _start(rollouts, "v1.1.0", now=NOW + timedelta(hours=1), tracks=(RELAY,))
    desktop = await _start(rollouts, "v1.1.0", now=NOW + timedelta(hours=2), tracks=(DESKTOP,))

    assert [r.id for r in await rollouts.list_active()] == [relay.id, desktop.id]
    assert [r.id for r in await rollouts.list_recent(limit=2)] == [desktop.id, relay.id]
    assert [r.id for r in await rollouts.list_recent(limit=10)] == [desktop.id, relay.id, old.id]
    assert [r.id for r in await rollouts.list_by_tag("v1.1.0")] == [desktop.id, relay.id]
    assert [len(r.tracks[0].stages) for r in await rollouts.list_recent(limit=10)] == [3, 3, 3]


async def test_audit_trail_in_the_order_things_happened(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    audit = AuditLog(session_factory)
    await audit.append(
        at=NOW + timedelta(seconds=30),
        actor="U0MANAGER",
        action="promote",
        result="ok",
        rollout_id="r-aaaaaaaaaaaa",
        track="relay",
        stage="canary-5",
        detail={"environment_ids": [161171787]},
    )
    await audit.append(
        at=NOW, actor="U0MANAGER", action="start", result="ok", rollout_id="r-aaaaaaaaaaaa"
    )
    await audit.append(
        at=NOW + timedelta(seconds=30),
        actor="U0OTHER",
        action="promote",
        result="refused:not_authorized",
        rollout_id="r-aaaaaaaaaaaa",
    )
    await audit.append(
        at=NOW, actor="U0X", action="start", result="ok", rollout_id="r-bbbbbbbbbbbb"
    )

    events = await audit.list_for_rollout("r-aaaaaaaaaaaa")

    assert [(e.action, e.actor, e.result) for e in events] == [
        ("start", "U0MANAGER", "ok"),
        ("promote", "U0MANAGER", "ok"),
        ("promote", "U0OTHER", "refused:not_authorized"),
    ]
    assert events[1].detail == {"environment_ids": [161171787]}
    assert (events[1].track, events[1].stage) == ("relay", "canary-5")
    assert events[0].at == NOW


async def test_a_save_reads_its_rollout_only_after_its_version_check(
    migrated_engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    plan = load_plan(None)
    store = RolloutStore(session_factory, clock=lambda: NOW + timedelta(minutes=1))
    created = await store.create(rollout=cleared_rollout(plan, now=NOW), plan=plan)

    with statements(migrated_engine) as sent:
        saved = await store.save(replace(created, message_ts="1700000000.000100"))

    assert (saved.message_ts, saved.version) == ("1700000000.000100", created.version + 1)
    sent = [s for s in sent if s != "BEGIN"]
    assert sent[0].startswith("UPDATE rollouts SET")  # the version check, which locks the row
    reads = [s for s in sent if s.startswith("SELECT") and "FROM rollouts" in s]
    assert len(reads) == 2  # what the change is written over, then what was saved


async def test_a_plan_a_rollout_started_with_stays_readable_under_later_plan_rules(
    migrated_engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """An error threshold of 1 (meant as 1%) is refused in a plan file now; a rollout started
    with one before must still be read, to draw its card and to roll it back."""
    plan = load_plan(None)
    store = RolloutStore(session_factory, clock=lambda: NOW)
    created = await store.create(rollout=cleared_rollout(plan, now=NOW), plan=plan)
    saved = plan.model_dump(mode="json", by_alias=True)
    saved["tracks"]["relay"]["thresholds"]["error_threshold"] = "1"
    async with migrated_engine.begin() as connection:
        await connection.execute(
            RolloutRow.__table__.update().where(RolloutRow.id == created.id).values(plan=saved)
        )
    with pytest.raises(ValidationError, match="an error rate never exceeds it"):
        RolloutPlan.model_validate(saved)  # as a plan file is read

    found = await store.with_plan(created.id)

    assert found is not None and found[1].track("relay").thresholds.error_threshold == 1
    assert (await store.plan(created.id)) == found[1]
    assert [p for _, p in await store.active_with_plans()] == [found[1]]


async def test_a_claims_events_come_before_unnamed_ones_within_the_limit(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """During a rolling upgrade an e248966 replica's events name no claim: read with those of
    the claim (`Stops.put_back_of`), they never fill the limit ahead of the claim's own."""
    audit = AuditLog(session_factory)
    claim = Claim(
        key="abort_stop:r-aaaaaaaaaaaa",
        action="abort_stop",
        actor="U0MANAGER",
        state=ClaimState.DONE,
        claimed_at=NOW,
        holder="holder-1",
        rollout_id="r-aaaaaaaaaaaa",
    )
    event = {"actor": "U0MANAGER", "action": "abort_stop", "rollout_id": "r-aaaaaaaaaaaa"}
    for track in ("relay", "desktop"):  # an older replica's, unnamed, written first
        await audit.append(at=NOW, result="ok", track=track, **event)
    await audit.append(
        at=NOW, result="put_back", track="relay", detail={"claim": "holder-1"}, **event
    )

    ours = await audit.list_for_claim(
        claim, action="abort_stop", results=("ok", "put_back"), limit=2
    )

    assert [(e.result, e.track) for e in ours] == [("put_back", "relay"), ("ok", "relay")]
