"""The controls of the release lane: `/rollout start` (refused while frozen or locked by
someone else, unless an approver overrides the freeze), `freeze`, `unfreeze`, `lock` and
`unlock`. Each passes the release channels and approvers (`bot.services.access`), drops a Slack
retry, and is one audit event; the rules are `bot.domain.freeze`'s, applied by
`bot.services.lane.ReleaseLane`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, replace
from datetime import datetime
from functools import partial

from bot.domain.controls import CardRef, Control, describe
from bot.domain.errors import InvalidCommand, NotAuthorized
from bot.domain.freeze import (
    LANE_FREEZE,
    LANE_LOCK,
    Freeze,
    Frozen,
    LaneHold,
    Locked,
    lock_of,
)
from bot.domain.freeze_all import (
    FREEZE_ALL_TOLD_TIMER,
    FREEZE_LIFTED_TIMER,
    lifted_timer,
    told_timer,
)
from bot.domain.freeze_until import freeze_end
from bot.domain.rollout import FreezeOverridden, Rollout
from bot.domain.schedule import Schedule, ZoneNeeded, start_schedule, zone_named
from bot.domain.text import shown
from bot.services.access import Access
from bot.services.exactly_once import ExactlyOnce
from bot.services.lane import LaneClosed, ReleaseLane
from bot.services.ports import Clock
from bot.services.records import NewTimer
from bot.services.requests import Origin, current_entry, fill
from bot.services.rollouts import RolloutService

Dispatch = Callable[[Origin, CardRef], Awaitable[Rollout]]
"""The controls' Dispatch of a card (`ControlService.dispatch`)."""

TimeZoneOf = Callable[[str], Awaitable[str | None]]
"""A person's IANA time zone as Slack knows it (`users.info`), None when it cannot say."""

NO_TIME_ZONE = (
    "Slack did not tell me your time zone (`users.info` failed: the app may need to be "
    "reinstalled for its `users:read` scope), so I cannot read `{at}`: give it with an offset, "
    '`--at "tue 09:00+01:00"`.'
)

NO_FREEZE_ZONE = (
    "Slack did not tell me your time zone (`users.info` failed: the app may need to be "
    "reinstalled for its `users:read` scope), so I cannot read `{until}`: give it with an "
    "offset, such as `2026-12-24T18:00+01:00`, or `UTC` after it, or a duration such as `2h`."
)


@dataclass(frozen=True)
class Froze:
    """A `/rollout freeze`: the freeze `asked`, and the one `in_force` afterwards (a freeze
    already in force that ends later, when it is not `asked`)."""

    asked: LaneHold
    in_force: LaneHold
    lane: Freeze | None = None
    """The freeze the lane shows afterwards, with those that follow it: deploys may stay
    frozen after `in_force` ends (the plan's weekend right after it)."""
    zone: str | None = None
    """The asker's Slack time zone, when the end was a time read in it."""


