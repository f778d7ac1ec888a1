"""The poller: follows the runs of active rollouts on GitHub, each at its own pace, within the
request budget it shares with people, one replica at a time.

Each run is polled at its own pace: every `poll_interval` while things move, twice as long
after each look that found nothing new (up to `max_poll_interval`, or `WHILE_WEBHOOKS_ARRIVE`
times that while its service's webhook deliveries arrive), and not at all while GitHub's rate
limit of its credentials says to wait (one token's, or one App installation's: the runs of
another installation's services are followed meanwhile). Unchanged answers are
conditional-request 304s, which cost no rate limit.
A pass asks the budget of the run's service (`PollBudget`: one per token, or per App
installation) before each look: the runs due are looked at longest-waiting first, and those
their budget does not allow now wait for the next pass, ahead of the runs that fall due later
(none starves); a run whose budget has room goes even when another budget has none.

The replicas share the looks (`RunLooks`): a pass first claims the looks due in the database,
all in one statement, and leaves to another replica each look it has claimed whose due time
has not come, adopting that due time. A change to a rollout (a click, a timer, a webhook, on
either replica) still brings its next look forward, and one replica takes it.

Every GitHub call a look makes is marked as the poller's (`polling`): the transport keeps a
worker of its pool free of them, so a person's click never waits behind polls.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.domain.rollout import Phase, Rollout
from bot.domain.run import RunSnapshot
from bot.services.failures import log_failure
from bot.services.following import Reconciled
from bot.services.ports import Clock
from bot.services.records import RunLook
from bot.services.store_ports import Deliveries, RunLooks
from bot.services.telemetry import UNTRACKED, Telemetry

log = logging.getLogger(__name__)

Sweep = Callable[[Callable[[str], bool]], Awaitable[None]]
"""The sweep of kept protection-rule requests (`Scheduler`), told which services' GitHub
credentials it may call now (those no rate limit holds)."""

WHILE_WEBHOOKS_ARRIVE = 8
"""How many times `max_poll_interval` an unchanged run may wait while its service's webhook
deliveries arrive (one came within that longest wait): polling is then only the safety net for
a lost delivery. When they stop, the normal pace resumes at once."""

FOLLOWED = (Phase.DISPATCHING, Phase.RUNNING)
"""The phases in which a rollout's run is looked at: looked for, then followed."""

_polling: contextvars.ContextVar[bool] = contextvars.ContextVar("polling", default=False)


@contextlib.contextmanager
def polling() -> Iterator[None]:
    """Mark the GitHub calls made inside the block (and tasks it starts) as the poller's:
    background reads that must leave room for people's calls."""
    token = _polling.set(True)
    try:
        yield
    finally:
        _polling.reset(token)


def is_polling() -> bool:
    """Whether the current call is the poller's (see `polling`); anything else is a person's
    or acts on one (clicks, commands, webhooks, timers)."""
    return _polling.get()


class PollPass(Protocol):
    """One pass of the poller through the runs due, as the budget sees it."""

    def may_poll(self, service: str) -> bool:
        """Whether one more look at a run of `service` may go now: its worst cost leaves the
        people's reserve and this pass's share of its budget whole (GitHub's answers so far
        count)."""
        ...


class PollBudget(Protocol):
    """The GitHub requests the poller may spend, learnt from GitHub's answers
    (`bot.adapters.github.budget`)."""

    def open_pass(self, *, now: datetime, every: timedelta) -> PollPass:
        """A pass starting `now`; the next starts `every` later."""
        ...

    def account(self, service: str) -> str:
        """Whose rate limit `service`'s calls spend: the same for the services of one token
        or App installation, another for another installation's."""
        ...


class RolloutLooks(Protocol):
    """What the poller asks of the rollout service."""

    async def active(self) -> list[Rollout]: ...

    async def reconcile(self, rollout_id: str) -> Reconciled: ...

    async def look_again(self, rollout: Rollout, last: Reconciled) -> Reconciled: ...

    async def find_dispatched_run(self, rollout: Rollout) -> None: ...


@dataclass(frozen=True)
class RunPace:
    """How the poller follows one rollout's run: when it looks next, and what it saw last."""

    interval: timedelta
    due_at: datetime
    seen: RunSnapshot | None
    version: int
    """The rollout's version after the last look: any change to it (a click, a timer, a
    webhook) brings the next look forward."""
    settled: Reconciled | None = None
    """The last look, when it found nothing to do (`Reconciled.settled`): the next one reads
    the database only if the run or the rollout changed since."""

    def due(self, longest: timedelta) -> datetime:
        """When the next look is due, if no wait may be longer than `longest` now."""
        return min(self.due_at, self.due_at - self.interval + longest)


