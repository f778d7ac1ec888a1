"""GitHub webhook deliveries: taken in once each, acted on after GitHub has its answer.

GitHub gives a receiver 10 seconds and does not retry on its own. A delivery is therefore
checked (repository, a run the bot follows), remembered by its `X-GitHub-Delivery` id and its
signed body's digest in the database (so a redelivery, a second replica, or the same body sent
again under a new id, which is outside the signature, does nothing), answered, and only then
reconciled, in a task this object holds until the app shuts down: one per rollout at a time,
the deliveries that come meanwhile coalesced into its next turn (a burst costs no more tasks,
nor GitHub reads). A task lost to a crash loses nothing: the reconcile is level-triggered and
the poller does the same one later.

A custom protection rule's request (`deployment_protection_rule`, App mode only) is kept in the
database first, whether or not a rollout follows its run yet: the bot may not have identified
the run it dispatched, and the request is answered once it has (docs/protection-rules.md). Its
deployment, not its body's digest, tells a request taken in before (a re-run's request without
a deployment may repeat its body byte for byte). One whose installation GitHub could not confirm
as it came is held with its delivery until GitHub does (`bot.services.unconfirmed_rules`), then
taken in by the same step (`keep`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

from bot.domain import protection_rules
from bot.domain.errors import GitHubError
from bot.domain.github_events import (
    FOLLOWED,
    RunEvent,
    repository_id_of,
    repository_of,
    run_event,
)
from bot.domain.protection_rules import RuleRequest
from bot.domain.rollout import Phase
from bot.logs import rollout_context
from bot.services.clock import finish
from bot.services.failures import log_failure
from bot.services.ports import AppInstallation, Clock
from bot.services.rollouts import RolloutService
from bot.services.store_ports import Deliveries, ProtectionRuleRequests, Rollouts, Timers
from bot.services.telemetry import UNTRACKED, Telemetry
from bot.services.unconfirmed_rules import UnconfirmedRules, refused

log = logging.getLogger(__name__)

Unfollowed = Callable[[protection_rules.RuleRequest], Coroutine[Any, Any, None]]
"""What is done with a request for a run no rollout follows (`UnfollowedRuns.kept`)."""

Turn = Callable[[list[Any]], Coroutine[Any, Any, None]]
"""One turn of a follow-up: acts on the deliveries that came since the last (`_spawn`)."""

UNFOLLOWED = ("unfollowed", "")
"""The one follow-up key of every request for a run no rollout follows: a flood of them, one
task (each run's card asks GitHub, one request after another)."""

MAX_RUN_ID = 2**63 - 1
"""Run ids are stored as 64-bit integers; a larger one cannot be a run the bot follows."""


class Taken(StrEnum):
    FOLLOWED = "followed"
    """About a run the bot follows: remembered, and reconciled after the answer."""
    IGNORED = "ignored"
    """Another repository, a run the bot does not follow, an event it does not follow."""
    DUPLICATE = "duplicate"
    """This delivery id, or its signed body under another id (or, for a protection rule's
    request, its deployment), was taken in before: nothing is done again."""
    KEPT = "kept"
    """A protection rule's request for a run no active rollout follows (yet): kept."""
    UNCONFIRMED = "unconfirmed"
    """A protection rule's request whose installation GitHub could not confirm yet: held
    until it does (`bot.services.unconfirmed_rules`)."""


@dataclass(frozen=True)
class Intake:
    """What became of one delivery, and why (for the answer GitHub shows in its log)."""

    taken: Taken
    reason: str
    rollout_id: str | None = None


@dataclass(kw_only=True, eq=False)
class GitHubWebhooks:
    """Takes in deliveries about the runs of active rollouts."""

    repository: str
    """Compared without case, as GitHub names repositories (kept casefolded)."""
    service: str
    rollouts: RolloutService
    store: Rollouts
    deliveries: Deliveries
    rules: ProtectionRuleRequests
    clock: Clock
    telemetry: Telemetry = UNTRACKED
    api_url: str = ""
    installation: AppInstallation | None = None
    """The App's installation (None in token mode: a token answers no protection rule)."""
    unfollowed: Unfollowed | None = None
    timers: Timers
    """Where an unconfirmed request's timers go (App mode)."""
    timers_changed: Callable[[], None] = lambda: None
    repository_id: Callable[[], int | None] = lambda: None
    """GitHub's id of the repository, once the bot read it (None: not yet): deliveries of
    the repository under a new name (renamed, transferred) are known by it."""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _queued: dict[tuple[str, str], list[Any]] = field(default_factory=dict, init=False)
    """Per key whose follow-up is in flight (a rollout's, or `UNFOLLOWED`), the deliveries
    that came since: acted on together by that follow-up's next turn (`_turns`)."""
    _renamed: set[str] = field(default_factory=set, init=False)
    """The new names the log was told of (one WARNING each)."""
    unconfirmed: UnconfirmedRules | None = field(default=None, init=False)
    """The requests GitHub could not confirm as they came, and their timers (App mode)."""

    def __post_init__(self) -> None:
        self.repository = self.repository.casefold()
        if self.installation is not None:
            self.unconfirmed = UnconfirmedRules(
                rules=self.rules,
                timers=self.timers,
                installation=self.installation,
                keep=lambda request: self.keep(request, delivery_id=None),
                clock=self.clock,
                service=self.service,
                repository=self.repository,
                timers_changed=self.timers_changed,
            )

    def name_of(self, payload: Mapping[str, Any]) -> str | None:
        """The name a delivery gives the service's repository: its configured name, or the
        new name of the repository it was read as (same id); None when it is another's."""
        name = repository_of(payload)
        if name.casefold() == self.repository:
            return name
        known = self.repository_id()
        if not name or known is None or repository_id_of(payload) != known:
            return None
        if name.casefold() not in self._renamed:
            self._renamed.add(name.casefold())
            log.warning(
                "GitHub repository %s was renamed or transferred to %s: its webhook "
                "deliveries are taken in by its id; set the %s service's repository to %s "
                "(ROLLOUT_SERVICES, or GITHUB_REPOSITORY)",
                self.repository,
                name,
                self.service,
                name,
            )
        return name

    async def take(
        self, *, delivery_id: str, event: str, payload: Mapping[str, Any], body_digest: str
    ) -> Intake:
        """Take a delivery in (`body_digest`: its signed body's SHA-256); a followed one is
        reconciled in the background afterwards."""
        intake = await self._intake(
            delivery_id=delivery_id, event=event, payload=payload, body_digest=body_digest
        )
        # The event's name is outside the signature: one the bot does not follow is `other`,
        # so made-up names cannot add series without bound.
        known = event in FOLLOWED or event == protection_rules.EVENT
        self.telemetry.webhook_delivery(
            event=event if known else "other", result=intake.taken.value, at=self.clock()
        )
        return intake

    async def _intake(
        self, *, delivery_id: str, event: str, payload: Mapping[str, Any], body_digest: str
    ) -> Intake:
        if event == protection_rules.EVENT:
            return await self._rule_request(delivery_id, payload)
        found = run_event(event, payload)
        if found is None:
            return Intake(Taken.IGNORED, f"{event or 'this'} event is not followed")
        if self.name_of(payload) is None:
            return Intake(Taken.IGNORED, "not the bot's repository")
        if found.run_id is not None and not 0 < found.run_id <= MAX_RUN_ID:
            return Intake(Taken.IGNORED, f"run id {found.run_id} is not one GitHub gives")
        # Its id and phase only: the follow-up reads the rollout itself, under its lock.
        following = None if found.run_id is None else await self.store.phase_by_run_id(found.run_id)
        if following is None or following[1] is not Phase.RUNNING:
            return Intake(Taken.IGNORED, "no active rollout follows this run")
        rollout_id = following[0]
        new = await self.deliveries.remember(
            delivery_id=delivery_id,
            event=event,
            rollout_id=rollout_id,
            received_at=self.clock(),
            body_digest=body_digest,
        )
        if not new:
            log.info("webhook delivery %s (%s) seen before: ignored", delivery_id, event)
            return Intake(
                Taken.DUPLICATE,
                "delivery (its id or its signed body) already processed",
                rollout_id,
            )
        self._follow_rollout(rollout_id, found, name=f"webhook {delivery_id}")
        return Intake(Taken.FOLLOWED, f"{event} {found.action} of run {found.run_id}", rollout_id)

    async def _rule_request(self, delivery_id: str, payload: Mapping[str, Any]) -> Intake:
        """Check the request, then keep it (`keep`); one whose installation GitHub could not
        confirm in time is held until it does (`bot.services.unconfirmed_rules`)."""
        if self.installation is None:
            return Intake(Taken.IGNORED, "the bot answers protection rules only as a GitHub App")
        request = protection_rules.rule_request(
            payload,
            repository=self.name_of(payload) or self.repository,
            api_url=self.api_url,
            at=self.clock(),
            service=self.service,
        )
        if isinstance(request, str):
            return Intake(Taken.IGNORED, request)
        what = f"protection rule request for {request.environment} of run {request.run_id}"
        named = protection_rules.installation_named(payload) or 0  # `rule_request`: one
        try:
            ours = await self.installation.is_ours(named)
        except GitHubError as error:
            assert self.unconfirmed is not None  # App mode
            if not await self.unconfirmed.hold(
                request, delivery_id=delivery_id, installation=named, error=error.message
            ):
                return Intake(Taken.DUPLICATE, f"{what} taken in before")
            return Intake(Taken.UNCONFIRMED, f"{what} held: installation {named} unconfirmed")
        if not ours:
            refused(what, named, self.repository)
            return Intake(Taken.IGNORED, "not the bot's installation")
        return await self.keep(request, delivery_id=delivery_id)

    async def keep(self, request: RuleRequest, *, delivery_id: str | None) -> Intake:
        """Keep a request of the App's installation (once: its delivery id, when not
        remembered already, decides, and one open per run and environment), then answer it
        through the reconcile of the rollout that follows its run, if one does already."""
        what = f"protection rule request for {request.environment} of run {request.run_id}"
        if not await self.rules.remember(request, delivery_id=delivery_id):
            return Intake(Taken.DUPLICATE, f"{what} taken in before")
        following = await self.store.phase_by_run_id(request.run_id)
        if following is None or following[1] is not Phase.RUNNING:
            ended = following is not None and following[1] is Phase.ENDED
            if (following is None or ended) and self.unfollowed is not None:
                # A run the bot did not start, maybe, or a re-run of one whose rollout ended:
                # its card (`bot.services.unfollowed_runs`).
                # One follow-up in flight for all of them: a flood of requests costs one task.
                self._spawn(UNFOLLOWED, request, self._unfollowed, name=f"unfollowed {request.key}")
            return Intake(Taken.KEPT, f"{what} kept: no active rollout follows the run yet")
        found = RunEvent(
            protection_rules.EVENT,
            "requested",
            self.repository,
            request.run_id,
            environment=request.environment,
        )
        self._follow_rollout(following[0], found, name=f"protection rule {request.key}")
        return Intake(Taken.FOLLOWED, what, following[0])

    def _follow_rollout(self, rollout_id: str, event: RunEvent, *, name: str) -> None:
        """Follow up a delivery about the run the rollout follows (`_follow`)."""
        self._spawn(("rollout", rollout_id), event, partial(self._follow, rollout_id), name=name)

    def _spawn(self, key: tuple[str, str], item: Any, act: Turn, *, name: str) -> None:
        """Follow up a delivery (`item`): one follow-up in flight per `key`; a delivery that
        comes meanwhile waits for its next turn, with the others that came (`act` on them all
        at once: one look for a rollout's)."""
        queued = self._queued.get(key)
        if queued is not None:
            queued.append(item)
            return
        self._queued[key] = [item]
        self._background(self._turns(key, act), name=name)

    def _background(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _turns(self, key: tuple[str, str], act: Turn) -> None:
        """Act on the deliveries of `key`, those that came during each turn in the next, until
        none is left."""
        try:
            while items := self._queued[key]:
                self._queued[key] = []
                await act(items)
        finally:
            del self._queued[key]

    async def _follow(self, rollout_id: str, events: list[RunEvent]) -> None:
        """Act on deliveries about the run a rollout follows, in one look."""
        with rollout_context(rollout_id):
            try:
                await self.rollouts.follow_github_events(rollout_id=rollout_id, events=events)
            except Exception as error:
                # The poller reconciles the same run later; the next turn looks too.
                failed = f"acting on {len(events)} webhook deliveries failed"
                log_failure(log, failed, error)

    async def _unfollowed(self, requests: list[RuleRequest]) -> None:
        """Act on requests for runs no rollout follows, one after the other."""
        assert self.unfollowed is not None  # `keep` queues none without it
        for request in requests:
            try:
                await self.unfollowed(request)
            except Exception as error:
                # The poller's sweep takes the request up again; the others go on.
                log_failure(log, f"acting on unfollowed {request.key} failed", error)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # The poller reconciles the same run later: the delivery's effect is not lost.
            log_failure(log, f"acting on {task.get_name()} failed", error)

    async def settled(self) -> None:
        """Wait until every delivery taken in so far has been acted on."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self, *, grace: float = 10.0) -> None:
        """Give the deliveries in flight `grace` seconds to finish, then cancel the rest."""
        await finish(set(self._tasks), grace=grace)
