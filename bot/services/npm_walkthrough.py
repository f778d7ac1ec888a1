"""The NPM_TOKEN walkthrough: set up and verify the npm Release workflow's publish credentials.

`/rollout npm-token` posts one message whose steps update in place. Three of them check GitHub:
the secret's metadata (never its value), the last Release run's validate and publish steps, and
a Release run dispatched on request and followed to its end (`bot.services.npm_release`:
durable looks, so a restart or another replica carries on; who may run it, after a click whose
outcome was never recorded: `bot.services.npm_claim`). What the message shows is a
`Walkthrough` value; it travels in the message's button values (and in each look), and the
newest one of each message is also kept here, so a followed run and a click in between on
this replica never undo each other. The bot never asks for, receives, logs or shows a token
value.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Protocol

from bot.domain.controls import Control
from bot.domain.errors import GitHubError, RolloutError, RunNotIdentified
from bot.domain.npm import (
    SECRET_NAME,
    ReleaseFollow,
    ReleasePhase,
    RunCheck,
    SecretCheck,
    Walkthrough,
    clip_error,
)
from bot.domain.npm_secrets import (
    PublishJob,
    SecretLevels,
    assess_secret,
    with_trusted_publishing,
)
from bot.domain.permissions import VERBS
from bot.domain.plan import NpmRelease
from bot.domain.service import DEFAULT_SERVICE
from bot.services.authz import Approvers
from bot.services.exactly_once import ExactlyOnce
from bot.services.lane import ReleaseLane
from bot.services.npm_claim import ClaimLost, ClaimUnread, ReleaseAlreadyRunning, ReleaseClaimer
from bot.services.npm_judged import judged
from bot.services.npm_release import (
    LookPace,
    MessageRef,
    ReleaseLook,
    ReleaseLooks,
    release_claim_key,
)
from bot.services.ports import Clock, ReleaseGateway
from bot.services.records import Claim
from bot.services.requests import Origin
from bot.services.store_ports import Claims, Timers

log = logging.getLogger(__name__)

_REMEMBERED = 256
"""Walkthrough messages whose newest state is kept in memory (older ones: their buttons)."""


class WalkthroughNotPosted(RolloutError):
    """Slack would not take the walkthrough message in that conversation."""

    code = "walkthrough_not_posted"


class WalkthroughBoard(Protocol):
    """Where the walkthrough is shown: one message, redrawn in place."""

    async def post(self, *, channel: str, walkthrough: Walkthrough) -> MessageRef:
        """Post a new walkthrough message; raises WalkthroughNotPosted when Slack refuses."""
        ...

    async def update(self, *, message: MessageRef, walkthrough: Walkthrough) -> None:
        """Redraw the message (Slack's refusals are logged, never raised; a connection lost
        or a timeout raises: the look that redraws is tried again, a click is given back)."""
        ...


class NpmTokenService:
    """Runs the walkthrough's checks and the Release run it may dispatch."""

    def __init__(
        self,
        *,
        github: ReleaseGateway,
        board: WalkthroughBoard,
        approvers: Approvers,
        npm: NpmRelease,
        clock: Clock,
        claims: Claims,
        once: ExactlyOnce,
        timers: Timers,
        timers_changed: Callable[[], None],
        pace: LookPace,
        lane: ReleaseLane,
        service: str = DEFAULT_SERVICE,
        trusted_publishing: bool = True,
    ) -> None:
        self._fresh = Walkthrough(service=service)
        self._trusted_publishing = trusted_publishing
        """npm trusted publishing takes this GitHub's OIDC tokens (not GitHub Enterprise
        Server's): else a job with `id-token: write` is checked as needing NPM_TOKEN."""
        self._lane = lane
        self._github = github
        self._claims = claims
        self._board = board
        self._approvers = approvers
        self._npm = npm
        self._clock = clock
        self._once = once
        self._latest: OrderedDict[MessageRef, Walkthrough] = OrderedDict()
        self._lock = asyncio.Lock()
        self._busy: set[MessageRef] = set()
        """Messages with a Release click under way in this process."""
        self.looks = ReleaseLooks(
            github=github,
            timers=timers,
            timers_changed=timers_changed,
            claims=claims,
            npm=npm,
            clock=clock,
            pace=pace,
            redraw=self._set_release,
            service=service,
        )
        """The durable looks at the Release runs dispatched here (fired by the scheduler)."""
        self._claimer = ReleaseClaimer(
            github=github, claims=claims, once=once, npm=npm, clock=clock, looks=self.looks
        )

    async def open(self, *, channel: str, actor: str) -> MessageRef:
        """Post a fresh walkthrough in the channel (or direct message), its steps 4 and 5
        worded for a job that publishes with npm trusted publishing only when the release
        workflow says so."""
        walkthrough = _read_trusted(self._fresh, await self._publish_job())
        message = await self._board.post(channel=channel, walkthrough=walkthrough)
        self._remember(message, walkthrough)
        log.info("npm-token walkthrough opened by %s in %s", actor, channel)
        return message

    async def check_secret(
        self, *, message: MessageRef, shown: Walkthrough, actor: str
    ) -> SecretCheck:
        """Step 3: the secret the publishing job reads (its environment's, the repository's or
        the organization's), and a warning when it is older than the plan allows."""
        workflow = await self._publish_job()
        check = await self._secret_check(workflow[0])
        log.info("npm-token: %s checked the secret: %s", actor, check.tone)
        await self._checked(message, shown, workflow, secret=check)
        return check

    async def _checked(
        self,
        message: MessageRef,
        shown: Walkthrough,
        workflow: tuple[PublishJob, bool],
        **check: SecretCheck | RunCheck,
    ) -> None:
        """Redraw with a step's new check, and the job as the workflow read with it says."""
        await self._change(
            message, shown, lambda w: _read_trusted(w.model_copy(update=check), workflow)
        )

    async def _publish_job(self) -> tuple[PublishJob, bool]:
        """What the release workflow says of the publishing job, and whether GitHub showed
        the workflow (when not, the job says why)."""
        npm = self._npm
        try:
            job = await self._github.publish_job(
                workflow_file=npm.workflow, ref=npm.ref, job=npm.job
            )
        except GitHubError as error:
            # Then the repository's and the organization's secret are checked.
            return PublishJob(unknown=error.message), False
        return with_trusted_publishing(job, available=self._trusted_publishing), True

    async def _secret_check(self, job: PublishJob) -> SecretCheck:
        npm = self._npm
        try:
            levels = await self._github.secret_levels(SECRET_NAME, job, ref=npm.ref)
        except GitHubError as error:
            if not job.oidc_only:
                return SecretCheck(max_age_days=npm.max_secret_age_days, error=_why(error))
            # The job reads no NPM_TOKEN: where one is kept does not matter. Its environment's
            # rules were not read either.
            levels = SecretLevels(
                job=job,
                repository=None,
                organization=None,
                protection_unread=job.environment is not None,
            )
        return assess_secret(
            levels, now=self._clock(), max_age_days=npm.max_secret_age_days, ref=npm.ref
        )

    async def check_last_run(
        self, *, message: MessageRef, shown: Walkthrough, actor: str
    ) -> RunCheck:
        """Step 4: the latest Release run's validate and publish steps, judged as the release
        workflow's publishing job publishes now (with npm trusted publishing only, or not)."""
        workflow = await self._publish_job()
        try:
            run = await self._github.latest_run(workflow_file=self._npm.workflow)
            check = await judged(self._github, run, self._npm)
        except GitHubError as error:
            check = RunCheck(error=_why(error))
        log.info("npm-token: %s checked the last Release run: %s", actor, check.tone)
        await self._checked(message, shown, workflow, last_run=check)
        return check

    async def run_release(
        self, *, message: MessageRef, shown: Walkthrough, origin: Origin
    ) -> str | None:
        """Step 5 (approvers only, after a confirm dialog; refused while the release lane is
        frozen, or locked by someone else; a click delivered again is told who ran it): dispatch
        Release on the plan's ref and follow the run until it completes
        (`bot.services.npm_release`: durable looks). What the person is told besides step 5,
        if anything."""
        actor = origin.actor
        await self._approvers.require(actor, VERBS[Control.RUN_RELEASE])
        # It publishes packages: refused while deploys are frozen or someone else holds the lock.
        await self._lane.judge(actor=actor, publishing=True)
        # Once its run has ended, the same click again would start another Release.
        await self._once.delivery(origin, Control.RUN_RELEASE)
        async with self._lock:
            current = self._latest.get(message, shown)
            release = current.release
            if message in self._busy or (release is not None and release.active):
                run = f" (run {release.run_id})" if release and release.run_id else ""
                raise ReleaseAlreadyRunning(
                    f"This walkthrough is already following a Release run{run}: "
                    "its result appears in step 5 when it ends."
                )
            self._busy.add(message)  # claimed before dispatching: two clicks, one run
            self._remember(message, current)
        try:
            # The same claim across replicas: one Release per walkthrough and run shown.
            previous_run = release.run_id if release else None
            if release is not None and release.phase is ReleasePhase.UNFOLLOWED:
                await self._ended_since(previous_run)
            key = release_claim_key(message, previous_run)
            claim, told = await self._claimer.claim(message, current, key=key, actor=actor)
            await self._release(message, current, actor, claim)
            return told
        finally:
            self._busy.discard(message)

    async def _ended_since(self, run_id: int | None) -> None:
        """The run the bot stopped following (after two hours, or its looks failed) may still
        go (it waits for its reviewers): no second Release beside it, which could publish too.
        GitHub's refusal to show it refuses the click too (its GitHubError)."""
        if run_id is None:
            return  # never found: its click's claim settles it (`ReleaseClaimer`)
        run = await self._github.release_run(run_id)
        if not run.completed:
            raise ReleaseAlreadyRunning(
                f"Release run {run_id}, which the bot stopped following, is still "
                f"{run.status.replace('_', ' ')}: Release is not dispatched again beside it. "
                "Check it with step 4 once it has ended, then run Release again."
            )

    async def _release(
        self, message: MessageRef, current: Walkthrough, actor: str, claim: Claim
    ) -> None:
        """Dispatch, then hand the run to the looks. The claim is completed once a run is
        known, released when nothing started, and kept while a run the dispatch may have
        started is looked for. Nothing is sent once the claim no longer lasts for it
        (`ReleaseClaimer.sending`: the click was held up)."""
        dispatching = ReleaseFollow(requested_by=actor, phase=ReleasePhase.DISPATCHING)
        dispatched_at = self._clock()
        # Written first: if the bot stops or dies during the dispatch, it looks for the run.
        # Before "Dispatching" is shown: a look that could not be written follows nothing.
        look: ReleaseLook | None = None
        try:
            look = await self.looks.first(
                message, current.model_copy(update={"release": dispatching}), claim, dispatched_at
            )
            shown = await self._set_release(message, current, dispatching)
        except Exception:
            # Nothing was sent: the click may be repeated, and no look may later say that
            # GitHub's answer was unclear, nor the walkthrough that a Release is on its way.
            if look is not None:
                await self.looks.cancel(look)
            async with self._lock:
                self._remember(message, current)
            await self._claims.release(claim)
            raise
        try:
            started = await self._github.dispatch(
                workflow_file=self._npm.workflow,
                ref=self._npm.ref,
                inputs={},
                dispatched_at=dispatched_at,
                before_send=partial(self._claimer.sending, claim),
            )
        except ClaimLost:  # held up past its claim: nothing was sent, nor will be
            log.warning("npm-token: %s's Release click was held up past its claim: not sent", actor)
            # Step 5 drawn, then the claim given back, then the look cancelled: should the
            # redraw or the database fail, the look, rewritten, does the rest.
            draw = partial(self._set_release, message, shown)
            if await self._claimer.give_back(claim, look, draw):  # its looks follow nothing now
                await self.looks.cancel(look)
                raise self._claimer.held_up() from None
            await self.looks.cancel(look)
            async with self._lock:  # the walkthrough went on without it: Slack shows it newer
                self._latest.pop(message, None)
            raise await self._claimer.not_sent(claim) from None
        except ClaimUnread as error:  # nothing was sent: its look gives the claim back
            await self.looks.unsent(look, error.told)
            assert error.__cause__ is not None
            raise error.__cause__ from None
        except RunNotIdentified as error:
            # GitHub may have started Release (it can publish): never "not started", never a
            # second run. The claim stays held while the bot looks for the run.
            log.warning("npm-token: Release dispatched by %s, run not identified yet", actor)
            searching = dispatching.model_copy(update={"error": _why(error)})
            drawn = await self._set_release(message, shown, searching)
            until = dispatched_at + self.looks.pace.search_for
            accepted = error.accepted or None  # a 204, its run not told
            await self.looks.instead(look, drawn, until=until, accepted=accepted)
        except GitHubError as error:
            await self.looks.cancel(look)  # before the claim: the click may be repeated then
            await self._claims.release(claim)  # nothing started
            failed = dispatching.model_copy(
                update={"phase": ReleasePhase.NOT_STARTED, "error": _why(error)}
            )
            await self._set_release(message, shown, failed)
            return
        else:
            await self._claims.complete(claim, now=self._clock())
            log.info(
                "npm-token: %s dispatched %s: run %s", actor, self._npm.workflow, started.run_id
            )
            await self.looks.follow(look, shown, dispatching, started.run_id)
        # The next look is written, then the first cancelled: if the bot dies in between, the
        # first fires too and writes the same next look (its key is taken), so one follows.
        await self.looks.cancel(look)

    async def _set_release(
        self, message: MessageRef, shown: Walkthrough, release: ReleaseFollow
    ) -> Walkthrough:
        return await self._change(
            message, shown, lambda w: w.model_copy(update={"release": release})
        )

    # -- plumbing -------------------------------------------------------------------------------

    async def _change(
        self,
        message: MessageRef,
        shown: Walkthrough,
        change: Callable[[Walkthrough], Walkthrough],
    ) -> Walkthrough:
        """Apply `change` to the newest state of the message (what it showed, when this process
        has not seen it) and redraw it; what was drawn. Serialized, so concurrent changes all
        land."""
        async with self._lock:
            updated = change(self._latest.get(message, shown))
            self._remember(message, updated)
            await self._board.update(message=message, walkthrough=updated)
            return updated

    def _remember(self, message: MessageRef, walkthrough: Walkthrough) -> None:
        self._latest[message] = walkthrough
        self._latest.move_to_end(message)
        while len(self._latest) > _REMEMBERED:
            oldest = next((m for m in self._latest if m not in self._busy), None)
            if oldest is None:
                break
            del self._latest[oldest]


def _read_trusted(walkthrough: Walkthrough, workflow: tuple[PublishJob, bool]) -> Walkthrough:
    """The walkthrough as the workflow's publishing job now reads (unchanged when GitHub
    would not show the workflow): False overrides a step 3 check that found trusted
    publishing only in an older workflow."""
    job, read = workflow
    if not read:
        return walkthrough
    if job.oidc_only:
        trusted: bool | None = True
    else:
        secret = walkthrough.secret
        trusted = False if secret is not None and secret.oidc_only else None
    return walkthrough.model_copy(update={"trusted_publishing": trusted})


def _why(error: GitHubError) -> str:
    return clip_error(error.message)
