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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from typing import TypeVar

from bot.domain.controls import AlreadyDone, BeingDone, CardRef, Control
from bot.domain.errors import InvalidCommand
from bot.domain.protection_rules import RuleRequest
from bot.domain.reasons import Reason
from bot.domain.rollout import (
    UNREAD_AFTER,
    Check,
    CheckState,
    FreezeOverridden,
    InvalidTransition,
    Rollout,
)
from bot.domain.run_link import may_link
from bot.domain.unfollowed_runs import (
    ANSWERED_UNSAVED,
    REST_OWED,
    TIMER,
    DefaultAnswer,
    RunFate,
    UnfollowedRun,
    adopted_flags,
    answered_meanwhile,
    default_comment,
    follows_run,
    may_adopt,
    may_override,
    not_a_tag,
    nothing_rejected,
    of_the_plan,
    rejected_comment,
    timer_key,
    timer_payload,
    unfollowed_card,
)
from bot.services.access import Access
from bot.services.acting import ON_GITHUB, saved_then_failed
from bot.services.exactly_once import ExactlyOnce, rerun_under_way
from bot.services.lane import ReleaseLane
from bot.services.outbox_messages import UNFOLLOWED
from bot.services.records import BOT, NewMessage, Timer
from bot.services.requests import Origin, Via, fill
from bot.services.rollouts import RolloutService
from bot.services.settled_runs import (
    Reach,
    SettledRuns,
    approve_refused,
    reject_rest,
    still_at_its_tag,
    still_waiting,
    sweep_each,
    tag_of,
)
from bot.services.store_ports import ProtectionRuleRequests

log = logging.getLogger(__name__)

