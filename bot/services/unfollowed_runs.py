"""Runs the bot did not start: a protection-rule request for a run of the plan's workflow that
no rollout follows gets a card in the release channel with Adopt and Reject, and a default
answer once UNFOLLOWED_RUN_TIMEOUT has passed (`bot.domain.unfollowed_runs`).

One card and one answer per run, whatever the number of its requests, redeliveries and
replicas: the run's durable timer (key `unfollowed_run:<run id>`) is written once, and only the
request that wrote it posts the card; Adopt, Reject and the default claim the run's one answer
(`bot.services.exactly_once`, effect `answer_run:run-<id>`). The timer outlives a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from bot.domain.controls import AlreadyDone, CardRef, Control
from bot.domain.errors import GitHubError, InvalidCommand
from bot.domain.protection_rules import RuleRequest
from bot.domain.rollout import Rollout
from bot.domain.run import RunRef
from bot.domain.run_link import may_link
from bot.domain.unfollowed_runs import (
    TIMER,
    DefaultAnswer,
    RunFate,
    UnfollowedRun,
    default_comment,
    of_the_plan,
    rejected_comment,
)
from bot.services.access import Access
from bot.services.exactly_once import ExactlyOnce
from bot.services.lane import ReleaseLane
from bot.services.outbox_messages import UNFOLLOWED
from bot.services.records import BOT, NewMessage, Timer
from bot.services.requests import Origin, Via, fill
from bot.services.rollouts import RolloutService
from bot.services.store_ports import ProtectionRuleRequests

log = logging.getLogger(__name__)

T = TypeVar("T")


def timer_key(run_id: int) -> str:
    return f"{TIMER}:{run_id}"


@dataclass(frozen=True)
class UnfollowedRunRules:
    """Where the cards go and how runs nobody adopts are answered (the settings)."""

    rules: ProtectionRuleRequests
    channel_id: str
    """The release channel the cards are posted in (the first of RELEASE_CHANNELS)."""
    timeout: timedelta
    """UNFOLLOWED_RUN_TIMEOUT."""
    default: DefaultAnswer = "reject"
    """UNFOLLOWED_RUN_DEFAULT."""


class UnfollowedRuns:
    """Cards, Adopt, Reject and the default answer of runs the bot did not start."""

    def __init__(
        self,
        *,
        rollouts: RolloutService,
        access: Access,
        once: ExactlyOnce,
        lane: ReleaseLane,
        settings: UnfollowedRunRules,
    ) -> None:
        self._rollouts = rollouts
        self._effects = rollouts.effects
        self._rules = settings.rules
        self._access = access
        self._once = once
        self._lane = lane
        self._channel = settings.channel_id
        self._timeout = settings.timeout
        self._default: DefaultAnswer = settings.default

    async def kept(self, request: RuleRequest) -> None:
        """A request no active rollout follows was kept: unless a rollout still waits for the
        run of its own dispatch, or the run is of another workflow (left alone), the run's card
        is posted and its default answer scheduled, once per run."""
        effects = self._effects
        if any(may_link(r) for r in await effects.store.active()):
            log.info("run %s may be a dispatch being identified: kept", request.run_id)
            return
        # Read after that look: a dispatch identified since the request came follows it now.
        if await effects.store.by_run_id(request.run_id) is not None:
            return
        known = await effects.timers.get(key=timer_key(request.run_id))
        if known is not None:  # the run has its card: nothing to read again
            await self._another_request(request, known)
            return
        try:
            run = await effects.github.linkable_run(request.run_id)
        except GitHubError as error:
            log.warning("could not read run %s: %s", request.run_id, error.message)
            return
        plan = self._rollouts.plan
        if not of_the_plan(run.workflow_path, plan.workflow.file):
            log.info("run %s is not of %s: left alone", request.run_id, plan.workflow.file)
            return
        now = effects.clock()
        card = UnfollowedRun(
            run_id=request.run_id,
            workflow=plan.workflow.name,
            run_url=run.html_url,
            ref=run.head_branch,
            event=request.event,
            sender=request.sender,
            environment=request.environment,
            asked_at=now,
            due_at=now + self._timeout,
        )
        timer = await effects.timers.schedule(
            key=timer_key(request.run_id),
            kind=TIMER,
            due_at=card.due_at,
            now=now,
            payload={"request": request.key, "card": card.to_json()},
        )
        if (timer.payload or {}).get("request") == request.key:
            effects.timers_changed()
            await self._draw(card)
        else:
            await self._another_request(request, timer)

    async def _another_request(self, request: RuleRequest, timer: Timer) -> None:
        """A request of a run whose card was posted: covered by the card's answer while it
        waits; rejected when the run was rejected. After the default approved a stage, a later
        stage is not approved silently: it waits for a person on GitHub."""
        if timer.cancelled_at is not None or (timer.fired_at and self._default == "reject"):
            await self._rejected_before(request)

    async def _rejected_before(self, request: RuleRequest) -> None:
        """The run was rejected (no rollout follows it) before this request of it came (its
        `if: failure()` jobs): rejected too, as the rest of the run."""
        origin = Origin(actor=BOT, channel_id=self._channel, via=Via.SCHEDULE)
        async with self._access.audited(origin, Control.REJECT_RUN):
            await self._reject_rest(request.run_id, [request.environment])

    async def _reject_rest(self, run_id: int, environments: list[str]) -> None:
        if environments:
            await self._effects.github.review(
                run_id=run_id,
                environments=environments,
                state="rejected",
                comment=f"rollout-bot: run {run_id} was rejected; so is the rest of it",
            )

    async def adopt(self, origin: Origin, run_id: int) -> Rollout:
        """An approver makes the run a rollout the bot follows from here (refused while frozen
        or locked by someone else, as Dispatch is): its waiting stage is approved."""
        async with self._access.audited(origin, Control.ADOPT):
            await self._access.admit(origin, Control.ADOPT)
            await self._once.delivery(origin, Control.ADOPT)
            card = await self._card(run_id)
            await self._lane.judge(actor=origin.actor)
            adopted = await self._answer(origin, card, "adopt", lambda: self._adopt(origin, card))
            fill(rollout_id=adopted.id)
            return adopted

    async def reject(self, origin: Origin, run_id: int) -> None:
        """An approver rejects the run through the App's rule: its job fails."""
        async with self._access.audited(origin, Control.REJECT_RUN):
            await self._access.admit(origin, Control.REJECT_RUN)
            await self._once.delivery(origin, Control.REJECT_RUN)
            card = await self._card(run_id)
            await self._answer(origin, card, "reject", lambda: self._reject(origin, card))

    async def on_timer(self, timer: Timer) -> None:
        """Nobody adopted or rejected the run in time: the default answers it, once."""
        card = UnfollowedRun.from_json(dict((timer.payload or {})["card"]))
        origin = Origin(actor=BOT, channel_id=self._channel, via=Via.SCHEDULE)
        try:
            async with self._access.audited(origin, Control.ANSWER_RUN):
                await self._answer(origin, card, "answer", lambda: self._by_default(card))
        except AlreadyDone as done:
            log.info("run %s was answered: %s", card.run_id, done.message)

    async def on_timer_dead(self, timer: Timer, *, reason: str) -> None:
        log.error("the default answer of %s failed every attempt: %s", timer.key, reason)

    async def _card(self, run_id: int) -> UnfollowedRun:
        timer = await self._effects.timers.get(key=timer_key(run_id))
        if timer is None or timer.payload is None:
            raise InvalidCommand(f"Run {run_id} has no card of a run waiting to be adopted.")
        return UnfollowedRun.from_json(dict(timer.payload["card"]))

    async def _answer(
        self, origin: Origin, card: UnfollowedRun, verb: str, act: Callable[[], Awaitable[T]]
    ) -> T:
        what = f"{verb} run {card.run_id}"
        return await self._once.once(
            origin, Control.ANSWER_RUN, CardRef(f"run-{card.run_id}"), what, act
        )

    async def _waiting(self, card: UnfollowedRun) -> list[str]:
        """The run's environments that wait for the App's answer; refused when none does."""
        if (await self._effects.store.by_run_id(card.run_id)) is not None:
            raise InvalidCommand(f"Run {card.run_id} is followed by a rollout already.")
        waiting = [r.environment for r in await self._rules.open_for_run(card.run_id)]
        if not waiting:
            raise InvalidCommand(f"Run {card.run_id} no longer waits for the bot's answer.")
        return waiting

    async def _adopt(self, origin: Origin, card: UnfollowedRun) -> Rollout:
        await self._waiting(card)
        started = await self._rollouts.start(
            tag=card.ref, flags_ready=True, channel_id=self._channel, actor=origin.actor
        )
        if blocked := started.preflight.blocking():
            # Nothing is approved; the preflight card shows why (cancel it, or fix and Adopt
            # once it is cancelled).
            raise InvalidCommand(
                f"Run {card.run_id} was not adopted: its preflight blocks "
                f"({'; '.join(blocked)}). The run still waits; cancel the preflight card, "
                "then Reject the run or fix it and Adopt again."
            )
        adopted = await self._rollouts.adopt_run(
            rollout_id=started.id, run=RunRef(card.run_id, card.run_url), actor=origin.actor
        )
        await self._decided(card.decided(RunFate.ADOPTED, by=origin.actor, rollout_id=started.id))
        return adopted

    async def _reject(self, origin: Origin, card: UnfollowedRun) -> None:
        environments = await self._waiting(card)
        await self._effects.github.review(
            run_id=card.run_id,
            environments=environments,
            state="rejected",
            comment=rejected_comment(origin.actor),
        )
        await self._decided(card.decided(RunFate.REJECTED, by=origin.actor))
        await self._after_rejecting(card.run_id)

    async def _by_default(self, card: UnfollowedRun) -> None:
        """The default answer. An `approve` default approves only the environment on the card,
        and never while deploys are frozen or the lane is locked: then it rejects."""
        try:
            environments = await self._waiting(card)
        except InvalidCommand as gone:
            log.info("no default answer: %s", gone.message)
            return
        answer = self._default
        if answer == "approve":
            if await self._lane.refusal(actor=BOT) is not None:
                log.info("run %s: the lane refuses, so the default rejects it", card.run_id)
                answer = "reject"
            else:
                environments = [e for e in environments if e == card.environment]
                if not environments:
                    log.info("no default answer: run %s moved on", card.run_id)
                    return
        await self._effects.github.review(
            run_id=card.run_id,
            environments=environments,
            state="rejected" if answer == "reject" else "approved",
            comment=default_comment(answer, self._timeout),
        )
        await self._draw(card.decided(RunFate.REJECTED if answer == "reject" else RunFate.APPROVED))
        if answer == "reject":
            await self._after_rejecting(card.run_id)

    async def _after_rejecting(self, run_id: int) -> None:
        """Requests of the run that came while it was being rejected (its failure jobs start at
        once): rejected too. Those that come later are, in `kept`."""
        await self._reject_rest(
            run_id, [r.environment for r in await self._rules.open_for_run(run_id)]
        )

    async def _decided(self, card: UnfollowedRun) -> None:
        await self._effects.timers.cancel(key=timer_key(card.run_id), now=self._effects.clock())
        await self._draw(card)

    async def _draw(self, card: UnfollowedRun) -> None:
        """Post the run's card, or redraw it as decided (the outbox: retried, never twice)."""
        await self._effects.outbox.send(
            [NewMessage(kind=UNFOLLOWED, channel_id=self._channel, payload=card.to_json())]
        )
