"""The poller: follows the runs of active rollouts on GitHub, each at its own pace, within the
request budget it shares with people.

Each run is polled at its own pace: every `poll_interval` while things move, twice as long
after each look that found nothing new (up to `max_poll_interval`), and not at all while
GitHub's rate limit says to wait. Unchanged answers are conditional-request 304s, which cost no
rate limit. A pass asks the budget (`PollBudget`, one per token or App installation) before
each look: the runs due are looked at longest-waiting first, and those the budget does not
allow now wait for the next pass, ahead of the runs that fall due later (none starves).

Every GitHub call a look makes is marked as the poller's (`polling`): the transport keeps a
worker of its pool free of them, so a person's click never waits behind polls.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.domain.rollout import Phase, Rollout
from bot.domain.run import RunSnapshot
from bot.services.failures import log_failure
from bot.services.following import Reconciled
from bot.services.ports import Clock
from bot.services.telemetry import UNTRACKED, Telemetry

log = logging.getLogger(__name__)

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

    def may_poll(self) -> bool:
        """Whether one more look may go now: its worst cost leaves the people's reserve and
        this pass's share of the budget whole (GitHub's answers so far count)."""
        ...


class PollBudget(Protocol):
    """The GitHub requests the poller may spend, learnt from GitHub's answers
    (`bot.adapters.github.budget`)."""

    def open_pass(self, *, now: datetime, every: timedelta) -> PollPass:
        """A pass starting `now`; the next starts `every` later."""
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


class RunPoller:
    """Looks at the runs of active rollouts whose look is due (see the module's docstring)."""

    def __init__(
        self,
        *,
        service: RolloutLooks,
        clock: Clock,
        poll_interval: timedelta,
        max_poll_interval: timedelta | None = None,
        budget: PollBudget | None = None,
        telemetry: Telemetry = UNTRACKED,
        progressed: Callable[[], None] = lambda: None,
    ) -> None:
        self._service = service
        self._clock = clock
        self.poll_interval = poll_interval
        self._max_poll_interval = max(poll_interval, max_poll_interval or poll_interval * 8)
        self._budget = budget
        """None: every look due goes (no budget is kept)."""
        self._telemetry = telemetry
        self._progressed = progressed
        """Called after each rollout's look (the scheduler's liveness for `/readyz`)."""
        self.paces: dict[str, RunPace] = {}
        self.deferred: dict[str, datetime] = {}
        """Rollouts whose look the budget put off, and since when each has waited."""
        self.paused_until: datetime | None = None
        """GitHub's rate limit said to wait until then: no run is polled before."""

    async def poll(self, sweep: Callable[[], Awaitable[None]] | None = None) -> None:
        """Look at each active rollout whose look is due, longest-waiting first, as far as the
        budget allows; find runs of interrupted dispatches. Nothing while GitHub's rate limit
        says to wait. `sweep` runs first (see `Scheduler`)."""
        if self.paused_until is not None and self._clock() < self.paused_until:
            return
        self.paused_until = None
        if sweep is not None:
            try:
                await sweep()
            except Exception as error:
                log_failure(log, "the sweep of kept requests failed; trying again next poll", error)
        active = await self._service.active()
        following = {rollout.id for rollout in active}
        self.paces = {key: pace for key, pace in self.paces.items() if key in following}
        self.deferred = {key: at for key, at in self.deferred.items() if key in following}
        now = self._clock()
        due: list[tuple[datetime, int, Rollout]] = []
        for index, rollout in enumerate(active):
            if (since := self._due_since(rollout, now)) is not None:
                due.append((since, index, rollout))
        due.sort(key=lambda item: item[:2])  # longest-waiting first
        budget = self._budget
        allowance = budget.open_pass(now=now, every=self.poll_interval) if budget else None
        for position, (_, _, rollout) in enumerate(due):
            if allowance is not None and not allowance.may_poll():
                self._defer([(since, waiting) for since, _, waiting in due[position:]])
                return
            self.deferred.pop(rollout.id, None)
            await self._look(rollout)
            self._progressed()
            if self.paused_until is not None:
                return

    def _due_since(self, rollout: Rollout, now: datetime) -> datetime | None:
        """Since when the rollout's look has been due (None: it is not due, or there is
        nothing to look at)."""
        if rollout.phase is Phase.DISPATCHING:
            since: datetime | None = now
        elif rollout.phase is Phase.RUNNING:
            pace = self.paces.get(rollout.id)
            if pace is None or rollout.version != pace.version:
                since = now
            else:
                since = pace.due_at if now >= pace.due_at else None
        else:
            since = None
        if since is None:
            return None
        return min(since, self.deferred.get(rollout.id, since))

    def _defer(self, waiting: list[tuple[datetime, Rollout]]) -> None:
        for since, rollout in waiting:
            self.deferred.setdefault(rollout.id, since)
        self._telemetry.polls_deferred(count=len(waiting))
        log.info(
            "GitHub request budget: %d looks put off to the next poll (the reserve for "
            "people's clicks is kept)",
            len(waiting),
        )

    async def _look(self, rollout: Rollout) -> None:
        try:
            with polling():
                if rollout.phase is Phase.DISPATCHING:
                    await self._service.find_dispatched_run(rollout)
                else:
                    await self._follow(rollout)
        except Exception as error:
            log_failure(
                log, f"following rollout {rollout.id} failed; trying again next poll", error
            )

    async def _follow(self, rollout: Rollout) -> None:
        pace = self.paces.get(rollout.id)
        if pace is not None and pace.settled is not None:
            found = await self._service.look_again(rollout, pace.settled)
        else:
            found = await self._service.reconcile(rollout.id)
        now = self._clock()
        longer = min((pace.interval if pace else self.poll_interval) * 2, self._max_poll_interval)
        if found.rate_limited:
            wait = timedelta(seconds=found.retry_after) if found.retry_after else longer
            self.paused_until = now + max(wait, self.poll_interval)
            log.warning("GitHub rate limit: polling paused until %s", self.paused_until)
            return
        seen = pace.seen if pace is not None else None
        unchanged = (
            pace is not None
            and found.version == pace.version
            and (found.snapshot is None or found.snapshot == seen)
        )
        interval = longer if unchanged else self.poll_interval
        self.paces[rollout.id] = RunPace(
            interval=interval,
            due_at=now + interval,
            seen=found.snapshot or seen,
            version=found.version,
            settled=found if found.settled else None,
        )
