"""The scheduler under faults: timers keep their window across retries, back off, are counted
and dead-lettered with the stage held for a person; leases cover one timer; the wake-up is not
lost; transient failures are one WARNING line; old claims and deliveries are pruned.

The first tests drive a `Scheduler` on a real timer store (SQLite and PostgreSQL) with a
follower of their own; the later ones run the whole bot (its own poller asleep) and a second
scheduler on its services with a manual clock, so every timer fires exactly when told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from cleared import cleared_rollout
from replicas import poll_stores
from sandbox_views import deploying_canary, window_timer_of
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.adapters.slack import messages
from bot.adapters.slack.messages import render
from bot.bootstrap import create_app
from bot.domain.errors import ConcurrentChange, GitHubError
from bot.domain.npm import RELEASE_TIMER
from bot.domain.protection_rules import RuleRequest
from bot.domain.reasons import Reason
from bot.domain.rollout import (
    Announce,
    InvalidTransition,
    Phase,
    Rollout,
    StageState,
    promote,
    window_timer_key,
)
from bot.plan_file import load_plan
from bot.services.backoff import Backoff
from bot.services.clock import SystemClock
from bot.services.effects import TIMER_KINDS
from bot.services.following import Reconciled
from bot.services.readiness import Readiness
from bot.services.retention import Retention
from bot.services.rollouts import RolloutService, UnhandledTimer
from bot.services.scheduler import PRUNE_EVERY, Scheduler
from handlers.app_keys import SERVICES
from sandbox.clock import ManualClock
from sandbox.harness import CHARTS, Sandbox
from storage.audit_log import AuditLog
from storage.claims import ClaimStore
from storage.deliveries import DeliveryLog
from storage.models import AuditEventRow
from storage.protection_rules import ProtectionRuleStore
from storage.timers import Timer, TimerStore

NOW = datetime(2030, 1, 1, tzinfo=UTC)
A_WHILE = 30.0
"""Seconds a test waits at most for what a loaded machine makes late (a real-time renewal):
far longer than it takes, a bound only against a hang."""
BAD_GATEWAY = GitHubError("GitHub answered 502 (Bad Gateway) to GET /actions/runs/7")


class Follower:
    """The scheduler's view of the rollout service: records what it was asked, and fails the
    way a test says (`failures` is consumed one per call of `on_timer`)."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = failures or []
        self.fired: list[Timer] = []
        self.dead: list[tuple[Timer, str]] = []
        self.poll_failure: Exception | None = None
        self.polls = 0
        self.polled_again = asyncio.Event()
        self.during_timer: Callable[[Timer], object] | None = None

    async def on_timer(self, timer: Timer) -> None:
        self.fired.append(timer)
        if self.during_timer is not None:
            await self.during_timer(timer)  # type: ignore[misc]
        if self.failures:
            raise self.failures.pop(0)

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        self.dead.append((timer, reason.text))

    async def active(self) -> list[Rollout]:
        self.polls += 1
        if self.polls > 1:
            self.polled_again.set()
        if self.poll_failure is not None:
            raise self.poll_failure
        return []

    async def reconcile(self, rollout_id: str) -> Reconciled:
        return Reconciled()

    async def find_dispatched_run(self, rollout: Rollout) -> None:
        return None


def scheduler(
    sessions: async_sessionmaker[AsyncSession],
    follower: Follower,
    clock: ManualClock,
    **options: object,
) -> Scheduler:
    return Scheduler(
        timers=options.pop("timers", None) or TimerStore(sessions),  # type: ignore[arg-type]
        service=follower,
        **poll_stores(sessions),
        words=messages,
        clock=clock,
        poll_interval=timedelta(hours=1),
        rng=random.Random(7),
        owner="replica-a",
        **options,  # type: ignore[arg-type]
    )


async def window(timers: TimerStore, key: str = "w", *, due: datetime = NOW) -> Timer:
    return await timers.schedule(
        key=key, kind="window", due_at=due, now=NOW, rollout_id=None, payload={"track": "relay"}
    )


async def slow_then_later(
    timers: TimerStore, follower: Follower, clock: ManualClock, *, later_due_meanwhile: bool
) -> list[str]:
    """Two window ends: "slow", due now, whose metrics source answers only once "later" (due a
    second on) has been worked on; `later_due_meanwhile`: the clock reaches "later" while
    "slow" runs. The keys in the order their work ends, filled in as the scheduler fires."""
    later_done = asyncio.Event()
    finished: list[str] = []

    async def slow_first(timer: Timer) -> None:
        if timer.key == "slow":
            if later_due_meanwhile:
                clock.advance(timedelta(seconds=1))
            await asyncio.wait_for(later_done.wait(), A_WHILE)  # a slow metrics source
        else:
            later_done.set()
        finished.append(timer.key)

    follower.during_timer = slow_first
    await window(timers, "slow")
    await window(timers, "later", due=NOW + timedelta(seconds=1))
    return finished


# -- retries, backoff, dead letters -----------------------------------------------------------


