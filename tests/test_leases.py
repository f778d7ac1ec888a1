"""Holding a lease while working (`bot.services.leases.holding`): renewed in the background every
third of the lease while the work runs, a failed renewal reported and retried, a lost lease
reported once and not renewed, nothing after."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.services.leases import holding

LEASE = timedelta(seconds=0.09)  # a renewal every 30 ms
A_WHILE = 5.0  # seconds: far longer than the renewals a test waits for take


def ignore() -> None:
    pass


async def test_the_lease_is_renewed_while_the_work_runs_and_not_after() -> None:
    renewals = 0
    renewed_twice = asyncio.Event()

    async def renew() -> bool:
        nonlocal renewals
        renewals += 1
        if renewals == 2:
            renewed_twice.set()
        return True

    async with holding(
        renew, lease=LEASE, name="lease:test", failed=lambda error: None, lost=ignore
    ):
        await asyncio.wait_for(renewed_twice.wait(), A_WHILE)  # work longer than the lease
    done = renewals
    await asyncio.sleep(LEASE.total_seconds())  # three renewals' worth
    assert renewals == done  # the work ended: nothing renews any more


async def test_a_failed_renewal_is_reported_and_the_next_one_tried() -> None:
    failures: list[Exception] = []
    tried_again = asyncio.Event()

    async def renew() -> bool:
        if not failures:
            raise ConnectionResetError("the database went away")
        tried_again.set()
        return True

    async with holding(renew, lease=LEASE, name="lease:test", failed=failures.append, lost=ignore):
        await asyncio.wait_for(tried_again.wait(), A_WHILE)
    assert [type(error) for error in failures] == [ConnectionResetError]


async def test_a_lost_lease_is_reported_once_and_not_renewed_again() -> None:
    renewals = 0
    lost = asyncio.Event()

    async def renew() -> bool:
        nonlocal renewals
        renewals += 1
        return False  # another replica took the work over

    async with holding(renew, lease=LEASE, name="lease:test", failed=print, lost=lost.set):
        await asyncio.wait_for(lost.wait(), A_WHILE)
        await asyncio.sleep(LEASE.total_seconds())  # three renewals' worth
    assert renewals == 1


async def test_a_renewal_under_way_when_the_work_ends_is_let_finish_not_cancelled() -> None:
    """A renewal cancelled inside its UPDATE can leave SQLite locked for every writer."""
    in_renewal = asyncio.Event()
    finish_renewal = asyncio.Event()
    finished: list[bool] = []

    async def renew() -> bool:
        in_renewal.set()
        try:
            await finish_renewal.wait()  # the database is writing the new lease
        except asyncio.CancelledError:
            finished.append(False)
            raise
        finished.append(True)
        return True

    lease = timedelta(seconds=1.5)  # a renewal every 0.5 s, and 0.5 s to end one under way

    async def work() -> None:
        async with holding(renew, lease=lease, name="lease:test", failed=print, lost=ignore):
            await asyncio.wait_for(in_renewal.wait(), A_WHILE)

    ending = asyncio.create_task(work())
    await asyncio.wait_for(in_renewal.wait(), A_WHILE)
    await asyncio.sleep(0.05)  # the work has ended; its renewal is under way
    assert not ending.done()  # holding waits for the renewal
    finish_renewal.set()
    await asyncio.wait_for(ending, A_WHILE)
    assert finished == [True]


async def test_a_renewal_hung_when_the_work_ends_is_cancelled_after_a_third_of_the_lease() -> None:
    """A database that hangs must not hang the end of the work (a shutdown)."""
    in_renewal = asyncio.Event()
    cancelled = asyncio.Event()

    async def renew() -> bool:
        in_renewal.set()
        try:
            await asyncio.Event().wait()  # the database never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return True

    async with holding(renew, lease=LEASE, name="lease:test", failed=print, lost=ignore):
        await asyncio.wait_for(in_renewal.wait(), A_WHILE)
    assert cancelled.is_set()
