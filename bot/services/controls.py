"""People's controls on a rollout, exactly once, by the right hands, on the record.

Every state-changing command, click and form goes through `ControlService`, which, in order:
admits the request (`bot.services.access`, applying `bot.domain.permissions`: the release
channels, the approvers, a stale card, the plan's two-person rule); drops a Slack delivery seen
before (a retry) and claims the effect's key in the database (`bot.services.exactly_once`: one
winner across every replica); then makes the one service call, and completes the claim, or
releases it when the action failed so the click can be repeated. Each command, click and form
is one audit event with its outcome.

Starting, freezing and locking (the release lane's controls) are `bot.services.lane_controls`;
what a command that names no card acts on (`/rollout promote`'s every held track, the rollout
`rollback`, `kill` or `link` means) is found in `bot.services.command_controls`, and done here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import TypeVar

from bot.domain.controls import (
    CardRef,
    Control,
    describe,
    effect_key,
    figures_card,
)
from bot.domain.metrics import Figures
from bot.domain.permissions import overrides
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import InvalidTransition, Redeploying, Rollout
from bot.domain.run_link import RunReference
from bot.services.access import Access
from bot.services.audit import AuditTrail, Timeline
from bot.services.authz import Approvers
from bot.services.command_controls import CommandControls
from bot.services.exactly_once import ExactlyOnce
from bot.services.lane import ReleaseLane
from bot.services.lane_controls import LaneControls, TimeZoneOf
from bot.services.ports import Clock
from bot.services.redeploy import Redeployer, RedeployOffer, completed_on
from bot.services.requests import Origin
from bot.services.rollouts import RolloutService
from bot.services.scheduled_starts import ScheduledStarts
from bot.services.store_ports import AuditLog, Claims
from bot.services.unfollowed_runs import UnfollowedRunRules, UnfollowedRuns

T = TypeVar("T")


class ControlService:
    """The one way people change rollouts: checks, exactly-once claims, audit."""

    def __init__(
        self,
        *,
        rollouts: RolloutService,
        claims: Claims,
        audit: AuditLog,
        trail: AuditTrail,
        approvers: Approvers,
        release_channels: tuple[str, ...],
        clock: Clock,
        lane: ReleaseLane,
        time_zone_of: TimeZoneOf,
        unfollowed: UnfollowedRunRules | None = None,
    ) -> None:
        self._rollouts = rollouts
        self._trail = trail
        stops = rollouts.stops  # who else asks for a stop being decided, or done (`StopOutcomes`)
        self._once = ExactlyOnce(claims=claims, clock=clock, words=rollouts.words, stops=stops)
        self._access = Access(
            rollouts=rollouts,
            approvers=approvers,
            release_channels=release_channels,
            once=self._once,
            audit=audit,
            clock=clock,
            lane=lane,
        )
        self._redeployer = Redeployer(rollouts, lane)
        self._commands = CommandControls(access=self._access, once=self._once)
        self.lane = LaneControls(
            lane,
            rollouts=rollouts,
            access=self._access,
            once=self._once,
            clock=clock,
            time_zone_of=time_zone_of,
            dispatch=self.dispatch,
        )
        """Start, freeze, unfreeze, lock and unlock: the release lane's controls."""
        self.unfollowed = (
            None
            if unfollowed is None
            else UnfollowedRuns(
                rollouts=rollouts,
                access=self._access,
                once=self._once,
                lane=lane,
                settings=unfollowed,
            )
        )
        """Adopt and Reject of the runs the bot did not start (App mode's protection rule)."""
        self.start = self.lane.start
        self.audited = self._access.audited
        self.release_contents = rollouts.release_contents  # reading it changes nothing
        self.form_refusal = self._access.form_refusal

    def scheduled_starts(self) -> ScheduledStarts:
        """What fires the dispatches `start --at` schedules, through these controls' access,
        claims and audit (`bot.wiring` hands it to the rollouts' timers)."""
        return ScheduledStarts(
            rollouts=self._rollouts,
            access=self._access,
            once=self._once,
            lane=self._access.lane,
            clock=self._access.clock,
        )

    async def timeline(self, tag: str) -> Timeline:
        """The audit timeline of the tag's newest rollout of this service (raises UnknownTag).
        Reading it is audited without the rollout: looking never adds to the timeline looked at."""
        return await self._trail.timeline(tag, service=self._rollouts.service)

    # -- commands and buttons ---------------------------------------------------------------

    async def confirm_flags(self, origin: Origin, card: CardRef) -> Rollout:
        return await self.preflight(origin, Control.CONFIRM_FLAGS, card)

    async def dispatch(self, origin: Origin, card: CardRef) -> Rollout:
        return await self.preflight(origin, Control.DISPATCH, card)

    async def recheck(self, origin: Origin, card: CardRef) -> Rollout:
        """Run the preflight's GitHub checks again; once per card version."""
        return await self.preflight(origin, Control.RECHECK, card)

    async def cancel(self, origin: Origin, card: CardRef) -> None:
        await self._act(
            origin,
            Control.CANCEL,
            card,
            lambda: self._rollouts.cancel(rollout_id=card.rollout_id, actor=origin.actor),
        )

    async def preflight(self, origin: Origin, control: Control, card: CardRef) -> Rollout:
        """A control on the preflight card (Cancel schedule too): its service call, once."""
        calls: dict[Control, Callable[..., Awaitable[Rollout]]] = {
            Control.CONFIRM_FLAGS: partial(self._rollouts.confirm_flags, commit=card.commit),
            Control.DISPATCH: self._rollouts.dispatch,
            Control.RECHECK: self._rollouts.recheck,
            Control.CANCEL_SCHEDULE: self._rollouts.cancel_schedule,
        }
        call = calls[control]
        return await self._act(
            origin, control, card, lambda: call(rollout_id=card.rollout_id, actor=origin.actor)
        )

    async def link_run(
        self, origin: Origin, run: RunReference, card: CardRef | None = None
    ) -> Rollout:
        """Attach the run a person names to the card's rollout (the form), or to the rollout
        waiting for its run (the command); refused unless it waits for one."""
        if card is None:
            card = await self._commands.waiting_for_run(origin)
        return await self._act(
            origin,
            Control.LINK_RUN,
            card,
            lambda: self._rollouts.link_run(
                rollout_id=card.rollout_id, reference=run, actor=origin.actor
            ),
        )

    async def promote(self, origin: Origin, card: CardRef | None = None) -> Rollout:
        """Promote the track on the card (a click), or every track held on a gate (the command).

        Only a card drawn for an INCONCLUSIVE hold overrides it (its button asked to confirm
        that); a command, or a card drawn for another hold, never does."""
        if card is not None:
            return await self._promote(origin, card, override=overrides(card))
        return await self._commands.promote(
            origin, lambda held: self._promote(origin, held, override=False)
        )

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
            return await self._commands.abort(
                origin,
                control,
                gate=gate,
                reason=reason,
                abort=lambda found: self._abort(origin, control, found, gate=gate, reason=reason),
            )
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
                if gate == "relay" and any(completed_on(rollout, name) for name in relay):
                    raise InvalidTransition(
                        f"{error.message} To go back to the previous release, click "
                        "*Roll back to the previous release…* on the rollout's card."
                    ) from None
                raise

        return await self._act(origin, control, card, act)

    async def rerun_failure_job(self, origin: Origin, card: CardRef) -> Rollout:
        """Re-run the failure job of the card's track that failed on GitHub (the button under
        its *ended* message, or on its lane): once per run attempt, by the hands that may roll
        back or trip the kill-switch. An earlier click's claim that lapsed unrecorded is
        looked at before this click takes it over: the attempt that click sent is followed."""
        track, once = _named_track(card), self._once
        earlier = await once.lapsed(effect_key(Control.RERUN_FAILURE_JOB, card))
        rerun = partial(self._rollouts.rerun_failure_job, earlier=earlier, sending=once.sending)
        return await self._act(
            origin,
            Control.RERUN_FAILURE_JOB,
            card,
            lambda: rerun(rollout_id=card.rollout_id, track=track, actor=origin.actor),
        )

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

    async def submit_figures(
        self, origin: Origin, card: CardRef, figures: Figures, *, window: int | None = None
    ) -> None:
        """Figures typed for a stage whose window ended; one submission per evaluation.
        `window`: the evaluation the form was opened for (`FiguresMetadata.window`)."""
        track, stage = _named_track(card), card.stage or ""
        keyed = figures_card(await self._rollouts.get(card.rollout_id), card)
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
                window=window,
            ),
        )

    async def open_form(
        self, origin: Origin, control: Control, card: CardRef
    ) -> tuple[Rollout, RolloutPlan]:
        """A click that opens a form (figures, custom extension): allowed, and still current?"""
        async with self._access.on_card(origin, f"{control}_form", card):
            return await self._access.checked(origin, control, card)

    # -- redeploying the previous good release ---------------------------------------------------

    async def redeploy_offer(self, origin: Origin, card: CardRef) -> RedeployOffer:
        """What Roll back on a completed track would redeploy (for its confirm dialog)."""
        track = _named_track(card)
        async with self._access.on_card(origin, f"{Control.REDEPLOY}_form", card):
            rollout, plan = await self._access.checked(origin, Control.REDEPLOY, card)
            return await self._redeployer.offer(rollout, plan, track)

    async def redeploy(self, origin: Origin, card: CardRef, *, tag: str) -> Redeploying:
        """Put `tag` (the previous good release, as the confirm dialog named it) back in place
        of the card's rollout: through the plan's rollback workflow, or as a new rollout."""
        track = _named_track(card)
        return await self._act(
            origin,
            Control.REDEPLOY,
            CardRef(card.rollout_id, track),
            lambda: self._redeployer.redeploy_offered(
                actor=origin.actor, rollout_id=card.rollout_id, track=track, tag=tag
            ),
        )

    # -- the steps every control goes through ------------------------------------------------------

    async def _act(
        self, origin: Origin, control: Control, card: CardRef, act: Callable[[], Awaitable[T]]
    ) -> T:
        async with self._access.on_card(origin, control, card):
            rollout, plan = await self._access.checked(origin, control, card)
            what = describe(control, rollout, plan, card)
            await self._once.delivery(origin, control, card, what)
            past = self._access.moved_past(card, rollout, plan)
            unchanged = partial(self._access.unchanged_since, control, card, rollout, plan)
            once = partial(self._once.once, moved_past=past, given_back=unchanged)
            return await once(origin, control, card, what, act)


def _named_track(card: CardRef) -> str:
    if card.track is None:
        raise InvalidTransition("This button names no track; refresh the card and try again.")
    return card.track
