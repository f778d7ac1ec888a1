"""Who runs Release from a walkthrough: the click's claim (one Release per walkthrough and run
shown, across replicas), and the claim an earlier click left unrecorded.

That earlier click claimed Release and the bot died or lost its database before it recorded
whether it dispatched (no look of it settles the claim). Once the claim lapsed, a click looks on
GitHub for that click's run: found, it is followed; none yet while one may still be listed, the
click is told when to try again; several, none is taken; none once the search ended, the claim
is taken over (that claim alone) and Release runs.

A run is that click's when it is a run of Release by the bot's account on the ref, created
while the claim held (a click sends its dispatch only with half its lease left: `sending`).
Nothing finer ties a run to a click: Release declares no `workflow_dispatch` inputs, and GitHub
refuses a dispatch with an input the workflow does not declare (422 "Unexpected inputs
provided"), so no input, nor a `run-name` built from one (a run's `display_title`), can carry
the claim; and the run id that GitHub's answer to the dispatch gave is what the bot never
recorded.

A click held up before its dispatch (a stalled replica, a slow read of GitHub) sends nothing
once its claim no longer lasts for it (`sending`): its look may have given the claim up having
found no run, or another click taken Release over.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.domain.controls import StaleCard
from bot.domain.errors import GitHubError, RolloutError
from bot.domain.npm import ReleaseFollow, ReleasePhase, Walkthrough, clip_error
from bot.domain.plan import NpmRelease
from bot.services.acting import still_held
from bot.services.exactly_once import ExactlyOnce
from bot.services.npm_release import CLAIM_ACTION, MessageRef, ReleaseLook, ReleaseLooks
from bot.services.ports import Clock, ReleaseGateway
from bot.services.records import Claim
from bot.services.store_ports import Claims

log = logging.getLogger(__name__)


AGAIN = "Click Release again."


class ReleaseAlreadyRunning(RolloutError):
    """This walkthrough already follows a Release run."""

    code = "release_already_running"


class ClaimLost(Exception):
    """A Release click's claim no longer lasts for its dispatch (`ReleaseClaimer.sending`):
    nothing is sent."""


class ClaimUnread(Exception):
    """The look at a Release click's claim right before its dispatch failed (the database
    away): nothing is sent. Its cause is the database's failure."""

    told = (
        "The bot could not read the click's claim on Release from its database right before "
        "sending the dispatch: nothing was sent. Click Release again."
    )


class ReleaseNotSent(RolloutError):
    """A Release click was held up past its claim, and the walkthrough went on without it:
    nothing was sent."""

    code = "release_not_sent"


