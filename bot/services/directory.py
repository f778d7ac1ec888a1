"""Which service a request is for: a command by its channel and the service it names, a click
by the rollout it is on, a webhook by its repository, a person's App Home by what they may see.

Each service has its own `Services` (plan, repository, channels, approvers, lane); the
directory only finds the right one, so a click on one service's card never reaches another's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.domain.errors import InvalidCommand, NotAReleaseChannel, ServiceNotConfigured
from bot.domain.freeze_until import every_service
from bot.domain.github_events import repository_of
from bot.domain.plan import RolloutPlan
from bot.domain.protection_rules import RuleRequest
from bot.domain.reasons import Reason
from bot.domain.rollout import Rollout
from bot.domain.rollout_command import (
    Subcommand,
    allowed_in_direct_messages,
    is_direct_message,
    named_service,
)
from bot.domain.service import misspelt_service
from bot.domain.text import shown
from bot.services.catalog import Services
from bot.services.failures import UnknownService
from bot.services.following import Reconciled
from bot.services.freeze_all import AllLanes, FreezeAll
from bot.services.records import Timer
from bot.services.requests import Origin
from bot.services.rollouts import RolloutService
from bot.services.telemetry import Telemetry
from bot.services.webhooks import GitHubWebhooks

log = logging.getLogger(__name__)

_FREE_TEXT = frozenset({Subcommand.KILL, Subcommand.LOCK, Subcommand.UNLOCK})
"""Subcommands whose text is a reason (not a freeze's: its first word is its end), whose first
word may name another service or be a typo of one: which service it acts on is asked, never
guessed (`ServiceDirectory.for_command`)."""
_TAGGED = frozenset({Subcommand.START, Subcommand.HISTORY})
"""Subcommands whose first word is a tag, which may look like a service's name (`search-v2`):
a refusal of it as a typo says how to give it to the channel's service."""


class RolloutLookup(Protocol):
    """Any service's rollout by its id (the store, not scoped to one service)."""

    async def get(self, rollout_id: str) -> Rollout | None: ...


class RunRequests(Protocol):
    """The protection-rule requests kept for a run, of any service."""

    async def for_run(self, run_id: int) -> list[RuleRequest]: ...


class ActiveRollouts(RolloutLookup, Protocol):
    """Every service's active rollouts, in one read."""

    async def active(self) -> list[Rollout]: ...

    async def active_with_plans(self) -> list[tuple[Rollout, RolloutPlan]]: ...


def _names(services: Iterable[Services]) -> str:
    return ", ".join(f"`{one.service.name}`" for one in services)


def _not_released(service: str) -> str:
    return (
        f"the service `{service}`, which this bot no longer releases: it is not in "
        "ROLLOUT_SERVICES (removed or renamed since the card was posted). Nothing was changed."
    )


@dataclass(frozen=True)
class ServiceDirectory:
    """Every service's `Services`, in the configured order, and how to find one."""

    each: tuple[Services, ...]
    rollouts: ActiveRollouts
    """Every service's rollouts (for routing and the App Home)."""
    runs: RunRequests
    lanes: AllLanes
    """Every service's lane holds, written together (`/rollout freeze --all`)."""
    _by_name: dict[str, Services] = field(init=False, repr=False, compare=False)
    _by_repository: dict[str, Services] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.service.name: s for s in self.each})
        object.__setattr__(
            self, "_by_repository", {s.service.repository.casefold(): s for s in self.each}
        )

    @property
    def telemetry(self) -> Telemetry:
        """What the listeners count (the same for every service)."""
        return self.each[0].telemetry

    @property
    def several(self) -> bool:
        """Whether commands may name a service (more than one is configured)."""
        return len(self.each) > 1

    def named(self, name: str) -> Services | None:
        return self._by_name.get(name)

    def in_channel(self, channel_id: str) -> tuple[Services, ...]:
        """The services released in this channel."""
        return tuple(s for s in self.each if channel_id in s.service.release_channels)

    def of_repository(self, full_name: str) -> Services | None:
        """The service of a GitHub repository (`repository.full_name`, any case)."""
        return self._by_repository.get(full_name.casefold())

    def fallback(self, channel_id: str | None) -> Services:
        """The service a request that names none goes to, to be refused or audited: the
        channel's first, or the first of all."""
        here = self.in_channel(channel_id) if channel_id is not None else ()
        return (here or self.each)[0]

    def webhooks_of(self, payload: Mapping[str, Any]) -> GitHubWebhooks:
        """The webhooks of the service whose repository a delivery is about: by its name, else
        by its id (a repository renamed or transferred since it was configured); a repository
        of no service goes to the first service's, which ignores (and counts) it."""
        found = self.of_repository(repository_of(payload))
        if found is None:
            found = next((s for s in self.each if s.webhooks.name_of(payload) is not None), None)
        return (found or self.each[0]).webhooks

    async def of_rollout(self, rollout_id: str, *, channel_id: str | None = None) -> Services:
        """The service a rollout belongs to. A rollout the bot does not know goes to the
        channel's first service (or the first of all), whose controls refuse it as unknown;
        one of a service no longer configured is refused here (ServiceNotConfigured)."""
        rollout = await self.rollouts.get(rollout_id)
        if rollout is None:
            return self.fallback(channel_id)
        if (found := self.named(rollout.service)) is None:
            raise ServiceNotConfigured(
                f"This card is of rollout {rollout_id} (`{rollout.tag}`) of "
                f"{_not_released(rollout.service)} Put `{rollout.service}` back in the file "
                "to act on it here."
            )
        return found

    async def of_run(self, run_id: int, *, channel_id: str | None = None) -> Services:
        """The service of a run the bot did not start (its kept protection-rule requests say
        which repository it is of); a run the bot does not know goes to the channel's first
        service, whose controls refuse it; one of a service no longer configured is refused
        here (ServiceNotConfigured)."""
        requests = await self.runs.for_run(run_id)
        for request in requests:
            if (found := self.named(request.service)) is not None:
                return found
        if requests:
            raise ServiceNotConfigured(
                f"Run {run_id} is of {_not_released(requests[0].service)} The run still "
                "waits on GitHub: review it on its page."
            )
        return self.fallback(channel_id)

    @asynccontextmanager
    async def refusal_audited(self, origin: Origin, name: str) -> AsyncIterator[None]:
        """A click or form on a card of a service no longer configured is refused, and the
        refusal audited as the channel's first service's (as a command naming none is)."""
        try:
            yield
        except ServiceNotConfigured:
            async with self.fallback(origin.channel_id).controls.audited(origin, name):
                raise

    def status_of_channel(self, text: str, *, channel_id: str) -> tuple[Services, ...]:
        """The services a bare `/rollout status` shows in a channel of several: all of them
        (empty for any other command: `for_command` finds its one service)."""
        name, rest, subcommand = named_service(text, self._by_name)
        here = self.in_channel(channel_id)
        bare = len(rest.split()) == 1  # else refused by `for_command` (a misspelt service)
        if name is None and subcommand is Subcommand.STATUS and bare and len(here) > 1:
            return here
        return ()

    def every_lane(self, text: str, *, channel_id: str) -> FreezeAll | None:
        """`/rollout freeze --all` and `unfreeze --all`: every service's lane, answered for the
        channel's first service; typed in any service's release channel (else refused). None
        for any other command. A service named before `--all` is refused: it asks for one lane
        and every lane, and freezing that one alone would leave the others open."""
        name, rest, subcommand = named_service(text, self._by_name)
        if subcommand not in (Subcommand.FREEZE, Subcommand.UNFREEZE):
            return None
        every, _ = every_service(rest.split(maxsplit=1)[1] if len(rest.split()) > 1 else "")
        if not every:
            return None
        if name is not None:
            raise InvalidCommand(
                f"`--all` is every service, and `{name}` names one, so nothing was changed: "
                f"`/rollout {subcommand.value} --all ...` for every service, or `/rollout "
                f"{subcommand.value} {name} ...` for `{name}` alone."
            )
        here = self.in_channel(channel_id)
        if not here:
            raise self._nowhere(f"{subcommand.value} --all")
        lanes = tuple(one.controls.lane for one in self.each)
        return FreezeAll(lanes, self.lanes, here[0].controls.lane)

    def for_command(self, text: str, *, channel_id: str) -> tuple[Services, str]:
        """The service a `/rollout` command is for, and its text without the service's name:
        the one it names, else the channel's only one. Raises, listing the choices, when that
        is missing or ambiguous, or when its first word names another service, or nearly does,
        and the command would act on this channel's service (`_asked`)."""
        name, rest, subcommand = named_service(text, self._by_name)
        here = self.in_channel(channel_id)
        self._asked(text, name, subcommand, here)
        if name is not None:
            return self._by_name[name], rest
        if not self.several or subcommand in (None, Subcommand.HELP):
            # Help, or text the parser refuses (an unknown subcommand), for any service.
            return self.fallback(channel_id), rest
        if len(here) == 1:
            return here[0], rest
        what = subcommand.value if subcommand is not None else "start"
        if here:
            raise InvalidCommand(
                f"This channel releases several services: name one, as in "
                f"`/rollout {what} {here[0].service.name} ...`. The services here: "
                f"{_names(here)}."
            )
        direct = subcommand is not None and is_direct_message(channel_id)
        if direct and subcommand is not None and allowed_in_direct_messages(subcommand):
            raise InvalidCommand(
                f"Name the service, as in `/rollout {what} {self.each[0].service.name}`. "
                f"The services: {_names(self.each)}."
            )
        raise self._nowhere(what)

    def _asked(
        self,
        text: str,
        name: str | None,
        subcommand: Subcommand | None,
        here: tuple[Services, ...],
    ) -> None:
        """Refuses, changing nothing, a command whose first word is another service's name
        followed by a reason (`/rollout kill relay calls time out` in search's channel: relay
        named, search's kill-switch would trip), or a typo of a service's name read otherwise
        (`start billing-apl v1.4.2`: a tag); a reason whose first word is a typo of the
        channel's only service's name is that service's, as it is."""
        if subcommand is None or subcommand is Subcommand.HELP or not self.several:
            return
        reason = len(text.split(maxsplit=2)) > 2  # words after the name (`kill relay` has none)
        if name is not None:  # its command, refused by the service outside its channels
            if reason and subcommand in _FREE_TEXT and here and self._by_name[name] not in here:
                raise self._elsewhere(name, subcommand, here)
            return
        misspelt = misspelt_service(text, self._by_name)
        if misspelt is None or (subcommand in _FREE_TEXT and here == (self._by_name[misspelt[1]],)):
            return
        typed, meant = shown(misspelt[0]), misspelt[1]
        ours = here[0].service.name if here else None
        what = "this reason" if subcommand in _FREE_TEXT else f"the tag `{typed}`"
        as_given = (
            f" To give `{ours}` {what}, name it first: "
            f"`/rollout {subcommand.value} {ours} {typed} ...`."
            if subcommand in _FREE_TEXT | _TAGGED and ours is not None
            else ""
        )
        raise InvalidCommand(
            f"`{typed}` is not a service of this bot: did you mean `{meant}`? The services: "
            f"{_names(self.each)}. Nothing was changed.{as_given}"
        )

    def _elsewhere(
        self, name: str, subcommand: Subcommand, here: tuple[Services, ...]
    ) -> NotAReleaseChannel:
        """`/rollout kill relay <reason>` typed in a channel of other services."""
        where = ", ".join(
            self._by_name[name].rollouts.words.channel(c)
            for c in self._by_name[name].service.release_channels
        )
        ours = here[0].service.name
        return NotAReleaseChannel(
            f"`{name}` is released in {where}, not in this channel. Nothing was changed: for "
            f"`{name}`, type `/rollout {subcommand.value} {name} ...` there; for "
            f"`{ours}` with this reason, name the service first: `/rollout {subcommand.value} "
            f"{ours} {name} ...`."
            + (f" The services here: {_names(here)}." if len(here) > 1 else "")
        )

    def _nowhere(self, what: str) -> NotAReleaseChannel:
        """`/rollout <what>` typed outside every service's release channels."""
        return NotAReleaseChannel(
            f"`/rollout {what}` only works in a release channel of a service. The services: "
            + "; ".join(
                f"`{s.service.name}` in "
                + ", ".join(s.rollouts.words.channel(c) for c in s.service.release_channels)
                for s in self.each
            )
            + "."
        )


