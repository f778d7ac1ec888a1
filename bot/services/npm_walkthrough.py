"""The NPM_TOKEN walkthrough: set up and verify the npm Release workflow's publish credentials.

`/rollout npm-token` posts one message whose steps update in place. Three of them check GitHub:
the secret's metadata (never its value), the last Release run's validate and publish steps, and
a Release run dispatched on request and followed to its end. What the message shows is a
`Walkthrough` value; it travels in the message's button values, and the newest one of each
message is also kept here, so a followed run and a click in between never undo each other.
The bot never asks for, receives, logs or shows a token value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.domain.errors import GitHubError, RolloutError, RunNotIdentified
from bot.domain.npm import (
    SECRET_NAME,
    ReleaseFollow,
    ReleasePhase,
    ReleaseRun,
    RunCheck,
    RunSummary,
    SecretCheck,
    Walkthrough,
    assess_run,
    assess_secret,
    clip_error,
)
from bot.domain.plan import NpmRelease
from bot.domain.service import DEFAULT_SERVICE
from bot.services.authz import Approvers
from bot.services.failures import log_failure
from bot.services.ports import Clock, ReleaseGateway
from bot.services.records import Claim
from bot.services.store_ports import Claims

log = logging.getLogger(__name__)

_REMEMBERED = 256
"""Walkthrough messages whose newest state is kept in memory (older ones: their buttons)."""


@dataclass(frozen=True)
class MessageRef:
    """The walkthrough's Slack message."""

    channel: str
    ts: str


class WalkthroughNotPosted(RolloutError):
    """Slack would not take the walkthrough message in that conversation."""

    code = "walkthrough_not_posted"


class ReleaseAlreadyRunning(RolloutError):
    """This walkthrough already follows a Release run."""

    code = "release_already_running"


