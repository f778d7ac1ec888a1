"""Following the Release run the npm walkthrough dispatched: one look at a time, each a durable
timer (`storage.timers`), so a run is followed to its end across a shutdown, a crash and
replicas.

A look (key `npm_release:<channel>:<ts>:<claim holder>:<n>`) reads the run once, redraws step 5
when it changed and schedules the next look, or shows the run's result and ends. A look is
fired by one replica; one fired again (its replica died before completing it) does nothing
when its next look is written already (what it saw is old), and otherwise writes it, once
(its key), so the chain stays one. A look whose click's claim was released (nothing started,
or the search ended) or taken by another click does nothing: a run that appears then is not
its click's. The first look is written before the dispatch, due a lease later: when the bot
stops or dies during the dispatch, it looks for the run the dispatch may have started, as
after an unclear answer, instead of forgetting it. What the message showed travels in each
look, so a restarted bot redraws it whole.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.domain.errors import GitHubError
from bot.domain.npm import (
    RELEASE_TIMER,
    ReleaseFollow,
    ReleasePhase,
    ReleaseRun,
    RunCheck,
    RunSummary,
    Walkthrough,
    clip_error,
)
from bot.domain.plan import NpmRelease
from bot.domain.reasons import Reason
from bot.domain.rollout import DISPATCH_SEARCH
from bot.services.npm_judged import judged
from bot.services.ports import Clock, ReleaseGateway
from bot.services.records import Claim, ClaimState, Timer
from bot.services.store_ports import Claims, Timers

log = logging.getLogger(__name__)

CLAIM_ACTION = "npm_release"
"""The action of the claim a Release click takes (one Release per walkthrough and run shown)."""


@dataclass(frozen=True)
class MessageRef:
    """The walkthrough's Slack message."""

    channel: str
    ts: str


def release_claim_key(message: MessageRef, previous_run: int | None) -> str:
    """The claim of a Release click, the same across replicas: one Release per walkthrough
    message and the run it showed (None: none yet)."""
    return f"{CLAIM_ACTION}:{message.channel}:{message.ts}:{previous_run}"


Redraw = Callable[[MessageRef, Walkthrough, ReleaseFollow], Awaitable[Walkthrough]]
"""Show `release` in step 5 of the message's newest state (the given one, when this process
has not seen the message) and redraw it; the state drawn."""


class ReleaseLook(BaseModel):
    """One look at a Release run: a timer's payload."""

    model_config = ConfigDict(frozen=True)

    channel: str
    ts: str
    walkthrough: Walkthrough
    """What the message showed when the look was written (its step 5 names the run)."""
    claim_key: str
    holder: str
    """The click's claim (completed once the run is known, released when none started)."""
    actor: str
    dispatched_at: datetime
    until: datetime
    """The run is looked for (no run id yet), or followed, until then."""
    number: int = 0
    accepted: bool | None = None
    """GitHub answered the dispatch clearly, accepting it (its run not told yet): a search that
    ends finding none says so (an older replica ignores the field)."""

    @property
    def message(self) -> MessageRef:
        return MessageRef(channel=self.channel, ts=self.ts)

    @property
    def key(self) -> str:
        return f"{RELEASE_TIMER}:{self.channel}:{self.ts}:{self.holder}:{self.number}"

    @property
    def next_key(self) -> str:
        return self.model_copy(update={"number": self.number + 1}).key

    @property
    def release(self) -> ReleaseFollow:
        assert self.walkthrough.release is not None  # a look is written for a Release shown
        return self.walkthrough.release

    def claim(self) -> Claim:
        return Claim(
            key=self.claim_key,
            action=CLAIM_ACTION,
            actor=self.actor,
            state=ClaimState.CLAIMED,
            claimed_at=self.dispatched_at,
            holder=self.holder,
        )


