"""The effect runner: saves a rollout's decision and carries out its effects, in one place.

Every use case (preflight, following a run, gating, people's actions) asks the pure machine
(`bot.domain.rollout`) for a `Decision`, then hands it here: the new state is saved with an
optimistic version check and, in the same transaction, what the channel must be told of it
(the outbox) and the durable timers of the windows it starts or moves; then the other effects
run in order: reviews on GitHub, a window timer written again or cancelled (a decision's metrics
read is the gate's, made outside the rollout's lock: `bot.services.gating`).
What the thread is told outside a decision (`tell`, a card `redraw`) is written here too.
Operations on one rollout are serialised within a process (`lock`); across processes the
version check makes the loser see the winner's result.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bot.domain import rollout as machine
from bot.domain.errors import ConcurrentChange, GitHubError
from bot.domain.freeze import FREEZE_END_TIMER
from bot.domain.freeze_all import FREEZE_ALL_TOLD_TIMER, FREEZE_LIFTED_TIMER
from bot.domain.npm import RELEASE_TIMER
from bot.domain.plan import RolloutPlan, settle_of
from bot.domain.protection_rules import UNCONFIRMED_TIMER
from bot.domain.rollout import (
    UNREAD_AFTER,
    Announce,
    CancelWindow,
    ClockSkewed,
    Decision,
    Effect,
    Event,
    InvalidTransition,
    Phase,
    ReadMetrics,
    Review,
    Rollout,
    ScheduleWindow,
    TracksLeft,
)
from bot.domain.rollout_summary import NOT_STOPPED
from bot.domain.run import RunSnapshot
from bot.domain.schedule import dispatch_timer_key
from bot.domain.unfollowed_runs import TIMER as UNFOLLOWED_TIMER
from bot.services.acting import acted, owed_after, saved_then_failed
from bot.services.clock_skew import warn_github_skewed
from bot.services.keyed_locks import KeyedLocks
from bot.services.outbox import Outbox
from bot.services.outbox_messages import SUMMARY, card, summary, told
from bot.services.ports import Clock, GitHubGateway, ReviewAhead
from bot.services.records import NewAuditEvent, NewMessage, NewTimer
from bot.services.reviews import refusal_of, send_review, tell_overtaken, tell_refused
from bot.services.store_ports import AuditLog, ProtectionRuleRequests, Rollouts, Timers
from bot.services.telemetry import UNTRACKED, Telemetry
from bot.services.words import Words

log = logging.getLogger(__name__)

WINDOW_TIMER = "window"
DISPATCH_TIMER = "scheduled_dispatch"
TIMER_KINDS = frozenset(
    {
        WINDOW_TIMER,
        machine.EARLY_GATE_TIMER,
        DISPATCH_TIMER,
        UNFOLLOWED_TIMER,
        RELEASE_TIMER,
        UNCONFIRMED_TIMER,
        FREEZE_END_TIMER,
        FREEZE_ALL_TOLD_TIMER,
        FREEZE_LIFTED_TIMER,
    }
)
"""Every kind of timer this version schedules, hence fires: a kind not here was scheduled by
a newer version, and only its replicas claim it (`bot.services.scheduler`)."""
CONCURRENT_RETRIES = 4
"""Tries of a timer's or the poller's step while other replicas keep saving the rollout."""

T = TypeVar("T")


def window_timer_of(rollout_id: str, window: ScheduleWindow, plan: RolloutPlan) -> NewTimer:
    """The timer that closes `window`, fired `settle` after its end (its key and payload name
    the end): the figures the window's last minutes send late are in by then."""
    ends, settle = window.due_at, settle_of(plan.track(window.track).metrics)
    payload = machine.window_timer_payload(window.track, window.stage, ends)
    return NewTimer(window.timer_key(rollout_id), WINDOW_TIMER, ends + settle, payload)


def dispatch_timer(rollout_id: str, at: datetime) -> NewTimer:
    """The durable timer of a dispatch scheduled for `at`, written with its rollout."""
    return NewTimer(
        key=dispatch_timer_key(rollout_id, at),
        kind=DISPATCH_TIMER,
        due_at=at,
        payload={"at": at.isoformat()},
    )


