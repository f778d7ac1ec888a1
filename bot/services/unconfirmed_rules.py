"""A protection rule request whose installation GitHub could not confirm as it came (an error,
no answer within the webhook's wait): held, not lost.

The delivery is remembered, and a durable timer written with it in one transaction carries the
request (`UNCONFIRMED_TIMER`); the request itself is not kept, so until GitHub confirms it
nothing answers, approves, posts or counts it. The timer asks GitHub for the installation
again, with backoff (`PACE`): once GitHub tells it, the request is taken in by the webhook's own
step (`GitHubWebhooks.keep`), as if confirmed at once, or refused (another installation). Each
retry is the next timer of a chain (`<kind>:<delivery id>:<n>`), so any replica fires it, once;
and one request has one chain: the same request under another delivery id (its run,
environment and deployment: `RuleRequest.key`) is not held again while its chain goes on.
The asking stops `GIVE_UP_AFTER` the request, also for an ask that comes due later (the bot was
down): GitHub fails a job still waiting for its environment's approval after 30 days, so
nothing waits for the answer after that.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.domain.errors import GitHubError
from bot.domain.protection_rules import GITHUB_WAIT_LIMIT, UNCONFIRMED_TIMER, RuleRequest
from bot.domain.reasons import Reason
from bot.services.backoff import Backoff
from bot.services.ports import AppInstallation, Clock
from bot.services.records import NewTimer, Timer
from bot.services.store_ports import ProtectionRuleRequests, Timers

log = logging.getLogger("bot.services.webhooks")  # the webhook's lines, as operators filter them

PACE = Backoff(base=timedelta(minutes=2), cap=timedelta(hours=1), floor=timedelta(minutes=1))
"""How long the n-th ask waits: never within the minute of the last lookup (one a minute at
most, `bot.adapters.github.installation_check`), at most an hour apart once GitHub stays away."""

GIVE_UP_AFTER = GITHUB_WAIT_LIMIT
"""How long GitHub lets a workflow wait on environment approvals."""

Keep = Callable[[RuleRequest], Coroutine[Any, Any, object]]
"""The webhook's step after the check: keep the request, answer it if a rollout follows its run."""


class Unconfirmed(BaseModel):
    """A request held until GitHub tells whether its installation is the App's: a timer's
    payload."""

    model_config = ConfigDict(frozen=True)

    delivery_id: str
    installation: int
    """The installation the request names."""
    request: RuleRequest
    number: int = 1

    def key(self, number: int) -> str:
        return f"{UNCONFIRMED_TIMER}:{self.delivery_id}:{number}"

    @property
    def what(self) -> str:
        request = self.request
        return f"protection rule request for {request.environment} of run {request.run_id}"


def refused(what: str, installation: int, repository: str) -> None:
    """The WARNING line of a request GitHub says is not of the App's installation."""
    log.warning(
        "%s names GitHub App installation %s, which GitHub does not give as the App's "
        "installation on %s: ignored",
        what,
        installation,
        repository,
    )


