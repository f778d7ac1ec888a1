"""Following a rollout's run on GitHub: reconcile on each poll or webhook, find an unclear dispatch.

The poller (`bot.services.scheduler`) and the webhook receiver (`bot.services.webhooks`) both
come here, so a change of the run is acted on once, whichever sees it first. They read the run
before they take the rollout's lock (one look at a time per rollout), so a person's Roll back or
Kill-switch never waits for GitHub to answer them; a look a person's action overtook reads again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from bot.domain import github_events
from bot.domain import rollout as machine
from bot.domain.errors import ConcurrentChange, GitHubError, GitHubRateLimited
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import (
    Announce,
    Decision,
    DispatchGaveUp,
    InvalidTransition,
    Phase,
    Rollout,
    ScheduleWindow,
)
from bot.domain.run import EnvironmentReview, RunRef, RunSnapshot
from bot.domain.run_link import (
    LinkRefused,
    RunReference,
    link_refusal,
    may_link,
    reference_refusal,
)
from bot.logs import rollout_context
from bot.services.effects import EffectRunner
from bot.services.records import BOT
from bot.services.unread import unread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reconciled:
    """What one look at a rollout's run found: the poller paces itself by it."""

    snapshot: RunSnapshot | None = None
    """The run as GitHub reported it; None when the rollout is not running or GitHub failed."""
    version: int = 0
    """The rollout's stored version after acting on it."""
    rate_limited: bool = False
    retry_after: float | None = None
    """Seconds GitHub asked to wait, when it said."""
    settled: bool = False
    """The rollout (at `version`) and the run (`snapshot`) agree: acting on them changed
    nothing and only made sure that the windows' timers exist. Another look at the same
    two would do the same again."""
    reported: RunSnapshot | None = None
    """The run as GitHub's APIs reported it (`snapshot` without the protection rule's
    requests kept in the database), for `look_again` to compare."""


@dataclass(frozen=True)
class _Look:
    """The run as read without the rollout's lock, at the rollout's `version`: acted on under
    the lock only while the rollout is still at that version."""

    version: int
    started: int
    """When the read began, in `RunFollower._moments`."""
    reported: RunSnapshot
    snapshot: RunSnapshot
    """`reported` with what holds its waits (`EffectRunner.held`)."""


