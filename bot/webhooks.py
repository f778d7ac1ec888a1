"""GitHub webhook deliveries: taken in once each, acted on after GitHub has its answer.

GitHub gives a receiver 10 seconds and does not retry on its own. A delivery is therefore
checked (repository, a run the bot follows), remembered by its `X-GitHub-Delivery` id in the
database (so a redelivery or a second replica does nothing), answered, and only then
reconciled, in a task this object holds until the app shuts down. A task lost to a crash
loses nothing: the reconcile is level-triggered and the poller does the same one later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.domain.github_events import RunEvent, run_event
from bot.domain.rollout import Phase
from bot.logs import rollout_context
from bot.ports import Clock
from bot.rollout_store import RolloutStore
from bot.rollouts import RolloutService
from storage.deliveries import DeliveryLog

log = logging.getLogger(__name__)

MAX_RUN_ID = 2**63 - 1
"""Run ids are stored as 64-bit integers; a larger one cannot be a run the bot follows."""


class Taken(StrEnum):
    FOLLOWED = "followed"
    """About a run the bot follows: remembered, and reconciled after the answer."""
    IGNORED = "ignored"
    """Another repository, a run the bot does not follow, an event it does not follow."""
    DUPLICATE = "duplicate"
    """This delivery id was taken in before: nothing is done again."""


@dataclass(frozen=True)
class Intake:
    """What became of one delivery, and why (for the answer GitHub shows in its log)."""

    taken: Taken
    reason: str
    rollout_id: str | None = None


class GitHubWebhooks:
    """Takes in deliveries about the runs of active rollouts."""

    def __init__(
        self,
        *,
        repository: str,
        rollouts: RolloutService,
        store: RolloutStore,
        deliveries: DeliveryLog,
        clock: Clock,
    ) -> None:
        self._repository = repository.casefold()
        self._rollouts = rollouts
        self._store = store
        self._deliveries = deliveries
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    async def take(self, *, delivery_id: str, event: str, payload: Mapping[str, Any]) -> Intake:
        """Take a delivery in; a followed one is reconciled in the background afterwards."""
        found = run_event(event, payload)
        if found is None:
            return Intake(Taken.IGNORED, f"{event or 'this'} event is not followed")
        if found.repository.casefold() != self._repository:
            return Intake(Taken.IGNORED, "not the bot's repository")
        if found.run_id is not None and not 0 < found.run_id <= MAX_RUN_ID:
            return Intake(Taken.IGNORED, f"run id {found.run_id} is not one GitHub gives")
        rollout = await self._store.by_run_id(found.run_id) if found.run_id is not None else None
        if rollout is None or rollout.phase is not Phase.RUNNING:
            return Intake(Taken.IGNORED, "no active rollout follows this run")
        new = await self._deliveries.remember(
            delivery_id=delivery_id,
            event=event,
            rollout_id=rollout.id,
            received_at=self._clock(),
        )
        if not new:
            log.info("webhook delivery %s (%s) seen before: ignored", delivery_id, event)
            return Intake(Taken.DUPLICATE, "delivery already processed", rollout.id)
        task = asyncio.create_task(self._follow(rollout.id, found), name=f"webhook {delivery_id}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return Intake(Taken.FOLLOWED, f"{event} {found.action} of run {found.run_id}", rollout.id)

    async def _follow(self, rollout_id: str, event: RunEvent) -> None:
        with rollout_context(rollout_id):
            await self._rollouts.follow_github_event(rollout_id=rollout_id, event=event)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # The poller reconciles the same run later: the delivery's effect is not lost.
            log.error("acting on %s failed", task.get_name(), exc_info=error)

    async def settled(self) -> None:
        """Wait until every delivery taken in so far has been acted on."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self, *, grace: float = 10.0) -> None:
        """Give the deliveries in flight `grace` seconds to finish, then cancel the rest."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
