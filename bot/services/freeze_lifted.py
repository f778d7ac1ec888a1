"""The threads of the rollouts a `/rollout freeze` held, told once it is lifted (`/rollout
unfreeze`, one service's or `--all`) by a durable timer (`FREEZE_LIFTED_TIMER`, one per freeze
lifted) written in the same transaction as its removal (`storage.lane_holds`): a failure, a
crash or a restart once the freeze is lifted delays the telling (the scheduler retries it, on
any replica), never answers the person with an error, and each thread is told once (its claim
and its reply are one write; a freeze's end is claimed per hold, `bot.services.freeze_ends`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from functools import partial

from bot.domain.freeze import FREEZE_END_TIMER, Freeze, LaneHold, freeze_key
from bot.domain.freeze_all import lifted_freeze
from bot.domain.reasons import Reason
from bot.domain.rollout import (
    Event,
    FreezeEnded,
    FreezeLiftedHolding,
    Rollout,
    ScheduleFrozen,
    held_by_freezes,
)
from bot.services.freeze_ends import (
    FreezeEnds,
    OnceOutbox,
    dispatch_frozen,
    end_lifted_watches,
    rewatch,
    tell_threads_once,
)
from bot.services.lane_controls import LaneControls
from bot.services.records import Timer

log = logging.getLogger(__name__)


class FreezeLifted:
    """Fires the timers of kind FREEZE_LIFTED_TIMER of one service (wired by `bot.wiring`)."""

    def __init__(self, *, lane: LaneControls, outboxes: OnceOutbox) -> None:
        self._lane = lane
        self._outboxes = outboxes

    async def on_timer(self, timer: Timer) -> None:
        """Tell the threads of the scheduled dispatches the lifted freeze was to hold, then
        those of the rollouts it held, each once (a retry tells only those not told yet)."""
        by, at, lifted = lifted_freeze(timer.payload or {}, timer.service)
        await self._tell_lifted(timer.key, by, lifted)
        await self._tell_held(timer.key, by, lifted, since=at)

    async def _tell_lifted(self, key: str, by: str, lifted: LaneHold) -> None:
        """Tell the thread of each scheduled dispatch that `lifted` was to hold (as told when
        it was declared: the freeze put back) and nothing holds now that it goes then."""
        lane = self._lane.lane
        active = await self._lane.rollouts.active()
        held = await lane.held_then(active, lifted=lifted)
        now_held = await lane.held_then(active)
        lifted_key = freeze_key(lifted.actor, lifted.since)
        said = [
            (rollout, ScheduleFrozen(was, lifted_by=by))
            for rollout in active
            if (was := held.get(rollout.id)) is not None
            and rollout.id not in now_held
            and was.freeze.key == lifted_key
        ]
        await self._once(key, said)

    async def _tell_held(self, key: str, by: str, lifted: LaneHold, *, since: datetime) -> None:
        """Tell the thread of each rollout a freeze held (`promote: auto` stages held for a
        Promote, a scheduled dispatch that did not go) that the freeze was lifted and what
        still waits for a person: nothing ships by itself when a freeze ends. The freeze still
        holding that rollout (its override and roll-back pass counted), if any, is named, and
        its end watched instead of the lifted one's. With nothing holding it any more, this is
        the end of its hold, told once: not what a watch of the freeze's end firing since the
        unfreeze (`since`) told already, nor again by it. Each rollout is read again once its
        watches are cancelled: a hold saved after the first read, whose gate found the watch
        still pending (nothing more to set, `watch_after_hold`), is told here."""
        rollouts = self._lane.rollouts
        effects = rollouts.effects
        for seen, seen_plan in await rollouts.active_with_plans():
            if not held_by_freezes(seen, seen_plan) and dispatch_frozen(seen) is None:
                continue
            still = await rewatch(effects, self._lane.lane, seen)
            rollout, plan = await effects.with_plan(seen.id)
            held, dispatch_at = held_by_freezes(rollout, plan), dispatch_frozen(rollout)
            if not held and dispatch_at is None:  # moved on meanwhile (a Promote, a stop)
                continue
            lifted_holding = partial(_lifted_event, by, lifted, still, since)
            # Where a freeze's end is told once per hold: an unfreeze racing the end's timer
            # tells what it did not (the timers' handler, `bot.services.freeze_ends`).
            ends = rollouts.handler_of(FREEZE_END_TIMER)
            claims: list[str] = []
            if isinstance(ends, FreezeEnds):
                watches = await ends.watches_since(rollout, since)
                if still is None:
                    await ends.tell_once(
                        rollout, plan, lifted_holding, watches=watches, unless=watches
                    )
                    continue
                # A retry once a freeze holds it again says nothing when the lift (or the end)
                # was told already, as nothing held it.
                claims = ends.told_claims(rollout, plan, watches)
            if held or still is None:
                said = [(rollout, lifted_holding(held, dispatch_at))]
                await self._once(f"{key}:held", said, unless=claims)

    async def _once(
        self, key: str, events: Sequence[tuple[Rollout, Event]], *, unless: Sequence[str] = ()
    ) -> None:
        effects = self._lane.rollouts.effects
        await tell_threads_once(effects, self._outboxes, key, events, unless=unless)

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        """The log says which threads' telling gave up; the watches of the lifted freeze's end
        it did not cancel tell that end now, as when it was lifted (`end_lifted_watches`), not
        at its old end. A scheduled dispatch it was to hold learns at its time, when it goes."""
        log.error("the unfreeze timer %s gave up telling its threads: %s", timer.key, reason.text)
        _, at, lifted = lifted_freeze(timer.payload or {}, timer.service)
        await end_lifted_watches(self._lane.rollouts.effects, self._lane.lane, lifted, at=at)


def _lifted_event(
    by: str,
    lifted: LaneHold,
    still: Freeze | None,
    at: datetime,
    stages: tuple[str, ...],
    dispatch_at: datetime | None,
) -> Event:
    """What a rollout's thread is told of `lifted`, lifted `by` someone `at`: its held `stages`
    (the freeze `still` holding them, if any), else the end of its scheduled dispatch's hold."""
    if stages:
        return FreezeLiftedHolding(by, lifted.actor, stages, still)
    return FreezeEnded(at, dispatch_at=dispatch_at)
