"""People's controls on a rollout, exactly once, by the right hands, on the record.

Every state-changing command, click and form goes through `ControlService`, which, in order:
refuses requests from outside the release channels and from people who are not approvers;
tells a click on a stale card where the rollout stands now; applies the plan's two-person
rule; drops a Slack delivery seen before (a retry); claims the effect's key in the database
(`storage.claims`: one winner across every replica); then makes the one service call, and
completes the claim, or releases it when the action failed so the click can be repeated.
Whoever loses the claim waits for the winner and is told "already done by @someone at
<time>". Each command, click and form is one audit event with its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any, TypeVar

from bot.audit import AuditTrail, Timeline
from bot.authz import Approvers
from bot.domain.controls import (
    AlreadyDone,
    CardRef,
    Control,
    Hold,
    StaleCard,
    card_applies,
    delivery_key,
    describe,
    effect_key,
    hold_of,
    two_person_refusal,
)
from bot.domain.errors import (
    GitHubError,
    NotAReleaseChannel,
    NotAuthorized,
    RolloutError,
    RunNotIdentified,
)
from bot.domain.metrics import Figures
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import (
    InvalidTransition,
    Phase,
    Rollout,
    TrackState,
    holding_tracks,
    slack_time,
)
from bot.outbox import Outbox, told
from bot.ports import Clock, GitHubGateway
from bot.rollouts import RolloutService, where_it_stands
from storage.claims import Claim, ClaimState, ClaimStore
from storage.repositories import AuditLog

log = logging.getLogger(__name__)

T = TypeVar("T")

HISTORY_DEPTH = 200
"""How many recent rollouts are searched for the previous good release of a track."""

_VERBS = {
    Control.START: "start a rollout",
    Control.CONFIRM_FLAGS: "confirm feature flags",
    Control.DISPATCH: "dispatch a rollout",
    Control.CANCEL: "cancel a rollout",
    Control.PROMOTE: "promote a rollout",
    Control.ROLLBACK: "roll back a rollout",
    Control.KILL: "trip the kill-switch",
    Control.EXTEND: "extend a window",
    Control.EXTEND_BY: "extend a window",
    Control.REEVALUATE: "re-evaluate a gate",
    Control.FIGURES: "enter gate figures",
    Control.REDEPLOY: "redeploy a release",
    Control.RECHECK: "re-check a preflight",
}


class Via(StrEnum):
    """How a request reached the bot."""

    COMMAND = "command"
    CLICK = "click"
    FORM = "form"
    """A modal submitted; its channel was checked when the click opened it."""


@dataclass(frozen=True)
class Origin:
    """Who asks, from which channel, in which Slack delivery (`trigger_id`) and retry."""

    actor: str
    channel_id: str
    via: Via
    delivery: str | None = None
    retry: int = 0


@dataclass(frozen=True)
class RedeployOffer:
    """What Roll back after a completed track would do: put `tag` back in place of
    `replaced_tag`, through `workflow` (None: as a new rollout of `tag`)."""

    rollout_id: str
    track: str
    track_label: str
    tag: str
    replaced_tag: str
    workflow: str | None
    version: int


@dataclass
class _Entry:
    """The audit event of one command, click or form, filled in while it is handled."""

    origin: Origin
    name: str
    rollout_id: str | None = None
    track: str | None = None
    stage: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    delivered: bool = False
    """The Slack delivery was claimed (a command promoting two tracks claims it once)."""


_current: ContextVar[_Entry | None] = ContextVar("control_entry", default=None)


class ControlService:
    """The one way people change rollouts: checks, exactly-once claims, audit."""

    def __init__(
        self,
        *,
        rollouts: RolloutService,
        claims: ClaimStore,
        audit: AuditLog,
        trail: AuditTrail,
        approvers: Approvers,
        release_channels: tuple[str, ...],
        github: GitHubGateway,
        outbox: Outbox,
        clock: Clock,
        holder_wait: timedelta = timedelta(seconds=10),
        poll_interval: float = 0.1,
    ) -> None:
        self._rollouts = rollouts
        self._claims = claims
        self._audit = audit
        self._trail = trail
        self._approvers = approvers
        self._release_channels = release_channels
        self._github = github
        self._outbox = outbox
        self._clock = clock
        self._holder_wait = holder_wait.total_seconds()
        self._poll_interval = poll_interval

    # -- the audit event of a request -----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def audited(
        self,
        origin: Origin,
        name: str,
        *,
        rollout_id: str | None = None,
        track: str | None = None,
        stage: str | None = None,
    ) -> AsyncIterator[None]:
        """Record the request's outcome as one audit event (`click:promote`, `command:status`):
        `ok`, `refused`, `stale`, `duplicate`, or the error's code. A control called while a
        command is being recorded adds what it acts on to the command's event."""
        outer = _current.get()
        if outer is not None:
            _fill(outer, rollout_id=rollout_id, track=track, stage=stage)
            yield
            return
        entry = _Entry(origin, name, rollout_id, track, stage)
        if origin.retry:
            entry.detail["slack_retry"] = origin.retry
        token = _current.set(entry)
        result = "ok"
        try:
            yield
        except Exception as error:
            result, why = _outcome(error)
            entry.detail.update(why)
            raise
        except BaseException:
            result = "interrupted"  # shut down mid-request
            raise
        finally:
            _current.reset(token)
            await self._audit.append(
                at=self._clock(),
                actor=origin.actor,
                action=f"{origin.via}:{name}",
                result=result,
                rollout_id=entry.rollout_id,
                track=entry.track,
                stage=entry.stage,
                detail=entry.detail or None,
            )

    async def timeline(self, tag: str) -> Timeline:
        """The audit timeline of the tag's newest rollout (raises UnknownTag). Reading it is
        audited without the rollout, so looking never adds to the timeline looked at."""
        return await self._trail.timeline(tag)

    # -- commands and buttons ---------------------------------------------------------------

    async def start(self, origin: Origin, *, tag: str, flags_ready: bool) -> Rollout:
        async with self.audited(origin, Control.START):
            await self._admit(origin, Control.START)
            await self._delivery(origin, Control.START)
            started = await self._rollouts.start(
                tag=tag, flags_ready=flags_ready, channel_id=origin.channel_id, actor=origin.actor
            )
            _fill(_current.get(), rollout_id=started.id)
            return started

    async def confirm_flags(self, origin: Origin, card: CardRef) -> Rollout:
        return await self._act(
            origin,
            Control.CONFIRM_FLAGS,
            card,
            lambda: self._rollouts.confirm_flags(rollout_id=card.rollout_id, actor=origin.actor),
        )

    async def dispatch(self, origin: Origin, card: CardRef) -> Rollout:
        return await self._act(
            origin,
            Control.DISPATCH,
            card,
            lambda: self._rollouts.dispatch(rollout_id=card.rollout_id, actor=origin.actor),
        )

    async def recheck(self, origin: Origin, card: CardRef) -> Rollout:
        """Run the preflight's GitHub checks again; once per card version."""
        return await self._act(
            origin,
            Control.RECHECK,
            card,
            lambda: self._rollouts.recheck(rollout_id=card.rollout_id, actor=origin.actor),
        )

    async def cancel(self, origin: Origin, card: CardRef) -> None:
        await self._act(
            origin,
            Control.CANCEL,
            card,
            lambda: self._rollouts.cancel(rollout_id=card.rollout_id, actor=origin.actor),
        )

    async def promote(self, origin: Origin, card: CardRef | None = None) -> Rollout:
        """Promote the track on the card (a click), or every track held on a gate (the command).

        Only a card drawn for an INCONCLUSIVE hold overrides it (its button asked to confirm
        that); a command, or a card drawn for another hold, never does."""
        if card is not None:
            return await self._promote(
                origin, card, override=card.hold in (Hold.INCONCLUSIVE, Hold.UNGATED)
            )
        async with self.audited(origin, Control.PROMOTE):
            await self._admit(origin, Control.PROMOTE)
            running = [r for r in await self._rollouts.active() if r.phase is Phase.RUNNING]
            await self._delivery(
                origin, Control.PROMOTE, CardRef(running[0].id) if running else None
            )
            held = holding_tracks(running[0]) if running else []
            if not held:  # the service explains: nothing in progress, or where it stands
                return await self._rollouts.promote(actor=origin.actor)
            rollout = running[0]
            for name in held:
                stage = rollout.track(name).current
                assert stage is not None  # a holding track is at a stage
                # The command confirms the hold it finds; only the card's dialog overrides.
                card = CardRef(rollout.id, name, stage.key, rollout.version, hold_of(stage))
                promoted = await self._promote(origin, card, override=False)
            return promoted

    async def _promote(self, origin: Origin, card: CardRef, *, override: bool) -> Rollout:
        return await self._act(
            origin,
            Control.PROMOTE,
            card,
            lambda: self._rollouts.promote(
                actor=origin.actor,
                rollout_id=card.rollout_id,
                track=card.track,
                stage=card.stage,
                override=override,
            ),
        )

    async def abort(
        self, origin: Origin, *, gate: str, reason: str = "", card: CardRef | None = None
    ) -> Rollout:
        """Roll back (`gate="relay"`) or trip the kill-switch (`"desktop"`) of the card's
        rollout, or of the rollout in progress (the command)."""
        control = Control.ROLLBACK if gate == "relay" else Control.KILL
        if card is None:
            async with self.audited(origin, control):
                await self._admit(origin, control)
                running = [
                    r for r in await self._rollouts.active() if r.phase is not Phase.PREFLIGHT
                ]
                await self._delivery(origin, control, CardRef(running[0].id) if running else None)
                if not running:  # the service explains
                    return await self._rollouts.abort(actor=origin.actor, gate=gate, reason=reason)
                card = CardRef(running[0].id)
                return await self._abort(origin, control, card, gate=gate, reason=reason)
        return await self._abort(origin, control, card, gate=gate, reason=reason)

    async def _abort(
        self, origin: Origin, control: Control, card: CardRef, *, gate: str, reason: str
    ) -> Rollout:
        async def act() -> Rollout:
            try:
                return await self._rollouts.abort(
                    actor=origin.actor, gate=gate, reason=reason, rollout_id=card.rollout_id
                )
            except InvalidTransition as error:
                rollout = await self._rollouts.get(card.rollout_id)
                plan = await self._rollouts.plan_of(rollout)
                relay = [name for name, t in plan.tracks.items() if t.gate.value == "relay"]
                if gate == "relay" and any(_completed(rollout, name) for name in relay):
                    raise InvalidTransition(
                        f"{error.message} To go back to the previous release, click "
                        "*Roll back to the previous release…* on the rollout's card."
                    ) from None
                raise

        return await self._act(origin, control, card, act)

    async def extend(
        self, origin: Origin, card: CardRef, *, by: timedelta, control: Control = Control.EXTEND
    ) -> Rollout:
        """Extend the card's window: by the +15m button (EXTEND) or a typed duration
        (EXTEND_BY); each card version extends once per control."""
        track = _named_track(card)
        return await self._act(
            origin,
            control,
            card,
            lambda: self._rollouts.extend(
                actor=origin.actor, rollout_id=card.rollout_id, track=track, by=by
            ),
        )

    async def reevaluate(self, origin: Origin, card: CardRef) -> Rollout:
        track = _named_track(card)
        return await self._act(
            origin,
            Control.REEVALUATE,
            card,
            lambda: self._rollouts.reevaluate(
                actor=origin.actor, rollout_id=card.rollout_id, track=track
            ),
        )

    async def submit_figures(self, origin: Origin, card: CardRef, figures: Figures) -> None:
        """Figures typed for a stage whose window ended; one submission per evaluation."""
        track, stage = _named_track(card), card.stage or ""
        rollout = await self._rollouts.get(card.rollout_id)
        observed = rollout.track(track).stage(stage) if stage else None
        ends = observed.window_ends_at if observed is not None else None
        # One evaluation per window end: a window extended after INCONCLUSIVE asks again.
        keyed = CardRef(card.rollout_id, track, stage, int(ends.timestamp()) if ends else 0)
        await self._act(
            origin,
            Control.FIGURES,
            keyed,
            lambda: self._rollouts.submit_figures(
                rollout_id=card.rollout_id,
                track=track,
                stage=stage,
                figures=figures,
                actor=origin.actor,
            ),
        )

    async def open_form(
        self, origin: Origin, control: Control, card: CardRef
    ) -> tuple[Rollout, RolloutPlan]:
        """A click that opens a form (figures, custom extension): allowed, and still current?"""
        async with self.audited(
            origin,
            f"{control}_form",
            rollout_id=card.rollout_id,
            track=card.track,
            stage=card.stage,
        ):
            await self._admit(origin, control)
            rollout = await self._rollouts.get(card.rollout_id)
            plan = await self._rollouts.plan_of(rollout)
            if not card_applies(control, rollout, plan, card):
                raise await self._stale(control, rollout, plan, card)
            return rollout, plan

    # -- redeploying the previous good release ---------------------------------------------------

    async def redeploy_offer(self, origin: Origin, card: CardRef) -> RedeployOffer:
        """What Roll back on a completed track would redeploy (for its confirm dialog)."""
        track = _named_track(card)
        async with self.audited(
            origin, f"{Control.REDEPLOY}_form", rollout_id=card.rollout_id, track=track
        ):
            rollout, plan = await self._checked(origin, Control.REDEPLOY, card)
            previous = await self._previous_good(rollout, plan, track)
            spec = plan.track(track).redeploy
            return RedeployOffer(
                rollout_id=rollout.id,
                track=track,
                track_label=plan.track(track).label,
                tag=previous.tag,
                replaced_tag=rollout.tag,
                workflow=spec.workflow if spec is not None else None,
                version=rollout.version,
            )

    async def redeploy(self, origin: Origin, card: CardRef, *, tag: str) -> str:
        """Put `tag` (the previous good release, as the confirm dialog named it) back in place
        of the card's rollout: through the plan's rollback workflow, or as a new rollout."""
        track = _named_track(card)

        async def act() -> str:
            rollout = await self._rollouts.get(card.rollout_id)
            plan = await self._rollouts.plan_of(rollout)
            previous = await self._previous_good(rollout, plan, track)
            if previous.tag != tag:
                raise StaleCard(
                    f"This form is out of date: the previous good release of "
                    f"{plan.track(track).label} is now `{previous.tag}`, not `{tag}`. "
                    "Click Roll back again."
                )
            return await self._redeploy(origin, rollout, plan, track, previous.tag)

        return await self._act(origin, Control.REDEPLOY, CardRef(card.rollout_id, track), act)

    async def _redeploy(
        self, origin: Origin, rollout: Rollout, plan: RolloutPlan, track: str, tag: str
    ) -> str:
        spec = plan.track(track).redeploy
        base = {"tag": tag, "replaced_tag": rollout.tag}
        if spec is None:
            started = await self._rollouts.start(
                tag=tag, flags_ready=False, channel_id=rollout.channel_id, actor=origin.actor
            )
            text = (
                f":rewind: <@{origin.actor}> is redeploying `{tag}` in place of `{rollout.tag}` "
                f"as a new rollout ({started.id}): follow its preflight card."
            )
            await self._record(
                origin, "redeploy", "ok", rollout, track, {**base, "new": started.id}
            )
            await self._outbox.send(told(rollout, text))
            return text
        inputs = spec.dispatch_inputs(tag=tag, replaced_tag=rollout.tag)
        try:
            run = await self._github.dispatch(
                workflow_file=spec.workflow,
                ref=spec.ref,
                inputs=inputs,
                dispatched_at=self._clock(),
            )
        except GitHubError as error:
            result = "run_not_identified" if isinstance(error, RunNotIdentified) else "github_error"
            await self._record(
                origin, "redeploy", result, rollout, track, {**base, "error": error.message}
            )
            raise
        text = (
            f":rewind: <@{origin.actor}> is redeploying `{tag}` in place of `{rollout.tag}` "
            f"through *{spec.workflow}*: <{run.html_url}|run {run.run_id}>."
        )
        await self._record(origin, "redeploy", "ok", rollout, track, {**base, "run_id": run.run_id})
        await self._outbox.send(told(rollout, text))
        return text

    async def _previous_good(self, rollout: Rollout, plan: RolloutPlan, track: str) -> Rollout:
        """The last rollout before this one whose `track` completed, with another tag. Only
        the newest completed rollout of the track (the one in production) offers it."""
        label = plan.track(track).label
        completed = [
            r for r in await self._rollouts.history(limit=HISTORY_DEPTH) if _completed(r, track)
        ]
        if completed and completed[0].id != rollout.id:
            newer = completed[0]
            raise StaleCard(
                f"This card is out of date: `{newer.tag}` ({newer.id}) completed {label} after "
                f"`{rollout.tag}`. Roll back from the card of `{newer.tag}`."
            )
        earlier = next(
            (r for r in completed if r.created_at < rollout.created_at and r.tag != rollout.tag),
            None,
        )
        if earlier is None:
            raise InvalidTransition(
                f"No rollout before `{rollout.tag}` completed {label}, so there is no previous "
                f"good release to redeploy. Start one with `/rollout start <tag>`."
            )
        return earlier

    # -- the steps every control goes through ------------------------------------------------------

    async def _act(
        self, origin: Origin, control: Control, card: CardRef, act: Callable[[], Awaitable[T]]
    ) -> T:
        async with self.audited(
            origin, control, rollout_id=card.rollout_id, track=card.track, stage=card.stage
        ):
            rollout, plan = await self._checked(origin, control, card)
            await self._delivery(origin, control, card, describe(control, rollout, plan, card))
            return await self._once(origin, control, card, rollout, plan, act)

    async def _checked(
        self, origin: Origin, control: Control, card: CardRef
    ) -> tuple[Rollout, RolloutPlan]:
        """The rollout and its plan, once the request is allowed and the card still applies."""
        await self._admit(origin, control)
        rollout = await self._rollouts.get(card.rollout_id)
        plan = await self._rollouts.plan_of(rollout)
        if not card_applies(control, rollout, plan, card):
            raise await self._stale(control, rollout, plan, card)
        refusal = two_person_refusal(
            plan, rollout, control=control, track=card.track, actor=origin.actor
        )
        if refusal is not None:
            raise NotAuthorized(refusal)
        return rollout, plan

    async def _admit(self, origin: Origin, control: Control) -> None:
        """Refuse requests from outside the release channels and from non-approvers."""
        if origin.via is not Via.FORM and origin.channel_id not in self._release_channels:
            channels = ", ".join(f"<#{channel}>" for channel in self._release_channels)
            raise NotAReleaseChannel(
                f"Rollouts are steered from the release channels only ({channels}); this "
                f"came from <#{origin.channel_id}>. Use the card or `/rollout` there, or ask "
                "your bot admin to add this channel to RELEASE_CHANNELS."
            )
        await self._approvers.require(origin.actor, _VERBS[control])

    async def _delivery(
        self,
        origin: Origin,
        control: Control,
        card: CardRef | None = None,
        what: str | None = None,
    ) -> None:
        """A Slack delivery is acted on once: a repeat of it (same trigger_id) is told who
        did `what` (the effect in words) and when."""
        entry = _current.get()
        if origin.delivery is None or (entry is not None and entry.delivered):
            return
        key = delivery_key(origin.delivery)
        seen = await self._claims.claim(
            key=key,
            action=f"delivery:{control}",
            actor=origin.actor,
            now=self._clock(),
            rollout_id=card.rollout_id if card else None,
            done=True,
        )
        if seen is None:
            first = await self._claims.get(key)
            _fill(entry, rollout_id=first.rollout_id if first is not None else None)
            raise await self._repeated(origin, control, card, what, first)
        if entry is not None:
            entry.delivered = True

    async def _once(
        self,
        origin: Origin,
        control: Control,
        card: CardRef,
        rollout: Rollout,
        plan: RolloutPlan,
        act: Callable[[], Awaitable[T]],
    ) -> T:
        key = effect_key(control, card)
        claim: Claim | None = None
        for _ in range(3):  # a claim released between our INSERT and our read: try again
            claim = await self._claims.claim(
                key=key,
                action=control.value,
                actor=origin.actor,
                now=self._clock(),
                rollout_id=card.rollout_id,
                track=card.track,
                stage=card.stage,
            )
            if claim is not None:
                break
            held = await self._claims.get(key)
            if held is not None:
                raise await self._already(held, describe(control, rollout, plan, card))
        if claim is None:
            raise InvalidTransition("Others are trying this very action right now: try again.")
        try:
            result = await act()
        except RunNotIdentified:
            # The dispatch may have started a run: never invite a second one.
            await self._claims.complete(claim, now=self._clock())
            raise
        except BaseException:
            await asyncio.shield(self._claims.release(claim))
            raise
        await self._claims.complete(claim, now=self._clock())
        return result

    async def _repeated(
        self,
        origin: Origin,
        control: Control,
        card: CardRef | None,
        what: str | None,
        first: Claim | None,
    ) -> RolloutError:
        """The answer to a delivery seen before. Slack re-sends a command it got no answer to
        (marked with its retry number), but never a click: a click seen twice is a double
        click or a replay, so the answer names what was done, by whom and when."""
        when = f" at {slack_time(first.claimed_at)}" if first is not None else ""
        who = f"<@{first.actor}>" if first is not None else "someone"
        if origin.via is Via.COMMAND and origin.retry:
            return AlreadyDone(
                f"Already done by {who}{when}: Slack delivered this request again "
                f"(retry {origin.retry}), and it is handled once."
            )
        described = what or _VERBS[control]
        held = await self._claims.get(effect_key(control, card)) if card is not None else None
        if held is not None:  # the same click again: its first answer is on its way
            return await self._already(held, described, wait=False)
        return AlreadyDone(f"Already done by {who}{when}: {described}. Nothing more was done.")

    async def _already(self, held: Claim, what: str, *, wait: bool = True) -> RolloutError:
        """Wait for the claim's owner to finish (unless not `wait`), then say who did it and
        when, or who is doing it."""
        first = held
        claim: Claim | None = held
        deadline = time.monotonic() + (self._holder_wait if wait else 0.0)
        while claim is not None and claim.state is ClaimState.CLAIMED:
            if time.monotonic() >= deadline:
                return AlreadyDone(
                    f"Already being done by <@{claim.actor}> since "
                    f"{slack_time(claim.claimed_at)}: {what}. The card shows the outcome."
                )
            await asyncio.sleep(self._poll_interval)
            claim = await self._claims.get(held.key)
        if claim is None:
            return InvalidTransition(
                f"<@{first.actor}> tried to {what} at {slack_time(first.claimed_at)} but it "
                "failed and changed nothing (their answer says why). Click again to retry."
            )
        done_at = claim.done_at or claim.claimed_at
        return AlreadyDone(
            f"Already done by <@{claim.actor}> at {slack_time(done_at)}: {what}. "
            "Nothing more was done."
        )

    async def _stale(
        self, control: Control, rollout: Rollout, plan: RolloutPlan, card: CardRef
    ) -> RolloutError:
        """A card whose button no longer applies: who did it (waiting for them to finish), if
        someone did, else where the rollout stands now."""
        claim = await self._claims.get(effect_key(control, card))
        if claim is not None:
            return await self._already(claim, describe(control, rollout, plan, card))
        return StaleCard(
            f"This card is out of date: {where_it_stands(rollout, plan)} "
            "Use the buttons on the updated card, or `/rollout status`."
        )

    async def _record(
        self,
        origin: Origin,
        action: str,
        result: str,
        rollout: Rollout,
        track: str,
        detail: dict[str, Any],
    ) -> None:
        await self._audit.append(
            at=self._clock(),
            actor=origin.actor,
            action=action,
            result=result,
            rollout_id=rollout.id,
            track=track,
            detail=detail,
        )


def _named_track(card: CardRef) -> str:
    if card.track is None:
        raise InvalidTransition("This button names no track; refresh the card and try again.")
    return card.track


def _completed(rollout: Rollout, track: str) -> bool:
    try:
        return rollout.track(track).state is TrackState.COMPLETED
    except KeyError:
        return False


def _fill(
    entry: _Entry | None,
    *,
    rollout_id: str | None = None,
    track: str | None = None,
    stage: str | None = None,
) -> None:
    if entry is None:
        return
    entry.rollout_id = entry.rollout_id or rollout_id
    entry.track = entry.track or track
    entry.stage = entry.stage or stage


def _outcome(error: Exception) -> tuple[str, dict[str, Any]]:
    if isinstance(error, AlreadyDone):
        return "duplicate", {"why": error.message}
    if isinstance(error, StaleCard):
        return "stale", {"why": error.message}
    if isinstance(error, NotAuthorized | NotAReleaseChannel):
        return "refused", {"why": error.message}
    if isinstance(error, RolloutError):
        return error.code, {"why": error.message}
    return "error", {"error": type(error).__name__}
