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
cancel) is told nothing. A `/rollout unfreeze` tells the threads itself and watches again
(`rewatch`).

Each hold is told its end once, whoever tells it and in whatever order (`OnceOutbox`): the
reply claims one key per stage (and one for a scheduled dispatch) under the watch's key, so a
retry of the timer, an unfreeze racing it (which claims under every watch of the rollout still
going when it began) and a hold saved just after the end's timer read the rollout
(`watch_after_hold`, a second timer under the same watch) each tell only what nobody told.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.domain.freeze import (
    CALENDAR_FREEZE,
    FREEZE_END_TIMER,
    Freeze,
    Frozen,
    LaneHold,
    freeze_end_timer_key,
    freeze_end_timer_payload,
    freeze_key,
    hold_told_key,
    hold_watch_timer,
)
from bot.domain.freeze_all import thread_told_key
from bot.domain.plan import RolloutPlan
from bot.domain.reasons import Reason
from bot.domain.rollout import Event, FreezeEnded, Phase, Rollout, stages_held_by_freezes
from bot.services.effects import EffectRunner
from bot.services.lane import ReleaseLane
from bot.services.outbox_messages import told
from bot.services.records import NewMessage, Timer
from bot.services.requests import current_entry

log = logging.getLogger(__name__)

WATCHED_SINCE = timedelta(days=1)
"""How far back `rewatch` looks for a rollout's pending timers: one overdue (the bot was down
at the freeze's end, back since a moment) is cancelled too."""


async def watch_freeze_end(
    effects: EffectRunner, rollout: Rollout, freeze: Freeze, *, instead: Collection[str] = ()
) -> None:
    """Watch the end of `freeze`, which holds `rollout` now (when the lane is next free): its
    thread is told then what still waits. Once per rollout, end and the freeze ending then
    (the timer's key). `instead`: the keys of the watches it replaces, cancelled with it."""
    await effects.timers.schedule(
        key=freeze_end_timer_key(rollout.id, freeze),
        kind=FREEZE_END_TIMER,
        due_at=freeze.free_at,
        now=effects.clock(),
        rollout_id=rollout.id,
        service=rollout.service,
        payload=freeze_end_timer_payload(freeze),
        cancel=instead,
    )


async def watch_after_hold(
    effects: EffectRunner, rollout: Rollout, freeze: Freeze, *, hold: str
) -> None:
    """After `hold` (`track:stage`) of `rollout` was saved held by `freeze`: when the watch of
    its end already began firing (another replica's clock reached the end while this gate read
    the lane frozen), it may have read the rollout before the hold was saved: a second timer
    under the same watch tells the hold's end (only it, if nobody did: `FreezeEnds.tell_once`)."""
    key = freeze_end_timer_key(rollout.id, freeze)
    watch = await effects.timers.get(key=key)
    if watch is None or (watch.is_pending and watch.claimed_by is None):
        return  # it reads the rollout when it fires: after this save
    now = effects.clock()
    # A watch cancelled by an unfreeze (which told what it saw): the lane is free since.
    free_at = now if watch.cancelled_at is not None else freeze.free_at
    hold_key, payload = hold_watch_timer(key, hold, free_at)
    await effects.timers.schedule(
        key=hold_key,
        kind=FREEZE_END_TIMER,
        due_at=max(now, free_at),
        now=now,
        rollout_id=rollout.id,
        service=rollout.service,
        payload=payload,
    )


def _holds(rollout: Rollout, plan: RolloutPlan) -> bool:
    """Whether a freeze held a stage of `rollout` or its scheduled dispatch."""
    return bool(stages_held_by_freezes(rollout, plan)) or dispatch_frozen(rollout) is not None


_DISPATCH = "dispatch"
"""The claim of a scheduled dispatch's hold, beside those of stages (`track:stage`)."""


def _told_claims(
    rollout: Rollout, plan: RolloutPlan, watches: Collection[str]
) -> dict[str, list[str]]:
    """The claims that the end of each of `watches` was told, by hold of `rollout` (`track:stage`
    of its stages a freeze held, and its scheduled dispatch a freeze held)."""
    holds = list(stages_held_by_freezes(rollout, plan))
    holds += [_DISPATCH] if dispatch_frozen(rollout) is not None else []
    return {hold: [hold_told_key(watch, hold) for watch in watches] for hold in holds}


