"""Scheduled dispatches: at the time a starter gave (`/rollout start <tag> --at "tue 09:00"`),
the preflight is checked again and the rollout dispatched, through the Dispatch click's path.

The schedule is a durable timer (`bot.services.scheduler`), so a restart or a second replica
neither loses it nor fires it twice; the dispatch itself is claimed exactly once, as a click's
(`bot.services.exactly_once`), and recorded as its own audit event (`schedule:dispatch`, the
bot as actor). It goes only if every check is clear, the lane lets the starter through (no
freeze without their override, nobody else's lock) and the plan's two-person rule does not
need a second approver and the starter is still an approver; otherwise the card and the
thread say why and the preflight waits for a person, as any preflight does. A time long past
(the bot was down, or a replica died while firing it and the bot came back later) is held, not
dispatched: every attempt is judged against the schedule's time, allowing for the retries'
backoff; so is a dispatch GitHub refuses (its answer said), never retried. Whoever
dispatches first consumes the schedule (`bot.domain.rollout.begin_dispatch`), and the
scheduled dispatch goes only while its schedule is still pending, judged under the rollout's
lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.controls import AlreadyDone, BeingDone, CardRef, Control, DoneButOwed, describe
from bot.domain.errors import GitHubError, RolloutError, RunNotIdentified
from bot.domain.freeze import Frozen
from bot.domain.permissions import two_person_refusal
from bot.domain.plan import RolloutPlan
from bot.domain.reasons import Reason
from bot.domain.rollout import CheckState, InvalidTransition, Phase, Rollout
from bot.domain.run_link import LinkableRun
from bot.domain.schedule import Held
from bot.logs import rollout_context
from bot.services.access import Access
from bot.services.backoff import Backoff
from bot.services.exactly_once import ExactlyOnce
from bot.services.failures import not_configured
from bot.services.freeze_ends import watch_freeze_end
from bot.services.lane import ReleaseLane
from bot.services.ports import Clock
from bot.services.records import BOT, Timer
from bot.services.requests import Origin, Via, current_entry
from bot.services.rollouts import RolloutService

log = logging.getLogger(__name__)

LATE = timedelta(minutes=15)
"""How late a scheduled dispatch may still go (a bot back from an outage later than this
holds it for a person instead of dispatching at a time nobody chose); a retry may be later by
the scheduler's backoff before it (`RETRIES`)."""

RETRIES = Backoff()
"""The scheduler's backoff between a timer's attempts (`bot.bootstrap` keeps its default)."""


class DispatchHeld(RolloutError):
    """The scheduled dispatch did not go; its audit event says why."""

    code = "held"