class RunPoller:
    """Looks at the runs of active rollouts whose look is due (see the module's docstring)."""

    def __init__(
        self,
        *,
        service: RolloutLooks,
        looks: RunLooks,
        deliveries: Deliveries,
        clock: Clock,
        poll_interval: timedelta,
        max_poll_interval: timedelta | None = None,
        budget: PollBudget | None = None,
        telemetry: Telemetry = UNTRACKED,
        progressed: Callable[[], None] = lambda: None,
    ) -> None:
        self._service = service
        self._looks = looks
        self._deliveries = deliveries
        self._clock = clock
        self.poll_interval = poll_interval
        self._max_poll_interval = max(poll_interval, max_poll_interval or poll_interval * 8)
        self._max_while_webhooks_arrive = self._max_poll_interval * WHILE_WEBHOOKS_ARRIVE
        self._budget = budget
        """None: every look due goes (no budget is kept)."""
        self._telemetry = telemetry
        self._progressed = progressed
        """Called after each rollout's look (the scheduler's liveness for `/readyz`)."""
        self.paces: dict[str, RunPace] = {}
        self.deferred: dict[str, datetime] = {}
        """Rollouts whose look the budget put off, and since when each has waited."""
        self.paused: dict[str, datetime] = {}
        """Per rate limit (`PollBudget.account`; "" for all without a budget): GitHub said to
        wait until then, and no run of its services is polled before. Another installation's
        services are followed meanwhile."""
        self._holder = secrets.token_hex(8)
        """Whose claims of looks are this replica's: a look it claimed and has not made yet
        (put off by the budget or a rate limit, or failed) it may claim again."""
        self.webhooks_arriving: set[str] = set()
        """The services whose webhook deliveries arrive, as the last pass with a look due
        read them."""

    async def poll(self, sweep: Sweep | None = None) -> None:
        """Look at each active rollout whose look is due, longest-waiting first, as far as the
        budget allows; find runs of interrupted dispatches. None of a rate limit's services
        while GitHub says to wait. `sweep` runs first (see `Scheduler`), for the services
        whose rate limit does not say to wait (another installation's limit holds none)."""
        now = self._clock()
        self.paused = {account: until for account, until in self.paused.items() if now < until}
        if sweep is not None:
            try:
                await sweep(lambda service: self._account(service) not in self.paused)
            except Exception as error:
                log_failure(log, "the sweep of kept requests failed; trying again next poll", error)
        active = await self._service.active()
        following = {rollout.id for rollout in active}
        self.paces = {key: pace for key, pace in self.paces.items() if key in following}
        self.deferred = {key: at for key, at in self.deferred.items() if key in following}
        now = self._clock()
        due = await self._due(active, now)
        due = [item for item in due if self._account(item[2].service) not in self.paused]
        due.sort(key=lambda item: item[:2])  # longest-waiting first
        claimed = await self._claim([rollout for _, _, rollout in due], now)
        due = [item for item in due if item[2].id in claimed]
        budget = self._budget
        allowance = budget.open_pass(now=now, every=self.poll_interval) if budget else None
        put_off: list[tuple[datetime, Rollout]] = []
        for since, _, rollout in due:
            if self._account(rollout.service) in self.paused:
                continue  # limited in this pass: the claim stays this replica's, for later
            if allowance is not None and not allowance.may_poll(rollout.service):
                put_off.append((since, rollout))  # its budget's; another's may still go
                continue
            self.deferred.pop(rollout.id, None)
            await self._look(rollout, claimed[rollout.id])
            self._progressed()
        if put_off:
            self._defer(put_off)

    def _account(self, service: str) -> str:
        """Whose rate limit the calls of `service` (a look at its rollout's run) spend."""
        return self._budget.account(service) if self._budget is not None else ""

    async def _due(
        self, active: list[Rollout], now: datetime
    ) -> list[tuple[datetime, int, Rollout]]:
        """The rollouts whose look is due, with since when. Which services' webhook deliveries
        arrive is read once, and only when a look is due at the normal pace."""
        normal = self._max_poll_interval
        if all(self._due_since(rollout, now, normal) is None for rollout in active):
            return []
        self.webhooks_arriving = await self._deliveries.services_with_deliveries(
            since=now - self._max_while_webhooks_arrive
        )
        due: list[tuple[datetime, int, Rollout]] = []
        for index, rollout in enumerate(active):
            if (since := self._due_since(rollout, now, self._longest(rollout))) is not None:
                due.append((since, index, rollout))
        return due

    def _longest(self, rollout: Rollout) -> timedelta:
        """The longest an unchanged run of the rollout may wait for its next look now."""
        if rollout.service in self.webhooks_arriving:
            return self._max_while_webhooks_arrive
        return self._max_poll_interval

    def _due_since(self, rollout: Rollout, now: datetime, longest: timedelta) -> datetime | None:
        """Since when the rollout's look has been due, no wait being longer than `longest`
        (None: it is not due, or there is nothing to look at)."""
        if rollout.phase not in FOLLOWED:
            return None
        pace = self.paces.get(rollout.id)
        if pace is None or rollout.version != pace.version:
            since = now
        elif now >= (due_at := pace.due(longest)):
            since = due_at
        else:
            return None
        return min(since, self.deferred.get(rollout.id, since))

    async def _claim(self, due: list[Rollout], now: datetime) -> dict[str, RunLook]:
        """Claim the looks due, in one statement; a look another replica claimed first is
        left to it, and its due time adopted. The looks this replica may make now."""
        claims = [
            RunLook(
                rollout.id,
                rollout.version,
                now,
                now + self._wait_if_unchanged(rollout),
                self._holder,
            )
            for rollout in due
        ]
        recorded = await self._looks.claim(
            claims,
            now=now,
            cut_short=[
                rollout.id for rollout in due if rollout.service not in self.webhooks_arriving
            ],
            paced_before=now - self._max_poll_interval,
        )
        won: dict[str, RunLook] = {}
        for look in recorded:
            if look.holder == self._holder:
                won[look.rollout_id] = look
            else:
                self._adopt(look)
        return won

    def _wait_if_unchanged(self, rollout: Rollout) -> timedelta:
        """The wait after this look if it finds nothing new: twice the last, up to the longest
        allowed now; the base pace after a change, or while a dispatch's run is looked for."""
        pace = self.paces.get(rollout.id)
        if rollout.phase is not Phase.RUNNING or pace is None or pace.version != rollout.version:
            return self.poll_interval
        return min(pace.interval * 2, self._longest(rollout))

    def _adopt(self, look: RunLook) -> None:
        """Another replica makes this look: the next one is due when it chose. What this
        replica saw last stays, for its own next look."""
        pace = self.paces.get(look.rollout_id)
        self.paces[look.rollout_id] = RunPace(
            interval=look.interval,
            due_at=look.due_at,
            seen=pace.seen if pace is not None else None,
            version=look.version,
            settled=pace.settled if pace is not None else None,
        )
        self.deferred.pop(look.rollout_id, None)

    def _defer(self, waiting: list[tuple[datetime, Rollout]]) -> None:
        for since, rollout in waiting:
            self.deferred.setdefault(rollout.id, since)
        self._telemetry.polls_deferred(count=len(waiting))
        log.info(
            "GitHub request budget: %d looks put off to the next poll (the reserve for "
            "people's clicks is kept)",
            len(waiting),
        )

    async def _look(self, rollout: Rollout, claim: RunLook) -> None:
        try:
            with polling():
                if rollout.phase is Phase.DISPATCHING:
                    await self._service.find_dispatched_run(rollout)
                    self._looked(claim, seen=None, settled=None)
                else:
                    await self._follow(rollout, claim)
        except Exception as error:
            log_failure(
                log, f"following rollout {rollout.id} failed; trying again next poll", error
            )

    async def _follow(self, rollout: Rollout, claim: RunLook) -> None:
        pace = self.paces.get(rollout.id)
        if pace is not None and pace.settled is not None:
            found = await self._service.look_again(rollout, pace.settled)
        else:
            found = await self._service.reconcile(rollout.id)
        now = self._clock()
        if found.rate_limited:
            wait = timedelta(seconds=found.retry_after) if found.retry_after else claim.interval
            account = self._account(rollout.service)
            until = self.paused[account] = now + max(wait, self.poll_interval)
            whose = f" of the App installation on {account}: polling of its runs" if account else ""
            log.warning("GitHub rate limit%s paused until %s", whose or ": polling", until)
            return
        seen = pace.seen if pace is not None else None
        # A run this replica has not seen yet is as the replica whose pace it adopted saw it.
        unchanged = (
            pace is not None
            and found.version == pace.version
            and (found.snapshot is None or seen is None or found.snapshot == seen)
        )
        if not unchanged and (
            claim.interval != self.poll_interval or found.version != claim.version
        ):
            # Not the look claimed: the other replicas learn the pace it turned out to need.
            claim = RunLook(
                claim.rollout_id, found.version, now, now + self.poll_interval, claim.holder
            )
            await self._looks.record(claim)
        self._looked(claim, seen=found.snapshot or seen, settled=found if found.settled else None)

    def _looked(
        self, look: RunLook, *, seen: RunSnapshot | None, settled: Reconciled | None
    ) -> None:
        """The look is made: the next one is due when it says."""
        self.paces[look.rollout_id] = RunPace(
            interval=look.interval,
            due_at=look.due_at,
            seen=seen,
            version=look.version,
            settled=settled,
        )