async def test_a_failing_timer_backs_off_with_jitter_and_is_dead_lettered_after_n_attempts(
    session_factory: async_sessionmaker[AsyncSession],
    timers: TimerStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(NOW)
    follower = Follower(
        [BAD_GATEWAY, ConcurrentChange("changed", rollout_id="r-1"), BAD_GATEWAY, BAD_GATEWAY]
    )
    backoff = Backoff(base=timedelta(seconds=10), cap=timedelta(seconds=25))
    loop = scheduler(session_factory, follower, clock, max_attempts=4, backoff=backoff)
    await window(timers)
    caplog.set_level(logging.INFO, logger="bot.services.scheduler")

    waits = []
    for attempt in range(1, 4):
        assert await loop.fire_due() == 0
        stored = await timers.get(key="w")
        assert stored is not None and stored.is_pending and stored.attempts == attempt
        wait = stored.due_at - clock()
        ceiling = min(timedelta(seconds=10 * 2 ** (attempt - 1)), timedelta(seconds=25))
        assert timedelta(seconds=1) <= wait <= ceiling  # bounded, never at once
        waits.append(wait)
        if attempt == 2:
            assert stored.last_error == "ConcurrentChange: changed"
        assert await loop.fire_due() == 0  # not retried before its time
        assert len(follower.fired) == attempt
        clock.advance(wait)
    assert len(set(waits)) == 3  # jittered
    assert stored.last_error == f"GitHubError: {BAD_GATEWAY.message}"
    assert not follower.dead

    assert await loop.fire_due() == 0  # the 4th attempt fails too: given up
    dead = await timers.get(key="w")
    assert dead is not None and dead.dead_at == clock() and not dead.is_pending
    assert dead.last_error == f"GitHubError: {BAD_GATEWAY.message}"
    assert [(t.key, reason) for t, reason in follower.dead] == [("w", BAD_GATEWAY.message)]
    clock.advance(timedelta(days=1))
    assert await loop.fire_due() == 0 and len(follower.fired) == 4  # never again

    retried = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert [r.levelname for r in retried] == ["WARNING"] * 3
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in retried)
    given_up = [r for r in caplog.records if r.levelname == "ERROR"]
    assert given_up and given_up[0].exc_info is not None  # a person must act: the traceback