class WalkthroughBoard(Protocol):
    """Where the walkthrough is shown: one message, redrawn in place."""

    async def post(self, *, channel: str, walkthrough: Walkthrough) -> MessageRef:
        """Post a new walkthrough message; raises WalkthroughNotPosted when Slack refuses."""
        ...

    async def update(self, *, message: MessageRef, walkthrough: Walkthrough) -> None:
        """Redraw the message (failures are logged, never raised)."""
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
        poll_interval: timedelta,
        claims: Claims,
        follow_for: timedelta = timedelta(hours=2),
        search_for: timedelta = timedelta(minutes=4),
        service: str = DEFAULT_SERVICE,
    ) -> None:
        self._fresh = Walkthrough(service=service)
        self._github = github
        self._claims = claims
        self._board = board
        self._approvers = approvers
        self._npm = npm
        self._clock = clock
        self._poll_interval = poll_interval
        self._follow_for = follow_for
        self._search_for = search_for
        """How long the run of an unclear dispatch is looked for (within the claim's lease)."""
        self._latest: OrderedDict[MessageRef, Walkthrough] = OrderedDict()
        self._lock = asyncio.Lock()
        self._followers: dict[MessageRef, asyncio.Task[None]] = {}
        self._busy: set[MessageRef] = set()
        """Messages with a Release dispatch in flight or a run being followed."""

    async def open(self, *, channel: str, actor: str) -> MessageRef:
        """Post a fresh walkthrough in the channel (or direct message)."""
        walkthrough = self._fresh
        message = await self._board.post(channel=channel, walkthrough=walkthrough)
        self._remember(message, walkthrough)
        log.info("npm-token walkthrough opened by %s in %s", actor, channel)
        return message

    async def check_secret(
        self, *, message: MessageRef, shown: Walkthrough, actor: str
    ) -> SecretCheck:
        """Step 3: the secret's metadata, and a warning when it is older than the plan allows."""
        try:
            found = await self._github.secret(SECRET_NAME)
        except GitHubError as error:
            check = SecretCheck(max_age_days=self._npm.max_secret_age_days, error=_why(error))
        else:
            check = assess_secret(
                found, now=self._clock(), max_age_days=self._npm.max_secret_age_days
            )
        log.info("npm-token: %s checked the secret: %s", actor, check.tone)
        await self._change(message, shown, lambda w: w.model_copy(update={"secret": check}))
        return check

    async def check_last_run(
        self, *, message: MessageRef, shown: Walkthrough, actor: str
    ) -> RunCheck:
        """Step 4: the latest Release run's validate and publish steps."""
        try:
            run = await self._github.latest_run(workflow_file=self._npm.workflow)
            check = await _judged(self._github, run, self._npm)
        except GitHubError as error:
            check = RunCheck(error=_why(error))
        log.info("npm-token: %s checked the last Release run: %s", actor, check.tone)
        await self._change(message, shown, lambda w: w.model_copy(update={"last_run": check}))
        return check

    async def run_release(self, *, message: MessageRef, shown: Walkthrough, actor: str) -> None:
        """Step 5 (approvers only, after a confirm dialog): dispatch Release on the plan's ref
        and follow the run in the background until it completes."""
        await self._approvers.require(actor, "run the npm Release workflow")
        async with self._lock:
            current = self._latest.get(message, shown)
            if message in self._busy:
                release = current.release
                run = f" (run {release.run_id})" if release and release.run_id else ""
                raise ReleaseAlreadyRunning(
                    f"This walkthrough is already following a Release run{run}: "
                    "its result appears in step 5 when it ends."
                )
            self._busy.add(message)  # claimed before dispatching: two clicks, one run
            self._remember(message, current)
        following = False
        try:
            # The same claim across replicas: one Release per walkthrough and run shown.
            previous_run = current.release.run_id if current.release else None
            claim = await self._claims.claim(
                key=f"npm_release:{message.channel}:{message.ts}:{previous_run}",
                action="npm_release",
                actor=actor,
                now=self._clock(),
            )
            if claim is None:
                raise ReleaseAlreadyRunning(
                    "Release was already started from this walkthrough (on another replica): "
                    "its result appears in step 5 when it ends."
                )
            following = await self._release(message, current, actor, claim)
        finally:
            if not following:
                self._busy.discard(message)

    async def _release(
        self, message: MessageRef, current: Walkthrough, actor: str, claim: Claim
    ) -> bool:
        """Dispatch and start following; True when a follower (or a search for the run) now
        owns the message. The claim is completed once a run is known, released when nothing
        started, and kept while a run the dispatch may have started is looked for."""
        previous = current.release
        if previous is not None and previous.active and previous.run_id is not None:
            # The bot restarted while following this run: pick it up again if it still runs.
            with contextlib.suppress(GitHubError):
                run = await self._github.release_run(previous.run_id)
                if not run.completed:
                    await self._claims.complete(claim, now=self._clock())
                    self._start_following(
                        message, previous.model_copy(update={"status": run.status})
                    )
                    return True
        dispatching = ReleaseFollow(requested_by=actor, phase=ReleasePhase.DISPATCHING)
        await self._set_release(message, dispatching)
        dispatched_at = self._clock()
        try:
            started = await self._github.dispatch(
                workflow_file=self._npm.workflow,
                ref=self._npm.ref,
                inputs={},
                dispatched_at=dispatched_at,
            )
        except RunNotIdentified as error:
            # GitHub may have started Release (it can publish): never "not started", never a
            # second run. The claim stays held while the bot looks for the run.
            log.warning("npm-token: Release dispatched by %s, run not identified yet", actor)
            searching = dispatching.model_copy(update={"error": _why(error)})
            await self._set_release(message, searching)
            self._start_task(message, self._search(message, searching, claim, dispatched_at))
            return True
        except GitHubError as error:
            await self._claims.release(claim)  # nothing started: the click may be repeated
            failed = dispatching.model_copy(
                update={"phase": ReleasePhase.NOT_STARTED, "error": _why(error)}
            )
            await self._set_release(message, failed)
            return False
        await self._claims.complete(claim, now=self._clock())
        log.info("npm-token: %s dispatched %s: run %s", actor, self._npm.workflow, started.run_id)
        self._start_following(message, await self._running(message, dispatching, started.run_id))
        return True

    async def _running(
        self, message: MessageRef, release: ReleaseFollow, run_id: int
    ) -> ReleaseFollow:
        """Show the run as started (and to be followed)."""
        running = release.model_copy(
            update={
                "phase": ReleasePhase.RUNNING,
                "run_id": run_id,
                "status": "queued",
                "error": None,
            }
        )
        await self._set_release(message, running)
        return running

    async def _search(
        self, message: MessageRef, release: ReleaseFollow, claim: Claim, dispatched_at: datetime
    ) -> None:
        """Look for the run of a dispatch GitHub did not answer clearly, until it is found (it
        is then followed) or `search_for` has passed without it (the click may be repeated)."""
        seconds = self._poll_interval.total_seconds()
        while True:
            await asyncio.sleep(seconds)
            try:
                found = await self._github.find_dispatched_run(
                    workflow_file=self._npm.workflow, ref=self._npm.ref, dispatched_at=dispatched_at
                )
            except GitHubError as error:
                log.warning("npm-token: could not look for the Release run: %s", error.message)
                found = None  # a failed look is no answer: look again
            if found is not None:
                await self._claims.complete(claim, now=self._clock())
                log.info("npm-token: found the Release run %s", found.run_id)
                await self._follow(message, await self._running(message, release, found.run_id))
                return
            if self._clock() - dispatched_at >= self._search_for:
                break
        await self._claims.release(claim)
        minutes = int(self._search_for.total_seconds() // 60)
        absent = release.model_copy(
            update={
                "phase": ReleasePhase.NOT_STARTED,
                "error": clip_error(
                    f"GitHub did not answer the dispatch clearly and no run of "
                    f"{self._npm.workflow} by the bot appeared within {minutes} minutes. "
                    "Check its runs on GitHub before running it again."
                ),
            }
        )
        log.warning("npm-token: no Release run appeared; the dispatch is taken as not started")
        await self._set_release(message, absent)

    async def close(self) -> None:
        """Stop following runs (on shutdown); their messages keep the last status shown."""
        tasks = list(self._followers.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._followers.clear()
        self._busy.clear()

    # -- following a dispatched run -------------------------------------------------------------

    def _start_following(self, message: MessageRef, release: ReleaseFollow) -> None:
        self._start_task(message, self._follow(message, release))

    def _start_task(self, message: MessageRef, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"npm-release {message}")
        self._followers[message] = task
        task.add_done_callback(lambda done: self._followed(message, done))

    def _followed(self, message: MessageRef, task: asyncio.Task[None]) -> None:
        if self._followers.get(message) is task:
            del self._followers[message]
            self._busy.discard(message)
        if not task.cancelled() and (error := task.exception()) is not None:
            log_failure(log, "following the Release run failed", error)

    async def _follow(self, message: MessageRef, release: ReleaseFollow) -> None:
        assert release.run_id is not None
        deadline = self._clock() + self._follow_for
        seconds = self._poll_interval.total_seconds()
        while True:
            await asyncio.sleep(seconds)
            shown = release
            try:
                run = await self._github.release_run(release.run_id)
            except GitHubError as error:
                # Keep following: a rate limit or a blip says so in the step, then passes.
                release = release.model_copy(update={"error": _why(error)})
            else:
                if run.completed:
                    break
                release = release.model_copy(update={"status": run.status, "error": None})
            if self._clock() >= deadline:
                release = release.model_copy(update={"phase": ReleasePhase.UNFOLLOWED})
                await self._set_release(message, release)
                return
            if release != shown:
                await self._set_release(message, release)
        try:
            check = await _judged(self._github, run, self._npm)
        except GitHubError as error:
            check = RunCheck(run=RunSummary.of(run), error=_why(error))
        done = release.model_copy(
            update={
                "phase": ReleasePhase.DONE,
                "status": run.status,
                "check": check,
                "error": None,
            }
        )
        log.info("npm-token: Release run %s ended: %s", run.run_id, check.tone)
        await self._set_release(message, done)

    async def _set_release(self, message: MessageRef, release: ReleaseFollow) -> None:
        # The message is remembered from the click that started it; a fresh state only if not.
        await self._change(
            message, self._fresh, lambda w: w.model_copy(update={"release": release})
        )

    # -- plumbing -------------------------------------------------------------------------------

    async def _change(
        self,
        message: MessageRef,
        shown: Walkthrough,
        change: Callable[[Walkthrough], Walkthrough],
    ) -> None:
        """Apply `change` to the newest state of the message (what it showed, when this process
        has not seen it) and redraw it. Serialized, so concurrent changes all land."""
        async with self._lock:
            updated = change(self._latest.get(message, shown))
            self._remember(message, updated)
            await self._board.update(message=message, walkthrough=updated)

    def _remember(self, message: MessageRef, walkthrough: Walkthrough) -> None:
        self._latest[message] = walkthrough
        self._latest.move_to_end(message)
        while len(self._latest) > _REMEMBERED:
            oldest = next((m for m in self._latest if m not in self._busy), None)
            if oldest is None:
                break
            del self._latest[oldest]


async def _judged(github: ReleaseGateway, run: ReleaseRun | None, npm: NpmRelease) -> RunCheck:
    """The run's job, its steps and (once it completed) its log, judged."""
    if run is None or not run.completed:
        return assess_run(run, None, None, npm=npm)
    job = await github.release_job(run_id=run.run_id, name=npm.job)
    text: str | None = None
    unavailable: str | None = None
    if job is not None and job.status == "completed" and job.conclusion != "skipped":
        try:
            text = await github.job_log(job.job_id)
        except GitHubError as error:
            unavailable = error.message
    return assess_run(run, job, text, npm=npm, log_unavailable=unavailable)


def _why(error: GitHubError) -> str:
    return clip_error(error.message)