@dataclass(kw_only=True, eq=False)
class ScheduledStarts:
    """Fires the scheduled dispatches (the scheduler's timers of kind `scheduled_dispatch`)."""

    rollouts: RolloutService
    access: Access
    once: ExactlyOnce
    lane: ReleaseLane
    clock: Clock

    async def on_timer(self, timer: Timer) -> None:
        """The time came: check the preflight again, then dispatch or say why not (one audit
        event). Nothing when the schedule is gone (cancelled, dispatched by hand, the rollout
        ended) or when another replica's claim of the same dispatch won; while another request
        still holds that claim, the timer fails (`BeingDone`, transient) to fire again later."""
        at = _scheduled_at(timer)
        rollout = await self._due(timer, at)
        if rollout is None:
            return
        origin = Origin(actor=BOT, channel_id=rollout.channel_id, via=Via.SCHEDULE)
        with rollout_context(rollout.id):
            try:
                async with self.access.audited(origin, Control.DISPATCH, rollout_id=rollout.id):
                    entry = current_entry.get()
                    if entry is not None:
                        entry.detail.update(at=at.isoformat())
                    await self._hold_if_late(rollout, at, timer=timer)
                    attempt = _Attempt()
                    await self.rollouts.effects.serialised(
                        rollout.id, lambda: self._fire(origin, rollout.id, at, attempt)
                    )
            except DispatchHeld as held:
                log.info("scheduled dispatch held: %s", held.message)
            except BeingDone:
                # Another request still holds the dispatch's claim: not done, and it may fail.
                # The timer fails (transient) and fires again later, where the rollout says
                # whether that request dispatched; held for a person once it gives up.
                raise
            except (AlreadyDone, InvalidTransition) as done:
                log.info("scheduled dispatch not needed: %s", done.message)
            except RunNotIdentified:
                log.info("scheduled dispatch went; its run is being looked for")
            except DoneButOwed as owed:  # GitHub took it: never dispatched again
                log.warning("scheduled dispatch went, then a step failed: %s", owed.message)

    async def _fire(self, origin: Origin, rollout_id: str, at: datetime, attempt: _Attempt) -> None:
        """One try, again after another replica saved the rollout first: recheck, then hold
        or dispatch. A try that finds its own dispatch under way (another replica saved it
        further, finding its run) is done; one that finds the rollout dispatched otherwise
        says so."""
        rollout = await self.rollouts.get(rollout_id)
        if rollout.phase is not Phase.PREFLIGHT:
            if attempt.dispatching:
                return
            raise AlreadyDone(
                f"`{rollout.tag}` was dispatched meanwhile by another request (a person's "
                "Dispatch, or this schedule on another replica); it was not dispatched again."
            )
        if rollout.schedule is None or not rollout.schedule.pending:
            raise InvalidTransition(f"The dispatch of `{rollout.tag}` is no longer scheduled.")
        checked = await self.rollouts.recheck(rollout_id=rollout.id, actor=BOT)
        await self._dispatch(origin, checked, at, attempt)

    async def on_timer_dead(self, timer: Timer, *, reason: Reason) -> None:
        """The timer gave up (it failed every attempt): hold the schedule, saying why. Also
        told again of a timer that died while its service was not configured (nobody could be
        told then: `GivingUp.tell_again`, once the service is back), which says so."""
        at = _scheduled_at(timer)
        rollout = await self._due(timer, at)
        if rollout is not None:
            if not_configured(timer.last_error):
                reason = _missed(timer, self.clock() - at)
            await self.rollouts.hold_schedule(rollout_id=rollout.id, held=Held(error=reason))

    async def _due(self, timer: Timer, at: datetime) -> Rollout | None:
        """The rollout whose dispatch is scheduled for `at` and still waits for it, if any."""
        if timer.rollout_id is None:
            return None
        rollout = await self.rollouts.effects.store.get(timer.rollout_id)
        if rollout is None or rollout.phase is not Phase.PREFLIGHT:
            return None
        schedule = rollout.schedule
        if schedule is None or not schedule.pending or schedule.at != at:
            return None
        return rollout

    async def _dispatch(
        self, origin: Origin, checked: Rollout, at: datetime, attempt: _Attempt
    ) -> None:
        plan = await self.rollouts.plan_of(checked)
        # Its recheck found the tag moved (and asked for the flags again): said as a move.
        held = _moved_hold(checked, checked.preflight.tag_commit)
        if held is None:
            held = await self._held(checked)
        if held is None and two_person_refusal(
            plan, checked, control=Control.DISPATCH, track=None, actor=checked.started_by
        ):
            held = Held(two_person=True)
        if held is None:  # a run of the release first: it says so when GitHub hides the tag
            held = await self._released_meanwhile(checked, plan)
        if held is None:
            held = await self._tag_moved(checked)
        if held is not None:
            await self._hold(checked, held)
        card = CardRef(checked.id, version=checked.version)
        what = describe(Control.DISPATCH, checked, plan, card)
        attempt.dispatching = True
        try:
            await self.once.once(
                origin,
                Control.DISPATCH,
                card,
                what,
                lambda: self.rollouts.dispatch(rollout_id=checked.id, actor=BOT, scheduled_at=at),
            )
        except RunNotIdentified:
            raise
        except GitHubError as refused:  # a dispatch GitHub refuses is refused again: held
            await self._hold(checked, Held(error=Reason(f"GitHub refused it: {refused.message}")))

    async def _tag_moved(self, rollout: Rollout) -> Held | None:
        """Look before acting: the release tag moved (force-pushed, or deleted) since the start
        was scheduled holds the dispatch, naming both commits: what was scheduled is not what
        would be released, and a run by hand at the old commit may be out already (a run
        holds the dispatch only at the tag's commit now, `_released_meanwhile`). A tag gone
        from GitHub holds it also when the schedule kept no commit (no such tag then; saved by
        an older version): there is nothing to release. A look GitHub fails raises (the timer
        tries again)."""
        if rollout.schedule is None:
            return None
        return _moved_hold(rollout, await self.rollouts.effects.github.tag_commit(rollout.tag))

    async def _released_meanwhile(self, rollout: Rollout, plan: RolloutPlan) -> Held | None:
        """Look before acting: a run of the workflow on the release since the start was
        scheduled (a person released it by hand on GitHub) holds the dispatch, naming it, so
        the release is not run twice. A run is on the release only at the tag's commit
        (`LinkableRun.runs_commit`): a branch pushed under the tag's name, a pull request's or a
        `workflow_run`'s run holds nothing. When GitHub does not say where the tag is, a run
        that may be the release holds it, saying so. A look GitHub fails raises (the timer
        tries again)."""
        github = self.rollouts.effects.github
        found = await github.release_runs(
            workflow_file=plan.workflow.file, tag=rollout.tag, since=rollout.created_at
        )
        found = [run for run in found if run.of_its_ref]
        if not found:
            return None
        name, since = plan.workflow.name, f"`{rollout.tag}` on GitHub since it was scheduled"
        try:
            tagged = await github.tag_commit(rollout.tag)
        except GitHubError as error:
            return _released(
                found,
                f"{name} ran on {since}, and GitHub did not say which commit the tag is "
                f"at ({error.message}), so that may be the release",
            )
        found = [run for run in found if run.runs_commit(tagged)]
        return _released(found, f"{name} already ran for {since}") if found else None

    async def _hold_if_late(self, rollout: Rollout, at: datetime, *, timer: Timer) -> None:
        """Hold a dispatch fired long after its time (the bot was down, or its service was not
        configured then), before any recheck: on every attempt, later than LATE plus the
        backoff of the retries before it."""
        late = self.clock() - at
        if late > LATE + RETRIES.longest(timer.attempts):
            await self._hold(rollout, Held(error=_missed(timer, late)))

    async def _hold(self, rollout: Rollout, held: Held) -> None:
        """Hold the schedule, saying why (the card and the thread); raises DispatchHeld. Held
        by a freeze, the thread is told when it ends (`bot.services.freeze_ends`): watched
        before the hold is saved, so that a fault between the two leaves no hold unwatched (a
        watch with no hold saved tells nothing)."""
        if isinstance(held.lane, Frozen):
            await watch_freeze_end(self.rollouts.effects, rollout, held.lane.freeze)
        await self.rollouts.hold_schedule(rollout_id=rollout.id, held=held)
        raise DispatchHeld(held.summary())

    async def _held(self, rollout: Rollout) -> Held | None:
        """Why the dispatch may not go now: a blocking check, the bot gave up looking for an
        earlier dispatch's run (a person checks GitHub first), the starter no longer an
        approver, the lane (judged for the starter: their lock and their override count, as
        for their own click)."""
        blocking = rollout.preflight.blocking()
        if blocking:
            return Held(blocking=tuple(blocking))
        if rollout.gave_up_at is not None:
            return Held(
                error=Reason(
                    "the bot gave up looking for the run of an earlier dispatch: check the "
                    "workflow's runs on GitHub, then Link a run or Dispatch"
                )
            )
        if not await self.access.approvers.is_approver(rollout.started_by):
            return Held(not_approver=rollout.started_by)
        refused = await self.lane.refusal(actor=rollout.started_by, rollout_id=rollout.id)
        return Held(lane=refused) if refused is not None else None