@dataclass(frozen=True, kw_only=True)
class ReleaseClaimer:
    """Claims Release for a click, after looking into a claim an earlier click left unrecorded."""

    github: ReleaseGateway
    claims: Claims
    once: ExactlyOnce
    npm: NpmRelease
    clock: Clock
    looks: ReleaseLooks

    async def claim(
        self, message: MessageRef, current: Walkthrough, *, key: str, actor: str
    ) -> tuple[Claim, str | None]:
        """The click's claim on Release, and what it is told. An earlier click's claim that
        lapsed unrecorded is taken over once GitHub shows that click started nothing, and only
        that claim: one that replaced it meanwhile (a click on another replica that died in
        turn) is looked into in its own turn, never taken over unseen."""
        told: str | None = None
        for _ in range(3):  # a claim replaced or released between our look and our takeover
            claim = await self._claim(key, actor)
            if claim is not None:
                return claim, told
            earlier = await self.once.lapsed(key)
            if earlier is None:
                break
            told = await self._not_started(message, current, earlier)
            claim = await self._claim(key, actor, replacing=earlier)
            if claim is not None:
                return claim, told
        raise ReleaseAlreadyRunning(
            "Release was already started from this walkthrough (on another replica): "
            "its result appears in step 5 when it ends."
        )

    async def sending(self, claim: Claim) -> None:
        """Awaited right before the click's dispatch is sent: `ClaimLost` unless its claim is
        `still_held` (its own, with half its lease left). A click held up past its lease (a
        stalled replica, a slow read of GitHub) would otherwise dispatch after its look gave
        the claim up having found no run, or another click took Release over: two Releases."""
        try:
            held = await still_held(self.claims, claim, clock=self.clock)
        except Exception as error:
            raise ClaimUnread(claim.key) from error
        if not held:
            raise ClaimLost(claim.key)

    async def give_back(
        self,
        claim: Claim,
        look: ReleaseLook,
        draw: Callable[[ReleaseFollow], Awaitable[object]],
    ) -> bool:
        """A held-up click's claim, if still its own, given back once step 5 (`draw`) says why
        nothing was sent: drawn first, so that a redraw Slack drops is left to its look,
        rewritten to draw it and then give the claim back (`ReleaseLooks.unsent`); the same
        when the database fails. Given back first, a dropped redraw left "Dispatching" for good
        (a look whose claim is gone does nothing). False: the claim is another's, or gone."""
        told = self.held_up().message
        try:
            held = await self.claims.get(claim.key)
            if held is None or held.holder != claim.holder:
                return False
            try:
                await draw(
                    look.release.model_copy(
                        update={"phase": ReleasePhase.NOT_STARTED, "error": clip_error(told)}
                    )
                )
            except Exception:
                log.warning("npm-token: Slack did not take step 5 of %s", claim.key, exc_info=True)
            else:
                return await self.claims.release(claim)
        except Exception:
            await self.looks.unsent(look, told)
            raise
        await self.looks.unsent(look, told)
        raise ReleaseNotSent(
            f"{told.removesuffix(AGAIN)}Slack did not take step 5's redraw: the bot draws it "
            "again in a moment, and Release can be clicked again once step 5 says so."
        )

    @staticmethod
    def held_up() -> ReleaseNotSent:
        """Why a click whose claim was still its own, but ran out or nearly, sent nothing (it
        gave the claim back: the click may be repeated). Shown in step 5 too: no date in it."""
        return ReleaseNotSent(
            "The bot was held up before it could send the dispatch, until less than half of "
            "the click's claim on Release was left: nothing was sent, so that it cannot start "
            f"a Release beside another click's. {AGAIN}"
        )

    async def not_sent(self, claim: Claim) -> ReleaseNotSent:
        """What a click held up past its claim is told once the walkthrough went on without
        it: its claim was given up (its look found no run), or another click holds it now (or
        a later click completed it, having found a run it took for this one's)."""
        until = self.once.when(claim.claimed_at + self.claims.lease)
        told = (
            "Nothing was sent: the bot was held up before it could dispatch "
            f"{self.npm.workflow} for this click until its claim on Release had run out (at "
            f"{until}), and the walkthrough went on without it"
        )
        held = await self.claims.get(claim.key)
        if held is None:
            return ReleaseNotSent(
                f"{told}: its claim was given up since (step 5 says why). Click Release again "
                "to run it."
            )
        if held.holder != claim.holder:
            when = self.once.when(held.claimed_at)
            return ReleaseNotSent(f"{told}: a click at {when} ran Release, and step 5 follows it.")
        return ReleaseNotSent(f"{told}: step 5 follows the run found for it.")

    async def _claim(self, key: str, actor: str, *, replacing: Claim | None = None) -> Claim | None:
        return await self.claims.claim(
            key=key,
            action=CLAIM_ACTION,
            actor=actor,
            now=self.clock(),
            take_over=False,
            replacing=replacing,
        )

    async def _not_started(self, message: MessageRef, current: Walkthrough, earlier: Claim) -> str:
        """An earlier click's claim never recorded done (the bot died or lost its database
        around its dispatch) and lapsed, with no look of it to settle it: whether it started
        Release is looked up on GitHub, as after an unclear answer. Its run found, it is
        followed; none yet while one may still appear, the click is told when to try again;
        several, which is its own cannot be told (all raised). None by then: it did not
        start, and this click may run Release (what it is told)."""
        since = self.once.unrecorded(earlier, f"run the {self.npm.workflow} workflow")
        # Its dispatch, if any, was sent while its claim held (with half its lease left at
        # least: `sending`): a run created later is not its, nor one another walkthrough's looks
        # follow (its click recorded the run id GitHub answered with). Nothing else ties a run
        # to the click (the module's docstring says why).
        held = earlier.claimed_at + self.claims.lease
        try:
            listed = await self.github.dispatched_runs(
                workflow_file=self.npm.workflow,
                ref=self.npm.ref,
                dispatched_at=earlier.claimed_at,
                before=held,
            )
        except GitHubError as error:
            why = clip_error(error.message)
            raise StaleCard(
                f"This walkthrough is out of date: {since} GitHub could not be asked whether "
                f"it started that run ({why}), so Release is not dispatched again yet. Click "
                "Release again in a minute."
            ) from error
        theirs = (
            await self.looks.followed_elsewhere(message, since=earlier.claimed_at) if listed else ()
        )
        runs = [run for run in listed if run.run_id not in theirs]
        others = sorted(run.run_id for run in listed if run.run_id in theirs)
        window = (
            f"by the bot started while that click held its claim (until {self.once.when(held)})"
        )
        if others:
            window += f", besides {_runs(others)} that other walkthroughs follow"
        if len(runs) > 1:  # which one is that click's cannot be told: never a guess
            ids = ", ".join(str(run.run_id) for run in runs)
            raise StaleCard(
                f"This walkthrough is out of date: {since} GitHub lists {len(runs)} runs of "
                f"{self.npm.workflow} {window}: {ids}. So Release is not dispatched again "
                "from here. Check them on GitHub; to run Release anyway, open a new walkthrough "
                "with `/rollout npm-token`."
            )
        if runs:
            (found,) = runs
            await self.looks.found(message, current, earlier, found.run_id)
            log.info("npm-token: found the Release run %s of an unrecorded click", found.run_id)
            raise ReleaseAlreadyRunning(
                f"This walkthrough is out of date: {since} It was, as far as GitHub can tell: "
                f"it lists one run of {self.npm.workflow} {window}, run {found.run_id}, and "
                "step 5 follows it now (a run names nothing of the click that started it: one "
                "started in those minutes by someone else with the bot's GitHub account, or by "
                "a click that could not record it either, would look the same). Release is not "
                "dispatched again."
            )
        gone = earlier.claimed_at + self.looks.pace.dispatch_search
        if self.clock() < gone:
            raise StaleCard(
                f"This walkthrough is out of date: {since} GitHub lists no run of it yet, and a "
                f"dispatched run can take a while to be listed, so Release is not dispatched "
                f"again yet. Click Release again after {self.once.when(gone)}: if no run has "
                "appeared by then, it runs Release."
            )
        log.warning("npm-token: an unrecorded Release click started no run; running it again")
        return (
            f"{since} GitHub lists no run of {self.npm.workflow} {window}, and the search "
            f"for one ended at {self.once.when(gone)}: it did not start, so Release runs now "
            "(step 5 follows it)."
        )


def _runs(ids: list[int]) -> str:
    return f"run {ids[0]}" if len(ids) == 1 else "runs " + ", ".join(str(i) for i in ids)