def dispatch_frozen(rollout: Rollout) -> datetime | None:
    """The time of the rollout's scheduled dispatch a freeze held (it waits in its preflight
    for a person), or None."""
    schedule = rollout.schedule
    if rollout.phase is not Phase.PREFLIGHT or schedule is None or schedule.held is None:
        return None
    return schedule.at if isinstance(schedule.held.lane, Frozen) else None


class OnceOutbox(Protocol):
    """The outbox's table, writing each group of messages by the first call to claim its keys
    alone, any replica (`storage.outbox`). Here rather than in store_ports.py, which is at the
    400-line limit."""

    async def add_each_once(
        self,
        groups: Mapping[str, Sequence[str]],
        messages: Callable[[list[str]], Sequence[NewMessage]],
        *,
        now: datetime,
        unless: Collection[str] = (),
    ) -> list[str]: ...


async def tell_threads_once(
    effects: EffectRunner,
    outboxes: OnceOutbox,
    key: str,
    events: Sequence[tuple[Rollout, Event]],
    *,
    unless: Collection[str] = (),
) -> None:
    """Tell each rollout's thread its event, unless the timer `key` told it already (a retry
    of the timer tells only those not told yet: each thread's claim and reply are one write),
    or a claim of `unless` is taken (then nothing)."""
    said: list[NewMessage] = []

    def saying(new: list[str]) -> list[NewMessage]:
        for rollout, event in events:
            if rollout.id in new:
                said.extend(told(rollout, event))
        return said

    groups = {rollout.id: [thread_told_key(key, rollout.id)] for rollout, _ in events}
    now = effects.clock()
    if groups and await outboxes.add_each_once(groups, saying, now=now, unless=unless):
        await effects.outbox.send(said, written=True)


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
        if not _holds(rollout, plan):
            return
        payload = timer.payload or {}
        ended = datetime.fromisoformat(str(payload["free_at"]))
        freeze = await self.lane.holds_promotion(rollout_id=rollout.id)
        # The same end seen a moment early (this replica's clock behind the one that claimed
        # the timer) is this one: told, never watched again under this timer's own key.
        if freeze is not None and freeze.free_at > ended:
            await watch_freeze_end(self.effects, rollout, freeze)
            return
        # A previous version's reply claimed the timer's own key: told already.
        watch = str(payload.get("watch", timer.key))
        await self.tell_once(
            rollout,
            plan,
            lambda held, dispatch_at: FreezeEnded(ended, held, dispatch_at),
            watches=[watch],
            unless=[timer.key],
        )

    async def tell_once(
        self,
        rollout: Rollout,
        plan: RolloutPlan,
        event: Callable[[tuple[str, ...], datetime | None], Event],
        *,
        watches: Collection[str],
        unless: Collection[str] = (),
    ) -> bool:
        """Tell `rollout`'s thread `event` of its stages held by a freeze and its scheduled
        dispatch a freeze held, those of them not yet told the end of any of `watches` (the
        keys of the watches of the freeze that held them); whether anything was told."""
        stages = stages_held_by_freezes(rollout, plan)
        dispatch_at = dispatch_frozen(rollout)
        groups = _told_claims(rollout, plan, watches)
        said: list[NewMessage] = []

        def saying(new: list[str]) -> list[NewMessage]:
            held = tuple(stages[hold] for hold in new if hold in stages)
            said.extend(told(rollout, event(held, dispatch_at if _DISPATCH in new else None)))
            return said

        new = await self.outboxes.add_each_once(
            groups, saying, now=self.effects.clock(), unless=unless
        )
        if not new:
            return False
        current = current_entry.get()
        if current is not None and len(new) < len(groups):
            current.detail.update(freeze_end_told_before=sorted(set(groups) - set(new)))
        await self.effects.outbox.send(said, written=True)
        return True

    def told_claims(
        self, rollout: Rollout, plan: RolloutPlan, watches: Collection[str]
    ) -> list[str]:
        """The claims of `tell_once` that the end of one of `watches` was told for a hold of
        `rollout`: one claimed, that end (or a lift) was told in its thread."""
        return [key for keys in _told_claims(rollout, plan, watches).values() for key in keys]

    async def watches_since(self, rollout: Rollout, since: datetime) -> list[str]:
        """The watches of `rollout`'s freeze ends still going at `since`: not fired nor
        cancelled before then (an unfreeze begun then claims their replies)."""
        timers = await self.effects.timers.of_kind(
            kind=FREEZE_END_TIMER, due_since=since - WATCHED_SINCE
        )
        return sorted(
            {
                str((timer.payload or {}).get("watch", timer.key))
                for timer in timers
                if timer.rollout_id == rollout.id
                and (timer.fired_at is None or timer.fired_at >= since)
                and (timer.cancelled_at is None or timer.cancelled_at >= since)
                and timer.dead_at is None
            }
        )

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        """Nothing is held by the timer itself (the stage or the preflight waits for a person
        either way): the log says it gave up."""
        log.error("the freeze-end timer %s gave up: %s", timer.key, reason.text)


