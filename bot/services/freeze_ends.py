"""The end of a freeze that held a rollout: its thread is told, once, what still waits for a
person (`promote: auto` stages held for a Promote, or a scheduled dispatch that did not go).

A freeze holds a rollout in two ways: a `promote: auto` stage whose gate passed holds for a
Promote (`bot.services.gating`), and a scheduled dispatch does not go at its time
(`bot.services.scheduled_starts`). Neither goes on by itself when the freeze ends (nobody
would be watching), so the thread is told then. Each hold watches the freeze's end with a
durable timer (`FREEZE_END_TIMER`, due when the lane is next free for the rollout: freezes
that follow one another are one wait), so a restart or a second replica neither loses nor
repeats it. When it fires, the lane is read again: a freeze declared or extended meanwhile is
watched to its own end instead; a rollout a person moved on meanwhile (Promote, Dispatch,
cancel) is told nothing. The thread's reply is written once per timer (`OnceOutbox.add_once`),
whatever the retries. A `/rollout unfreeze` tells the threads itself and watches again
(`rewatch`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.domain.freeze import (
    FREEZE_END_TIMER,
    Freeze,
    Frozen,
    freeze_end_timer_key,
    freeze_end_timer_payload,
)
from bot.domain.reasons import Reason
from bot.domain.rollout import FreezeEnded, Phase, Rollout, held_by_freezes
from bot.services.effects import EffectRunner
from bot.services.lane import ReleaseLane
from bot.services.outbox_messages import told
from bot.services.records import NewMessage, Timer

log = logging.getLogger(__name__)

WATCHED_SINCE = timedelta(days=1)
"""How far back `rewatch` looks for a rollout's pending timers: one overdue (the bot was down
at the freeze's end, back since a moment) is cancelled too."""


async def watch_freeze_end(effects: EffectRunner, rollout: Rollout, freeze: Freeze) -> None:
    """Watch the end of `freeze`, which holds `rollout` now (when the lane is next free): its
    thread is told then what still waits. Once per rollout, end and the freeze ending then
    (the timer's key)."""
    await effects.timers.schedule(
        key=freeze_end_timer_key(rollout.id, freeze),
        kind=FREEZE_END_TIMER,
        due_at=freeze.free_at,
        now=effects.clock(),
        rollout_id=rollout.id,
        service=rollout.service,
        payload=freeze_end_timer_payload(freeze),
    )


def dispatch_frozen(rollout: Rollout) -> datetime | None:
    """The time of the rollout's scheduled dispatch a freeze held (it waits in its preflight
    for a person), or None."""
    schedule = rollout.schedule
    if rollout.phase is not Phase.PREFLIGHT or schedule is None or schedule.held is None:
        return None
    return schedule.at if isinstance(schedule.held.lane, Frozen) else None


class OnceOutbox(Protocol):
    """The outbox's table, writing messages by the first call of a key alone, any replica
    (`storage.outbox`). Here rather than in store_ports.py, which is at the 400-line limit."""

    async def add_once(
        self, messages: Sequence[NewMessage], *, once: str, now: datetime
    ) -> bool: ...


@dataclass(kw_only=True, eq=False)
class FreezeEnds:
    """Fires the timers of kind FREEZE_END_TIMER (wired by `bot.wiring`)."""

    effects: EffectRunner
    lane: ReleaseLane
    outboxes: OnceOutbox
    """The outbox's table, where the thread's reply is written once per timer."""

    async def on_timer(self, timer: Timer) -> None:
        """The freeze's end came: tell the thread what still waits, unless the rollout moved
        on or a freeze still holds it (then watch that one's end)."""
        if timer.rollout_id is None:
            return
        rollout = await self.effects.store.get(timer.rollout_id)
        if rollout is None or rollout.phase is Phase.ENDED:
            return
        plan = await self.effects.plan_of(rollout)
        held, dispatch_at = held_by_freezes(rollout, plan), dispatch_frozen(rollout)
        if not held and dispatch_at is None:
            return
        ended = datetime.fromisoformat(str((timer.payload or {})["free_at"]))
        freeze = await self.lane.holds_promotion(rollout_id=rollout.id)
        # The same end seen a moment early (this replica's clock behind the one that claimed
        # the timer) is this one: told, never watched again under this timer's own key.
        if freeze is not None and freeze.free_at > ended:
            await watch_freeze_end(self.effects, rollout, freeze)
            return
        said = told(rollout, FreezeEnded(ended, held, dispatch_at))
        if await self.outboxes.add_once(said, once=timer.key, now=self.effects.clock()):
            await self.effects.outbox.send(said, written=True)

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        """Nothing is held by the timer itself (the stage or the preflight waits for a person
        either way): the log says it gave up."""
        log.error("the freeze-end timer %s gave up: %s", timer.key, reason.text)


async def rewatch(effects: EffectRunner, lane: ReleaseLane, rollout: Rollout) -> Freeze | None:
    """After a `/rollout unfreeze`, whose answer tells the rollout's thread: the freeze still
    holding it (returned, if any) is watched, and its other watches (of the lifted freeze's
    end) are cancelled; a watch of the same end (the plan's window that held it all along) is
    kept."""
    now = effects.clock()
    freeze = await lane.holds_promotion(rollout_id=rollout.id)
    kept = freeze_end_timer_key(rollout.id, freeze) if freeze is not None else None
    since = now - WATCHED_SINCE
    for timer in await effects.timers.of_kind(kind=FREEZE_END_TIMER, due_since=since):
        if timer.rollout_id == rollout.id and timer.is_pending and timer.key != kept:
            await effects.timers.cancel(key=timer.key, now=now)
    if freeze is not None:
        await watch_freeze_end(effects, rollout, freeze)
    return freeze