@dataclass(kw_only=True, eq=False)
class UnconfirmedRules:
    """Holds a service's unconfirmed requests, and fires their timers (one kind)."""

    rules: ProtectionRuleRequests
    timers: Timers
    installation: AppInstallation
    keep: Keep
    clock: Clock
    service: str
    repository: str
    timers_changed: Callable[[], None] = lambda: None
    rng: random.Random = field(default_factory=random.Random)

    async def hold(
        self, request: RuleRequest, *, delivery_id: str, installation: int, error: str
    ) -> bool:
        """Remember the delivery with the first timer; False when it was taken in before, or
        its request is held already (the same deployment's request under another delivery id:
        its asks are under way, and one answer is due to GitHub)."""
        held = Unconfirmed(delivery_id=delivery_id, installation=installation, request=request)
        due = self.clock() + PACE.delay(held.number, self.rng)
        if not await self.rules.hold(
            request,
            delivery_id=delivery_id,
            timer=_timer(held, due),
            asks_for=lambda payload: _carrying(payload, request),
        ):
            return False
        self.timers_changed()
        log.warning(
            "%s names GitHub App installation %s, which GitHub could not confirm (%s): held "
            "unconfirmed, nothing answers it until GitHub does; asking again at %s",
            held.what,
            installation,
            error,
            due.isoformat(timespec="seconds"),
        )
        return True

    async def on_timer(self, timer: Timer) -> None:
        held = Unconfirmed.model_validate(timer.payload or {})
        if await self._timers_went_on(held):
            return
        if self.clock() >= held.request.requested_at + GIVE_UP_AFTER:
            # Asked of GitHub no more, even when it could answer now (the ask came due while
            # the bot was down): the request's job has failed.
            log.error(
                "%s names GitHub App installation %s, which GitHub has not confirmed in %d "
                "days: dropped; GitHub has failed its job by now",
                held.what,
                held.installation,
                GIVE_UP_AFTER.days,
            )
            return
        try:
            ours = await self.installation.is_ours(held.installation)
        except GitHubError as error:
            await self._again(held, error.message)
            return
        if not ours:
            refused(held.what, held.installation, self.repository)
            return
        log.info(
            "%s names GitHub App installation %s, which GitHub now confirms: taken in",
            held.what,
            held.installation,
        )
        await self.keep(held.request)

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        """Taking the confirmed request in failed every attempt (the database): said once,
        its delivery forgotten so that redelivering it takes it in."""
        delivery_id = (timer.payload or {}).get("delivery_id")
        if delivery_id:
            await self.rules.forget_delivery(delivery_id)
        log.error(
            "protection rule request of delivery %s could not be taken in: %s; redeliver it "
            "from the App's delivery log",
            delivery_id or timer.key,
            reason.text,
        )

    async def _timers_went_on(self, held: Unconfirmed) -> bool:
        """Fired again after it wrote the next ask (its replica died before completing it):
        the chain went on without it."""
        return await self.timers.get(key=held.key(held.number + 1)) is not None

    async def _again(self, held: Unconfirmed, error: str) -> None:
        # The request may have come again while this ask ran (`hold` brought the payload up
        # to date): the next ask carries what the timer carries now.
        current = await self.timers.get(key=held.key(held.number))
        if current is not None and current.payload:
            held = Unconfirmed.model_validate(current.payload)
        now = self.clock()
        after = held.model_copy(update={"number": held.number + 1})
        due = now + PACE.delay(after.number, self.rng)
        timer = _timer(after, due)
        await self.timers.schedule(
            key=timer.key,
            kind=timer.kind,
            due_at=due,
            now=now,
            payload=timer.payload,
            service=self.service,
        )
        self.timers_changed()
        log.warning(
            "%s names GitHub App installation %s, which GitHub still could not confirm (%s): "
            "asking again at %s",
            held.what,
            held.installation,
            error,
            due.isoformat(timespec="seconds"),
        )


def _carrying(payload: Mapping[str, Any], request: RuleRequest) -> Mapping[str, Any] | None:
    """None when the pending ask's `payload` is not about `request` (its run, environment and
    deployment); else the payload of the chain once `request` came again: the later of the
    two. Without a deployment a re-run's request repeats the first attempt's body (the same
    key), and GitHub holds the re-run's job 30 days from its own request: the chain gives up
    then, and takes the re-run's request in. A body sent again later by someone who saw it
    only makes the chain ask longer than GitHub holds the job (taken in then, it is found
    over with its run)."""
    held = Unconfirmed.model_validate(payload)
    if held.request.key != request.key:
        return None
    if request.requested_at <= held.request.requested_at:
        return payload
    return held.model_copy(update={"request": request}).model_dump(mode="json")


def _timer(held: Unconfirmed, due: datetime) -> NewTimer:
    return NewTimer(
        key=held.key(held.number),
        kind=UNCONFIRMED_TIMER,
        due_at=due,
        payload=held.model_dump(mode="json"),
    )
