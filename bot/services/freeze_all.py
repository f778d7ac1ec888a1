"""`/rollout freeze --all` and `/rollout unfreeze --all`: every configured service's release
lane frozen (or its `/rollout freeze` lifted) at once, for an incident or a holiday.

The same rules as one freeze per service (`bot.services.lane_controls`), applied once for the
whole command where they are the asker's: only an approver of EVERY service may (else refused,
naming the services they do not approve, and nothing changed); the Slack delivery is claimed
once (a retry of the command is dropped, and a second service never takes the command for a
retry); the end is read once, as a single freeze reads it (the asker's Slack time zone). Then
each service's hold and its audit event (`command:freeze` with `all`) are written in ONE
transaction (`LaneHolds.take_all`): a failure freezes nothing. Each service's scheduled
dispatches it will hold are told in their threads as one service's freeze tells them, by a
timer written in that transaction (`bot.services.freeze_all_told`): a failure or a crash after
it delays them (retried, as any timer), never repeats them. For an unfreeze each rollout it
held is told.
Each other release channel (for an unfreeze, each whose services had a freeze lifted) is told
once, by a notice of the services released there (`bot.domain.freeze_all`) written to the
outbox in that same transaction: a crash after it still tells them (any replica delivers it),
and a retry of the command writes none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from bot.domain.controls import Control
from bot.domain.errors import InvalidCommand, NotAuthorized
from bot.domain.freeze import LANE_FREEZE, Freeze, LaneHold
from bot.domain.freeze_all import LanesTold, elsewhere, frozen_elsewhere, unfrozen_elsewhere
from bot.services.lane_controls import (
    Froze,
    LaneControls,
    freeze_in_force,
    tell_lifted_later,
    tell_scheduled_later,
)
from bot.services.outbox_messages import lanes_notice
from bot.services.records import NewAuditEvent, NewMessage, NewTimer, Told
from bot.services.requests import Entry, Origin, current_entry


class AllLanes(Protocol):
    """Every service's holds, written together (`storage.lane_holds.LaneHoldStore`)."""

    async def take_all(
        self,
        holds: Sequence[LaneHold],
        audited: Callable[[LaneHold, LaneHold], NewAuditEvent],
        *,
        now: datetime,
        told: Told,
        timer: Callable[[LaneHold, LaneHold], NewTimer | None],
    ) -> list[LaneHold]: ...

    async def release_all(
        self,
        kind: str,
        services: Sequence[str],
        audited: Callable[[LaneHold], NewAuditEvent],
        *,
        now: datetime,
        told: Told,
        timer: Callable[[LaneHold], NewTimer | None],
    ) -> list[LaneHold]: ...


@dataclass
class _Notices:
    """What the other release channels are told of the holds stored or removed (`told`, made
    of them in the transaction), kept to be delivered once written."""

    told: Callable[[list[LaneHold]], Mapping[str, LanesTold]]
    written: list[NewMessage] = field(default_factory=list)

    def __call__(self, holds: list[LaneHold]) -> list[NewMessage]:
        self.written = [lanes_notice(channel, one) for channel, one in self.told(holds).items()]
        return self.written

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(message.channel_id for message in self.written)

    async def send(self, lane: LaneControls) -> None:
        """Deliver them now, or once Slack can (the outbox's loop, any replica)."""
        await lane.rollouts.effects.outbox.send(self.written, written=True)


@dataclass(frozen=True)
class FrozeAll:
    """A `/rollout freeze --all`: what each service's lane holds afterwards, by service."""

    each: tuple[tuple[str, Froze], ...]
    zone: str | None = None
    """The asker's Slack time zone, when the end was a time read in it."""
    told: tuple[str, ...] = ()
    """The other release channels told."""


@dataclass(frozen=True)
class UnfrozeAll:
    """A `/rollout unfreeze --all`: the freeze lifted of each service that had one."""

    lifted: tuple[LaneHold, ...]
    untouched: tuple[str, ...]
    """The services with no `/rollout freeze` in force (nothing lifted there)."""
    still: tuple[tuple[str, Freeze], ...] = ()
    """The services whose lane stays frozen afterwards (the plan's calendar), and by what."""
    told: tuple[str, ...] = ()
    """The other release channels told (those whose services had a freeze lifted)."""


