"""Replicas whose clocks disagree: a replica running two minutes ahead must not take over a
window end or a message another replica is working on (a timer fired twice: a gate's figures
read twice; a post posted twice). A lease's end is written and compared on the database
server's clock, each replica's corrected by its offset from the server's (`storage.leases`),
as measured on PostgreSQL (`bot.services.clock_skew.DatabaseClock`); SQLite is one host, one
clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from replicas import poll_stores, replica_sessions
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_scheduler import Follower

from bot.adapters.slack import messages
from bot.services.clock import SystemClock
from bot.services.clock_skew import DatabaseClock
from bot.services.effects import WINDOW_TIMER
from bot.services.records import NewMessage
from bot.services.scheduler import Scheduler
from bot.services.telemetry import UNTRACKED
from bot.wiring import clock_watch
from sandbox.clock import ManualClock
from storage.db import create_engine, create_session_factory, server_clock
from storage.leases import same_clock
from storage.outbox import OutboxStore
from storage.timers import Timer, TimerStore

LEASE = timedelta(minutes=1)
AHEAD = timedelta(minutes=2)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Replica:
    """A replica's clock and its timer store, its leases on the database server's clock."""

    clock: ManualClock
    sessions: async_sessionmaker[AsyncSession]
    timers: TimerStore


@asynccontextmanager
async def replica(url: str, *, ahead: timedelta) -> AsyncIterator[Replica]:
    """A replica whose clock runs `ahead` of the database server's, its leases kept as `serve`
    keeps them on the system's clock (`clock_watch`): by its offset from the server's clock,
    read at start."""
    engine = create_engine(url)
    try:
        clock = ManualClock(datetime.now(UTC) + ahead)
        watch = DatabaseClock(
            server=partial(server_clock, engine), clock=clock, telemetry=UNTRACKED
        )
        await watch.first_check()
        sessions = create_session_factory(engine)
        yield Replica(clock, sessions, TimerStore(sessions, server_offset=watch.offset))
    finally:
        await engine.dispose()


async def test_serve_keeps_leases_by_the_server_s_clock_and_a_test_s_clock_by_itself(
    database_url: str,
) -> None:
    """On PostgreSQL the system's clock is corrected by the watch's offset; a test's clock
    stands for the server's too (the test moves it; the server's clock would not follow), and
    SQLite is one host: no offset."""
    engine = create_engine(database_url)
    try:
        watch, offset = clock_watch(engine, telemetry=UNTRACKED, clock=SystemClock())
        if watch is None:
            assert engine.dialect.name == "sqlite" and offset is same_clock
        else:
            assert offset == watch.offset
            moved = ManualClock(datetime.now(UTC) + AHEAD)
            assert clock_watch(engine, telemetry=UNTRACKED, clock=moved)[1] is same_clock
    finally:
        await engine.dispose()


async def test_a_replica_two_minutes_ahead_does_not_fire_a_window_end_another_works_on(
    postgres_database_url: str,
) -> None:
    """Before, "b" took the window end over as soon as its clock passed "a"'s lease's end (at
    once, two minutes ahead), and fired it a second time while "a" read the gate's figures."""
    follower = Follower()

    def scheduler(one: Replica, owner: str) -> Scheduler:
        return Scheduler(
            timers=one.timers,
            service=follower,
            **poll_stores(one.sessions),
            words=messages,
            clock=one.clock,
            poll_interval=timedelta(hours=1),
            lease=LEASE,
            rng=random.Random(7),
            owner=owner,
        )

    async with (
        replica(postgres_database_url, ahead=timedelta(0)) as a,
        replica(postgres_database_url, ahead=AHEAD) as b,
    ):
        fired_by_b: list[int] = []

        async def slow_window_end(timer: Timer) -> None:
            if len(follower.fired) == 1:  # "a" reads the window's figures; "b" looks meanwhile
                fired_by_b.append(await scheduler(b, "replica-b").fire_due())

        follower.during_timer = slow_window_end
        now = a.clock()
        await a.timers.schedule(key="w", kind=WINDOW_TIMER, due_at=now, now=now)

        fired_by_a = await scheduler(a, "replica-a").fire_due()

        assert [timer.key for timer in follower.fired] == ["w"]  # fired once
        assert (fired_by_a, fired_by_b) == (1, [0])


