"""Durable timers: scheduled once per key, each due timer claimed by exactly one replica."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cleared import cleared_rollout
from replicas import replica_sessions
from sqlalchemy import event, update
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session

from bot.plan_file import load_plan
from bot.services.records import NewMessage
from storage.models import RolloutRow
from storage.outbox import OutboxStore
from storage.rollout_store import RolloutStore
from storage.timers import Timer, TimerStore

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


async def _window(
    timers: TimerStore, key: str, due_in: timedelta, *, rollout_id: str | None = None
) -> Timer:
    return await timers.schedule(
        key=key,
        kind="window_end",
        due_at=NOW + due_in,
        now=NOW,
        rollout_id=rollout_id,
        payload={"track": "relay", "stage": "canary-5"},
    )


async def test_a_timer_and_what_it_tells_are_written_together_once(
    timers: TimerStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """The card of a run nobody follows goes with its default answer's timer: written by the
    call that wrote the timer, in its transaction; never by a second call."""
    card = NewMessage(kind="unfollowed_run", channel_id="C1", payload={"run_id": 7})
    for minutes in (0, 1):
        await timers.schedule(
            key="unfollowed_run:7",
            kind="unfollowed_run",
            due_at=NOW + timedelta(minutes=30),
            now=NOW + timedelta(minutes=minutes),
            outbox=[card],
        )

    claimed = await OutboxStore(session_factory).claim(now=NOW, owner="a", lease=LEASE)
    assert [(m.kind, m.payload) for m in claimed] == [("unfollowed_run", {"run_id": 7})]


async def test_scheduling_a_key_twice_keeps_the_first(timers: TimerStore) -> None:
    first = await _window(timers, "window:r-1:relay:canary-5", timedelta(minutes=30))
    second = await timers.schedule(
        key="window:r-1:relay:canary-5",
        kind="window_end",
        due_at=NOW + timedelta(minutes=99),
        now=NOW + timedelta(minutes=1),
    )

    assert second == first
    assert first.due_at == NOW + timedelta(minutes=30)
    assert first.payload == {"track": "relay", "stage": "canary-5"}
    assert first.is_pending and first.attempts == 0
    claimed = await timers.claim_due(now=NOW + timedelta(hours=2), owner="a", lease=LEASE)
    assert [t.id for t in claimed] == [first.id]


async def test_concurrent_scheduling_of_one_key_stores_one_timer(database_url: str) -> None:
    async with replica_sessions(database_url, 3) as sessions:
        stores = [TimerStore(factory) for factory in sessions]
        scheduled = await asyncio.gather(
            *(
                _window(stores[i % 3], "window:r-2:relay:rollout-50", timedelta(0))
                for i in range(12)
            )
        )
        assert len({t.id for t in scheduled}) == 1
        claimed = await stores[0].claim_due(now=NOW, owner="a", lease=LEASE)
        assert len(claimed) == 1


async def test_claim_takes_due_timers_earliest_first_up_to_the_limit(timers: TimerStore) -> None:
    late = await _window(timers, "late", timedelta(minutes=3))
    early = await _window(timers, "early", timedelta(minutes=1))
    middle = await _window(timers, "middle", timedelta(minutes=2))
    await _window(timers, "future", timedelta(hours=1))

    claimed = await timers.claim_due(
        now=NOW + timedelta(minutes=5), owner="replica-a", lease=LEASE, limit=2
    )

    assert [t.id for t in claimed] == [early.id, middle.id]
    assert all(t.claimed_by == "replica-a" for t in claimed)
    assert all(t.lease_until == NOW + timedelta(minutes=5) + LEASE for t in claimed)
    assert all(t.attempts == 1 for t in claimed)
    rest = await timers.claim_due(now=NOW + timedelta(minutes=5), owner="replica-b", lease=LEASE)
    assert [t.id for t in rest] == [late.id]


async def test_a_held_claim_is_not_handed_out_again(timers: TimerStore) -> None:
    await _window(timers, "w", timedelta(0))
    assert len(await timers.claim_due(now=NOW, owner="a", lease=LEASE)) == 1
    assert (
        await timers.claim_due(now=NOW + LEASE - timedelta(seconds=1), owner="b", lease=LEASE) == []
    )


async def test_claims_run_the_statements_their_stores_built_once(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """The scheduler and the outbox claim at every turn: building a claim's statements anew
    each time cost a busy replica more CPU than the rest of the claim, so a claim runs the
    statements its store built, with the call's values bound."""
    timers, outbox = TimerStore(session_factory), OutboxStore(session_factory)
    await _window(timers, "w", timedelta(0))
    await outbox.add([NewMessage(kind="note", channel_id="C1")], now=NOW)
    executed: list[list[object]] = []

    def record(execution: ORMExecuteState) -> None:
        executed[-1].append(execution.statement)

    event.listen(Session, "do_orm_execute", record)
    try:
        # The second claims take over the first ones, their lease run out.
        for owner, now in (("a", NOW), ("b", NOW + LEASE)):
            executed.append([])
            assert await timers.claim_due(now=now, owner=owner, lease=LEASE, kinds={"window_end"})
            assert await outbox.claim(now=now, owner=owner, lease=LEASE)
    finally:
        event.remove(Session, "do_orm_execute", record)

    first, second = executed
    assert len(first) == len(second) >= 2
    assert all(again is statement for statement, again in zip(first, second, strict=True))


