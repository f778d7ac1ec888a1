"""Many rollouts sitting in long windows, and the database statements the bot's loops spend on
them while nothing happens: `bench/idle_queries.py` and the test that this cost does not grow
with the number of rollouts.

One rollout is driven through the sandbox until both its tracks observe their first stage;
the others are copies of it written straight into the database, each on tracks of its own (a
track runs one rollout at a time), all following the same run on the GitHub simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.adapters.slack import messages
from bot.domain.rollout import Phase, Rollout, StageState
from bot.services.scheduler import Scheduler
from sandbox.clock import ManualClock
from sandbox.harness import Sandbox
from storage.db import Database
from storage.deliveries import DeliveryLog
from storage.looks import LookStore
from storage.models import Base, RolloutRow, RolloutTrackRow, StageRow, TimerRow
from storage.outbox import OutboxStore
from storage.timers import TimerStore

POLL_INTERVAL = timedelta(seconds=15)
"""The production default of GITHUB_POLL_INTERVAL: one idle tick of the loops."""


async def observing(box: Sandbox, tag: str = "v1.4.2") -> Rollout:
    """Start and dispatch a rollout; returns it once both tracks observe their first stage
    (the box's plan sets how long)."""
    assert "Preflight" in await box.command(f"start {tag} --flags-ready")
    await box.click("dispatch")
    rollout = await box.wait_until(lambda r: r.phase is Phase.RUNNING and r.run_id is not None)
    for _ in range(100):
        rollout = await box.rollout()
        if all(track.stages[0].state is StageState.OBSERVING for track in rollout.tracks):
            return rollout
        await box.services.rollouts.reconcile(rollout.id)
        await box.slack.changed(timeout=0.1)
    raise AssertionError(f"the first stages never observed: {rollout}")


def bots_database(box: Sandbox) -> Database:
    """The database of the bot in the box's process (its engine and sessions)."""
    database = box.services.database
    assert isinstance(database, Database)
    return database


def _columns(row: Base, **changed: Any) -> dict[str, Any]:
    values = {c.key: getattr(row, c.key) for c in inspect(type(row)).column_attrs}
    return values | changed


def _renamed(value: Any, names: dict[str, str]) -> Any:
    """The plan's JSON with its tracks renamed: their keys, and each `track:` naming one."""
    if isinstance(value, list):
        return [_renamed(item, names) for item in value]
    if not isinstance(value, dict):
        return value
    renamed = {
        key: names.get(item, item) if key == "track" and isinstance(item, str) else item
        for key, item in value.items()
    }
    tracks = renamed.get("tracks")
    if isinstance(tracks, dict):
        renamed["tracks"] = {names.get(k, k): v for k, v in tracks.items()}
    return {key: _renamed(item, names) for key, item in renamed.items()}


async def copy_rollout(box: Sandbox, rollout: Rollout, count: int) -> None:
    """Write `count` copies of `rollout` (its tracks, stages and pending timers) into the
    bot's database, the copy n on tracks named `<track>-n`."""
    sessions = bots_database(box).sessions
    async with sessions.begin() as session:
        original = await session.get_one(RolloutRow, rollout.id)
        tracks = (
            await session.scalars(
                select(RolloutTrackRow).where(RolloutTrackRow.rollout_id == rollout.id)
            )
        ).all()
        stages = (
            await session.scalars(select(StageRow).where(StageRow.rollout_id == rollout.id))
        ).all()
        timers = (
            await session.scalars(
                select(TimerRow).where(
                    TimerRow.rollout_id == rollout.id, TimerRow.fired_at.is_(None)
                )
            )
        ).all()
        for n in range(1, count + 1):
            names = {track.track: f"{track.track}-{n}" for track in tracks}
            copy_id = f"{rollout.id}-{n}"
            session.add(
                RolloutRow(**_columns(original, id=copy_id, plan=_renamed(original.plan, names)))
            )
            await session.flush()
            session.add_all(
                RolloutTrackRow(**_columns(t, rollout_id=copy_id, track=names[t.track]))
                for t in tracks
            )
            session.add_all(
                StageRow(**_columns(s, rollout_id=copy_id, track=names[s.track])) for s in stages
            )
            session.add_all(
                TimerRow(
                    **_columns(
                        t,
                        id=None,
                        rollout_id=copy_id,
                        key=t.key.replace(rollout.id, copy_id),
                        payload=_renamed(t.payload, names),
                    )
                )
                for t in timers
            )


@contextlib.contextmanager
def statements(engine: AsyncEngine, *, this_task: bool = False) -> Iterator[list[str]]:
    """Every statement the engine sends to the database meanwhile (SQLAlchemy's
    `before_cursor_execute`), in order; with `this_task`, only the current task's (not those
    of the bot's own loops, which run beside it on their own time)."""
    sent: list[str] = []
    task = asyncio.current_task()

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not this_task or asyncio.current_task() is task:
            sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)


class IdleLoops:
    """The bot's scheduler (with its poller) and its outbox loop, stepped one pass at a time on
    a clock of their own: one `tick` is what each loop does in one idle pass (the scheduler
    fires what is due, polls the runs whose look is due, reads when to wake; the outbox
    delivers what is due, reads when to wake)."""

    def __init__(self, box: Sandbox) -> None:
        sessions = bots_database(box).sessions
        self.clock = ManualClock(datetime.now(UTC))
        self._timers = TimerStore(sessions)
        self._outbox_store = OutboxStore(sessions)
        self._outbox = box.services.rollouts.effects.outbox
        self.scheduler = Scheduler(
            timers=self._timers,
            service=box.services.rollouts,
            words=messages,
            looks=LookStore(sessions),
            deliveries=DeliveryLog(sessions),
            clock=self.clock,
            poll_interval=POLL_INTERVAL,
        )

    async def tick(self) -> None:
        await self.scheduler.fire_due()
        await self.scheduler.poll_runs()
        await self.scheduler.prune()
        await self._timers.next_due()
        await self._outbox.deliver_due()
        await self._outbox_store.next_due()
        self.clock.advance(POLL_INTERVAL)


async def statements_of_each_tick(box: Sandbox, loops: IdleLoops, ticks: int) -> list[int]:
    """The statements the stepped loops send in each of `ticks` idle ticks."""
    counts = []
    for _ in range(ticks):
        with statements(bots_database(box).engine, this_task=True) as sent:
            await loops.tick()
        counts.append(len(sent))
    return counts