@dataclass(kw_only=True, eq=False)
class EffectRunner:
    """Loads and saves rollouts, carries out decisions' effects, and keeps the audit trail."""

    store: Rollouts
    timers: Timers
    """The durable timers (the use cases that schedule their own: a run nobody follows)."""
    audit: AuditLog
    github: GitHubGateway
    outbox: Outbox
    clock: Clock
    words: Words
    """The edge's words, here to keep a refusal's answer as data (`Words.recorded`)."""
    on_timer_scheduled: Callable[[], None] = lambda: None
    telemetry: Telemetry = UNTRACKED
    rule_requests: ProtectionRuleRequests | None = None
    unanswered_after: timedelta = UNREAD_AFTER
    """How long GitHub may fail a review of the bot's own path before the thread is told
    (GITHUB_UNREADABLE_SECONDS)."""
    _locks: KeyedLocks = field(default_factory=KeyedLocks, init=False)
    """Per rollout, while someone holds or awaits its lock (`lock`)."""

    # -- loading ------------------------------------------------------------------------------

    async def read_run(self, run_id: int) -> RunSnapshot:
        """The run as GitHub shows it now, with what holds its waits (`held`)."""
        read_at = self.clock()
        return await self.held(await self.github.reported(run_id), read_at=read_at)

    async def held(self, reported: RunSnapshot, *, read_at: datetime) -> RunSnapshot:
        """The run GitHub reported (its read begun at `read_at`), with what holds its waits;
        a wait for the App's rule whose request never arrived (found from its deployment) is
        kept as a request, to be answered like one. A completed run waits for nothing: its
        requests still open (one at an environment the plan does not name, which nothing
        answers, or one the run was cancelled at) are closed, so that no sweep takes them
        for a run that still waits."""
        if reported.completed and self.rule_requests is not None:
            closed = await self.rule_requests.close_run(
                run_id=reported.run_id, asked_by=read_at, at=self.clock()
            )
            if closed:
                log.info(
                    "run %s completed: %d protection rule request(s) it left open closed",
                    reported.run_id,
                    closed,
                )
        snapshot = await self.github.held(reported, read_at=read_at)
        for request in snapshot.unrequested:
            if self.rule_requests is not None and await self.rule_requests.remember(request):
                log.warning(
                    "GitHub: run %s waits at %s for the App's rule, and its request never "
                    "arrived: recovered from the deployment still waiting",
                    reported.run_id,
                    request.environment,
                )
        return snapshot

    async def get(self, rollout_id: str) -> Rollout:
        rollout = await self.store.get(rollout_id)
        if rollout is None:
            raise InvalidTransition(f"There is no rollout {rollout_id}.")
        return rollout

    async def with_plan(self, rollout_id: str) -> tuple[Rollout, RolloutPlan]:
        """The rollout and the plan it was started with, in one read."""
        found = await self.store.with_plan(rollout_id)
        if found is None:
            raise InvalidTransition(f"There is no rollout {rollout_id}.")
        return found

    async def plan_of(self, rollout: Rollout) -> RolloutPlan:
        """The plan the rollout was started with (a later ROLLOUT_PLAN change does not move it)."""
        return await self.store.plan(rollout.id)

    def lock(self, rollout_id: str) -> AbstractAsyncContextManager[None]:
        """Serialises one rollout's operations in this process (`async with`), while used."""
        return self._locks(rollout_id)

    async def serialised(self, rollout_id: str, act: Callable[[], Awaitable[T]]) -> T:
        """Run `act` (which loads the rollout afresh) again when another replica saved the
        rollout first, so concurrent replicas take turns instead of failing (optimistic
        retry). Every step is level-triggered: a retry redoes only what is still missing."""
        for _ in range(CONCURRENT_RETRIES - 1):
            try:
                return await act()
            except ConcurrentChange:
                log.info("rollout %s changed on another replica; acting on its state", rollout_id)
        return await act()

    # -- effects ------------------------------------------------------------------------------

    async def apply(
        self,
        before: Rollout,
        decision: Decision,
        plan: RolloutPlan,
        *,
        also: Sequence[NewMessage] = (),
        audit: Sequence[NewAuditEvent] = (),
        ahead: ReviewAhead | None = None,
    ) -> Rollout:
        """Save the decision's rollout with what the channel must be told of it (its
        announcements, then `also`, then the card's redraw), the `audit` events that record
        it and the timers of the windows it starts or moves in one transaction, carry out its
        other effects in order, and deliver the messages.
        A decision that changes nothing writes its messages and events on their own. `ahead`:
        what its reviews read on GitHub before they post, read before the lock (a look's)."""
        # The gate reads a stage's figures itself, without the rollout's lock.
        assert not any(isinstance(e, ReadMetrics) for e in decision.effects), decision.effects
        rollout = decision.rollout
        messages = [
            message
            for effect in decision.effects
            if isinstance(effect, Announce)
            for message in told(
                rollout,
                effect.event,
                notifications=plan.notifications,
                failure=effect.failure,
                detail=effect.detail,
            )
        ]
        messages.extend(also)
        changed = rollout != before
        # The timer of a window it starts or moves is written with its save: one lost after it
        # left the window with no timer to end it, and its stage evaluating for good once a
        # Re-evaluate saved it so (`docs/reliability.md`). A look writes it again, unsaved.
        windows = [e for e in decision.effects if changed and isinstance(e, ScheduleWindow)]
        # An approval goes to GitHub only once the rollout is checked still as read (a stop
        # saved since must fail it). One asked again (GitHub failed it) changes nothing: checked,
        # not saved, so that a person's action decided meanwhile is not refused for it.
        approves = any(isinstance(e, Review) and e.approve for e in decision.effects)
        if approves and not changed and (await self.get(rollout.id)).version != rollout.version:
            raise ConcurrentChange(f"{rollout.id} saved since read", rollout_id=rollout.id)
        if changed:
            messages.append(card(rollout))
            if before.phase is not Phase.ENDED and rollout.phase is Phase.ENDED and rollout.run_id:
                # Saved with the ending: one replica wins, one summary. Not again after a re-run
                # when the first is posted, or still to be (drawn at delivery): only if given up.
                trail = await self.audit.list_for_rollout(rollout.id)
                rerun = any(e.action == "rerun_failure_job" and e.result == "ok" for e in trail)
                if not rerun or not await self.outbox.store.kept(rollout.id, SUMMARY):
                    messages.append(summary(rollout))
            timers = [window_timer_of(rollout.id, window, plan) for window in windows]
            saving = self.store.save(rollout, outbox=messages, audit=audit, timers=timers)
            rollout = await acted(saving)
            if timers:
                self.on_timer_scheduled()
        else:
            if messages:
                await self.outbox.add(messages)
            if audit:
                await self.audit.add(audit)
        left = [effect for effect in decision.effects if effect not in windows]
        refused: list[tuple[Review, GitHubError]] = []
        overtaken: list[Review] = []
        try:
            while left:
                said = await self._carry_out(rollout, left[0], plan, ahead)
                if isinstance(said, Review):
                    overtaken.append(said)
                elif said is not None:
                    refused.append(said)
                del left[0]
        except Exception:
            if changed:  # saved: the request acting under a claim did it, what is left owed
                saved_then_failed(owed_after(left))
            raise
        if messages:
            await self.outbox.flush(rollout.id, known=(rollout, plan))
        if overtaken:  # the rollout ends: what GitHub refused meanwhile is told no more
            return await tell_overtaken(self, rollout, plan, overtaken[0])
        return await tell_refused(self, rollout, plan, refused) if refused else rollout

    async def _carry_out(
        self, rollout: Rollout, effect: Effect, plan: RolloutPlan, ahead: ReviewAhead | None
    ) -> tuple[Review, GitHubError] | Review | None:
        """One effect of a saved decision, in its order (a review's failure is recorded); a
        review GitHub refused or failed, with its error, or a review (an approval, a stopped
        track's rejection) GitHub took that a re-run overtook (`bot.services.reviews`)."""
        if isinstance(effect, Review):
            return await refusal_of(self, rollout, effect, ahead)
        if isinstance(effect, ScheduleWindow):  # a running window's, written again (unsaved)
            await self.window_timer(rollout, window_timer_of(rollout.id, effect, plan))
        elif isinstance(effect, CancelWindow):
            await self.timers.cancel(
                key=effect.timer_key(rollout.id),
                now=self.clock(),
            )
        elif isinstance(effect, ClockSkewed):
            warn_github_skewed(rollout, effect)
        return None

    async def window_timer(self, rollout: Rollout, timer: NewTimer) -> None:
        """Write (once per key), on its own, a `timer` of `rollout` that closes a window
        (`window_timer_of`, a backstop) or backs a failing verdict on it (`EARLY_GATE_TIMER`)."""
        await self.timers.schedule(
            key=timer.key,
            kind=timer.kind,
            due_at=timer.due_at,
            now=self.clock(),
            rollout_id=rollout.id,
            service=rollout.service,
            payload=timer.payload,
        )
        self.on_timer_scheduled()

    def timers_changed(self) -> None:
        """A timer was written elsewhere (with a new rollout): the scheduler looks again."""
        self.on_timer_scheduled()

    async def tell(self, rollout: Rollout, event: Event) -> None:
        """A reply in the rollout's thread, telling of `event`, that goes with no state change
        (delivered at once)."""
        await self.outbox.send(told(rollout, event))

    async def redraw(
        self,
        rollout: Rollout,
        *,
        saying: Event | None = None,
        audit: Sequence[NewAuditEvent] = (),
    ) -> Rollout:
        """Save the rollout as a new card version (its state unchanged, so a button on the
        card may be clicked again), after a thread reply `saying` when given, with the `audit`
        events that record it; deliver both."""
        said = told(rollout, saying) if saying is not None else []
        saved = await self.store.save(rollout, outbox=[*said, card(rollout)], audit=audit)
        await self.outbox.flush(rollout.id)
        return saved

    async def review(self, rollout: Rollout, review: Review, *, strict: bool = False) -> bool:
        """Send a review (`bot.services.reviews.send_review`)."""
        return await send_review(self, rollout, review, strict=strict)

    # -- audit ----------------------------------------------------------------------------------

    async def refuse(
        self, actor: str, action: str, rollout: Rollout, why: str, *, track: str | None = None
    ) -> None:
        """Record a refusal; `why`, the answer's words, is kept as data (`Words.recorded`)."""
        detail = self.words.recorded(why).detail()
        await self.record(self.event(actor, action, "refused", rollout, detail, track=track))

    async def record(self, *events: NewAuditEvent) -> None:
        """Write audit events that go with no saved state change of the rollout (a refusal, a
        GitHub call, a change another replica saved)."""
        await self.audit.add(events)

    def event(
        self,
        actor: str,
        action: str,
        result: str,
        rollout: Rollout,
        detail: Mapping[str, Any] | None = None,
        *,
        track: str | None = None,
        stage: str | None = None,
    ) -> NewAuditEvent:
        """An audit event of the rollout, now, to save with the state change it records."""
        return NewAuditEvent(
            at=self.clock(),
            actor=actor,
            action=action,
            result=result,
            rollout_id=rollout.id,
            track=track,
            stage=stage,
            detail=detail,
        )

    def left_events(
        self, actor: str, action: str, rollout: Rollout, decision: Decision
    ) -> list[NewAuditEvent]:
        """One `not_stopped` audit event for each track the decision's stop left as it is
        (see `TracksLeft`): the trail says what a Roll back or a failed gate did not stop."""
        return [
            self.event(
                actor,
                action,
                NOT_STOPPED,
                rollout,
                {"why": left.why.value, "state": left.state.value, "reached": left.reached},
                track=left.name,
            )
            for effect in decision.effects
            if isinstance(effect, Announce) and isinstance(effect.event, TracksLeft)
            for left in effect.event.tracks
        ]