async def test_a_lease_ends_on_the_server_s_clock_and_each_replica_reads_it_on_its_own(
    database_url: str,
) -> None:
    """Replica "b" runs two minutes ahead of the server's clock (its measured offset), "a" in
    step: "b" takes neither a's timer nor its message before their leases end on the server's
    clock, takes them once they have; each sees the lease's end, and when the timer can be
    claimed, on its own clock."""
    async with replica_sessions(database_url, 2) as (sessions_a, sessions_b):
        timers_a = TimerStore(sessions_a)
        timers_b = TimerStore(sessions_b, server_offset=lambda: -AHEAD)
        outbox_a = OutboxStore(sessions_a)
        outbox_b = OutboxStore(sessions_b, server_offset=lambda: -AHEAD)
        await timers_a.schedule(key="w", kind=WINDOW_TIMER, due_at=NOW, now=NOW)
        await outbox_a.add([NewMessage(kind="thread", channel_id="C1", payload={})], now=NOW)
        (timer,) = await timers_a.claim_due(now=NOW, owner="a", lease=LEASE)
        (message,) = await outbox_a.claim(now=NOW, owner="a", lease=LEASE)

        on_b = NOW + AHEAD  # the same moment on b's clock
        assert await timers_b.claim_due(now=on_b, owner="b", lease=LEASE) == []
        assert await outbox_b.claim(now=on_b, owner="b", lease=LEASE) == []
        assert await timers_b.next_due() == on_b + LEASE
        assert await outbox_b.next_due() == on_b + LEASE
        assert await timers_a.next_due() == NOW + LEASE

        # "a" renews on its clock; "b" still waits, then takes both over once they lapse.
        assert await timers_a.renew(timer_id=timer.id, owner="a", lease_until=NOW + 2 * LEASE)
        assert await outbox_a.renew(message_id=message.id, owner="a", now=NOW + LEASE, lease=LEASE)
        after_first_lease = on_b + LEASE + timedelta(seconds=1)
        assert await timers_b.claim_due(now=after_first_lease, owner="b", lease=LEASE) == []
        assert await outbox_b.claim(now=after_first_lease, owner="b", lease=LEASE) == []
        lapsed = on_b + 2 * LEASE
        (taken,) = await timers_b.claim_due(now=lapsed, owner="b", lease=LEASE)
        (sent_by_b,) = await outbox_b.claim(now=lapsed, owner="b", lease=LEASE)

        assert (taken.id, taken.claimed_by, taken.lease_until) == (timer.id, "b", lapsed + LEASE)
        assert (sent_by_b.id, sent_by_b.lease_until) == (message.id, lapsed + LEASE)
        seen_by_a = await timers_a.get(key="w")
        assert seen_by_a is not None and seen_by_a.lease_until == NOW + 2 * LEASE + LEASE


async def test_a_replica_whose_clock_is_stepped_after_its_reading_keeps_its_leases_long(
    postgres_database_url: str,
) -> None:
    """Replica "a" started two minutes ahead (its offset read then); NTP then stepped its clock
    back in step before another reading (a replica nothing scrapes is read at start only).
    Before, it kept correcting by its start's offset: the lease it took ended two minutes early
    on the server's clock, already over, and "b", in step, took its window end at once."""
    async with (
        replica(postgres_database_url, ahead=AHEAD) as a,
        replica(postgres_database_url, ahead=timedelta(0)) as b,
    ):
        a.clock.advance(-AHEAD)  # stepped back: in step with the server's clock now
        now = a.clock()
        await a.timers.schedule(key="w", kind=WINDOW_TIMER, due_at=now, now=now)
        (timer,) = await a.timers.claim_due(now=now, owner="a", lease=LEASE)

        assert await b.timers.claim_due(now=b.clock(), owner="b", lease=LEASE) == []
        due_on_b = await b.timers.next_due()  # a's lease's end, on b's clock: a lease later
        assert due_on_b is not None and abs(due_on_b - (b.clock() + LEASE)) < timedelta(seconds=5)
        assert timer.claimed_by == "a"
