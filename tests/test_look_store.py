"""The looks at runs, claimed by one replica at a time (`storage.looks`), and whose webhook
deliveries arrive (`storage.deliveries`), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cleared import cleared_rollout
from replicas import replica_sessions
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.plan_file import load_plan
from bot.services.records import RunLook
from storage.deliveries import DeliveryLog
from storage.looks import LookStore
from storage.rollout_store import RolloutStore

NOW = datetime(2030, 1, 1, tzinfo=UTC)
STEP = timedelta(seconds=15)


def look(
    holder: str,
    *,
    at: datetime = NOW,
    wait: timedelta = STEP,
    version: int = 1,
    rollout: str = "r-1",
) -> RunLook:
    return RunLook(rollout, version, at, at + wait, holder)


async def test_a_look_is_another_replicas_until_it_is_due(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    store = LookStore(session_factory)
    first = look("a", wait=STEP * 4)
    assert await store.claim([first], now=NOW) == [first]

    later = NOW + STEP
    assert await store.claim([look("b", at=later)], now=later) == [first]  # b adopts a's
    # a put its look off (the budget, a failure): it claims it again before it is due.
    again = look("a", at=later, wait=STEP * 2)
    assert await store.claim([again], now=later) == [again]

    due = again.due_at
    taken = look("b", at=due)
    assert await store.claim([taken], now=due) == [taken]


async def test_a_newer_version_of_the_rollout_brings_the_look_forward(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    store = LookStore(session_factory)
    first = look("a", wait=STEP * 8)
    await store.claim([first], now=NOW)
    later = NOW + STEP

    assert await store.claim([look("b", at=later)], now=later) == [first]
    changed = look("b", at=later, version=2)  # a click, a timer, a webhook
    assert await store.claim([changed], now=later) == [changed]
    assert await store.claim([look("a", at=later, version=2)], now=later) == [changed]


async def test_a_pace_longer_than_is_allowed_now_is_cut_short(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    store = LookStore(session_factory)
    long = look("a", wait=STEP * 64)  # while webhook deliveries arrived
    await store.claim([long], now=NOW)
    later = NOW + STEP * 8

    # Deliveries still arrive for a: its pace stands.
    assert await store.claim([look("b", at=later)], now=later) == [long]
    # They stopped: no wait may be longer than 8 steps, and a's look was 8 steps ago.
    short = look("b", at=later)
    cut = await store.claim([short], now=later, cut_short=["r-1"], paced_before=NOW)
    assert cut == [short]


async def test_a_pass_of_400_rollouts_binds_each_rollout_id_once(
    migrated_engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """A replica's pass over 400 rollouts, all cut short, claims them in one statement that
    binds each rollout id once (six values a look): before, each cut-short id was bound again
    in every column's test, about 3,600 parameters."""
    rollouts = [f"r-{n:03}" for n in range(400)]
    store = LookStore(session_factory)
    paced = [look("a", wait=STEP * 64, rollout=r) for r in rollouts]
    assert await store.claim(paced, now=NOW) == paced
    bound: list[list[Any]] = []

    def claiming(*args: Any) -> None:
        statement, parameters = args[2], args[3]
        if "run_looks" in statement:
            bound.append(list(parameters.values() if isinstance(parameters, dict) else parameters))

    later = NOW + STEP * 8
    cut = [look("b", at=later, rollout=r) for r in rollouts]
    event.listen(migrated_engine.sync_engine, "before_cursor_execute", claiming)
    try:
        assert await store.claim(cut, now=later, cut_short=rollouts, paced_before=NOW) == cut
    finally:
        event.remove(migrated_engine.sync_engine, "before_cursor_execute", claiming)

    (parameters,) = bound
    assert len(parameters) <= 6 * len(rollouts) + 10
    assert all(parameters.count(r) == 1 for r in rollouts)


async def test_only_the_holder_of_a_look_records_its_pace(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    store = LookStore(session_factory)
    await store.claim([look("a", wait=STEP * 4)], now=NOW)
    found = look("a", at=NOW + timedelta(seconds=1), version=2)  # the look found a change
    await store.record(found)
    assert await store.claim([look("b", at=NOW + STEP)], now=NOW + STEP) == [found]

    taken = look("b", at=found.due_at, version=2)
    await store.claim([taken], now=found.due_at)
    await store.record(look("a", at=found.due_at, version=3))  # too late: b's now
    assert await store.claim([look("c", at=found.due_at, version=2)], now=found.due_at) == [taken]


async def test_replicas_claiming_at_once_agree_on_one_holder_per_look(database_url: str) -> None:
    rollouts = [f"r-{n:02}" for n in range(30)]
    async with replica_sessions(database_url, 2) as [one, two]:
        won_a, won_b = await asyncio.gather(
            LookStore(one).claim([look("a", rollout=r) for r in rollouts], now=NOW),
            LookStore(two).claim([look("b", rollout=r) for r in reversed(rollouts)], now=NOW),
        )

    holders = {found.rollout_id: found.holder for found in won_a}
    assert set(holders.values()) <= {"a", "b"} and len(holders) == len(rollouts)
    assert {found.rollout_id: found.holder for found in won_b} == holders


async def test_the_services_whose_deliveries_arrive(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    plan = load_plan(None)
    store = RolloutStore(session_factory, clock=lambda: NOW)
    for rollout_id, service in (("r-1", "relay"), ("r-2", "billing-api"), ("r-3", "search")):
        rollout = cleared_rollout(plan, now=NOW, rollout_id=rollout_id)
        await store.create(rollout=replace(rollout, service=service), plan=plan)
    deliveries = DeliveryLog(session_factory)
    for n, (rollout_id, minutes) in enumerate((("r-1", 1), ("r-1", 30), ("r-2", 20))):
        received = NOW - timedelta(minutes=minutes)
        await deliveries.remember(
            delivery_id=f"d-{n}", event="workflow_job", rollout_id=rollout_id, received_at=received
        )

    since = NOW - timedelta(minutes=16)
    assert await deliveries.services_with_deliveries(since=since) == {"relay"}
    since = NOW - timedelta(minutes=20)
    assert await deliveries.services_with_deliveries(since=since) == {"relay", "billing-api"}