async def test_concurrent_claims_hand_each_timer_to_exactly_one_owner(database_url: str) -> None:
    replicas = 4
    async with replica_sessions(database_url, replicas) as sessions:
        stores = [TimerStore(factory) for factory in sessions]
        scheduled = [
            await _window(stores[0], f"window:{i}", timedelta(seconds=i)) for i in range(40)
        ]
        claim_time = NOW + timedelta(minutes=1)
        rounds = await asyncio.gather(
            *(
                stores[i % replicas].claim_due(
                    now=claim_time, owner=f"owner-{i}", lease=LEASE, limit=3
                )
                for i in range(20)
            )
        )
        claimed = [(owner, t.id) for owner, batch in enumerate(rounds) for t in batch]
        claimed_ids = [timer_id for _, timer_id in claimed]
        assert len(claimed_ids) == len(set(claimed_ids)), "a timer was claimed twice"

        leftovers = await stores[0].claim_due(
            now=claim_time, owner="sweeper", lease=LEASE, limit=100
        )
        all_claimed = claimed_ids + [t.id for t in leftovers]
        assert sorted(all_claimed) == sorted(t.id for t in scheduled)
        for owner, timer_id in claimed:
            assert await stores[owner % replicas].complete(
                timer_id=timer_id, owner=f"owner-{owner}", now=claim_time
            )


async def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_complete(
    timers: TimerStore,
) -> None:
    timer = await _window(timers, "w", timedelta(0))
    (mine,) = await timers.claim_due(now=NOW, owner="replica-a", lease=LEASE)

    after_lease = NOW + LEASE + timedelta(seconds=1)
    (taken,) = await timers.claim_due(now=after_lease, owner="replica-b", lease=LEASE)

    assert taken.id == mine.id == timer.id
    assert (taken.claimed_by, taken.attempts) == ("replica-b", 2)
    assert await timers.complete(timer_id=timer.id, owner="replica-a", now=after_lease) is False
    assert await timers.release(timer_id=timer.id, owner="replica-a") is False
    assert await timers.complete(timer_id=timer.id, owner="replica-b", now=after_lease) is True
    assert await timers.complete(timer_id=timer.id, owner="replica-b", now=after_lease) is False

    fired = await timers.get(key="w")
    assert fired is not None and fired.fired_at == after_lease and not fired.is_pending
    assert (
        await timers.claim_due(now=after_lease + timedelta(hours=1), owner="c", lease=LEASE) == []
    )


async def test_the_owner_may_complete_after_its_lease_ran_out_if_nobody_took_over(
    timers: TimerStore,
) -> None:
    timer = await _window(timers, "w", timedelta(0))
    await timers.claim_due(now=NOW, owner="a", lease=LEASE)
    assert await timers.complete(timer_id=timer.id, owner="a", now=NOW + 2 * LEASE) is True


