"""Starting a rollout: its preflight checks, re-checking them, the starter's flags, the dispatch.

A rollout starts in its preflight (one active rollout per track): the migrations and the image
are checked on GitHub, the starter confirms the feature flags, and Dispatch starts the workflow
(the click is also the approval of the first stages).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from bot.domain import rollout as machine
from bot.domain.controls import StaleCard
from bot.domain.errors import (
    GitHubError,
    NotAuthorized,
    RolloutError,
    RolloutInProgress,
    RunNotIdentified,
    TagNotFound,
)
from bot.domain.plan import RolloutPlan
from bot.domain.release_tag import nearest_tags, tag_family
from bot.domain.rollout import (
    Announce,
    Check,
    CheckState,
    Decision,
    DispatchScheduled,
    DispatchUnclear,
    InvalidTransition,
    Phase,
    Preflight,
    Rollout,
)
from bot.domain.run import RunRef
from bot.domain.schedule import Held, Schedule
from bot.logs import rollout_context
from bot.services.acting import ON_GITHUB, saved_then_failed
from bot.services.dispatched_runs import DispatchedRuns
from bot.services.effects import EffectRunner, dispatch_timer
from bot.services.following import RunFollower
from bot.services.outbox_messages import card, told
from bot.services.preflight_checks import github_checks
from bot.services.preflight_tag import (
    flags_after_move,
    flags_card_refusal,
    moved_refusal,
    read_tag_commit,
    scheduled_at_commit,
    where_moved,
)
from bot.services.records import NewMessage, new_rollout_id
from bot.services.release_contents import read_contents
from bot.services.words import Words

log = logging.getLogger(__name__)

DISPATCHED_UNSAVED = (
    "GitHub took the dispatch, then the bot could not record its run right after, so the card "
    "may still show the preflight: the bot looks for the run itself and follows it (the card "
    "shows it then). Do not dispatch it again on GitHub."
)
"""Owed by a Dispatch GitHub took whose run the bot then failed to record."""


class Preflights:
    """Start a rollout, check its preflight (again), confirm its flags, dispatch it."""

    def __init__(
        self,
        effects: EffectRunner,
        follower: RunFollower,
        dispatched: DispatchedRuns,
        words: Words,
        *,
        plan: RolloutPlan,
        service: str,
    ) -> None:
        self._effects = effects
        self._follower = follower
        self._dispatched = dispatched
        self._words = words
        self.plan = plan
        self._service = service

    async def start(
        self,
        *,
        tag: str,
        flags_ready: bool,
        channel_id: str,
        actor: str,
        schedule: Schedule | None = None,
    ) -> Rollout:
        """Check the preflight for `tag` and post its card (with its `schedule`: the dispatch
        goes then, `bot.services.scheduled_starts`). One active rollout per track."""
        effects = self._effects
        await self._known_tag(tag)
        flags = (
            Check(CheckState.PASS, "(--flags-ready)", confirmed_by=actor)
            if flags_ready
            else Check(CheckState.PENDING, "waiting for the starter to confirm")
        )
        rollout = await self.checked(tag=tag, flags=flags, channel_id=channel_id, actor=actor)
        if schedule is not None:  # the commit checked: a tag moved by then holds the dispatch
            rollout = await scheduled_at_commit(effects.github, rollout, schedule)
        said, timers = [], []
        if schedule is not None:  # the timer is written with the rollout: never one without
            said = told(rollout, DispatchScheduled(actor, schedule.at, schedule.zone))
            timers = [dispatch_timer(rollout.id, schedule.at)]
        rollout = await effects.store.create(
            rollout=rollout, plan=self.plan, outbox=[card(rollout), *said], timers=timers
        )
        if timers:
            effects.timers_changed()
        detail = {"tag": tag} | ({"at": schedule.at.isoformat()} if schedule is not None else {})
        return await self._started(rollout, actor, detail)

    async def _known_tag(self, tag: str) -> None:
        """Refuse a tag the repository does not have (a typo), naming the nearest it has,
        before anything is written or posted. A GitHub that does not answer whether the tag
        exists refuses nothing: the preflight's checks say what they could not read. One that
        said no, then would not list its neighbours, refuses it without them; unless that list
        was answered 404 too: the repository itself is not there for the bot (GitHub answers
        an empty list for a prefix no tag has), so the tag's 404 says nothing of the tag."""
        github = self._effects.github
        try:
            if await github.tag_exists(tag):
                return
        except GitHubError as error:
            log.info("whether the tag %s exists could not be read: %s", tag, error.cause)
            return
        try:
            near = nearest_tags(tag, await github.tags_starting(tag_family(tag)))
        except GitHubError as error:
            log.info("the tags near %s could not be listed: %s", tag, error.cause)
            if error.status == 404:
                return
            near = []
        meant = f" Did you mean {', '.join(f'`{t}`' for t in near)}?" if near else ""
        raise TagNotFound(
            f"GitHub has no tag `{tag}` in the repository: nothing was started.{meant} Check "
            "its spelling, or push the tag first, then start it again."
        )

    async def checked(self, *, tag: str, flags: Check, channel_id: str, actor: str) -> Rollout:
        """A new rollout of `tag` in its preflight, its checks made at the tag's commit read
        first (Dispatch is refused once the tag moves off it), not saved yet (refused while a
        track is taken)."""
        effects = self._effects
        for track in self.plan.tracks:
            active = await effects.store.active_on_track(track)
            if active is not None and active.message_ts is None:
                # Its card never reached the channel (Slack refused it: the bot was not
                # invited): post it again, so the starter has its buttons to go on or cancel.
                await effects.outbox.send([card(active)])
                active = await effects.get(active.id)
            if active is not None:
                raise _in_progress(active, track, self._words)
        commit = await read_tag_commit(effects.github, tag, before=None)
        migrations, image = await github_checks(effects.github, self.plan, tag, at=commit)
        contents = await read_contents(
            github=effects.github, store=effects.store, plan=self.plan, tag=tag, at=commit
        )
        return machine.new_rollout(
            rollout_id=new_rollout_id(),
            tag=tag,
            channel_id=channel_id,
            started_by=actor,
            plan=self.plan,
            preflight=Preflight(flags, migrations, image, contents, tag_commit=commit),
            now=effects.clock(),
            service=self._service,
        )

    async def adopt(
        self, checked: Rollout, run: RunRef, *, actor: str, also: Sequence[NewMessage] = ()
    ) -> Rollout:
        """Save `checked` (from `checked`) already following `run`, a run the bot did not start
        (`bot.services.unfollowed_runs`), with its card, what its thread is told and `also`,
        in one transaction: an adopted run never leaves a preflight behind."""
        effects = self._effects
        decision = machine.dispatched(checked, self.plan, run, linked_by=actor)
        attached = decision.rollout
        said = [
            message
            for effect in decision.effects
            if isinstance(effect, Announce)
            for message in told(attached, effect.event, notifications=self.plan.notifications)
        ]
        saved = await effects.store.create(
            rollout=attached, plan=self.plan, outbox=[card(attached), *said, *also]
        )
        await effects.record(
            effects.event(actor, "attach_run", "ok", saved, {"run_id": run.run_id})
        )
        await self._started(saved, actor, {"tag": attached.tag})
        async with effects.lock(saved.id):
            await self._follower.settle(saved.id)
        return await effects.get(saved.id)

    async def _started(self, rollout: Rollout, actor: str, detail: dict[str, str]) -> Rollout:
        """Log and audit a rollout just saved, and deliver what it said."""
        effects = self._effects
        with rollout_context(rollout.id):
            log.info("rollout of %s started by %s", rollout.tag, actor)
            await effects.record(effects.event(actor, "start", "ok", rollout, detail=detail))
            await effects.outbox.flush(rollout.id)
        return await effects.get(rollout.id)

    async def recheck(self, *, rollout_id: str, actor: str) -> Rollout:
        """Read the tag's commit, the GitHub checks and the contents again; the flags stay as
        confirmed unless the tag moved (`flags_after_move`). The card is redrawn as a new
        version even when nothing changed, so Re-check can be clicked again."""
        effects = self._effects
        async with effects.lock(rollout_id):
            rollout = await effects.get(rollout_id)
            if rollout.phase is not Phase.PREFLIGHT:
                raise InvalidTransition(
                    "The preflight is over: this rollout was already dispatched."
                )
            plan = await effects.plan_of(rollout)
            was = rollout.preflight
            commit = await read_tag_commit(effects.github, rollout.tag, before=was.tag_commit)
            migrations, image = await github_checks(effects.github, plan, rollout.tag, at=commit)
            contents = await read_contents(
                github=effects.github, store=effects.store, plan=plan, tag=rollout.tag, at=commit
            )
            flags = flags_after_move(rollout.tag, was.flags, was=was.tag_commit, now=commit)
            checked = replace(
                rollout, preflight=Preflight(flags, migrations, image, contents, commit)
            )
            log.info("preflight of %s re-checked by %s", rollout.tag, actor)
            return await effects.redraw(checked)

    async def hold_schedule(self, *, rollout_id: str, held: Held) -> Rollout:
        """The scheduled dispatch did not go (`held` says why): the card and the thread say
        so, and the preflight waits for a person."""
        effects = self._effects
        async with effects.lock(rollout_id):
            rollout = await effects.get(rollout_id)
            decision = machine.hold_schedule(rollout, held)
            return await effects.apply(rollout, decision, await effects.plan_of(rollout))

    async def confirm_flags(
        self, *, rollout_id: str, actor: str, commit: str | None = None
    ) -> Rollout:
        """The starter confirms that the release's feature flags exist and are validated, for
        `commit`, the one the card showed (None: a card that showed none): refused as out of
        date, under the lock, when a Re-check has read the tag elsewhere since the click's look."""
        effects = self._effects
        async with effects.lock(rollout_id):
            rollout = await effects.get(rollout_id)
            if actor != rollout.started_by:
                await effects.refuse(actor, "confirm_flags", rollout, "not the starter")
                raise _not_starter(rollout, self._words)
            if (stale := flags_card_refusal(rollout, commit)) is not None:
                await effects.refuse(actor, "confirm_flags", rollout, stale)
                raise StaleCard(stale)
            updated = machine.confirm_flags(rollout, actor=actor)
            event = effects.event(actor, "confirm_flags", "ok", rollout)
            plan = await effects.plan_of(rollout)
            await effects.apply(rollout, Decision(updated), plan, audit=[event])
            return updated

    async def dispatch(
        self, *, rollout_id: str, actor: str, scheduled_at: datetime | None = None
    ) -> Rollout:
        """Dispatch the workflow; the click is also the approval of the first stages. The
        scheduled dispatch (`scheduled_at`) is refused here, under the rollout's lock, unless
        it is still scheduled then (a Cancel schedule may land while its preflight was being
        re-checked). A person's click is refused while the tag is not where its preflight read
        it (the card then offers Re-check), or GitHub does not say (`where_moved`). A
        dispatch GitHub refuses changes nothing: the schedule is kept."""
        effects = self._effects
        async with effects.lock(rollout_id):
            rollout = await effects.get(rollout_id)
            plan = await effects.plan_of(rollout)
            if rollout.phase is Phase.PREFLIGHT and (
                late := await self._dispatched.late_run(rollout, plan)
            ):
                return late  # the run of the dispatch the bot gave up on: never a second
            now, github = effects.clock(), effects.github
            try:
                begun = machine.begin_dispatch(rollout, now=now, scheduled_at=scheduled_at)
                # A person's click: the tag still where the preflight read it (a scheduled
                # dispatch looks at the schedule's commit, `bot.services.scheduled_starts`).
                moved = None if scheduled_at is not None else await where_moved(github, rollout)
                if moved is not None:  # the card offers Re-check, to read the tag there
                    found = replace(rollout.preflight, moved_to=moved)
                    await effects.redraw(replace(rollout, preflight=found))
                    raise InvalidTransition(moved_refusal(rollout, moved))
            except (InvalidTransition, GitHubError) as error:
                await effects.refuse(actor, "dispatch", rollout, error.message)
                raise
            # Saved with its card's redraw ("Dispatching…"; a later redraw supersedes it): a
            # replica dying before the next save leaves no card behind the rollout's version.
            begun = await effects.store.save(begun, outbox=[card(begun)])
            inputs = plan.dispatch_inputs(
                tag=rollout.tag, feature_flags_ready=True, baselines=_baselines(plan)
            )
            try:
                run = await github.dispatch(
                    workflow_file=plan.workflow.file,
                    ref=plan.workflow.ref,
                    inputs=inputs,
                    dispatched_at=now,
                )
            except RunNotIdentified as error:
                # The dispatch went through but the run is not known yet: the poller keeps
                # looking for it (never a second dispatch, never someone else's run). The card
                # is redrawn: it offers to link the run by hand meanwhile.
                await effects.redraw(
                    begun,
                    saying=DispatchUnclear(error.message),
                    audit=[effects.event(actor, "dispatch", "run_not_identified", begun)],
                )
                raise
            except GitHubError as error:
                # Saved back with its card redrawn (one transaction): a card left at the
                # version before the two saves would refuse every later click as out of date
                # once one of them left its claim unrecorded (its replica killed).
                reverted = replace(begun, phase=Phase.PREFLIGHT, schedule=rollout.schedule)
                failed = effects.event(
                    actor, "dispatch", "github_error", reverted, {"error": error.message}
                )
                await effects.redraw(reverted, audit=[failed])
                raise
            saved_then_failed(DISPATCHED_UNSAVED, where=ON_GITHUB)  # never a second dispatch
            await effects.record(
                effects.event(actor, "dispatch", "ok", begun, {"run_id": run.run_id})
            )
            decision = machine.dispatched(begun, plan, run, scheduled_for=scheduled_at)
            await effects.apply(begun, decision, plan)
            await self._follower.settle(rollout_id)
            return await effects.get(rollout_id)


def _baselines(plan: RolloutPlan) -> dict[str, Decimal]:
    """Each track's baseline crash rate, for the workflow's baseline inputs."""
    return {name: track.metrics.baseline_crash_rate for name, track in plan.tracks.items()}


def _in_progress(active: Rollout, track: str, words: Words) -> RolloutError:
    if active.message_ts is None:
        channel = words.channel(active.channel_id)
        where = f"{active.id}; its card is not in {channel} yet: Slack has not taken it"
    else:
        where = words.message_link(active.channel_id, active.message_ts, active.id)
    schedule = active.schedule
    doing = (
        f"is scheduled to dispatch at {words.slack_time(schedule.at)}"
        if active.phase is Phase.PREFLIGHT and schedule is not None and schedule.pending
        else "is already rolling out"
    )
    return RolloutInProgress(
        f"`{active.tag}` {doing} ({where}, started by "
        f"{words.person(active.started_by)}). One rollout per track at a time: finish or cancel "
        "it first.",
        track=track,
        active_rollout_id=active.id,
    )


def _not_starter(rollout: Rollout, words: Words) -> RolloutError:
    return NotAuthorized(
        f"Only {words.person(rollout.started_by)}, who started `{rollout.tag}`, confirms its "
        "feature flags."
    )