@dataclass(frozen=True, kw_only=True)
class LookPace:
    """How often, and how long, a Release run is looked at."""

    every: timedelta
    """GITHUB_POLL_INTERVAL."""
    follow_for: timedelta = timedelta(hours=2)
    search_for: timedelta = timedelta(minutes=4)
    """How long the run of an unclear dispatch is looked for (within the claim's lease)."""
    resume_after: timedelta = timedelta(minutes=1)
    """When the first look, written before the dispatch, fires if nothing replaced it (the bot
    stopped or died during the dispatch): LEASE_SECONDS."""
    dispatch_search: timedelta = DISPATCH_SEARCH
    """How long after a click whose outcome was never recorded (no look of it, its claim lapsed)
    a run it dispatched may still appear: a later click dispatches only then
    (DISPATCH_SEARCH_SECONDS)."""


@dataclass(kw_only=True, eq=False)
class ReleaseLooks:
    """Writes and fires the looks at a dispatched Release run (see the module's docstring)."""

    github: ReleaseGateway
    timers: Timers
    timers_changed: Callable[[], None]
    claims: Claims
    npm: NpmRelease
    clock: Clock
    pace: LookPace
    redraw: Redraw
    service: str

    async def first(
        self, message: MessageRef, shown: Walkthrough, claim: Claim, dispatched_at: datetime
    ) -> ReleaseLook:
        """Written before the dispatch, due a lease later unless its outcome replaces it."""
        due = dispatched_at + self.pace.resume_after
        look = _first_look(message, shown, claim, dispatched_at, until=due + self.pace.search_for)
        await self._write(look, due)
        return look

    async def found(
        self, message: MessageRef, shown: Walkthrough, claim: Claim, run_id: int
    ) -> None:
        """Follow `run_id`, the run of a click whose claim was never recorded done (found by a
        later click): its claim is completed and its looks go on from the first one's key, so
        that first look, if written, finds the chain gone on without it."""
        await self.claims.complete(claim, now=self.clock())
        release = ReleaseFollow(requested_by=claim.actor, phase=ReleasePhase.DISPATCHING)
        dispatching = shown.model_copy(update={"release": release})
        look = _first_look(message, dispatching, claim, claim.claimed_at, until=self.clock())
        await self.follow(look, shown, release, run_id)
        await self.cancel(look)

    async def next(
        self, look: ReleaseLook, shown: Walkthrough, *, until: datetime | None = None
    ) -> None:
        """The look after `look`, a poll interval from now, with what the message shows."""
        update: dict[str, object] = {"walkthrough": shown, "number": look.number + 1}
        if until is not None:
            update["until"] = until
        await self._write(look.model_copy(update=update), self.clock() + self.pace.every)

    async def followed_elsewhere(self, message: MessageRef, *, since: datetime) -> set[int]:
        """The Release runs other walkthroughs' looks (due since `since`) follow: their clicks'
        runs, known by the id GitHub answered with, so none is another click's."""
        return {run for run, _ in await self._elsewhere(message, since=since) if run is not None}

    async def _elsewhere(
        self, message: MessageRef, *, since: datetime
    ) -> list[tuple[int | None, bool]]:
        """Other walkthroughs' looks due since `since`: the run each names, and whether it
        is pending (one with no run is a dispatch whose run is not known yet)."""
        looks: list[tuple[int | None, bool]] = []
        for timer in await self.timers.of_kind(kind=RELEASE_TIMER, due_since=since):
            try:
                look = ReleaseLook.model_validate(timer.payload or {})
            except ValidationError:  # a look of another version: it names no run this knows
                continue
            release = look.walkthrough.release
            if look.message != message and release is not None:
                looks.append((release.run_id, timer.is_pending))
        return looks

    async def unsent(self, look: ReleaseLook, why: str) -> None:
        """The click sent nothing and kept its claim (the database away, or Slack dropped its
        redraw): a look instead of `look` draws step 5 saying `why` (never that GitHub's answer
        was unclear), then gives the claim back; failing that, the chain does it, searching."""
        failed = look.release.model_copy(
            update={"phase": ReleasePhase.NOT_STARTED, "error": clip_error(why)}
        )
        try:
            await self.instead(look, look.walkthrough.model_copy(update={"release": failed}))
        except Exception:
            log.warning("npm-token: could not record that %s sent nothing", look.key, exc_info=True)

    async def instead(self, look: ReleaseLook, shown: Walkthrough, **update: object) -> None:
        """A look showing `shown` (and `update`) instead of `look`, due a poll interval later,
        after the newest of its chain (`look` may have fired, the bot slow to dispatch), which
        then finds the chain gone on without it; one written meanwhile takes the next key."""
        ending = look.model_copy(update={"walkthrough": shown, "number": look.number + 1, **update})
        written = None
        while written is None or written.payload != _payload(ending):
            while await self.timers.get(key=ending.key) is not None:
                ending = ending.model_copy(update={"number": ending.number + 1})
            written = await self._write(ending, self.clock() + self.pace.every)
        await self.cancel(look)

    async def cancel(self, look: ReleaseLook) -> None:
        await self.timers.cancel(key=look.key, now=self.clock())

    async def _write(self, look: ReleaseLook, due: datetime) -> Timer:
        written = await self.timers.schedule(
            key=look.key,
            kind=RELEASE_TIMER,
            due_at=due,
            now=self.clock(),
            payload=_payload(look),
            service=self.service,
        )
        self.timers_changed()
        return written

    # -- firing ---------------------------------------------------------------------------------

    async def on_timer(self, timer: Timer) -> None:
        """One look: look for the run of the dispatch, or at the run followed."""
        look = ReleaseLook.model_validate(timer.payload or {})
        if await self.timers.get(key=look.next_key) is not None:
            # Fired again (its replica died, or its completion failed, after it wrote the next
            # look): the chain went on without it, and what it saw is old.
            log.info("npm-token: %s was taken over by the next look; nothing to do", look.key)
            return
        claim = await self.claims.get(look.claim_key)
        if claim is None or claim.holder != look.holder:
            # The click's claim was released (nothing started, or the search ended) or another
            # click took it: a run that shows up now is that click's, not this one's.
            log.info("npm-token: %s outlived its Release click; nothing to do", look.key)
            return
        if look.release.phase is ReleasePhase.NOT_STARTED:  # its click sent nothing: `unsent`
            # Drawn before the claim is given back: a redraw that fails is retried with it.
            await self.redraw(look.message, look.walkthrough, look.release)
            await self.claims.release(look.claim())
        elif look.release.run_id is None:
            await self._look_for_run(look)
        else:
            await self._look_at_run(look, look.release.run_id)

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        """A look failed every attempt: step 5 says the bot stopped following (step 4 still
        checks the run). One this version cannot read names no message to tell: it is only
        logged (failing here would have the scheduler retry giving it up for ever)."""
        try:
            look = ReleaseLook.model_validate(timer.payload or {})
        except ValidationError:
            log.error(
                "npm-token: gave up %s, which this version cannot read: %s", timer.key, reason.text
            )
            return
        log.error("npm-token: stopped following the Release run of %s: %s", look.key, reason.text)
        stopped = look.release.model_copy(
            update={"phase": ReleasePhase.UNFOLLOWED, "error": clip_error(reason.text)}
        )
        await self.redraw(look.message, look.walkthrough, stopped)

    async def _look_for_run(self, look: ReleaseLook) -> None:
        """The dispatch's answer was unclear (or never came): its run is followed once found;
        when none appeared by `until`, the click may be repeated."""
        try:
            listed = await self.github.dispatched_runs(
                workflow_file=self.npm.workflow,
                ref=self.npm.ref,
                dispatched_at=look.dispatched_at,
            )
        except GitHubError as error:
            log.warning("npm-token: could not look for the Release run: %s", error.message)
            listed = []  # a failed look is no answer: look again
        # A run another walkthrough follows is its click's (it recorded the id GitHub answered
        # with), never this one's; of the others, only a single one is taken, and none while
        # another walkthrough's dispatch has no run recorded yet (that run may be its).
        others = await self._elsewhere(look.message, since=look.dispatched_at) if listed else []
        runs = [run for run in listed if run.run_id not in {r for r, _ in others}]
        unknown = any(run is None and pending for run, pending in others)
        if len(runs) == 1 and not unknown:
            (found,) = runs
            await self.claims.complete(look.claim(), now=self.clock())
            log.info("npm-token: found the Release run %s", found.run_id)
            await self.follow(look, look.walkthrough, look.release, found.run_id)
            return
        if self.clock() < look.until:
            await self.next(look, look.walkthrough)
            return
        minutes = int(self.pace.search_for.total_seconds() // 60)
        # What GitHub answered is in the step (`RunNotIdentified`); nothing, the first look
        # fired: the dispatch's outcome was never recorded (its click may not even have sent it).
        why = (
            "GitHub accepted the dispatch, but"
            if look.accepted
            else "GitHub did not answer the dispatch clearly, and"
            if look.release.error
            else "The bot could not record whether it sent the dispatch (it stopped, or its "
            "database failed, then), and"
        )
        said = clip_error(
            f"{why} no run of {self.npm.workflow} by the bot appeared within {minutes} minutes. "
            "Check its runs on GitHub before running it again."
        )
        absent = look.release.model_copy(update={"phase": ReleasePhase.NOT_STARTED, "error": said})
        log.warning("npm-token: no Release run appeared; the dispatch is taken as not started")
        # Drawn before the claim is given back: a redraw that fails is retried with it.
        await self.redraw(look.message, look.walkthrough, absent)
        await self.claims.release(look.claim())

    async def follow(
        self, look: ReleaseLook, shown: Walkthrough, release: ReleaseFollow, run_id: int
    ) -> None:
        """Show the run as started and follow it from the next look on."""
        running = release.model_copy(
            update={
                "phase": ReleasePhase.RUNNING,
                "run_id": run_id,
                "status": "queued",
                "error": None,
            }
        )
        drawn = await self.redraw(look.message, shown, running)
        await self.next(look, drawn, until=self.clock() + self.pace.follow_for)

    async def _look_at_run(self, look: ReleaseLook, run_id: int) -> None:
        release = shown = look.release
        try:
            run = await self.github.release_run(run_id)
        except GitHubError as error:
            # Keep following: a rate limit or a blip says so in the step, then passes.
            release = release.model_copy(update={"error": clip_error(error.message)})
        else:
            if run.completed:
                await self._ended(look, run)
                return
            release = release.model_copy(update={"status": run.status, "error": None})
        if self.clock() >= look.until:
            unfollowed = release.model_copy(
                update={"phase": ReleasePhase.UNFOLLOWED, "error": None}
            )
            await self.redraw(look.message, look.walkthrough, unfollowed)
            return
        drawn = look.walkthrough
        if release != shown:
            drawn = await self.redraw(look.message, look.walkthrough, release)
        await self.next(look, drawn)

    async def _ended(self, look: ReleaseLook, run: ReleaseRun) -> None:
        try:
            check = await judged(self.github, run, self.npm)
        except GitHubError as error:
            check = RunCheck(run=RunSummary.of(run), error=clip_error(error.message))
        done = look.release.model_copy(
            update={"phase": ReleasePhase.DONE, "status": run.status, "check": check, "error": None}
        )
        log.info("npm-token: Release run %s ended: %s", run.run_id, check.tone)
        await self.redraw(look.message, look.walkthrough, done)


def _payload(look: ReleaseLook) -> dict[str, object]:
    # Empty fields left out, as in the buttons: an older replica, which forbids the fields it
    # does not know, still reads a look that uses none of them.
    return look.model_dump(mode="json", exclude_none=True)


def _first_look(
    message: MessageRef, shown: Walkthrough, claim: Claim, dispatched_at: datetime, until: datetime
) -> ReleaseLook:
    return ReleaseLook(
        channel=message.channel,
        ts=message.ts,
        walkthrough=shown,
        claim_key=claim.key,
        holder=claim.holder,
        actor=claim.actor,
        dispatched_at=dispatched_at,
        until=until,
    )
