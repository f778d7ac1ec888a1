"""One service's `/rollout freeze` and `/rollout unfreeze` tell the threads of the rollouts the
freeze holds (docs/freezes.md) as `--all` does: by a timer written with the change, so a fault
after the change is saved delays the telling (retried, on any replica) and never turns the
person's answer into an error. Three services in two channels (`test_services`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from figures import passing_sandbox
from replicas import in_process_replica
from sqlalchemy.exc import OperationalError
from test_freeze_all import box, frozen_services, holds, thread_replies  # noqa: F401 - fixtures

from bot.domain.freeze import Frozen
from bot.domain.freeze_all import FREEZE_ALL_TOLD_TIMER
from bot.domain.rollout import Rollout
from handlers.app_keys import SERVICES
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox
from storage.lane_holds import LaneHoldStore
from storage.timers import TimerStore


async def scheduled_relay(box: Sandbox) -> None:  # noqa: F811
    started = await box.command(
        'start relay v3.0.0 --flags-ready --at "tomorrow 09:00"', channel=RELEASE_CHANNEL
    )
    assert "dispatch scheduled for" in started, started


def failing_once(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> list[int]:  # noqa: F811
    """relay's lane fails to read its scheduled dispatches' freezes once (the database
    blinking): the calls counted."""
    relay = box.services
    assert relay.service.name == "relay"
    held_then, calls = relay.lane.held_then, []

    async def failing(rollouts: Sequence[Rollout]) -> dict[str, Frozen]:
        calls.append(len(calls))
        if len(calls) == 1:
            raise OperationalError("SELECT lane_holds", {}, ConnectionResetError("reset"))
        return await held_then(rollouts)

    monkeypatch.setattr(relay.lane, "held_then", failing)
    return calls


async def test_a_fault_after_a_freeze_is_saved_still_tells_its_thread_once(
    box: Sandbox,  # noqa: F811
    holds: LaneHoldStore,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database fails as relay's scheduled dispatches are read, after the freeze was saved:
    the person is told the freeze is in force (it is), and the thread is told once (retried).
    Before, the answer was an error and the thread was never told."""
    await scheduled_relay(box)
    calls = failing_once(box, monkeypatch)

    said = await box.command("freeze relay 48h INC-9 outage")
    assert f"<@{RELEASE_MANAGER}> froze deploys until" in said, said
    assert await frozen_services(holds) == ["relay"]
    await box.pass_time(timedelta(minutes=5))  # the telling is retried
    await box.slack.wait_for(lambda: bool(thread_replies(box, RELEASE_CHANNEL, "will be held")))
    assert calls
    await box.pass_time(timedelta(minutes=5))
    said_held = thread_replies(box, RELEASE_CHANNEL, "will be held then")
    assert len(said_held) == 1, said_held
    assert "INC-9 outage" in said_held[0]


async def test_two_replicas_firing_the_freezes_timer_at_once_tell_its_thread_once(
    tmp_path: Path, database_url: str
) -> None:
    """The timer written with one service's freeze, fired by both replicas side by side (past
    the timers table's own claim: a lease run out mid-telling), and by the scheduler: the
    thread's claim and its reply are one write, so it is told once."""
    async with (
        passing_sandbox(tmp_path, database_url=database_url) as sandbox,
        in_process_replica(sandbox) as second,
    ):
        started = await sandbox.command('start v3.0.0 --flags-ready --at "tomorrow 09:00"')
        assert "dispatch scheduled for" in started, started
        said = await sandbox.command("freeze 48h INC-9 outage")
        assert f"<@{RELEASE_MANAGER}> froze deploys until" in said, said
        (timer,) = await TimerStore(sandbox.services.database.sessions).of_kind(
            kind=FREEZE_ALL_TOLD_TIMER, due_since=sandbox.clock() - timedelta(days=1)
        )
        replicas = (sandbox.services.rollouts, second[SERVICES].rollouts)
        handlers = [rollouts.handler_of(FREEZE_ALL_TOLD_TIMER) for rollouts in replicas]
        assert None not in handlers
        await asyncio.gather(*(h.on_timer(timer) for h in handlers if h is not None))
        await sandbox.slack.wait_for(
            lambda: bool(thread_replies(sandbox, RELEASE_CHANNEL, "will be held"))
        )
        await sandbox.pass_time(timedelta(minutes=5))
        said_held = thread_replies(sandbox, RELEASE_CHANNEL, "will be held then")
        assert len(said_held) == 1, said_held
