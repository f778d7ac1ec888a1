"""Holding a lease while working (`bot.services.leases.holding`): renewed in the background every
third of the lease while the work runs, a failed renewal reported and retried, nothing after."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.services.leases import holding

LEASE = timedelta(seconds=0.09)  # a renewal every 30 ms
A_WHILE = 5.0  # seconds: far longer than the renewals a test waits for take


async def test_the_lease_is_renewed_while_the_work_runs_and_not_after() -> None:
    renewals = 0
    renewed_twice = asyncio.Event()

    async def renew() -> None:
        nonlocal renewals
        renewals += 1
        if renewals == 2:
            renewed_twice.set()

    async with holding(renew, lease=LEASE, name="lease:test", failed=lambda error: None):
        await asyncio.wait_for(renewed_twice.wait(), A_WHILE)  # work longer than the lease
    done = renewals
    await asyncio.sleep(LEASE.total_seconds())  # three renewals' worth
    assert renewals == done  # the work ended: nothing renews any more


async def test_a_failed_renewal_is_reported_and_the_next_one_tried() -> None:
    failures: list[Exception] = []
    tried_again = asyncio.Event()

    async def renew() -> None:
        if not failures:
            raise ConnectionResetError("the database went away")
        tried_again.set()

    async with holding(renew, lease=LEASE, name="lease:test", failed=failures.append):
        await asyncio.wait_for(tried_again.wait(), A_WHILE)
    assert [type(error) for error in failures] == [ConnectionResetError]