async def test_a_released_timer_is_retried_by_anyone(timers: TimerStore) -> None:
    timer = await _window(timers, "w", timedelta(0))
    await timers.claim_due(now=NOW, owner="a", lease=LEASE)

    retry_at = NOW + timedelta(minutes=2)
    assert await timers.release(timer_id=timer.id, owner="a", due_at=retry_at) is True

    assert await timers.claim_due(now=NOW + timedelta(minutes=1), owner="b", lease=LEASE) == []
    (retried,) = await timers.claim_due(now=retry_at, owner="b", lease=LEASE)
    assert (retried.claimed_by, retried.attempts, retried.due_at) == ("b", 2, retry_at)


async def test_a_cancelled_timer_never_fires_and_its_key_stays_taken(timers: TimerStore) -> None:
    timer = await _window(timers, "w", timedelta(0))

    assert await timers.cancel(key="w", now=NOW) is True
    assert await timers.cancel(key="w", now=NOW) is False

    assert await timers.claim_due(now=NOW + timedelta(hours=1), owner="a", lease=LEASE) == []
    again = await _window(timers, "w", timedelta(0))
    assert again.id == timer.id and again.cancelled_at == NOW
    assert await timers.next_due() is None


async def test_a_timer_and_the_cancels_of_those_it_replaces_are_one_write(
    timers: TimerStore,
) -> None:
    """A freeze's new watch and the cancels of the lifted freeze's watches (`rewatch`): all or
    none, so a fault never leaves both the new watch and an old one pending."""
    await _window(timers, "old-1", timedelta(hours=1))
    await _window(timers, "old-2", timedelta(hours=2))
    fired = await _window(timers, "fired", timedelta(0))
    (claimed,) = await timers.claim_due(now=NOW, owner="a", lease=LEASE)
    await timers.complete(timer_id=claimed.id, owner="a", now=NOW)

    with pytest.raises(StatementError):  # the payload cannot be written: nothing is
        await timers.schedule(
            key="new", kind="w", due_at=NOW, now=NOW, payload={"x": object()}, cancel=["old-1"]
        )
    assert await timers.get(key="new") is None

    async def cancelled_at(key: str) -> datetime | None:
        timer = await timers.get(key=key)
        assert timer is not None
        return timer.cancelled_at

    assert await cancelled_at("old-1") is None
    await timers.schedule(key="new", kind="w", due_at=NOW, now=NOW, cancel=["old-1", "old-2"])
    assert [await cancelled_at(key) for key in ("old-1", "old-2")] == [NOW, NOW]
    assert await timers.cancel_all(keys=["new", "fired", "old-1"], now=NOW) == 1  # pending only
    assert await cancelled_at("fired") is None
    assert fired.id == claimed.id


async def test_next_due_is_when_the_next_timer_can_be_claimed(timers: TimerStore) -> None:
    assert await timers.next_due() is None

    first = await _window(timers, "first", timedelta(minutes=1))
    await _window(timers, "second", timedelta(minutes=10))
    assert await timers.next_due() == NOW + timedelta(minutes=1)

    claim_time = NOW + timedelta(minutes=2)
    await timers.claim_due(now=claim_time, owner="a", lease=LEASE, limit=1)
    # Held by someone: claimable again only when the lease runs out.
    assert await timers.next_due() == claim_time + LEASE

    await timers.complete(timer_id=first.id, owner="a", now=claim_time)
    next_due = await timers.next_due()
    assert next_due == NOW + timedelta(minutes=10)
    assert next_due is not None and next_due.tzinfo is UTC