async def test_an_unexpected_error_is_logged_with_its_traceback_and_a_safe_reason(
    session_factory: async_sessionmaker[AsyncSession],
    timers: TimerStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(NOW)
    follower = Follower([KeyError("state")])
    loop = scheduler(session_factory, follower, clock, max_attempts=1)
    await window(timers)

    await loop.fire_due()

    (record,) = [r for r in caplog.records if "failed 1 times" in r.getMessage()]
    assert record.levelname == "ERROR" and record.exc_info is not None
    ((_, reason),) = follower.dead
    assert reason == "an unexpected KeyError, see the bot's log"
    dead = await timers.get(key="w")
    assert dead is not None and dead.last_error == "KeyError: 'state'"


async def test_a_timer_whose_replica_died_on_every_attempt_is_given_up_without_running(
    session_factory: async_sessionmaker[AsyncSession],
    timers: TimerStore,
) -> None:
    clock = ManualClock(NOW)
    follower = Follower()
    lease = timedelta(minutes=2)
    await window(timers)
    for _ in range(2):  # two replicas claimed it and died working on it
        await timers.claim_due(now=clock(), owner="gone", lease=lease)
        clock.advance(lease)

    await scheduler(session_factory, follower, clock, max_attempts=2, lease=lease).fire_due()

    assert follower.fired == []
    assert [reason for _, reason in follower.dead] == ["its last attempt never finished"]
    dead = await timers.get(key="w")
    assert dead is not None and dead.dead_at is not None


async def test_a_timer_stays_until_its_stage_is_held(
    session_factory: async_sessionmaker[AsyncSession], timers: TimerStore
) -> None:
    """Telling the thread failed (the database blinked): the timer is not buried unseen."""

    class Unreachable(Follower):
        async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
            raise OperationalError("UPDATE rollouts", {}, ConnectionResetError("reset"))

    clock = ManualClock(NOW)
    follower = Unreachable([BAD_GATEWAY])
    await window(timers)

    await scheduler(session_factory, follower, clock, max_attempts=1).fire_due()

    kept = await timers.get(key="w")
    assert kept is not None and kept.is_pending and kept.dead_at is None and kept.due_at > NOW


async def test_a_timer_given_up_once_telling_works_again_tells_why_it_failed(
    session_factory: async_sessionmaker[AsyncSession], timers: TimerStore
) -> None:
    """Its last attempt failed (GitHub answered 502) and telling the thread failed too: the
    next try tells the thread that 502, and the record keeps it, not "its last attempt never
    finished" (it finished, with an error). Before, the real reason was lost."""

    class UnreachableOnce(Follower):
        async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
            if not self.dead:
                self.dead.append((timer, "unreachable"))
                raise OperationalError("UPDATE rollouts", {}, ConnectionResetError("reset"))
            await super().on_timer_dead(timer, reason=reason)

    clock = ManualClock(NOW)
    follower = UnreachableOnce([BAD_GATEWAY])
    loop = scheduler(session_factory, follower, clock, max_attempts=1)
    await window(timers)
    await loop.fire_due()
    kept = await timers.get(key="w")
    assert kept is not None and kept.is_pending
    clock.advance(kept.due_at - clock())

    await loop.fire_due()

    assert [reason for _, reason in follower.dead] == ["unreachable", BAD_GATEWAY.message]
    # The attempts that ran and failed, as its window's hold says "N attempts failed (last:
    # ...)": not the claims (the second only told the thread).
    assert [timer.attempts for timer, _ in follower.dead] == [1, 1]
    assert len(follower.fired) == 1  # given up, not run again
    dead = await timers.get(key="w")
    assert dead is not None and dead.dead_at is not None
    assert dead.last_error == f"GitHubError: {BAD_GATEWAY.message}"


# -- leases and the wake-up ----------------------------------------------------------------------


async def test_a_worker_claims_its_timers_one_at_a_time(
    session_factory: async_sessionmaker[AsyncSession], timers: TimerStore
) -> None:
    clock = ManualClock(NOW)
    follower = Follower()
    seen: dict[str, Timer | None] = {}

    async def look_at_the_other(timer: Timer) -> None:
        other = "second" if timer.key == "first" else "first"
        seen[timer.key] = await timers.get(key=other)

    follower.during_timer = look_at_the_other
    await window(timers, "first")
    await window(timers, "second", due=NOW + timedelta(seconds=1))
    clock.advance(timedelta(seconds=1))

    assert await scheduler(session_factory, follower, clock, workers=1).fire_due() == 2

    # While the first was worked on, the second was free for any other replica to take.
    second_meanwhile = seen["first"]
    assert second_meanwhile is not None and second_meanwhile.claimed_by is None


async def test_a_slow_window_end_does_not_hold_the_timers_due_behind_it(
    session_factory: async_sessionmaker[AsyncSession],
    timers: TimerStore,
) -> None:
    """Window ends of different rollouts wait on GitHub and the metrics source, not on each
    other: with two workers the second fires while the first is still in hand."""
    clock = ManualClock(NOW)
    follower = Follower()
    finished = await slow_then_later(timers, follower, clock, later_due_meanwhile=False)
    clock.advance(timedelta(seconds=1))

    assert await scheduler(session_factory, follower, clock, workers=2).fire_due() == 2

    assert [timer.key for timer in follower.fired] == ["slow", "later"]
    assert finished == ["later", "slow"]


async def test_a_slow_window_end_does_not_hold_a_timer_that_falls_due_while_it_runs(
    session_factory: async_sessionmaker[AsyncSession], timers: TimerStore
) -> None:
    """Issue 13's case as it happens: window ends fall due one after another, not at one
    instant. While one is slow (its metrics source), the next one due must still be fired by a
    free worker, not wait until the slow one ends."""
    clock = ManualClock(NOW)
    follower = Follower()
    finished = await slow_then_later(timers, follower, clock, later_due_meanwhile=True)

    fired = await scheduler(session_factory, follower, clock, workers=4).fire_due()

    assert finished == ["later", "slow"], "the later window end waited for the slow one"
    assert fired == 2


class CountingTimers(TimerStore):
    """The real store, counting the scheduler's claims and reads of the next due time, and
    telling when a read begun after a timer's claim has ended (`looked_after`)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessions)
        self.claims = 0
        self.reads = 0
        self._read_ended: list[int] = []
        self._reads_at_claim: dict[str, int] = {}
        self._looked = asyncio.Condition()

    async def claim_due(self, **options: object) -> list[Timer]:
        self.claims += 1
        claimed = await super().claim_due(**options)  # type: ignore[arg-type]
        for timer in claimed:
            self._reads_at_claim[timer.key] = self.reads
        return claimed

    async def next_due(self, *, kinds: Collection[str] | None = None) -> datetime | None:
        self.reads += 1
        number = self.reads
        try:
            return await super().next_due(kinds=kinds)
        finally:
            async with self._looked:
                self._read_ended.append(number)
                self._looked.notify_all()

    async def looked_after(self, timer: Timer) -> None:
        """Until a read of the next due time that began after `timer` was claimed has ended:
        the idle worker the claim woke has looked, and sleeps again."""
        since = self._reads_at_claim[timer.key]
        async with self._looked:
            await self._looked.wait_for(lambda: any(n > since for n in self._read_ended))


async def test_idle_workers_do_not_all_claim_again_after_every_fire(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """Eight workers, twelve window ends one after another: each schedules the next, due now.
    The worker that ends one claims the next itself and one idle worker at a time looks for
    more, so each fire costs about one claim and one read of the next due time, not one of
    each per idle worker (every idle worker woken by every end: 187 claims for 12 fires)."""
    timers = CountingTimers(session_factory)
    follower = Follower()

    async def window_end(timer: Timer) -> None:
        # The metrics source answers once the idle worker the claim woke has looked (and
        # sleeps again): the next window end is written while it sleeps, as when the source
        # is slower than a read. A wait of real time lost that race on a loaded machine.
        await timers.looked_after(timer)
        if (number := int(timer.key[1:])) < 12:
            await window(timers, f"w{number + 1}")

    follower.during_timer = window_end
    await window(timers, "w1")

    loop = scheduler(session_factory, follower, ManualClock(NOW), timers=timers)
    async with asyncio.timeout(60):  # bounds a hang: no idle worker looked
        assert await loop.fire_due() == 12

    assert [timer.key for timer in follower.fired] == [f"w{n}" for n in range(1, 13)]
    assert timers.claims <= 12 + 2, f"{timers.claims} claims for 12 fires"
    assert timers.reads <= 12 + 2, f"{timers.reads} reads of the next due time for 12 fires"


class SlowPass(Follower):
    """Three running rollouts; the first look learns that a window ended (its timer is
    written, due now, and the scheduler woken, as the effects do); the second look waits for
    GitHub, which answers only once that window's end fired (or after `A_WHILE`: the timer
    loop's claim is real database work, seconds on a loaded machine)."""

    def __init__(self, timers: TimerStore, wake: asyncio.Event) -> None:
        super().__init__()
        self._timers = timers
        self._wake = wake
        self.order: list[str] = []
        self.window_ended = asyncio.Event()
        self.looking_at_b = False
        self.passed = asyncio.Event()

    async def active(self) -> list[Rollout]:
        plan = load_plan(None)
        return [
            replace(cleared_rollout(plan, now=NOW, rollout_id=name), phase=Phase.RUNNING, run_id=n)
            for n, name in enumerate(["a", "b", "c"], start=1)
        ]

    async def reconcile(self, rollout_id: str) -> Reconciled:
        self.order.append(f"look {rollout_id}")
        if rollout_id == "a":
            await window(self._timers, "ended")
            self._wake.set()
        if rollout_id == "b":
            self.looking_at_b = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.window_ended.wait(), A_WHILE)  # a slow GitHub
            self.looking_at_b = False
        if rollout_id == "c":
            self.passed.set()
        return Reconciled()

    async def on_timer(self, timer: Timer) -> None:
        during = " (during look b)" if self.looking_at_b else ""
        self.order.append(f"timer {timer.key}{during}")
        self.window_ended.set()


