"""Finding the run of a dispatch GitHub did not identify (its answer unclear, GitHub Enterprise, a
restart): searched for by the poller, found late before a Dispatch again, or linked by a person;
attached exactly as a run the dispatch identified, then followed (`bot.services.following`)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from bot.domain import rollout as machine
from bot.domain.errors import GitHubError
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Announce, Decision, DispatchGaveUp, InvalidTransition, Phase, Rollout
from bot.domain.run import RunRef
from bot.domain.run_link import (
    LinkRefused,
    RunReference,
    link_refusal,
    may_link,
    reference_refusal,
)
from bot.services.effects import EffectRunner
from bot.services.following import RunFollower
from bot.services.records import BOT

log = logging.getLogger(__name__)


class DispatchedRuns:
    """Attaches the run of a dispatch that could not be identified to its rollout."""

    def __init__(
        self, effects: EffectRunner, follower: RunFollower, *, dispatch_search: timedelta
    ) -> None:
        self._effects = effects
        self._follower = follower
        self._dispatch_search = dispatch_search

    async def find_dispatched_run(self, rollout: Rollout) -> None:
        """Attach the run our dispatch created, when the dispatch could not tell it (GitHub's
        answer was unclear, GitHub Enterprise, a restart). Only searches that answered count
        towards giving up: the rollout returns to its preflight when none found it in time."""
        if rollout.phase is not Phase.DISPATCHING or rollout.dispatched_at is None:
            return
        effects = self._effects
        async with effects.lock(rollout.id):
            current = await effects.get(rollout.id)
            if current.phase is not Phase.DISPATCHING or current.dispatched_at is None:
                return
            plan = await effects.plan_of(current)
            try:
                run = await effects.github.find_dispatched_run(
                    workflow_file=plan.workflow.file,
                    ref=plan.workflow.ref,
                    dispatched_at=current.dispatched_at,
                )
            except GitHubError as error:
                # A failed look proves nothing: the run is looked for again at the next poll.
                log.warning("could not look for the run of %s: %s", current.tag, error.message)
                return
            if run is None:
                if effects.clock() - current.dispatched_at > self._dispatch_search:
                    await self._give_up_dispatch(current, plan)
                return
            await self._attach(current, plan, run, actor=BOT)

    async def late_run(self, rollout: Rollout, plan: RolloutPlan) -> Rollout | None:
        """Before a Dispatch again, once the bot gave up looking for the run of the last one
        (the rollout's lock held): a run of ours since that dispatch (it was listed late) is
        attached as if found in time, and nothing is dispatched; two or more refuse it; None
        when none is seen. A look GitHub fails raises its GitHubError: nothing is sent blind."""
        if rollout.gave_up_at is None or rollout.dispatched_at is None:
            return None
        effects = self._effects
        runs = [
            run
            for run in await effects.github.dispatched_runs(
                workflow_file=plan.workflow.file,
                ref=plan.workflow.ref,
                dispatched_at=rollout.dispatched_at,
            )
            if await effects.store.by_run_id(run.run_id) is None
        ]
        if len(runs) == 1:
            log.warning("run %s of %s appeared late: followed", runs[0].run_id, rollout.tag)
            return await self._attach(rollout, plan, runs[0], actor=BOT)
        if runs:
            raise InvalidTransition(
                f"{len(runs)} runs of *{plan.workflow.name}* by the bot started since the "
                f"dispatch of `{rollout.tag}` the bot gave up on "
                f"({', '.join(run.html_url for run in runs)}): it is not dispatched again. "
                "Cancel the stray runs on GitHub, or link the right one: `/rollout link <run URL>`."
            )
        return None

    async def link_run(self, *, rollout_id: str, reference: RunReference, actor: str) -> Rollout:
        """Attach the run a person names to a rollout whose dispatch could not be identified,
        exactly as a found run is attached; raises LinkRefused (naming the rule) otherwise."""
        effects = self._effects
        github = effects.github
        if (refused := reference_refusal(reference, github.repository)) is not None:
            raise LinkRefused(refused)
        async with effects.lock(rollout_id):
            current = await effects.get(rollout_id)
            if not may_link(current):
                raise InvalidTransition(
                    f"Rollout `{current.tag}` is not waiting for its run (it is {current.phase}): "
                    "a run is linked while a dispatch is unclear, or after the bot gave up "
                    "looking for it."
                )
            plan = await effects.plan_of(current)
            run = await github.linkable_run(reference.run_id)
            followed_by = await effects.store.by_run_id(run.run_id)
            if refused := link_refusal(current, plan, reference, run, followed_by=followed_by):
                raise LinkRefused(refused)
            return await self._attach(
                current, plan, RunRef(run.run_id, run.html_url, run.attempt), actor=actor
            )

    async def _attach(
        self, rollout: Rollout, plan: RolloutPlan, run: RunRef, *, actor: str
    ) -> Rollout:
        """The rollout follows `run` from now on (the rollout's lock held)."""
        effects = self._effects
        linked_by = None if actor == BOT else actor
        attached = await effects.apply(
            rollout,
            machine.dispatched(rollout, plan, run, linked_by=linked_by),
            plan,
            audit=[effects.event(actor, "attach_run", "ok", rollout, {"run_id": run.run_id})],
        )
        await self._follower.settle(rollout.id)
        return attached

    async def _give_up_dispatch(self, rollout: Rollout, plan: RolloutPlan) -> None:
        """No run of ours could be told apart for too long: back to the preflight, so a person
        checks the workflow's runs on GitHub and dispatches again (never the bot on its own)."""
        # The dispatch's time stays: a Dispatch again looks for its run first (`late_run`).
        back = replace(rollout, phase=Phase.PREFLIGHT, gave_up_at=self._effects.clock())
        gave_up = DispatchGaveUp(rollout.tag, plan.workflow.name, self._dispatch_search)
        await self._effects.record(self._effects.event(BOT, "attach_run", "gave_up", rollout))
        await self._effects.apply(rollout, Decision(back, (Announce(gave_up, failure=True),)), plan)