async def test_a_timer_taken_from_a_replica_ahead_is_next_due_when_it_can_be_claimed_here(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """A replica whose clock runs five minutes ahead claimed a timer due by its clock, and
    died: its lease ends on the server's clock before the timer is due by this replica's, and
    only then can it be claimed here. Before, its next due time was its lease's end, already
    past: the scheduler claimed nothing and read it again without sleeping, for minutes."""
    ahead = timedelta(minutes=5)
    theirs = TimerStore(session_factory, server_offset=lambda: -ahead)
    ours = TimerStore(session_factory)
    await _window(ours, "w", ahead)
    assert await theirs.claim_due(now=NOW + ahead, owner="ahead", lease=LEASE)
    now = NOW + LEASE + timedelta(seconds=1)  # its lease is over, by the server's clock

    assert await ours.claim_due(now=now, owner="b", lease=LEASE) == []
    assert await ours.next_due() == NOW + ahead
    (taken,) = await ours.claim_due(now=NOW + ahead, owner="b", lease=LEASE)
    assert (taken.key, taken.attempts) == ("w", 2)
    assert await ours.next_due() == NOW + ahead + LEASE  # held here now: its lease's end


async def test_timers_refuse_naive_datetimes(timers: TimerStore) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        await timers.schedule(key="w", kind="window_end", due_at=datetime(2026, 1, 1), now=NOW)


async def test_a_failed_attempt_is_counted_with_its_error(timers: TimerStore) -> None:
    timer = await _window(timers, "w", timedelta(0))
    (first,) = await timers.claim_due(now=NOW, owner="a", lease=LEASE)
    retry_at = NOW + timedelta(seconds=20)

    assert await timers.release(
        timer_id=timer.id, owner="a", due_at=retry_at, error="GitHubError: GitHub answered 502"
    )

    stored = await timers.get(key="w")
    assert stored is not None and stored.is_pending
    assert (stored.attempts, stored.due_at) == (1, retry_at)
    assert stored.last_error == "GitHubError: GitHub answered 502"
    (second,) = await timers.claim_due(now=retry_at, owner="b", lease=LEASE)
    assert (first.attempts, second.attempts) == (1, 2)


async def test_a_dead_lettered_timer_is_never_claimed_again_and_counted_until_its_rollout_ends(
    timers: TimerStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    plan = load_plan(None)
    rollout = cleared_rollout(plan, now=NOW, rollout_id="r-0000000dead1", channel_id="C0RELEASES")
    await RolloutStore(session_factory, clock=lambda: NOW).create(rollout=rollout, plan=plan)
    timer = await _window(timers, "w", timedelta(0), rollout_id=rollout.id)
    await _window(timers, "other", timedelta(hours=1))
    await timers.claim_due(now=NOW, owner="a", lease=LEASE, limit=1)
    assert await timers.dead_by_service() == {}

    assert await timers.bury(timer_id=timer.id, owner="b", now=NOW, error="x") is False  # not b's
    assert await timers.bury(timer_id=timer.id, owner="a", now=NOW, error="KeyError: 'state'")

    dead = await timers.get(key="w")
    assert dead is not None and not dead.is_pending
    assert (dead.dead_at, dead.last_error, dead.claimed_by) == (NOW, "KeyError: 'state'", None)
    assert await timers.dead_by_service() == {"default": 1}
    assert await timers.next_due() == NOW + timedelta(hours=1)  # the scheduler does not spin
    later = NOW + timedelta(days=1)
    assert [t.key for t in await timers.claim_due(now=later, owner="c", lease=LEASE)] == ["other"]
    assert await timers.cancel(key="w", now=later) is False  # dead stays dead, for the record
    # The stage it held is gone with its rollout: nothing waits for a person any more.
    async with session_factory.begin() as session:
        await session.execute(update(RolloutRow).values(ended_at=later))
    assert await timers.dead_by_service() == {}


async def test_dead_lettered_timers_are_counted_by_their_rollout_s_service(
    timers: TimerStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """A service taken out of the services file keeps its count: nobody follows its rollout,
    and the alert must name it (`rollout_bot_timers_dead{service}`)."""
    plan = load_plan(None)
    store = RolloutStore(session_factory, clock=lambda: NOW)
    for n, service in enumerate(("default", "billing-api")):
        rollout = cleared_rollout(plan, now=NOW, rollout_id=f"r-000000dead{n}", channel_id="C0R")
        await store.create(rollout=replace(rollout, service=service), plan=plan)
        for track in ("relay", "desktop")[: n + 1]:  # billing-api's two tracks' windows
            await timers.schedule(
                key=f"w{n}{track}",
                kind="window",
                due_at=NOW,
                now=NOW,
                rollout_id=rollout.id,
                service=service,
            )
    for timer in await timers.claim_due(now=NOW, owner="a", lease=LEASE):
        assert await timers.bury(timer_id=timer.id, owner="a", now=NOW, error="x")

    assert await timers.dead_by_service() == {"default": 1, "billing-api": 2}