@dataclass(frozen=True)
class LaneControls:
    """`/rollout start`, `freeze`, `unfreeze`, `lock` and `unlock`, by approvers, each audited."""

    lane: ReleaseLane
    _: KW_ONLY
    rollouts: RolloutService
    access: Access
    once: ExactlyOnce
    clock: Clock
    time_zone_of: TimeZoneOf
    """Where a starter's time zone is asked (Slack's `users.info`)."""
    dispatch: Dispatch | None = None
    """The controls' Dispatch, which goes on once a freeze is overridden from the card."""

    async def start(
        self,
        origin: Origin,
        *,
        tag: str,
        flags_ready: bool,
        override: str | None = None,
        at: str | None = None,
    ) -> Rollout:
        """Start a rollout, unless a freeze or someone else's lock refuses it; `override` (the
        reason) overrides a freeze for this rollout (recorded, so its dispatch passes too).
        With `at` (as typed, read in the starter's Slack time zone) its dispatch is scheduled
        then, and the freeze judged is the one known now to be in force then."""
        async with self.access.audited(origin, Control.START):
            await self._admitted(origin, Control.START)
            schedule = await self._schedule(origin.actor, at) if at is not None else None
            when = schedule.at if schedule is not None else None
            await self.lane.judge(actor=origin.actor, override=override, at=when)
            started = await self.rollouts.start(
                tag=tag,
                flags_ready=flags_ready,
                channel_id=origin.channel_id,
                actor=origin.actor,
                schedule=schedule,
            )
            fill(rollout_id=started.id)
            if override is not None:
                await self.lane.override_for(
                    rollout_id=started.id, actor=origin.actor, reason=override, at=when
                )
            return started

    async def _schedule(self, actor: str, at: str) -> Schedule:
        """The schedule `at` asks for: at the offset it names, else read in `actor`'s Slack
        time zone; raises InvalidCommand for a time that cannot be scheduled, or when Slack
        cannot say the zone a time without an offset needs."""
        now = self.clock()
        try:
            schedule = start_schedule(at, now=now, zone=None, by=actor)
        except ZoneNeeded:
            name = await self.time_zone_of(actor)
            if name is None:
                raise InvalidCommand(NO_TIME_ZONE.format(at=shown(at))) from None
            schedule = start_schedule(at, now=now, zone=zone_named(name), by=actor)
        current = current_entry.get()
        if current is not None:
            current.detail.update(at=schedule.at.isoformat(), at_typed=at, time_zone=schedule.zone)
        return schedule

    async def override_freeze(self, origin: Origin, card: CardRef, *, reason: str) -> Rollout:
        """An approver overrides the freeze in force for the card's rollout (from a refused
        Dispatch): once per card version (the exactly-once claim: a second approver is told
        who did it), recorded, audited and said in its thread; then its dispatch goes on as a
        click on that card would, its own request (audit event, claim)."""
        control = Control.OVERRIDE_FREEZE
        async with self.access.on_card(origin, control, card):
            rollout, plan = await self.access.checked(origin, control, card)
            what = describe(control, rollout, plan, card)
            await self.once.delivery(origin, control, card, what)
            if not reason.strip():
                raise InvalidCommand("An override needs a reason.")
            await self.once.once(
                origin,
                control,
                card,
                what,
                lambda: self._override(origin, rollout, reason),
                moved_past=self.access.moved_past(card, rollout, plan),
            )
        assert self.dispatch is not None, "the controls give their Dispatch"
        return await self.dispatch(replace(origin, delivery=None), card)

    async def _override(self, origin: Origin, rollout: Rollout, reason: str) -> None:
        current = current_entry.get()
        earlier = await self.lane.overridden_for(rollout_id=rollout.id)
        if earlier is not None:
            # A repeat of an override whose claim lapsed unrecorded, its dispatch not gone: the
            # freeze is overridden for that dispatch already, and its thread was told so.
            if current is not None:
                current.detail.update(overridden_by=earlier.actor, overridden_for=earlier.reason)
            return
        freeze = await self.lane.override_for(
            rollout_id=rollout.id, actor=origin.actor, reason=reason
        )
        if freeze is None:
            raise InvalidCommand("Nothing is frozen now: click Dispatch on the card.")
        if current is not None:
            current.detail.update(override_freeze=reason, freeze=freeze.reason)
        told = FreezeOverridden(origin.actor, rollout.tag, reason, freeze)
        await self.rollouts.effects.tell(rollout, told)

    async def freeze(self, origin: Origin, *, until: str, reason: str) -> Froze:
        """Freeze the lane until `until`, unless a freeze in force ends later: a freeze is
        never shortened by another (only `/rollout unfreeze` ends it early)."""
        async with self.access.audited(origin, Control.FREEZE):
            await self._admitted(origin, Control.FREEZE)
            now = self.clock()
            end, zone = await self.freeze_end_of(origin.actor, until, now)
            asked = LaneHold(LANE_FREEZE, origin.actor, reason, now, end, service=self.lane.service)
            assert asked.until is not None
            # The threads its freeze will hold are told by a timer written with it, as
            # `--all`'s are (`bot.services.freeze_all_told`): a fault once it is saved delays
            # their telling, never repeats it, and never answers the person with an error.
            told = tell_scheduled_later(asked)
            in_force = await self.lane.holds.take(asked, later=True, timer=told)
            assert in_force.until is not None
            if in_force == asked:
                self.rollouts.effects.timers_changed()
            current = current_entry.get()
            if current is not None:
                current.detail.update(reason=reason, until=asked.until.isoformat())
                if zone is not None:
                    current.detail.update(until_typed=until, time_zone=zone)
                if in_force != asked:
                    current.detail.update(
                        kept_freeze=in_force.reason,
                        kept_by=in_force.actor,
                        kept_until=in_force.until.isoformat(),
                    )
            return Froze(asked, in_force, (await self.lane.state()).freeze, zone)

    async def freeze_end_of(
        self, actor: str, until: str, now: datetime
    ) -> tuple[datetime, str | None]:
        """When a freeze `until` ends, and the zone a time with no offset was read in (the
        asker's Slack time zone), or None (a duration, an offset, UTC)."""
        try:
            return freeze_end(until, now), None
        except ZoneNeeded:
            name = await self.time_zone_of(actor)
            if name is None:
                raise InvalidCommand(NO_FREEZE_ZONE.format(until=shown(until))) from None
            zone = zone_named(name, example=f"{shown(until).replace(' ', 'T')}+01:00")
            return freeze_end(until, now, zone), name

    async def scheduled_held_by(self, freeze: str, until: datetime) -> list[tuple[Rollout, Frozen]]:
        """The scheduled dispatches the freeze `freeze` (its `Freeze.key`) until `until` will
        hold at their time, each with how it holds it."""
        active = await self.rollouts.active()
        return [
            (next(r for r in active if r.id == rollout_id), held)
            for rollout_id, held in (await self.lane.held_then(active)).items()
            if (held.freeze.key, held.freeze.until) == (freeze, until)
        ]

    async def unfreeze(self, origin: Origin) -> LaneHold:
        async with self.access.audited(origin, Control.UNFREEZE):
            await self._admitted(origin, Control.UNFREEZE)
            now = self.clock()
            # Decided before anything is removed: a refused unfreeze changes nothing. The
            # threads of what it held are told by a timer written with the removal
            # (`bot.services.freeze_lifted`): a fault once it is lifted delays them, never
            # repeats them, and never answers the person with an error.
            in_force = freeze_in_force(await self.lane.holds.current(), now)
            told = partial(tell_lifted_later, by=origin.actor, at=now)
            removed = await self.lane.holds.release(LANE_FREEZE, timer=told) if in_force else None
            if removed is not None:
                self.rollouts.effects.timers_changed()
                current = current_entry.get()
                if current is not None:
                    until = removed.until.isoformat() if removed.until else None
                    current.detail.update(
                        lifted_by=removed.actor, lifted_reason=removed.reason, lifted_until=until
                    )
            else:
                state = await self.lane.state()
                calendar = state.freeze.calendar if state.freeze is not None else None
                raise InvalidCommand(
                    f"Nothing to unfreeze: the calendar's `{calendar}` freeze is in the plan "
                    "(an approver may override it: `/rollout start <tag> --override-freeze "
                    '"<reason>"`).'
                    if calendar
                    else "Nothing to unfreeze: no `/rollout freeze` is in force."
                )
            return removed

    async def lock(self, origin: Origin, *, reason: str) -> LaneHold:
        async with self.access.audited(origin, Control.LOCK):
            await self._admitted(origin, Control.LOCK)
            current = current_entry.get()
            if current is not None:
                current.detail.update(reason=reason)
            hold = LaneHold(
                LANE_LOCK, origin.actor, reason, self.clock(), service=self.lane.service
            )
            held = await self.lane.holds.take(hold)
            if held.actor != origin.actor:
                raise LaneClosed(self.lane.words.lane_refusal_text(Locked(held)))
            return held

    async def unlock(self, origin: Origin, *, reason: str) -> LaneHold:
        """Unlock: by the holder, or by another approver who gives a reason."""
        async with self.access.audited(origin, Control.UNLOCK):
            await self._admitted(origin, Control.UNLOCK)
            lock = lock_of(await self.lane.holds.current())
            if lock is None:
                raise InvalidCommand("The release lane is not locked.")
            if lock.actor != origin.actor and not reason.strip():
                raise NotAuthorized(
                    "Someone else holds the lock: unlock it with a reason, "
                    "`/rollout unlock <reason>`."
                )
            current = current_entry.get()
            if current is not None:
                current.detail.update(holder=lock.actor, reason=reason or None)
            removed = await self.lane.holds.release(LANE_LOCK, actor=lock.actor)
            if removed is None:  # unlocked, or taken by someone else, since it was read
                holder = lock_of(await self.lane.holds.current())
                if holder is None:
                    raise InvalidCommand("The release lane is not locked.")
                who = self.access.rollouts.words.person(holder.actor)
                raise InvalidCommand(
                    f"The lock changed hands meanwhile: {who} holds it now; nothing was unlocked."
                )
            return removed

    async def _admitted(self, origin: Origin, control: Control) -> None:
        await self.access.admit(origin, control)
        await self.once.delivery(origin, control)


def tell_scheduled_later(hold: LaneHold) -> NewTimer:
    """The timer, due at once, that tells the threads of the scheduled dispatches `hold` (a
    freeze just stored) will hold at their time (`bot.services.freeze_all_told`)."""
    key, payload = told_timer(hold)
    return NewTimer(key=key, kind=FREEZE_ALL_TOLD_TIMER, due_at=hold.since, payload=payload)


def tell_lifted_later(lifted: LaneHold, *, by: str, at: datetime) -> NewTimer:
    """The timer, due at once, that tells the threads of the rollouts `lifted` (a freeze `by`
    someone lifted `at`) held (`bot.services.freeze_lifted`)."""
    key, payload = lifted_timer(lifted, by=by, at=at)
    return NewTimer(key=key, kind=FREEZE_LIFTED_TIMER, due_at=at, payload=payload)


def freeze_in_force(holds: list[LaneHold], now: datetime) -> bool:
    """Whether a `/rollout freeze` among a lane's `holds` holds it at `now` (the calendar aside)."""
    return any(
        hold.kind == LANE_FREEZE and hold.until is not None and now < hold.until for hold in holds
    )