LIFTED = "lifted"
"""The timer under a watch that tells the lifted freeze's end now (`end_lifted_watches`)."""


async def end_lifted_watches(
    effects: EffectRunner, lane: ReleaseLane, lifted: LaneHold, *, at: datetime
) -> None:
    """The pending watches of the end of the lane's freeze `lifted` (by its `Freeze.key`:
    alike for each service of a `--all`), lifted `at` by an unfreeze whose timer gave up
    before it cancelled them: each is replaced, in one write, by a timer under the same watch
    due now that tells the end as `at` (or watches the freeze that holds the rollout since),
    so a thread is told the end when the telling gave up, truthfully, once; not at the lifted
    freeze's old end, as if it had lasted until then. A watch set since it was declared of a
    plan's window it ran straight into (one wait, watched under the window's key) has such a
    timer too unless that wait holds the rollout now, but is kept: should the window begin
    before the timer fires, the timer watches it again under that key (a cancelled key is not
    written again), and its end is told once either way."""
    now, freeze = effects.clock(), freeze_key(lifted.actor, lifted.since)
    for watch in await effects.timers.of_kind(kind=FREEZE_END_TIMER, due_since=at):
        rollout_id = watch.rollout_id
        if not watch.is_pending or rollout_id is None or watch.service != lane.service:
            continue
        if "watch" in (watch.payload or {}):
            continue  # a stage's second timer, or one of these, tells under its watch
        own = watch.key.endswith(f":{freeze}")
        if not own and not (watch.created_at >= lifted.since and await _ran_into(lane, watch)):
            continue
        key, payload = hold_watch_timer(watch.key, LIFTED, at)
        await effects.timers.schedule(
            key=key,
            kind=FREEZE_END_TIMER,
            due_at=now,
            now=now,
            rollout_id=rollout_id,
            service=watch.service,
            payload=payload,
            cancel=[watch.key] if own else (),
        )


async def _ran_into(lane: ReleaseLane, watch: Timer) -> bool:
    """Whether `watch` (pending) watches the end of a plan's window that is no longer the wait
    that holds its rollout (a freeze ran into it, and was lifted before it began)."""
    if f":{CALENDAR_FREEZE}:" not in watch.key or watch.rollout_id is None:
        return False
    holding = await lane.holds_promotion(rollout_id=watch.rollout_id)
    return holding is None or freeze_end_timer_key(watch.rollout_id, holding) != watch.key


async def rewatch(effects: EffectRunner, lane: ReleaseLane, rollout: Rollout) -> Freeze | None:
    """After a `/rollout unfreeze`, whose answer tells the rollout's thread: the freeze still
    holding it (returned, if any) is watched, and its other watches (of the lifted freeze's
    end) are cancelled; a watch of the same end (the plan's window that held it all along) is
    kept. The new watch and the cancels are one write: a fault leaves the old watches, which
    tell the end once, late; never nothing watching the hold, nor two watches telling it."""
    now = effects.clock()
    freeze = await lane.holds_promotion(rollout_id=rollout.id)
    kept = freeze_end_timer_key(rollout.id, freeze) if freeze is not None else None
    since = now - WATCHED_SINCE
    others = [
        timer.key
        for timer in await effects.timers.of_kind(kind=FREEZE_END_TIMER, due_since=since)
        if timer.rollout_id == rollout.id and timer.is_pending and timer.key != kept
    ]
    if freeze is not None:
        await watch_freeze_end(effects, rollout, freeze, instead=others)
    elif others:
        await effects.timers.cancel_all(keys=others, now=now)
    return freeze
