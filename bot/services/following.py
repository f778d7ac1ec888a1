"""Following a rollout's run on GitHub: reconcile on each poll or webhook (an unclear dispatch's run
is found by `bot.services.dispatched_runs`).

The poller (`bot.services.scheduler`) and the webhook receiver (`bot.services.webhooks`) both
come here, so a change of the run is acted on once, whichever sees it first. They read the run
before they take the rollout's lock (one look at a time per rollout), and with it what a review
the look decides reads before it posts, so a person's Roll back or Kill-switch never waits for
GitHub to answer them; a look a person's action overtook reads again.
"""

from __future__ import annotations

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
    Phase,
    Review,
    Rollout,
    ScheduleWindow,
)
from bot.domain.run import EnvironmentReview, RunSnapshot
from bot.logs import rollout_context
from bot.services.effects import EffectRunner
from bot.services.keyed_locks import KeyedLocks
from bot.services.ports import ReviewAhead
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


OVERTAKEN_LOOKS = 2
"""How many times a look at a run that a change of its rollout overtook (a person's stop saved
while GitHub answered) reads the run again without the rollout's lock; the last time it reads
it under the lock, so that a busy rollout never starves its looks."""


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
    ahead: ReviewAhead | None = None
    """What the reviews acting on it would read on GitHub before they post, read with it
    when acting on it reviews an environment (`_read_ahead`)."""


class RunFollower:
    """Compares rollouts with their runs on GitHub and acts on the difference."""

    def __init__(
        self,
        effects: EffectRunner,
        *,
        unread_after: timedelta,
    ) -> None:
        self._effects = effects
        self._unread_after = unread_after
        self._moments = itertools.count()
        """Orders deliveries' arrivals and reconciles' starts within this process."""
        self._reconciled: dict[str, int] = {}
        """Per running rollout, when the latest reconcile that read its run here and acted on
        it had started."""
        self._reading = KeyedLocks()
        """Per rollout, the looks at its run in turn (not its lock: people's actions go on)."""

    async def reconcile(
        self, rollout_id: str, *, reviews: Sequence[EnvironmentReview] = ()
    ) -> Reconciled:
        """Compare the rollout with its run on GitHub and act on the difference. `reviews`
        (from a delivery) name reviewers GitHub's review history may not list yet. The run is
        read before the rollout's lock is taken (`_Look`)."""
        effects = self._effects
        async with self._reading(rollout_id):
            for turn in range(OVERTAKEN_LOOKS, -1, -1):
                look = await self._read_ahead(rollout_id)
                if isinstance(look, Reconciled):
                    return look

                async def act(look: _Look = look, last: bool = not turn) -> Reconciled | None:
                    read = await effects.with_plan(rollout_id)
                    if not last and read[0].version != look.version:
                        return None  # overtaken: read the run again, without the lock
                    return await self.reconcile_locked(
                        rollout_id, reviews=reviews, read=read, look=look
                    )

                async with effects.lock(rollout_id):
                    if (done := await effects.serialised(rollout_id, act)) is not None:
                        return done
        raise AssertionError("the last turn reads the run under the lock")

    async def follow_github_events(
        self, *, rollout_id: str, events: Sequence[github_events.RunEvent]
    ) -> Reconciled:
        """Webhook deliveries about the rollout's run, in the order they came (a burst the
        receiver coalesced behind the follow-up in flight): tell the thread what GitHub
        reported of each (shown at the `all` notification level), then reconcile once, as the
        poller would, with the reviews any of them named."""
        effects = self._effects
        arrived = next(self._moments)
        reviews = tuple(review for event in events for review in event.reviews)
        async with self._reading(rollout_id):
            # A reconcile that started after these deliveries arrived read GitHub after the
            # changes they tell of: a burst of deliveries (a job queued, started, finished...)
            # costs one look, and a window's end does not queue behind the rest of the burst.
            burst = not reviews and self._reconciled.get(rollout_id, -1) > arrived
            noted = False
            for turn in range(OVERTAKEN_LOOKS, -1, -1):
                look = None if burst else await self._read_ahead(rollout_id)
                async with effects.lock(rollout_id):
                    # Read once, under the lock: the notes and the reconcile act on this state,
                    # and the save checks that it is still the stored one.
                    rollout, plan = await effects.with_plan(rollout_id)
                    if rollout.phase is not Phase.RUNNING:
                        return Reconciled(version=rollout.version)
                    with rollout_context(rollout_id):
                        if not noted:
                            await self._note(rollout, plan, events)
                        noted = True
                        if look is None or isinstance(look, Reconciled):
                            return look or Reconciled(version=rollout.version)
                        if turn and look.version != rollout.version:
                            continue  # overtaken: read the run again, without the lock
                        try:
                            return await self.reconcile_locked(
                                rollout_id, reviews=reviews, read=(rollout, plan), look=look
                            )
                        except ConcurrentChange:
                            # Another replica saved the rollout first: acting on its state may
                            # still be left to do (no delivery queued behind may look again).
                            log.info("run %s changed under another replica", rollout.run_id)
                            if not turn:
                                return Reconciled()
        raise AssertionError("the last turn reads the run under the lock")

    async def _note(
        self, rollout: Rollout, plan: RolloutPlan, events: Sequence[github_events.RunEvent]
    ) -> None:
        """Tell the thread what GitHub reported of each delivery (nothing is saved)."""
        said = [
            Announce(reported, detail=True)
            for event in events
            if (reported := github_events.reported(event, plan)) is not None
        ]
        if said:
            await self._effects.apply(rollout, Decision(rollout, tuple(said)), plan)

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

    async def _read_ahead(self, rollout_id: str) -> _Look | Reconciled:
        """The rollout's run read without the rollout's lock (`_read`), with what the reviews
        that acting on it decides read on GitHub before they post (what waits, the review
        history; the run's attempt is read just before the post): read here, without the lock
        too, so that a person's Kill-switch or Roll back never waits for GitHub to answer them;
        under the lock, once the rollout is found still as read, only the attempt and the
        post."""
        effects = self._effects
        rollout, plan = await effects.with_plan(rollout_id)
        look = await self._read(rollout, None)
        if isinstance(look, Reconciled) or not look.snapshot.waiting or rollout.run_id is None:
            return look  # only what waits is reviewed
        decided = machine.reconcile(rollout, plan, look.snapshot, effects.clock())
        reviewed = [effect.environment for effect in decided.effects if isinstance(effect, Review)]
        if not reviewed:
            return look
        ahead = await effects.github.review_ahead(rollout.run_id, reviewed)
        return replace(look, ahead=ahead)

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
        done = await self._reconcile_locked((rollout, plan), seen, reviews=reviews)
        # Only a read acted on lets the deliveries that arrived before it go (a failed act,
        # `ConcurrentChange` included, leaves them to look again).
        self._reconciled[rollout_id] = max(self._reconciled.get(rollout_id, -1), seen.started)
        return done

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
            acted = await effects.apply(rollout, decision, plan, ahead=look.ahead)
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
