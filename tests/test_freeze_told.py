"""One service's `/rollout freeze` tells the threads of the scheduled dispatches it will hold
(docs/scheduled-starts.md) as `--all` does, and `/rollout unfreeze` (one service's or `--all`)
the threads of what the freeze held: by a timer written with the change, so a fault after the
change is saved delays the telling (retried, on any replica) and never turns the person's
answer into an error; a timer tells of its own freeze only. Three services in two channels
(`test_services`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from figures import passing_sandbox
from replicas import in_process_replica
from sqlalchemy.exc import OperationalError
from test_freeze_all import (  # noqa: F401 - fixtures
    box,
    frozen_services,
    holds,
    outbox_emptied,
    thread_replies,
)
from test_services import SEARCH_CHANNEL

from bot.domain.freeze import Frozen, LaneHold
from bot.domain.freeze_all import FREEZE_ALL_TOLD_TIMER, FREEZE_LIFTED_TIMER
from bot.domain.rollout import Rollout
from bot.services.records import Timer
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


def failing_once(
    box: Sandbox,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    call: int = 1,
) -> list[int]:
    """relay's lane fails to read its scheduled dispatches' freezes once, at its `call`th read
    (the database blinking): the calls counted."""
    relay = box.services
    assert relay.service.name == "relay"
    held_then, calls = relay.lane.held_then, []

    async def failing(rollouts: Sequence[Rollout], **lifted: LaneHold) -> dict[str, Frozen]:
        calls.append(len(calls))
        if len(calls) == call:
            raise OperationalError("SELECT lane_holds", {}, ConnectionResetError("reset"))
        return await held_then(rollouts, **lifted)

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


async def fired_by_both(sandbox: Sandbox, second: web.Application, kind: str) -> None:
    """The one timer of `kind` fired by both replicas side by side, past the timers table's own
    claim (a lease run out mid-telling), as the scheduler fires it too."""
    (timer,) = await TimerStore(sandbox.services.database.sessions).of_kind(
        kind=kind, due_since=sandbox.clock() - timedelta(days=1)
    )
    replicas = (sandbox.services.rollouts, second[SERVICES].rollouts)
    handlers = [rollouts.handler_of(kind) for rollouts in replicas]
    assert None not in handlers
    await asyncio.gather(*(h.on_timer(timer) for h in handlers if h is not None))


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
        await fired_by_both(sandbox, second, FREEZE_ALL_TOLD_TIMER)
        await sandbox.slack.wait_for(
            lambda: bool(thread_replies(sandbox, RELEASE_CHANNEL, "will be held"))
        )
        await sandbox.pass_time(timedelta(minutes=5))
        said_held = thread_replies(sandbox, RELEASE_CHANNEL, "will be held then")
        assert len(said_held) == 1, said_held


async def test_each_freeze_stored_is_told_once_and_one_kept_is_not(box: Sandbox) -> None:  # noqa: F811
    """A freeze that extends the one in force, and one declared again after an unfreeze, are
    each told (their timers' keys are their own); one kept out by a freeze ending later writes
    no timer, and says nothing."""
    await scheduled_relay(box)
    timers = TimerStore(box.services.database.sessions)

    async def told_after(command: str, replies: int, written: int) -> None:
        await box.command(command)
        await box.slack.wait_for(
            lambda: len(thread_replies(box, RELEASE_CHANNEL, "will be held then")) >= replies
        )
        since = box.clock() - timedelta(days=1)
        assert len(await timers.of_kind(kind=FREEZE_ALL_TOLD_TIMER, due_since=since)) == written

    await told_after("freeze relay 48h INC-9 outage", replies=1, written=1)
    await told_after("freeze relay 24h INC-9 shorter", replies=1, written=1)  # kept
    await told_after("freeze relay 72h INC-9 longer", replies=2, written=2)
    assert "lifted the freeze" in await box.command("unfreeze relay")
    await told_after("freeze relay 48h INC-9 again", replies=3, written=3)
    await box.pass_time(timedelta(minutes=5))
    said = thread_replies(box, RELEASE_CHANNEL, "will be held then")
    assert len(said) == 3, said
    assert "INC-9 longer" in said[1] and "INC-9 again" in said[2]


async def test_a_freezes_timer_retried_after_it_was_lifted_does_not_tell_the_next_one_again(
    box: Sandbox,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database blinks as the freezes' timers fire, while the freeze is lifted and declared
    again by the same person to the same end: each timer is retried once it is back. The second
    freeze's timer tells the thread; the first one's tells nothing (its freeze is gone). Before,
    it took the second freeze for its own (same person, same end) and told the thread again."""
    await scheduled_relay(box)
    handler = box.services.rollouts.handler_of(FREEZE_ALL_TOLD_TIMER)
    assert handler is not None
    on_timer, blinking = handler.on_timer, [True]
    failed: list[str] = []

    async def failing(timer: Timer) -> None:
        if blinking:
            failed.append(timer.key)
            raise OperationalError("SELECT rollouts", {}, ConnectionResetError("reset"))
        await on_timer(timer)

    monkeypatch.setattr(handler, "on_timer", failing)
    end = (box.clock() + timedelta(days=3)).strftime("%Y-%m-%d %H:%M")
    said = await box.command(f"freeze relay {end} UTC INC-9 outage")
    assert f"<@{RELEASE_MANAGER}> froze deploys until" in said, said
    assert "lifted the freeze" in await box.command("unfreeze relay")
    said = await box.command(f"freeze relay {end} UTC INC-9 outage, again")
    assert f"<@{RELEASE_MANAGER}> froze deploys until" in said, said
    async with asyncio.timeout(30):
        while len(set(failed)) < 2:  # each timer failed once
            await box.slack.changed(timeout=0.1)
    blinking.clear()
    timers = TimerStore(box.services.database.sessions)
    since = box.clock() - timedelta(days=1)

    async def unfired() -> bool:
        written = await timers.of_kind(kind=FREEZE_ALL_TOLD_TIMER, due_since=since)
        return any(timer.fired_at is None for timer in written)

    async with asyncio.timeout(60):  # both are retried, and fire
        while await unfired():
            # To each retry's due time (seconds ahead): a jump past the outbox's lease while a
            # reply is on its way would post it again, by design.
            if not await box.skip_to_next_timer(at_most=timedelta(seconds=30)):
                await box.slack.changed(timeout=0.1)
    # A timer is marked fired once its reply is written; the reply is posted a moment later.
    await box.slack.wait_for(lambda: bool(thread_replies(box, RELEASE_CHANNEL, "will be held")))
    await outbox_emptied(box)
    said_held = thread_replies(box, RELEASE_CHANNEL, "will be held then")
    assert len(said_held) == 1 and "INC-9 outage, again" in said_held[0], said_held


async def test_a_fault_after_an_unfreeze_is_saved_still_tells_its_thread_once(
    box: Sandbox,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database fails as relay's scheduled dispatches are read again, after the freeze was
    lifted: the person is told it is lifted (it is), and the thread that was told the freeze
    would hold its dispatch is told once that it goes then (retried). Before, the answer was an
    error and the thread's last word was that the dispatch would be held."""
    await scheduled_relay(box)
    await box.command("freeze relay 48h INC-9 outage")
    await box.slack.wait_for(lambda: bool(thread_replies(box, RELEASE_CHANNEL, "will be held")))
    calls = failing_once(box, monkeypatch, call=2)

    said = await box.command("unfreeze relay")
    assert f"<@{RELEASE_MANAGER}> lifted the freeze" in said, said
    await box.pass_time(timedelta(minutes=5))  # the telling is retried
    await box.slack.wait_for(lambda: bool(thread_replies(box, RELEASE_CHANNEL, "lifted the")))
    assert len(calls) >= 2
    await box.pass_time(timedelta(minutes=5))
    lifted = thread_replies(box, RELEASE_CHANNEL, "lifted the freeze")
    assert len(lifted) == 1 and "> goes then" in lifted[0], lifted


async def test_a_fault_after_an_unfreeze_of_every_service_tells_each_thread_once(
    box: Sandbox,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As above for `unfreeze --all`: relay's telling fails once, after every freeze was
    lifted. Before, the answer was an error, and search's thread (told after relay's) was never
    told its dispatch goes."""
    for name, channel in (("relay", RELEASE_CHANNEL), ("search", SEARCH_CHANNEL)):
        started = await box.command(
            f'start {name} v3.0.0 --flags-ready --at "tomorrow 09:00"', channel=channel
        )
        assert "dispatch scheduled for" in started, started
    await box.command("freeze --all 48h INC-9 outage")
    for channel in (RELEASE_CHANNEL, SEARCH_CHANNEL):
        await box.slack.wait_for(lambda c=channel: bool(thread_replies(box, c, "will be held")))
    failing_once(box, monkeypatch, call=2)

    said = await box.command("unfreeze --all")
    assert f"<@{RELEASE_MANAGER}> lifted the freeze of `relay`" in said, said
    await box.pass_time(timedelta(minutes=5))  # relay's telling is retried
    for channel in (RELEASE_CHANNEL, SEARCH_CHANNEL):
        await box.slack.wait_for(lambda c=channel: bool(thread_replies(box, c, "lifted the")))
    await box.pass_time(timedelta(minutes=5))
    for channel in (RELEASE_CHANNEL, SEARCH_CHANNEL):
        assert len(thread_replies(box, channel, "lifted the freeze")) == 1, channel


async def test_two_replicas_firing_an_unfreezes_timer_at_once_tell_its_thread_once(
    tmp_path: Path, database_url: str
) -> None:
    """The timer written with an unfreeze, fired by both replicas side by side (past the timers
    table's own claim) and by the scheduler: each thread's claim and its reply are one write."""
    async with (
        passing_sandbox(tmp_path, database_url=database_url) as sandbox,
        in_process_replica(sandbox) as second,
    ):
        started = await sandbox.command('start v3.0.0 --flags-ready --at "tomorrow 09:00"')
        assert "dispatch scheduled for" in started, started
        await sandbox.command("freeze 48h INC-9 outage")
        await sandbox.slack.wait_for(
            lambda: bool(thread_replies(sandbox, RELEASE_CHANNEL, "will be held"))
        )
        assert "lifted the freeze" in await sandbox.command("unfreeze")
        await fired_by_both(sandbox, second, FREEZE_LIFTED_TIMER)
        await sandbox.slack.wait_for(
            lambda: bool(thread_replies(sandbox, RELEASE_CHANNEL, "lifted the freeze"))
        )
        await outbox_emptied(sandbox)
        await sandbox.pass_time(timedelta(minutes=5))
        lifted = thread_replies(sandbox, RELEASE_CHANNEL, "lifted the freeze")
        assert len(lifted) == 1, lifted