async def test_a_window_end_does_not_wait_for_a_look_at_github(
    session_factory: async_sessionmaker[AsyncSession],
    timers: TimerStore,
) -> None:
    """The timers and the polls are two loops: a window that ends while a pass through many
    runs waits on GitHub fires at once, not after the pass (seconds to minutes late)."""
    wake = asyncio.Event()
    follower = SlowPass(timers, wake)
    loop = scheduler(session_factory, follower, ManualClock(NOW), wake=wake)

    loop.start()
    try:
        await asyncio.wait_for(follower.passed.wait(), 2 * A_WHILE)
    finally:
        await loop.stop(grace=timedelta(seconds=1))

    assert follower.order == ["look a", "look b", "timer ended (during look b)", "look c"]


async def test_each_timer_done_counts_as_progress_for_readiness(
    session_factory: async_sessionmaker[AsyncSession], timers: TimerStore
) -> None:
    """A pass through many slow timers (a slow GitHub) is progress, not a stuck loop: every
    replica would otherwise turn unready at once."""
    clock = ManualClock(NOW)
    follower = Follower()
    seen: list[datetime | None] = []
    loop = scheduler(session_factory, follower, clock, workers=1)

    async def slow(timer: Timer) -> None:
        seen.append(loop.last_tick)
        clock.advance(timedelta(seconds=90))

    follower.during_timer = slow
    await window(timers, "first")
    await window(timers, "second")

    assert await loop.fire_due() == 2

    assert seen == [None, NOW + timedelta(seconds=90)]  # the first one done counted
    assert loop.last_tick == NOW + timedelta(seconds=180)