class EveryService:
    """What the one scheduler drives (`RolloutFollower`), over every service: the active
    rollouts of all in one read, each timer and rollout handed to its own service's use cases."""

    def __init__(self, each: Iterable[RolloutService], *, rollouts: ActiveRollouts) -> None:
        self._by_name = {service.service: service for service in each}
        self._rollouts = rollouts
        self._service_of: dict[str, str] = {}
        """The service of each rollout the last `active` read (what `reconcile` is given)."""
        self._unfollowed: set[str] = set()
        """The rollouts of services no longer configured that the log named already."""

    def _of(self, name: str) -> RolloutService:
        found = self._by_name.get(name)
        if found is None:  # a row of a service no longer configured: retried, then dead
            raise UnknownService(f"no service {name!r} is configured (ROLLOUT_SERVICES)")
        return found

    async def on_timer(self, timer: Timer) -> None:
        await self._of(timer.service).on_timer(timer)

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        """A dead timer of a service no longer configured has nobody to tell: it stays
        dead-lettered, and the log says so once, as it is dead-lettered; handed over again
        (`GivingUp.tell_again`: it is dead already), UnknownService says the service is still
        out, and it waits for the service's return."""
        found = self._by_name.get(timer.service)
        if found is None and timer.dead_at is not None:
            log.debug("dead timer %s: service %r still not configured", timer.key, timer.service)
            raise UnknownService(f"no service {timer.service!r} is configured (ROLLOUT_SERVICES)")
        if found is None:
            log.error(
                "timer %s of service %r, which is not configured, is dead-lettered: %s",
                timer.key,
                timer.service,
                reason,
            )
            return
        await found.on_timer_dead(timer, reason=reason)

    async def active(self) -> list[Rollout]:
        """The active rollouts of the configured services. One of a service no longer in the
        file is not followed: the log says so once (per process), not at each poll."""
        active = []
        for rollout in await self._rollouts.active():
            if rollout.service in self._by_name:
                active.append(rollout)
            elif rollout.id not in self._unfollowed:
                self._unfollowed.add(rollout.id)
                log.warning(
                    "rollout %s (%s) of service %r is not followed: the service is not in "
                    "ROLLOUT_SERVICES (removed or renamed); put it back to follow the rollout",
                    rollout.id,
                    rollout.tag,
                    rollout.service,
                )
        self._service_of = {rollout.id: rollout.service for rollout in active}
        return active

    async def reconcile(self, rollout_id: str) -> Reconciled:
        service = self._service_of.get(rollout_id)
        if service is None:
            rollout = await self._rollouts.get(rollout_id)
            if rollout is None:
                raise UnknownService(f"rollout {rollout_id} is not in the database")
            service = rollout.service
        return await self._of(service).reconcile(rollout_id)

    async def look_again(self, rollout: Rollout, last: Reconciled) -> Reconciled:
        return await self._of(rollout.service).look_again(rollout, last)

    async def find_dispatched_run(self, rollout: Rollout) -> None:
        await self._of(rollout.service).find_dispatched_run(rollout)