@dataclass
class _Attempt:
    """One firing of a scheduled dispatch, across its tries: whether it dispatched."""

    dispatching: bool = False


def _released(runs: list[LinkableRun], why: str) -> Held:
    """The hold for runs that are, or may be, the release (`why` says which)."""
    named = ", ".join(f"run {run.run_id} ({run.state()}, {run.html_url})" for run in runs)
    return Held(
        error=Reason(
            f"{why}: {named}. It was not dispatched again: check that run; an approver clicks "
            "Dispatch only if another run is wanted, else Cancel"
        )
    )


def _missed(timer: Timer, late: timedelta) -> Reason:
    """Why a dispatch is `late` past its time, as its timer tells: its service was not in the
    services file then (the bot ran, but nothing could fire it), its earlier attempts failed
    (only the error's kind: the log has the rest), or nothing tried (the bot was not
    running)."""
    minutes = int(late.total_seconds() // 60)
    if not_configured(timer.last_error):
        return Reason(
            f"the service `{timer.service}` was not in ROLLOUT_SERVICES (the services file) at "
            f"that time, so nothing could dispatch it (it is back {minutes} minutes late)"
        )
    if timer.last_error:
        kind = timer.last_error.split(":", 1)[0]
        return Reason(
            f"its tries at that time failed ({kind}, see the bot's log), and it is now "
            f"{minutes} minutes late"
        )
    return Reason(f"the bot was not running then (it is back {minutes} minutes late)")


def _moved_hold(rollout: Rollout, now: str | None) -> Held | None:
    """The hold of a dispatch whose tag is at `now` (None: not known; "": gone from GitHub),
    no longer where it was when the start was scheduled (`ScheduledStarts._tag_moved`), or
    gone, saying what a person does next; None when it is there, or is on GitHub and the
    schedule kept no commit."""
    scheduled = rollout.schedule.tag_commit if rollout.schedule is not None else ""
    if now is None or (now and now == scheduled) or (now and not scheduled):
        return None
    if not scheduled:  # gone, and nothing kept to compare with: nothing to release
        said = (
            f"`{rollout.tag}` is not on GitHub, so there is nothing to release (a run of it "
            "would fail there). It was not dispatched"
        )
    else:
        where = f"is at `{now[:12]}`" if now else "is gone from GitHub"
        said = (
            f"`{rollout.tag}` was moved since the start was scheduled: it was at "
            f"`{scheduled[:12]}` and now {where}, so what was scheduled is not what would "
            "be released (a run by hand may have released the old commit). It was not "
            "dispatched"
        )
    return Held(
        error=Reason(f"{said}: check the tag and its runs on GitHub; {_after_move(rollout, now)}")
    )


def _after_move(rollout: Rollout, now: str) -> str:
    """What a person does once a moved tag held the dispatch, as its preflight stands: the
    flags are asked for again when its re-check read the tag at `now` (`flags_after_move`); a
    person's Dispatch is refused while it kept another commit (`where_moved`), offering
    Re-check; a tag gone is pushed again first."""
    seen, flags = rollout.preflight.tag_commit, rollout.preflight.flags
    if not now:
        return (
            "if it should be released, push the tag where it should be, then click Re-check on "
            "the card: it reads the tag there and asks the starter to confirm the feature flags "
            "for it, then an approver clicks Dispatch; else Cancel"
        )
    if seen == now and flags.state is CheckState.PENDING:
        return (
            "if it is where it should be, the starter confirms the feature flags for the "
            "commit it is at now (the card asks), then an approver clicks Dispatch; else Cancel"
        )
    if seen is not None and seen != now:  # its re-check read the tag before it moved
        return (
            "if it is where it should be, click Dispatch: refused for the move, it offers "
            "Re-check, which reads the tag there and asks the starter to confirm the feature "
            "flags for it, then an approver clicks Dispatch; else Cancel"
        )
    return "an approver clicks Dispatch if the tag is where it should be, else Cancel"


def _scheduled_at(timer: Timer) -> datetime:
    """The time the dispatch was scheduled for, as stored with its timer (a retry moves only
    the timer's due time)."""
    payload = timer.payload or {}
    return datetime.fromisoformat(str(payload["at"]))
