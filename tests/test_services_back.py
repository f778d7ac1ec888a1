"""A service taken out of the services file and put back: the window timer of its rollout
that died meanwhile (nobody could fire it, nobody could be told) is told once it is back."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from cleared import cleared_rollout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_scheduler import Follower, scheduler
from test_services_corners import NOW, no_service_scheduler

from bot.domain.rollout import Phase
from bot.plan_file import load_plan
from bot.services.scheduler import PRUNE_EVERY
from sandbox.clock import ManualClock
from storage.rollout_store import RolloutStore
from storage.timers import TimerStore


async def test_a_window_timer_that_died_while_its_service_was_out_is_told_once_it_is_back(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """billing-api's canary window ended while billing-api was out of the services file: its
    timer was retried, then dead-lettered, and nobody told (`EveryService` only logs it). Put
    back, only a scheduled dispatch's dead timer was told again: the canary stayed
    "observing" for ever, its window long past, no gate run, the thread silent."""
    clock = ManualClock(NOW)
    plan = load_plan(None)
    rollout = cleared_rollout(plan, now=NOW, rollout_id="r-000000000out")
    out = replace(rollout, service="billing-api", phase=Phase.RUNNING, run_id=4242)
    await RolloutStore(session_factory, clock=clock).create(rollout=out, plan=plan)
    timers = TimerStore(session_factory)
    await timers.schedule(
        key="w",
        kind="window",
        due_at=NOW,
        now=NOW,
        rollout_id=out.id,
        payload={"track": "relay", "stage": "canary", "ends": NOW.isoformat()},
        service="billing-api",
    )
    away = no_service_scheduler(session_factory, clock, poll_interval=timedelta(hours=1))
    for _ in range(8):
        await away.fire_due()
        clock.advance(timedelta(seconds=5))
    dead = await timers.get(key="w")
    assert dead is not None and dead.dead_at is not None
    await away.prune()  # still out: kept for when it is back, nothing raised

    back = Follower()
    loop = scheduler(session_factory, back, clock)
    clock.advance(PRUNE_EVERY)
    await loop.prune()  # as the bot starts, the service back
    clock.advance(PRUNE_EVERY)
    await loop.prune()  # an hour later: told once

    (told,) = back.dead
    assert told[0].key == "w"
    assert "billing-api" in told[1] and "ROLLOUT_SERVICES" in told[1], told[1]
