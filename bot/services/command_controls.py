"""The controls typed as `/rollout promote`, `rollback`, `kill` and `link`, which name no card:
the rollout (and for Promote, every track held on a gate) the command means, found.

Each is admitted and audited as the command, a Slack retry of it dropped, then done through the
card's door (`bot.services.controls.ControlService`), exactly once per track as a click would
be. `/rollout promote` answers once for every held track it tried: what it promoted, and what
it could not, never a refusal alone when something was promoted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.domain.controls import (
    CardRef,
    Control,
    DoneButOwed,
    hold_of,
    partly_promoted,
    promoted_words,
)
from bot.domain.errors import PartlyPromoted, PromotedWhileStopping, RolloutError
from bot.domain.rollout import InvalidTransition, Phase, Rollout, holding_tracks
from bot.domain.run_link import may_link
from bot.services.access import Access
from bot.services.actions import where_it_stands
from bot.services.exactly_once import ExactlyOnce
from bot.services.requests import Origin

OnCard = Callable[[CardRef], Awaitable[Rollout]]
"""The control done through the card's door, on the card the command was found to mean."""


@dataclass(frozen=True, kw_only=True)
class CommandControls:
    """Finds what a card-less command acts on, and acts through the card's door."""

    access: Access
    once: ExactlyOnce

    async def promote(self, origin: Origin, promote: OnCard) -> Rollout:
        """Promote every track held on a gate (`promote`: one held track's card, confirming
        the hold it shows: only a card's dialog overrides an INCONCLUSIVE one)."""
        rollouts = self.access.rollouts
        async with self.access.audited(origin, Control.PROMOTE):
            await self.access.admit(origin, Control.PROMOTE)
            running = [r for r in await rollouts.active() if r.phase is Phase.RUNNING]
            await self.once.delivery(
                origin, Control.PROMOTE, CardRef(running[0].id) if running else None
            )
            held = holding_tracks(running[0]) if running else []
            if not held:  # the service explains: nothing in progress, or where it stands
                return await rollouts.promote(actor=origin.actor)
            rollout = running[0]
            plan = await rollouts.plan_of(rollout)
            stopping: PromotedWhileStopping | None = None
            done: list[str] = []
            owed: list[DoneButOwed] = []
            refused: list[tuple[str, RolloutError]] = []
            for name in held:
                stage = rollout.track(name).current
                assert stage is not None  # a holding track is at a stage
                # The command confirms the hold it finds; only the card's dialog overrides.
                card = CardRef(rollout.id, name, stage.key, rollout.version, hold_of(stage))
                try:
                    promoted = await promote(card)
                    done.append(promoted_words(plan, name, stage.key))
                except DoneButOwed as saved:  # promoted: a step after its save still owed
                    done.append(promoted_words(plan, name, stage.key))
                    owed.append(saved)
                except PromotedWhileStopping as told:  # the other held tracks promote still
                    stopping = told
                except RolloutError as error:  # so do they past a track it cannot promote
                    refused.append((plan.track(name).label, error))
            if stopping is not None and done:  # where each stands once every lane was tried
                latest = await rollouts.get(rollout.id)
                where = where_it_stands(latest, plan, rollouts.words)
                stopping = PromotedWhileStopping.told(stopping.approved, stopping.track, where)
                if not refused:
                    raise PromotedWhileStopping(partly_promoted(done, stopping, [], owed))
            if refused and (done or stopping is not None):
                raise PartlyPromoted(partly_promoted(done, stopping, refused, owed))
            if refused:
                raise refused[0][1]
            if stopping is not None:
                raise stopping
            if owed:
                raise (
                    owed[0]
                    if len(done) == 1
                    else DoneButOwed(partly_promoted(done, None, [], owed))
                )
            return promoted

    async def abort(
        self, origin: Origin, control: Control, *, gate: str, reason: str, abort: OnCard
    ) -> Rollout:
        """Roll back or trip the kill-switch (`control`, of `gate`) of the rollout in progress."""
        rollouts = self.access.rollouts
        async with self.access.audited(origin, control):
            await self.access.admit(origin, control)
            running = [r for r in await rollouts.active() if r.phase is not Phase.PREFLIGHT]
            await self.once.delivery(origin, control, CardRef(running[0].id) if running else None)
            if not running:  # the service explains
                return await rollouts.abort(actor=origin.actor, gate=gate, reason=reason)
            return await abort(CardRef(running[0].id))

    async def waiting_for_run(self, origin: Origin) -> CardRef:
        """The rollout `/rollout link` attaches a run to: the one waiting for its run (a
        dispatch unclear, or given up on); refused, saying where things stand, when none is."""
        rollouts = self.access.rollouts
        async with self.access.audited(origin, Control.LINK_RUN):
            await self.access.admit(origin, Control.LINK_RUN)
            active = await rollouts.active()
            waiting = [r for r in active if may_link(r)]
            if not waiting:
                raise InvalidTransition(await self._nothing_to_link(active))
            return CardRef(waiting[0].id)

    async def _nothing_to_link(self, active: list[Rollout]) -> str:
        if not active:
            return "No rollout is in progress: there is nothing to link a run to."
        rollouts = self.access.rollouts
        rollout = active[0]
        where = f"`{rollout.tag}` is in its preflight."
        if rollout.run_id is not None:
            plan = await rollouts.plan_of(rollout)
            where = (
                f"`{rollout.tag}` already follows run {rollout.run_id}: "
                f"{where_it_stands(rollout, plan, rollouts.words)}"
            )
        return (
            "No rollout is waiting for its run (a run is linked while a dispatch is unclear, "
            f"or after the bot gave up looking for it). {where}"
        )