async def test_a_slow_timer_keeps_its_lease_while_it_is_worked_on(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    # The lease runs on the test's clock, moved past its first end only once a renewal was
    # written: the renewals come every third of it in real time (0.1 s), and however late a
    # loaded machine runs one, the test waits for it instead of racing it.
    lease = timedelta(seconds=0.3)
    clock = ManualClock(NOW)
    renewed = asyncio.Queue[datetime]()  # the lease's end each renewal wrote
    taken_meanwhile: list[Timer] = []

    class Renewals(TimerStore):
        async def renew(self, *, timer_id: int, owner: str, lease_until: datetime) -> bool:
            held = await super().renew(timer_id=timer_id, owner=owner, lease_until=lease_until)
            if held:
                renewed.put_nowait(lease_until)
            return held

    timers = Renewals(session_factory)

    async def slow_window_end(timer: Timer) -> None:
        for _ in range(2):  # longer than the lease: metrics, a chart, GitHub
            clock.advance(lease * 0.9)
            async with asyncio.timeout(A_WHILE):  # a renewal read the clock after the move
                while await renewed.get() != clock() + lease:
                    pass
        clock.advance(lease * 0.9)  # past the first lease's end, within the renewed one
        other = await timers.claim_due(now=clock(), owner="replica-b", lease=lease)
        taken_meanwhile.extend(other)

    follower = Follower()
    follower.during_timer = slow_window_end
    await window(timers, due=NOW)
    loop = Scheduler(
        timers=timers,
        service=follower,
        **poll_stores(session_factory),
        words=messages,
        clock=clock,
        poll_interval=timedelta(hours=1),
        lease=lease,
        owner="replica-a",
    )

    assert await loop.fire_due() == 1
    assert taken_meanwhile == []  # not run a second time by another replica


async def test_a_wake_up_while_the_next_due_time_is_read_is_not_lost(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    wake = asyncio.Event()
    looked_again = asyncio.Event()
    reads = 0

    class ScheduledMeanwhile(TimerStore):
        async def next_due(self, *, kinds: Collection[str] | None = None) -> datetime | None:
            nonlocal reads
            reads += 1
            if reads == 1:
                wake.set()  # a timer is scheduled right now, by this process
            else:
                looked_again.set()
            return await super().next_due(kinds=kinds)

    store = ScheduledMeanwhile(session_factory)
    loop = Scheduler(
        timers=store,
        service=Follower(),
        **poll_stores(session_factory),
        words=messages,
        clock=SystemClock(),
        poll_interval=timedelta(hours=1),
        wake=wake,
    )
    loop.start()
    try:
        async with asyncio.timeout(A_WHILE):
            await looked_again.wait()  # woken: it looked again instead of sleeping an hour
    finally:
        # Stopped, not cancelled, before the database fixture closes: the timers and the
        # polls run side by side, and one cancelled in a query that then never finishes
        # (the engine disposed) would hang the loop's teardown.
        await loop.stop(grace=timedelta(seconds=5))


# -- graceful shutdown -------------------------------------------------------------------------


@pytest.mark.parametrize("finishes", [True, False], ids=["within the grace", "past the grace"])
async def test_stopping_lets_the_timer_in_hand_finish_or_gives_it_back_at_once(
    session_factory: async_sessionmaker[AsyncSession], timers: TimerStore, finishes: bool
) -> None:
    clock = ManualClock(NOW)
    follower = Follower()
    in_hand = asyncio.Event()
    done = asyncio.Event()

    async def window_end(timer: Timer) -> None:
        in_hand.set()
        await done.wait()

    follower.during_timer = window_end
    await window(timers, "in hand")
    await window(timers, "next")
    loop = scheduler(session_factory, follower, clock, lease=timedelta(hours=1), workers=1)
    loop.start()
    await asyncio.wait_for(in_hand.wait(), A_WHILE)

    # Within the grace: the timer ends at once, and marking it fired is a database write,
    # which a loaded machine can take seconds over; past it: the timer never ends.
    grace = timedelta(seconds=A_WHILE if finishes else 0.3)
    stopping = asyncio.create_task(loop.stop(grace=grace))
    if finishes:
        done.set()
    await asyncio.wait_for(stopping, 2 * A_WHILE)

    # It stopped claiming: the second due timer was never taken.
    assert [timer.key for timer in follower.fired] == ["in hand"]
    nothing_held = await timers.claim_due(now=NOW, owner="replica-b", lease=timedelta(hours=1))
    # Whatever it did not finish is free for another replica now, not in an hour.
    expected = {"next"} if finishes else {"in hand", "next"}
    assert {timer.key for timer in nothing_held} == expected
    fired = await timers.get(key="in hand")
    assert fired is not None and (fired.fired_at is not None) is finishes


class CompleteFailsOnce(TimerStore):
    """A database blip as the first timer done is marked fired."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessions)
        self.failed = asyncio.Event()

    async def complete(self, *, timer_id: int, owner: str, now: datetime) -> bool:
        if not self.failed.is_set():
            self.failed.set()
            raise OperationalError("UPDATE timers", {}, ConnectionResetError("reset"))
        return await super().complete(timer_id=timer_id, owner=owner, now=now)


async def test_a_worker_that_fails_leaves_no_other_worker_running_past_stop(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """One worker's database error ends `fire_due`; the other workers' timers in hand must
    still be finished or cancelled before `stop` gives this replica's timers back, or another
    replica fires a window end that is still being worked on here."""
    timers = CompleteFailsOnce(session_factory)
    clock = ManualClock(NOW)
    follower = Follower()
    slow_in_hand = asyncio.Event()
    slow_running = False

    async def window_end(timer: Timer) -> None:
        nonlocal slow_running
        if timer.key != "slow":
            return
        slow_running = True
        slow_in_hand.set()
        try:
            await asyncio.Event().wait()  # a metrics source that does not answer
        finally:
            slow_running = False

    follower.during_timer = window_end
    await window(timers, "slow")
    await window(timers, "quick")
    loop = scheduler(
        session_factory, follower, clock, timers=timers, lease=timedelta(hours=1), workers=2
    )
    loop.start()
    await asyncio.wait_for(slow_in_hand.wait(), A_WHILE)
    await asyncio.wait_for(timers.failed.wait(), A_WHILE)  # the quick one's worker met the blip
    await asyncio.sleep(0.05)  # and `fire_due` raised it to the loop

    await asyncio.wait_for(loop.stop(grace=timedelta(seconds=0.3)), A_WHILE)

    try:
        # Given back while still worked on here, another replica would fire it a second time.
        assert not slow_running, "a worker still fires a timer after the scheduler stopped"
    finally:
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task() and "_fire_in_turn" in repr(task.get_coro()):
                task.cancel()


class NextDueFailsOnce(TimerStore):
    """A look for the next due time held up once (a server starved of CPU)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessions)
        self.failed = asyncio.Event()

    async def next_due(self, *, kinds: Collection[str] | None = None) -> datetime | None:
        if not self.failed.is_set():
            self.failed.set()
            raise OperationalError("SELECT min(due_at)", {}, TimeoutError("statement timeout"))
        return await super().next_due(kinds=kinds)


async def test_a_timer_claimed_as_another_worker_fails_is_given_back(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """One worker's database error ends the pass just as another, done with its timer, claims
    the next one: that one was never fired, so it is given back at once, for the next pass,
    not held by this replica until its lease runs out."""
    timers = NextDueFailsOnce(session_factory)
    clock = ManualClock(NOW)
    follower = Follower()

    async def window_end(timer: Timer) -> None:
        if timer.key == "first":
            await timers.failed.wait()  # the idle worker met the error meanwhile

    follower.during_timer = window_end
    await window(timers, "first")
    await window(timers, "second")
    loop = scheduler(session_factory, follower, clock, timers=timers, workers=2)

    with pytest.raises(OperationalError):
        await loop.fire_due()
    assert await loop.fire_due() == 1

    assert [timer.key for timer in follower.fired] == ["first", "second"]


async def test_readiness_reports_each_reason_and_draining_stops_the_scheduler() -> None:
    clock = ManualClock(NOW)
    state: dict[str, object] = {"db": True, "schema": None, "tick": None}
    stopped: list[str] = []

    async def database() -> bool:
        return bool(state["db"])

    async def schema() -> str | None:
        if isinstance(state["schema"], Exception):
            raise state["schema"]
        return state["schema"]  # type: ignore[return-value]

    async def stop_scheduler() -> None:
        stopped.append("scheduler")

    readiness = Readiness(
        database=database,
        schema=schema,
        last_tick=lambda: state["tick"],  # type: ignore[arg-type,return-value]
        clock=clock,
        stale_after=timedelta(seconds=60),
        stoppers=[stop_scheduler],
    )
    assert await readiness.problem() == "the scheduler has not gone round yet"
    state["tick"] = NOW
    assert await readiness.problem() is None
    clock.advance(timedelta(seconds=60))
    assert await readiness.problem() is None  # at the bound is still in time
    clock.advance(timedelta(seconds=1))
    assert await readiness.problem() == "the scheduler last went round 61 s ago (more than 60 s)"
    state["tick"] = clock()
    state["schema"] = "the database is at migration 0005, ...: run `rollout-bot migrate`"
    assert await readiness.problem() == state["schema"]
    state["schema"] = OperationalError("SELECT", {}, Exception("gone"))
    assert await readiness.problem() == "the database does not answer"
    state["db"] = False
    assert await readiness.problem() == "the database does not answer"
    state["db"], state["schema"] = True, None
    assert await readiness.problem() is None

    await readiness.drain()
    assert stopped == ["scheduler"]
    assert await readiness.problem() == "shutting down: this replica takes no new work"


async def test_readiness_answers_within_one_budget_when_ping_and_schema_are_each_slow() -> None:
    """A slow but working database: each look alone is within the budget, both together are
    not. The probe is answered within the one budget (a load balancer's check waits for that
    long, ops/haproxy.cfg), not within the sum of two: answered while the second look is still
    under way (told by the look itself, not by a time a loaded machine can overrun)."""
    looked: list[str] = []

    async def slow_database() -> bool:
        await asyncio.sleep(0.3)  # the database's slowness, not a wait for something to happen
        return True

    async def slow_schema() -> str | None:
        await asyncio.sleep(0.3)
        looked.append("schema")
        return None

    readiness = Readiness(
        database=slow_database,
        schema=slow_schema,
        last_tick=lambda: NOW,
        clock=ManualClock(NOW),
        stale_after=timedelta(seconds=60),
        within_s=0.4,
    )
    assert await readiness.problem() == "the database did not answer within 0.4 s"
    assert looked == []  # the answer did not wait for the look at the migrations to end


# -- logs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "level", "traceback"),
    [
        (BAD_GATEWAY, "WARNING", False),
        (OperationalError("SELECT", {}, ConnectionRefusedError("refused")), "WARNING", False),
        (TimeoutError(), "WARNING", False),
        (AttributeError("'list' object has no attribute 'get'"), "ERROR", True),
    ],
)
async def test_a_failed_poll_is_one_warning_unless_it_is_a_bug(
    session_factory: async_sessionmaker[AsyncSession],
    timers: TimerStore,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    level: str,
    traceback: bool,
) -> None:
    follower = Follower()
    follower.poll_failure = failure
    loop = scheduler(session_factory, follower, ManualClock(NOW), retry_after=timedelta(0))

    loop.start()
    try:
        async with asyncio.timeout(A_WHILE):
            await follower.polled_again.wait()  # the failure was logged, the loop went on
    finally:
        # Stopped, not cancelled, before the database fixture closes (see above).
        await loop.stop(grace=timedelta(seconds=5))

    record = next(r for r in caplog.records if "iteration failed" in r.getMessage())
    assert record.levelname == level
    assert (record.exc_info is not None) is traceback
    if not traceback:
        assert type(failure).__name__ in record.getMessage()
        assert "SELECT" not in record.getMessage()  # no SQL in a warning line


# -- retention -------------------------------------------------------------------------------


async def test_old_claims_and_deliveries_are_pruned_hourly_and_audit_events_stay(
    session_factory: async_sessionmaker[AsyncSession], timers: TimerStore
) -> None:
    claims, deliveries = ClaimStore(session_factory), DeliveryLog(session_factory)
    audit = AuditLog(session_factory)
    clock = ManualClock(NOW)
    old = NOW - timedelta(days=31)
    await claims.claim(key="promote:r-1:relay:canary", action="promote", actor="U1", now=old)
    await claims.claim(key="promote:r-2:relay:canary", action="promote", actor="U1", now=NOW)
    await deliveries.remember(
        delivery_id="d-old", event="workflow_job", rollout_id=None, received_at=old
    )
    await deliveries.remember(
        delivery_id="d-new", event="workflow_job", rollout_id=None, received_at=NOW
    )
    await audit.append(at=old, actor="U1", action="promote", result="ok", rollout_id="r-1")
    rules = ProtectionRuleStore(session_factory)
    for run_id, at in ((1, old), (2, NOW)):
        await rules.remember(RuleRequest(run_id, "relay-canary-5", 7, at))
    # The looks at an npm Release run: a timer each, of no use once ended.
    ended = {"look fired old": old, "look fired new": NOW, "window fired old": old}
    for key in [*ended, "look cancelled old", "look pending"]:
        kind = "window" if key.startswith("window") else RELEASE_TIMER
        await timers.schedule(key=key, kind=kind, due_at=old, now=old)
    lease = timedelta(minutes=1)
    claimed = {t.key: t for t in await timers.claim_due(now=NOW, owner="r", lease=lease)}
    for key, at in ended.items():
        assert await timers.complete(timer_id=claimed[key].id, owner="r", now=at)
    assert await timers.release(timer_id=claimed["look pending"].id, owner="r")
    assert await timers.cancel(key="look cancelled old", now=old)
    retention = Retention(
        claims=claims, deliveries=deliveries, keep=timedelta(days=30), rules=rules, timers=timers
    )
    loop = scheduler(session_factory, Follower(), clock, retention=retention)

    await loop.prune()

    assert await claims.get("promote:r-1:relay:canary") is None
    assert await claims.get("promote:r-2:relay:canary") is not None
    assert await deliveries.remember(
        delivery_id="d-old", event="workflow_job", rollout_id=None, received_at=NOW
    )  # forgotten: new again
    assert not await deliveries.remember(
        delivery_id="d-new", event="workflow_job", rollout_id=None, received_at=NOW
    )
    assert await rules.open_for_run(1) == [] and len(await rules.open_for_run(2)) == 1
    kept = {"look fired new", "window fired old", "look pending"}
    for key in [*ended, "look cancelled old", "look pending"]:
        assert (await timers.get(key=key) is not None) is (key in kept), key
    async with session_factory() as session:
        assert len(list(await session.scalars(select(AuditEventRow)))) == 1

    # At most once an hour.
    await claims.claim(key="promote:r-3:relay:canary", action="promote", actor="U1", now=old)
    clock.advance(timedelta(minutes=59))
    await loop.prune()
    assert await claims.get("promote:r-3:relay:canary") is not None
    clock.advance(timedelta(minutes=1))
    await loop.prune()
    assert await claims.get("promote:r-3:relay:canary") is None


# -- the whole bot -----------------------------------------------------------------------------


class Flaky:
    """The bot's rollout service as the scheduler sees it, failing each timer's first attempt
    before (`before`) or after (`after`) the real handler ran, or every attempt (`always`)."""

    def __init__(self, service: RolloutService, *, fail: str) -> None:
        self.service = service
        self.fail = fail
        self.failed: set[str] = set()

    async def on_timer(self, timer: Timer) -> None:
        if self.fail == "always":
            raise BAD_GATEWAY
        if self.fail == "after":
            await self.service.on_timer(timer)
        if timer.key not in self.failed:
            self.failed.add(timer.key)
            raise BAD_GATEWAY
        if self.fail == "before":
            await self.service.on_timer(timer)

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        await self.service.on_timer_dead(timer, reason=reason)

    async def active(self) -> list[Rollout]:
        return await self.service.active()

    async def reconcile(self, rollout_id: str) -> Reconciled:
        return await self.service.reconcile(rollout_id)

    async def look_again(self, rollout: Rollout, last: Reconciled) -> Reconciled:
        return await self.service.look_again(rollout, last)

    async def find_dispatched_run(self, rollout: Rollout) -> None:
        await self.service.find_dispatched_run(rollout)


async def canary_observing(box: Sandbox, poller: Scheduler) -> Rollout:
    await deploying_canary(box)
    await poller.poll_runs()
    rollout = await box.rollout()
    assert rollout.track("relay").stage("canary").state is StageState.OBSERVING
    return rollout


def manual_scheduler(
    box: Sandbox, follower: object, clock: ManualClock, **options: object
) -> Scheduler:
    return Scheduler(
        timers=TimerStore(box.services.database.sessions),
        service=follower,  # type: ignore[arg-type]
        **poll_stores(box.services.database.sessions),
        words=messages,
        clock=clock,
        poll_interval=timedelta(seconds=10),
        rng=random.Random(3),
        **options,  # type: ignore[arg-type]
    )


async def gates(box: Sandbox, rollout_id: str) -> list[str]:
    return [
        e.result
        for e in await box.audit.list_for_rollout(rollout_id)
        if e.action == "gate" and e.stage == "canary"
    ]


@pytest.mark.parametrize("fail", ["before", "after"])
async def test_a_window_whose_timer_failed_once_is_evaluated_exactly_once(
    quiet: Sandbox, fail: str
) -> None:
    clock = ManualClock(NOW)
    poller = manual_scheduler(quiet, Flaky(quiet.services.rollouts, fail=fail), clock)
    rollout = await canary_observing(quiet, poller)
    key = window_timer_of(rollout, "relay", "canary")
    timers = TimerStore(quiet.services.database.sessions)

    assert await poller.fire_due() == 0  # the first attempts: GitHub answered 502
    retry = await timers.get(key=key)
    assert retry is not None and retry.due_at > clock() and retry.attempts == 1
    clock.advance(timedelta(minutes=1))
    assert await poller.fire_due() == 2  # the retries (canary, internal ring), later

    judged = await quiet.rollout()
    canary = judged.track("relay").stage("canary")
    assert canary.state is StageState.HOLDING and canary.verdict is not None
    assert await gates(quiet, rollout.id) == ["PASS"]
    assert sum("5% canary gate PASS" in line for line in quiet.thread()) == 1


async def test_a_timer_of_the_previous_version_finds_its_window_in_its_key(
    quiet: Sandbox,
) -> None:
    clock = ManualClock(NOW)
    poller = manual_scheduler(quiet, quiet.services.rollouts, clock)
    rollout = await canary_observing(quiet, poller)
    ends = rollout.track("relay").stage("canary").window_ends_at
    assert ends is not None
    stored = await TimerStore(quiet.services.database.sessions).get(
        key=window_timer_key(rollout.id, "relay", "canary", ends)
    )
    assert stored is not None and stored.payload is not None
    assert stored.payload["window_ends_at"] == ends.isoformat()
    # As the previous version stored it, and retried 30 s later.
    legacy = Timer(
        id=stored.id,
        key=stored.key,
        kind=stored.kind,
        due_at=ends + timedelta(seconds=30),
        created_at=stored.created_at,
        attempts=2,
        rollout_id=rollout.id,
        payload={"track": "relay", "stage": "canary"},
    )

    await quiet.services.rollouts.on_timer(legacy)

    assert await gates(quiet, rollout.id) == ["PASS"]


async def test_a_timer_of_a_kind_only_a_newer_version_knows_is_left_to_its_replicas(
    session_factory: async_sessionmaker[AsyncSession],
    timers: TimerStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mid-upgrade, a newer replica schedules a kind this version does not know: this one never
    claims it (no attempt counted, never dead-lettered), sleeps past it, and says so once."""
    clock = ManualClock(NOW)
    follower = Follower()
    loop = scheduler(session_factory, follower, clock)
    newer = await timers.schedule(key="newer:r-1", kind="from_a_newer_version", due_at=NOW, now=NOW)
    await window(timers, due=NOW + timedelta(days=1))

    for _ in range(3):
        assert await loop.fire_due() == 0
        await loop.prune()
        clock.advance(PRUNE_EVERY)
    assert follower.fired == [] and follower.dead == []
    assert await timers.next_due(kinds=TIMER_KINDS) == NOW + timedelta(days=1)
    stored = await timers.get(key=newer.key)
    assert stored is not None and stored.attempts == 0 and stored.claimed_by is None
    warned = [r for r in caplog.records if r.name == "bot.services.scheduler"]
    assert [r.levelname for r in warned] == ["WARNING"], warned
    assert "left to a newer version's replicas" in warned[0].getMessage()

    # A newer replica claims it at once.
    (claimed,) = await timers.claim_due(
        now=clock(), owner="replica-new", lease=timedelta(minutes=1)
    )
    assert claimed.key == newer.key and claimed.attempts == 1


async def test_firing_a_timer_no_handler_takes_fails_loudly(
    quiet: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The scheduler hands over only the kinds this version schedules; one without a handler
    wired is a wiring mistake: firing it fails (retried, then dead-lettered), never completes
    as if it had fired."""
    mystery = Timer(id=1, key="mystery:r-1", kind="mystery", due_at=NOW, created_at=NOW, attempts=1)
    with pytest.raises(UnhandledTimer, match="no handler for timer mystery:r-1"):
        await quiet.services.rollouts.on_timer(mystery)  # retried, then dead-lettered
    await quiet.services.rollouts.on_timer_dead(mystery, reason=Reason("it failed every attempt"))
    assert "timer mystery:r-1 of kind 'mystery' has no handler" in caplog.text


async def test_a_dead_timer_holds_the_stage_and_tells_the_thread(quiet: Sandbox) -> None:
    clock = ManualClock(NOW)
    poller = manual_scheduler(
        quiet, Flaky(quiet.services.rollouts, fail="always"), clock, max_attempts=2
    )
    rollout = await canary_observing(quiet, poller)
    timers = TimerStore(quiet.services.database.sessions)

    for _ in range(2):
        await poller.fire_due()
        clock.advance(timedelta(minutes=10))

    held = (await quiet.rollout()).track("relay").stage("canary")
    assert held.state is StageState.HOLDING and held.verdict is None
    said = await quiet.wait_for_thread("its gate could not run")
    assert "2 attempts failed" in said and "GitHub answered 502" in said
    assert "Re-evaluate now" in said and "Extend" in said
    assert await timers.dead_by_service() == {"default": 2}  # the canary's and the internal ring's
    assert await gates(quiet, rollout.id) == []
    await quiet.slack.wait_for(lambda: "the gate could not run" in quiet.card_message().rendered)
    card = quiet.card_message().rendered
    assert "observing until" not in card.split("Desktop")[0]  # the relay lane
    for button in (
        "[Extend window (+15m)]",
        "[Extend by…]",
        "[Re-evaluate now]",
        "[Promote to 50%]",
    ):
        assert button in card

    # Promote is an override of a gate that never ran: only with the button's confirmation.
    plan = quiet.services.rollouts.plan
    with pytest.raises(InvalidTransition, match="never ran"):
        promote(await quiet.rollout(), plan, track="relay", actor="U9")
    overridden = promote(await quiet.rollout(), plan, track="relay", actor="U9", override=True)
    assert [render(e.event) for e in overridden.effects if isinstance(e, Announce)] == [
        "<@U9> promoted Hosted relay to *50%* (override: the gate never ran)."
    ]

    # Extend observes again from now, with a timer of its own.
    await quiet.click("extend_window")
    again = (await quiet.rollout()).track("relay").stage("canary")
    assert again.state is StageState.OBSERVING
    assert again.window_ends_at is not None and again.window_ends_at > datetime.now(UTC)
    fresh = await timers.get(
        key=window_timer_key(rollout.id, "relay", "canary", again.window_ends_at)
    )
    assert fresh is not None and fresh.is_pending


# -- replicas ------------------------------------------------------------------------------


@pytest.fixture
async def second_replica(quiet: Sandbox) -> AsyncIterator[RolloutService]:
    """A second bot on the same database, in this process (its own locks, its own service),
    drawing in the session's chart worker (its own would start a process)."""
    runner = web.AppRunner(create_app(quiet.settings(), charts=CHARTS), access_log=None)
    await runner.setup()
    try:
        yield runner.app[SERVICES].rollouts
    finally:
        await runner.cleanup()


async def test_replicas_acting_on_one_rollout_at_once_take_turns(
    quiet: Sandbox, second_replica: RolloutService
) -> None:
    first = quiet.services.rollouts
    rollout = await deploying_canary(quiet)

    # Both replicas see the canary and the internal ring deployed at once.
    await asyncio.gather(first.reconcile(rollout.id), second_replica.reconcile(rollout.id))

    observing = await quiet.rollout()
    assert observing.track("relay").stage("canary").state is StageState.OBSERVING
    assert observing.track("desktop").stage("internal").state is StageState.OBSERVING
    await quiet.wait_for_thread("*5% canary* deployed")
    assert sum("*5% canary* deployed" in line for line in quiet.thread()) == 1

    # One replica closes the canary window while the other sees a person approve the beta
    # ring on GitHub: both changes land, the gate runs once.
    timer = await TimerStore(quiet.services.database.sessions).get(
        key=window_timer_of(observing, "relay", "canary")
    )
    assert timer is not None
    quiet.github.review(rollout.run_id, ["desktop-beta"], "approved", actor="octocat")

    await asyncio.gather(first.reconcile(rollout.id), second_replica.on_timer(timer))

    done = await quiet.rollout()
    assert done.track("relay").stage("canary").state is StageState.HOLDING
    assert done.track("desktop").stage("internal").state is StageState.PASSED
    # The verdict is taken once. (A reading whose save lost to the other replica's change
    # is read again, so the audit may hold that earlier reading too.)
    assert set(await gates(quiet, rollout.id)) == {"PASS"}
    await quiet.wait_for_thread("5% canary gate PASS")
    assert sum("5% canary gate PASS" in line for line in quiet.thread()) == 1
    await quiet.wait_for_thread("octocat approved *beta ring*")
    assert sum("octocat approved *beta ring*" in line for line in quiet.thread()) == 1