@dataclass(frozen=True)
class FreezeAll:
    """Freeze or unfreeze every service's lane; `here` is the lane of the service the command
    is audited and answered for (the channel's first)."""

    each: tuple[LaneControls, ...]
    lanes: AllLanes
    here: LaneControls

    async def freeze(self, origin: Origin, *, until: str, reason: str) -> FrozeAll:
        async with self.here.access.audited(origin, Control.FREEZE):
            entry = await self._admitted(origin, Control.FREEZE)
            now = self.here.clock()
            end, zone = await self.here.freeze_end_of(origin.actor, until, now)
            names = [one.lane.service for one in self.each]
            detail: dict[str, Any] = {
                **entry.detail,
                "all": names,
                "reason": reason,
                "until": end.isoformat(),
            }
            if zone is not None:
                detail.update(until_typed=until, time_zone=zone)
            entry.detail.update(detail)

            def audited(asked: LaneHold, in_force: LaneHold) -> NewAuditEvent:
                kept = {}
                if in_force != asked and in_force.until is not None:
                    kept = {
                        "kept_freeze": in_force.reason,
                        "kept_by": in_force.actor,
                        "kept_until": in_force.until.isoformat(),
                    }
                return self._event(origin, Control.FREEZE, asked.service, {**detail, **kept})

            asked = [
                LaneHold(LANE_FREEZE, origin.actor, reason, now, end, service=name)
                for name in names
            ]
            channels, typed_in = self._elsewhere(origin), origin.channel_id
            notices = _Notices(lambda stored: frozen_elsewhere(channels, typed_in, asked, stored))

            def timer(mine: LaneHold, stored: LaneHold) -> NewTimer | None:
                return tell_scheduled_later(mine) if stored == mine else None

            in_force = await self.lanes.take_all(asked, audited, now=now, told=notices, timer=timer)
            entry.recorded = True
            self.here.rollouts.effects.timers_changed()
            await notices.send(self.here)
            froze = []
            for one, mine, stored in zip(self.each, asked, in_force, strict=True):
                shown = (await one.lane.state()).freeze
                froze.append((one.lane.service, Froze(mine, stored, shown, zone)))
            return FrozeAll(tuple(froze), zone, notices.channels)

    async def unfreeze(self, origin: Origin) -> UnfrozeAll:
        async with self.here.access.audited(origin, Control.UNFREEZE):
            entry = await self._admitted(origin, Control.UNFREEZE)
            now = self.here.clock()
            frozen = [
                one for one in self.each if freeze_in_force(await one.lane.holds.current(), now)
            ]
            if not frozen:
                raise InvalidCommand(
                    "Nothing to unfreeze: no service has a `/rollout freeze` in force (a "
                    "calendar freeze in a plan stays: override it per rollout)."
                )
            names = [one.lane.service for one in self.each]
            base: dict[str, Any] = {**entry.detail, "all": names}
            entry.detail.update(base)

            def audited(removed: LaneHold) -> NewAuditEvent:
                until = removed.until.isoformat() if removed.until else None
                lifted = {
                    "lifted_by": removed.actor,
                    "lifted_reason": removed.reason,
                    "lifted_until": until,
                }
                return self._event(origin, Control.UNFREEZE, removed.service, {**base, **lifted})

            services = [one.lane.service for one in frozen]
            channels, typed_in = self._elsewhere(origin), origin.channel_id
            notices = _Notices(
                lambda lifted: unfrozen_elsewhere(channels, typed_in, origin.actor, lifted)
            )
            # What each held is told by a timer per freeze lifted, written with the removals
            # (`bot.services.freeze_lifted`).
            lifted = partial(tell_lifted_later, by=origin.actor, at=now)
            removed = await self.lanes.release_all(
                LANE_FREEZE, services, audited, now=now, told=notices, timer=lifted
            )
            if not removed:  # lifted by someone else since it was read
                raise InvalidCommand("Nothing to unfreeze: the freezes were lifted meanwhile.")
            entry.recorded = True
            for one in frozen:
                one.rollouts.effects.timers_changed()
            await notices.send(self.here)
            untouched = tuple(name for name in names if name not in services)
            still = []
            for one in self.each:
                if (lane := (await one.lane.state()).freeze) is not None:
                    still.append((one.lane.service, lane))
            return UnfrozeAll(tuple(removed), untouched, tuple(still), notices.channels)

    def _elsewhere(self, origin: Origin) -> dict[str, tuple[str, ...]]:
        """Each release channel but the one the command was typed in, with its services."""
        channels = [(one.lane.service, one.access.release_channels) for one in self.each]
        return elsewhere(channels, origin.channel_id)

    async def _admitted(self, origin: Origin, control: Control) -> Entry:
        """Only an approver of every service: else refused naming those they do not approve,
        nothing changed. Then the Slack delivery is claimed once, for the whole command."""
        entry = current_entry.get()
        assert entry is not None  # within `audited`
        entry.detail["all"] = [one.lane.service for one in self.each]  # refused too
        refused = [
            one.lane.service
            for one in self.each
            if not await one.access.approvers.is_approver(origin.actor)
        ]
        if refused:
            names = ", ".join(f"`{name}`" for name in refused)
            raise NotAuthorized(
                f"`/rollout {control} --all` is for an approver of every service: you do not "
                f"approve {names}, so nothing was changed. An approver of every service may do "
                f"it, or each service's approvers `/rollout {control} <service> ...` one by one."
            )
        await self.here.once.delivery(origin, control)
        return entry

    def _event(
        self, origin: Origin, control: Control, service: str, detail: dict[str, Any]
    ) -> NewAuditEvent:
        return NewAuditEvent(
            at=self.here.clock(),
            actor=origin.actor,
            action=f"{origin.via}:{control}",
            result="ok",
            detail=detail,
            service=service,
        )