T = TypeVar("T")


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
    gone_after: timedelta = UNREAD_AFTER
    """How long GitHub may answer 404 for a run since its request, while its repository
    reads, before the run is taken as deleted (GITHUB_UNREADABLE_SECONDS)."""


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
        self._settled_runs = SettledRuns(settings.rules, gone_after=settings.gone_after)
        self._swept: set[int] = set()  # runs `sweep` found settled: not handed over again

    async def kept(self, request: RuleRequest) -> None:
        """A request no active rollout follows was kept: unless a rollout still waits for the
        run of its own dispatch, or the run is of another workflow (left alone), the run's card
        is posted and its default answer scheduled, once per run."""
        await self._settled(request, Reach())

    async def _settled(self, request: RuleRequest, reach: Reach) -> bool:
        """`kept`; whether the run is settled (a rollout follows it, it has its card, it is
        of another workflow, or it is over: completed, or deleted), not when its card could not
        be posted yet (a dispatch being identified, or GitHub failed to tell the run)."""
        effects = self._effects
        if any(may_link(r) for r in await effects.store.active()):
            log.info("run %s may be a dispatch being identified: kept", request.run_id)
            return False
        # Read after that look: a dispatch identified (or a failure job re-run) since follows it.
        followed = await effects.store.by_run_id(request.run_id)
        if follows_run(followed) or await rerun_under_way(self._once, followed):
            return follows_run(followed)  # one being re-run is not settled: it follows it soon
        known = await effects.timers.get(key=timer_key(request.run_id))
        if known is not None:  # the run has its card: nothing to read again
            await self._another_request(request, known)
            return True
        run = await self._settled_runs.read(effects.github, request, effects.clock(), reach)
        if isinstance(run, bool):  # over, or to be read again
            return run
        plan = self._rollouts.plan
        if not of_the_plan(run.workflow_path, plan.workflow.file):
            log.info("run %s is not of %s: left alone", request.run_id, plan.workflow.file)
            return True
        tagged = await tag_of(effects.github, run, plan, ended=followed)
        if tagged is False:  # GitHub did not say: the next poll tries again (`sweep`)
            return False
        card = unfollowed_card(
            request, run, plan, followed, tagged=tagged, now=effects.clock(), timeout=self._timeout
        )
        drawn = _drawn(self._channel, card)
        # The timer and the card are written together: never one without the other.
        timer = await effects.timers.schedule(
            key=timer_key(request.run_id),
            kind=TIMER,
            due_at=card.due_at,
            now=card.asked_at,
            payload=timer_payload(request, card),
            outbox=[drawn],
            service=request.service,
        )
        if (timer.payload or {}).get("request") == request.key:
            effects.timers_changed()
            await effects.outbox.send([drawn], written=True)
        else:
            await self._another_request(request, timer)
        return True

    async def sweep(self, requests: Sequence[RuleRequest]) -> None:
        """Hand this service's kept requests whose run has neither a rollout nor a card (the
        bot stopped before posting it, or GitHub failed to tell the run) to `kept` again, at
        each poll until the run is settled (then never again in this process: a run of another
        workflow stays without a timer). Every service's are read in one query; this
        service's repository is read at most once while it is out of reach (`Reach`); one
        that fails holds up no other (`sweep_each`)."""
        await sweep_each(requests, self._settled, self._swept)

    async def _another_request(self, request: RuleRequest, timer: Timer) -> None:
        """A request of a run whose card was posted: covered by the card's answer while it
        waits; rejected, as the rest of the run, when the run was rejected (its `if: failure()`
        jobs). After the default approved a stage, or nothing waited for an answer (the
        default's, or a Reject's), a later stage is not approved silently: it waits on GitHub."""
        if _fate(timer) is not RunFate.REJECTED:
            return
        origin = Origin(actor=BOT, channel_id=self._channel, via=Via.SCHEDULE)
        async with self._access.audited(origin, Control.REJECT_RUN):
            await reject_rest(self._effects.github, request.run_id, [request.environment])

    async def adopt(self, origin: Origin, run_id: int, *, override: str | None = None) -> Rollout:
        """An approver makes the run a rollout the bot follows from here, confirming its
        feature flags are ready (refused while locked by someone else, as Dispatch is, and
        while frozen unless the approver overrides the freeze with a reason): its waiting
        stage is approved."""
        async with self._access.audited(origin, Control.ADOPT):
            await self._access.admit(origin, Control.ADOPT)
            await self._once.delivery(origin, Control.ADOPT)
            card = await self._card(run_id)
            may_adopt(self._rollouts.plan.two_person)
            if override is not None:
                may_override(override, self._rollouts.plan.two_person)
            await self._lane.judge(actor=origin.actor, override=override, adopting=True)
            adopted = await self._answer(
                origin, card, "adopt", lambda: self._adopt(origin, card, override)
            )
            fill(rollout_id=adopted.id)
            return adopted

    async def reject(self, origin: Origin, run_id: int) -> None:
        """An approver rejects the run through the App's rule: its job fails."""
        async with self._access.audited(origin, Control.REJECT_RUN):
            await self._access.admit(origin, Control.REJECT_RUN)
            await self._once.delivery(origin, Control.REJECT_RUN)
            card = await self._card(run_id)
            await self._answer(origin, card, "reject", lambda: self._reject(origin, card))

    async def override_form(self, origin: Origin, run_id: int) -> UnfollowedRun:
        """The card an approver opens the form to override a freeze for (from a refused
        Adopt): checked before the form is drawn."""
        await self._access.admit(origin, Control.ADOPT)
        return await self._card(run_id)

    async def on_timer(self, timer: Timer) -> None:
        """Nobody adopted or rejected the run in time: the default answers it, once. While
        someone is answering it (a slow Adopt holds the run's answer), the timer is not
        completed: it fails (`BeingDone`, transient), so the scheduler fires it again a little
        later, and the default still comes if that answer fails."""
        card = UnfollowedRun.from_json(dict((timer.payload or {})["card"]))
        origin = Origin(actor=BOT, channel_id=self._channel, via=Via.SCHEDULE)
        try:
            async with self._access.audited(origin, Control.ANSWER_RUN):
                await self._answer(
                    origin, card, "answer", lambda: self._by_default(card), wait=False
                )
        except BeingDone:
            raise  # a transient failure: the scheduler releases the timer, to fire again
        except AlreadyDone as done:
            log.info("run %s was answered: %s", card.run_id, done.message)

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        """The default answer failed every attempt: the card says so, and that the run still
        waits on GitHub, so a person answers it."""
        log.error("the default answer of %s failed every attempt: %s", timer.key, reason.text)
        card = UnfollowedRun.from_json(dict((timer.payload or {})["card"]))
        if card.fate is RunFate.WAITING:
            await self._settle(card.decided(RunFate.UNANSWERED), cancel=False)

    async def _card(self, run_id: int, *, unanswered: bool = False) -> UnfollowedRun:
        """The run's card; `unanswered`: refused, naming who answered, when it was answered."""
        timer = await self._effects.timers.get(key=timer_key(run_id))
        if timer is None or timer.payload is None:
            raise InvalidCommand(f"Run {run_id} has no card of a run waiting to be adopted.")
        card = UnfollowedRun.from_json(dict(timer.payload["card"]))
        if unanswered and card.answered:
            raise AlreadyDone(answered_meanwhile(card, self._rollouts.words.person(card.by)))
        return card

    async def _answer(
        self,
        origin: Origin,
        card: UnfollowedRun,
        verb: str,
        act: Callable[[], Awaitable[T]],
        *,
        wait: bool = True,
    ) -> T:
        what, ref = f"{verb} run {card.run_id}", CardRef(f"run-{card.run_id}")
        unanswered = partial(self._card, card.run_id, unanswered=True)  # given back: answered?
        try:
            return await self._once.once(
                origin, Control.ANSWER_RUN, ref, what, act, wait=wait, given_back=unanswered
            )
        except AlreadyDone:  # the claim is the run's one answer, an Adopt's or a Reject's: which
            await unanswered()
            raise

    async def _adopt(self, origin: Origin, card: UnfollowedRun, override: str | None) -> Rollout:
        """The rollout is created already following the run (never one answered), or not."""
        await self._card(card.run_id, unanswered=True)  # a default's rejection given back
        await still_waiting(self._effects.store, self._rules, card.run_id)
        if not card.on_a_tag:
            raise InvalidTransition(not_a_tag(card))
        await still_at_its_tag(self._effects.github, card)
        flags = Check(CheckState.PASS, adopted_flags(card), confirmed_by=origin.actor)
        checked = await self._rollouts.checked(
            tag=card.tag, flags=flags, channel_id=self._channel, actor=origin.actor
        )
        if blocked := checked.preflight.blocking():
            raise InvalidTransition(
                f"Run {card.run_id} was not adopted: its preflight blocks "
                f"({'; '.join(blocked)}). Nothing was changed and the run still waits: Reject "
                "it, or fix this and Adopt it again."
            )
        decided = card.decided(RunFate.ADOPTED, by=origin.actor, rollout_id=checked.id)
        drawn = _drawn(self._channel, decided)
        # It waits for the answer (`_waiting`): its attempt now asks, maybe a re-run since the card.
        asking = (await self._effects.github.linkable_run(card.run_id)).attempt
        run = replace(card.run, attempt=max(card.attempt, asking))
        adopted = await self._rollouts.adopt(checked, run, actor=origin.actor, also=[drawn])
        await self._settle(decided, cancel=True, drawn=drawn)
        if override is not None:
            await self._overridden(adopted, origin.actor, override)
        return adopted

    async def _overridden(self, adopted: Rollout, actor: str, reason: str) -> None:
        """Record the approver's override of the freeze for the adopted rollout, and say it in
        its thread (the audit event of the Adopt names it: `ReleaseLane.refusal`)."""
        freeze = await self._lane.override_for(rollout_id=adopted.id, actor=actor, reason=reason)
        if freeze is not None:
            await self._effects.tell(adopted, FreezeOverridden(actor, adopted.tag, reason, freeze))

    async def _reject(self, origin: Origin, card: UnfollowedRun) -> None:
        environments = await still_waiting(self._effects.store, self._rules, card.run_id)
        comment = rejected_comment(origin.actor)
        if not await self._effects.github.review(
            run_id=card.run_id, environments=environments, state="rejected", comment=comment
        ):  # nothing waited any more (cancelled, answered on GitHub first): rejected nothing
            await self._settle(card.decided(RunFate.NOTHING_WAITED, by=origin.actor), cancel=True)
            raise InvalidTransition(nothing_rejected(card))
        saved_then_failed(ANSWERED_UNSAVED, where=ON_GITHUB)  # rejected on GitHub: never again
        await self._settle(card.decided(RunFate.REJECTED, by=origin.actor), cancel=True)
        saved_then_failed(REST_OWED)  # rejected, its card says so: its claim is done
        await self._after_rejecting(card.run_id)

    async def _by_default(self, card: UnfollowedRun) -> None:
        """The default answer. An `approve` default approves only the environment on the card,
        and never while deploys are frozen or the lane is locked, nor when the plan refuses it
        (`approve_refusal`), nor a re-run of a run whose rollout ended (it redeploys that
        release, rolled back maybe): then it rejects. What it answered is recorded in the
        timer's payload, and the card redrawn without its buttons (also when nothing waits: it
        answered nothing, and a person answers the rest)."""
        if card.fate is RunFate.REJECTED:  # by an earlier try whose rest failed: the rest only
            return await self._after_rejecting(card.run_id)  # its card stays as it is
        answer = "reject" if card.ended_rollout else self._default
        why = ""
        try:
            environments = await still_waiting(self._effects.store, self._rules, card.run_id)
        except InvalidCommand as gone:
            log.info("no default answer: %s", gone.message)
            environments = []
        if environments and answer == "approve":
            why = await approve_refused(self._effects.github, self._rollouts.plan, card)
            if not why and await self._lane.refusal(actor=BOT) is not None:
                why = "deploys are frozen or the release lane is locked"
            if why:
                log.info("run %s: %s, so the default rejects it", card.run_id, why)
                answer = "reject"
            else:  # when the run moved on from it, nothing is approved
                environments = [e for e in environments if e == card.environment]
        if not environments:
            await self._settle(card.decided(RunFate.NOTHING_WAITED), cancel=False)
            return
        await self._effects.github.review(
            run_id=card.run_id,
            environments=environments,
            state="rejected" if answer == "reject" else "approved",
            comment=default_comment(answer, self._timeout, refused=why),
        )
        fate = RunFate.REJECTED if answer == "reject" else RunFate.APPROVED
        await self._settle(card.decided(fate, refused=why), cancel=False)
        if answer == "reject":
            await self._after_rejecting(card.run_id)

    async def _after_rejecting(self, run_id: int) -> None:
        """Requests of the run that came while it was being rejected (its failure jobs start at
        once): rejected too. Those that come later are, in `kept`."""
        await reject_rest(
            self._effects.github,
            run_id,
            [r.environment for r in await self._rules.open_for_run(run_id)],
        )

    async def _settle(
        self, card: UnfollowedRun, *, cancel: bool, drawn: NewMessage | None = None
    ) -> None:
        """Record what became of the run in its timer's payload (read by later requests of
        it), with the card's redraw (unless `drawn` went with the adopted rollout already), in
        one transaction; then deliver the card (the outbox: retried, never twice)."""
        effects = self._effects
        key = timer_key(card.run_id)
        timer = await effects.timers.get(key=key)
        payload = {**((timer.payload if timer is not None else None) or {}), "card": card.to_json()}
        outbox = [_drawn(self._channel, card)] if drawn is None else []
        await effects.timers.settle(
            key=key, payload=payload, now=effects.clock(), cancel=cancel, outbox=outbox
        )
        await effects.outbox.send(outbox if drawn is None else [drawn], written=True)


def _drawn(channel_id: str, card: UnfollowedRun) -> NewMessage:
    """The run's card, posted or redrawn as it stands."""
    return NewMessage(kind=UNFOLLOWED, channel_id=channel_id, payload=card.to_json())


def _fate(timer: Timer) -> RunFate:
    """What became of the run, as recorded in its timer's payload."""
    return UnfollowedRun.from_json(dict((timer.payload or {})["card"])).fate