class RunFollower:
    """Compares rollouts with their runs on GitHub and acts on the difference."""

    def __init__(
        self,
        effects: EffectRunner,
        *,
        dispatch_search: timedelta,
        unread_after: timedelta,
    ) -> None:
        self._effects = effects
        self._dispatch_search = dispatch_search
        self._unread_after = unread_after
        self._moments = itertools.count()
        """Orders deliveries' arrivals and reconciles' starts within this process."""
        self._reconciled: dict[str, int] = {}
        """Per running rollout, when the latest reconcile that read its run here had started."""
        self._reading: dict[str, asyncio.Lock] = {}
        """Per rollout, the looks at its run in turn (not its lock: people's actions go on)."""

    async def reconcile(
        self, rollout_id: str, *, reviews: Sequence[EnvironmentReview] = ()
    ) -> Reconciled:
        """Compare the rollout with its run on GitHub and act on the difference. `reviews`
        (from a delivery) name reviewers GitHub's review history may not list yet. The run is
        read before the rollout's lock is taken (`_Look`)."""
        async with self._reading.setdefault(rollout_id, asyncio.Lock()):
            look = await self._read(await self._effects.get(rollout_id), None)
            if isinstance(look, Reconciled):
                return look
            async with self._effects.lock(rollout_id):
                return await self._effects.serialised(
                    rollout_id,
                    lambda: self.reconcile_locked(rollout_id, reviews=reviews, look=look),
                )

    async def follow_github_event(
        self, *, rollout_id: str, event: github_events.RunEvent
    ) -> Reconciled:
        """A webhook delivery about the rollout's run: tell the thread what GitHub reported
        (shown at the `all` notification level), then reconcile as the poller would."""
        effects = self._effects
        arrived = next(self._moments)
        async with self._reading.setdefault(rollout_id, asyncio.Lock()):
            # A reconcile that started after this delivery arrived read GitHub after the
            # change it tells of: a burst of deliveries (a job queued, started, finished...)
            # costs one look, and a window's end does not queue behind the rest of the burst.
            burst = not event.reviews and self._reconciled.get(rollout_id, -1) > arrived
            look = None if burst else await self._read(await effects.get(rollout_id), None)
            async with effects.lock(rollout_id):
                # Read once, under the lock: the note and the reconcile act on this state, and
                # the save checks that it is still the stored one.
                rollout, plan = await effects.with_plan(rollout_id)
                if rollout.phase is not Phase.RUNNING:
                    return Reconciled(version=rollout.version)
                with rollout_context(rollout_id):
                    if (reported := github_events.reported(event, plan)) is not None:
                        said = Decision(rollout, (Announce(reported, detail=True),))
                        await effects.apply(rollout, said, plan)
                    if look is None or isinstance(look, Reconciled):
                        return look or Reconciled(version=rollout.version)
                    try:
                        return await self.reconcile_locked(
                            rollout_id, reviews=event.reviews, read=(rollout, plan), look=look
                        )
                    except ConcurrentChange:
                        # Another replica acted on the same change first: nothing is left.
                        log.info("run %s changed under another replica; left to it", rollout.run_id)
                        return Reconciled()

    async def _read(
        self, rollout: Rollout, held: tuple[Rollout, RolloutPlan] | None
    ) -> _Look | Reconciled:
        """The rollout's run; or what a reconcile answers when it is not running or GitHub did
        not say (`unread`). `held`: the rollout and plan read under its lock (None: unlocked)."""
        effects = self._effects
        if rollout.phase is not Phase.RUNNING or rollout.run_id is None:
            return Reconciled(version=rollout.version)
        started, run_id, read_at = next(self._moments), rollout.run_id, effects.clock()
        with rollout_context(rollout.id):
            reported = await self._look(rollout, lambda: effects.github.reported(run_id), held)
            if isinstance(reported, Reconciled):
                return reported
            snapshot = await self._look(
                rollout, lambda: effects.held(reported, read_at=read_at), held
            )
        if isinstance(snapshot, Reconciled):
            return snapshot
        return _Look(rollout.version, started, reported, snapshot)

    async def settle(self, rollout_id: str) -> None:
        """Reconcile after a person's action was saved (the rollout's lock held). Another
        replica may have saved the rollout meanwhile: it reconciles too, and the action
        itself stands."""
        try:
            await self.reconcile_locked(rollout_id)
        except ConcurrentChange:
            log.info("rollout %s changed on another replica; it follows the run", rollout_id)

    async def reconcile_locked(
        self,
        rollout_id: str,
        *,
        reviews: Sequence[EnvironmentReview] = (),
        read: tuple[Rollout, RolloutPlan] | None = None,
        look: _Look | None = None,
    ) -> Reconciled:
        """`reconcile`, the rollout's lock already held; `read`: the rollout and its plan as
        read under that lock already (else read here); `look`: the run as read before the lock
        was taken, acted on when the rollout has not changed since (else read again here)."""
        rollout, plan = read or await self._effects.with_plan(rollout_id)
        # Not read yet, or someone acted meanwhile (a stop): read after them.
        fresh = look is not None and look.version == rollout.version
        seen = look if look is not None and fresh else await self._read(rollout, (rollout, plan))
        if isinstance(seen, Reconciled):  # not running (any more), or GitHub did not answer
            self._reconciled.pop(rollout_id, None)
            return seen
        self._reconciled[rollout_id] = max(self._reconciled.get(rollout_id, -1), seen.started)
        return await self._reconcile_locked((rollout, plan), seen, reviews=reviews)

    async def _reconcile_locked(
        self,
        read: tuple[Rollout, RolloutPlan],
        look: _Look,
        *,
        reviews: Sequence[EnvironmentReview],
    ) -> Reconciled:
        effects = self._effects
        rollout, plan = read
        with rollout_context(rollout.id):
            if rollout.unread_since is not None:  # GitHub answers again: say so, if it was said
                again = machine.read_again(rollout, now=effects.clock())
                rollout = await effects.apply(rollout, again, plan)
            snapshot = look.snapshot
            known = {(r.environment.casefold(), r.state) for r in snapshot.reviews}
            hinted = [r for r in reviews if (r.environment.casefold(), r.state) not in known]
            if hinted:
                snapshot = replace(snapshot, reviews=(*snapshot.reviews, *hinted))
            decision = machine.reconcile(rollout, plan, snapshot, effects.clock())
            acted = await effects.apply(rollout, decision, plan)
            # A wait nothing explains yet (a request's delivery lost while GitHub had not
            # listed its deployment as waiting) is looked for again at every poll.
            settled = (
                decision.rollout == rollout
                and all(isinstance(effect, ScheduleWindow) for effect in decision.effects)
                and not snapshot.waits_unexplained
            )
            return Reconciled(
                snapshot=snapshot, version=acted.version, settled=settled, reported=look.reported
            )

    async def look_again(self, rollout: Rollout, last: Reconciled) -> Reconciled:
        """The poller's next look at a run that `last` found settled with the rollout: while
        GitHub reports the run as it did then and the rollout (as the poller just read it) is
        at the same version, reconciling would do what it did then, so nothing is read from
        the database and nothing is done; otherwise `reconcile`.

        A look that left a job's wait unexplained never counts as settled, so a protection
        rule's request whose delivery was lost is looked for at every poll until found."""
        if (
            not last.settled
            or last.version != rollout.version
            or rollout.run_id is None
            or rollout.unread_since is not None
        ):
            return await self.reconcile(rollout.id)
        run_id, github = rollout.run_id, self._effects.github
        with rollout_context(rollout.id):
            reported = await self._look(rollout, lambda: github.reported(run_id), None)
        if isinstance(reported, Reconciled):
            return reported  # GitHub did not say: as `reconcile` would answer
        return last if reported == last.reported else await self.reconcile(rollout.id)

    async def _look(
        self,
        rollout: Rollout,
        read: Callable[[], Awaitable[RunSnapshot]],
        held: tuple[Rollout, RolloutPlan] | None,
    ) -> RunSnapshot | Reconciled:
        """The rollout's run as `read` gives it, or what the poller makes of GitHub's failure
        to say (a rate limit pauses it), remembered on the rollout (`unread`). `held`: the
        rollout and its plan as read under its lock (None: the lock is not held)."""
        try:
            return await read()
        except GitHubError as error:
            log.warning("could not read run %s: %s", rollout.run_id, error.message)
            retry_after = error.retry_after if isinstance(error, GitHubRateLimited) else None
            return Reconciled(
                version=await unread(
                    self._effects, error, rollout_id=rollout.id, held=held, after=self._unread_after
                ),
                rate_limited=isinstance(error, GitHubRateLimited),
                retry_after=retry_after,
            )

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
        await self.settle(rollout.id)
        return attached

    async def _give_up_dispatch(self, rollout: Rollout, plan: RolloutPlan) -> None:
        """No run of ours could be told apart for too long: back to the preflight, so a person
        checks the workflow's runs on GitHub and dispatches again (never the bot on its own)."""
        # The dispatch's time stays: a Dispatch again looks for its run first (`late_run`).
        back = replace(rollout, phase=Phase.PREFLIGHT, gave_up_at=self._effects.clock())
        gave_up = DispatchGaveUp(rollout.tag, plan.workflow.name, self._dispatch_search)
        await self._effects.record(self._effects.event(BOT, "attach_run", "gave_up", rollout))
        await self._effects.apply(rollout, Decision(back, (Announce(gave_up, failure=True),)), plan)
