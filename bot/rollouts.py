"""The rollout service: every state change of a rollout goes through here.

Each operation loads the rollout, asks the pure machine (`bot.domain.rollout`) for a decision,
saves the new state (with an optimistic version check, so two replicas cannot both act), then
executes the decision's effects: reviews on GitHub, durable window timers, thread messages,
and the card's update. Operations on one rollout are serialised within a process; across
processes the version check makes the loser see the winner's result. Who may act is decided
once per request, before any of this, by the controls (`bot.controls`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from bot.domain import github_events
from bot.domain import rollout as machine
from bot.domain.controls import StaleCard, reevaluation
from bot.domain.durations import format_duration
from bot.domain.errors import (
    ConcurrentChange,
    GitHubError,
    GitHubRateLimited,
    NotAuthorized,
    RolloutError,
    RolloutInProgress,
    RunNotIdentified,
)
from bot.domain.metrics import Figures, Reading
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import (
    Announce,
    CancelWindow,
    Check,
    CheckState,
    Decision,
    InvalidTransition,
    Phase,
    Preflight,
    ReadMetrics,
    Review,
    Rollout,
    ScheduleWindow,
    StageState,
    TrackState,
)
from bot.domain.run import EnvironmentReview, RunSnapshot
from bot.logs import rollout_context
from bot.metrics_sources import MetricsEndpoints, metrics_source
from bot.outbox import Outbox, card, figures_request, gate_card, told
from bot.ports import Clock, GitHubGateway, ReviewState
from bot.rollout_store import RolloutStore
from storage.outbox import NewMessage
from storage.repositories import AuditLog, new_rollout_id
from storage.timers import Timer, TimerStore

log = logging.getLogger(__name__)

WINDOW_TIMER = "window"
DISPATCH_SEARCH = timedelta(minutes=10)
"""How long the poller looks for the run of a dispatch it could not identify at once."""
CONCURRENT_RETRIES = 4
"""Tries of a timer's or the poller's step while other replicas keep saving the rollout."""

T = TypeVar("T")


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


class RolloutService:
    """Start, dispatch, observe, gate, promote and stop rollouts."""

    def __init__(
        self,
        *,
        plan: RolloutPlan,
        store: RolloutStore,
        timers: TimerStore,
        audit: AuditLog,
        github: GitHubGateway,
        outbox: Outbox,
        clock: Clock,
        on_timer_scheduled: Callable[[], None] = lambda: None,
        metrics_endpoints: MetricsEndpoints | None = None,
        dispatch_search: timedelta = DISPATCH_SEARCH,
    ) -> None:
        self.plan = plan
        self._metrics_endpoints = metrics_endpoints
        self._dispatch_search = dispatch_search
        self._store = store
        self._timers = timers
        self._audit = audit
        self._github = github
        self._outbox = outbox
        self._clock = clock
        self._on_timer_scheduled = on_timer_scheduled
        self._locks: dict[str, asyncio.Lock] = {}

    # -- reading ------------------------------------------------------------------------------

    async def get(self, rollout_id: str) -> Rollout:
        rollout = await self._store.get(rollout_id)
        if rollout is None:
            raise InvalidTransition(f"There is no rollout {rollout_id}.")
        return rollout

    async def plan_of(self, rollout: Rollout) -> RolloutPlan:
        """The plan the rollout was started with (a later ROLLOUT_PLAN change does not move it)."""
        return await self._store.plan(rollout.id)

    async def active(self) -> list[Rollout]:
        return await self._store.active()

    async def history(self, *, tag: str | None = None, limit: int = 10) -> list[Rollout]:
        """The latest rollouts, newest first (of one tag when given)."""
        if tag is not None:
            return (await self._store.by_tag(tag))[:limit]
        return await self._store.recent(limit)

    # -- start and preflight --------------------------------------------------------------------

    async def start(self, *, tag: str, flags_ready: bool, channel_id: str, actor: str) -> Rollout:
        """Check the preflight for `tag` and post its card. One active rollout per track."""
        for track in self.plan.tracks:
            active = await self._store.active_on_track(track)
            if active is not None:
                raise _in_progress(active, track)
        now = self._clock()
        preflight = await self._preflight(tag=tag, flags_ready=flags_ready, actor=actor)
        rollout = machine.new_rollout(
            rollout_id=new_rollout_id(),
            tag=tag,
            channel_id=channel_id,
            started_by=actor,
            plan=self.plan,
            preflight=preflight,
            now=now,
        )
        rollout = await self._store.create(rollout=rollout, plan=self.plan, outbox=[card(rollout)])
        with rollout_context(rollout.id):
            log.info("rollout of %s started by %s", tag, actor)
            await self._record(actor, "start", "ok", rollout, detail={"tag": tag})
            await self._outbox.flush(rollout.id)
        return await self.get(rollout.id)

    async def _preflight(self, *, tag: str, flags_ready: bool, actor: str) -> Preflight:
        flags = (
            Check(CheckState.PASS, f"confirmed by <@{actor}> (--flags-ready)")
            if flags_ready
            else Check(CheckState.PENDING, "waiting for the starter to confirm")
        )
        migrations, image = await self._github_checks(self.plan, tag)
        return Preflight(flags=flags, migrations=migrations, image=image)

    async def _github_checks(self, plan: RolloutPlan, tag: str) -> tuple[Check, Check]:
        """The preflight checks GitHub answers: the migrations, and the image (when the plan
        checks it). A check GitHub failed to answer is an ERROR that says it was not checked."""
        rule = plan.preflight
        ref = plan.workflow.ref
        try:
            paths = await self._github.list_directory(path=rule.migrations.directory, ref=ref)
            files = {
                path: await self._github.read_file(path=path, ref=ref)
                for path in paths
                if rule.migrations.applies_to(path)
            }
            migrations = machine.migration_check(plan, files)
        except GitHubError as error:
            migrations = _not_checked(error)
        if not rule.check_image_published:
            image = Check(CheckState.SKIPPED, "not checked (turned off in the plan)")
        else:
            image = await self._image_check(plan, tag)
        return migrations, image

    async def _image_check(self, plan: RolloutPlan, tag: str) -> Check:
        package = plan.preflight.image_package
        try:
            published = await self._github.image_published(package=package, tag=tag)
        except GitHubError as error:
            return _not_checked(error)
        if published:
            return Check(CheckState.PASS, f"`{package}:{tag}` is published")
        return Check(CheckState.FAIL, f"`{package}:{tag}` is not published yet")

    async def recheck(self, *, rollout_id: str, actor: str) -> Rollout:
        """Run the preflight's GitHub checks again (the flags stay as confirmed). The card is
        redrawn as a new version even when nothing changed, so Re-check can be clicked again."""
        async with self._lock(rollout_id):
            rollout = await self.get(rollout_id)
            if rollout.phase is not Phase.PREFLIGHT:
                raise InvalidTransition(
                    "The preflight is over: this rollout was already dispatched."
                )
            plan = await self.plan_of(rollout)
            migrations, image = await self._github_checks(plan, rollout.tag)
            checked = replace(
                rollout, preflight=replace(rollout.preflight, migrations=migrations, image=image)
            )
            saved = await self._store.save(checked, outbox=[card(checked)])
            log.info("preflight of %s re-checked by %s", rollout.tag, actor)
            await self._outbox.flush(rollout.id)
            return saved

    async def confirm_flags(self, *, rollout_id: str, actor: str) -> Rollout:
        """The starter confirms that the release's feature flags exist and are validated."""
        async with self._lock(rollout_id):
            rollout = await self.get(rollout_id)
            if actor != rollout.started_by:
                await self._refuse(actor, "confirm_flags", rollout, "not the starter")
                raise _not_starter(rollout)
            updated = machine.confirm_flags(rollout, actor=actor)
            await self._apply(rollout, Decision(updated), await self.plan_of(rollout))
            await self._record(actor, "confirm_flags", "ok", rollout)
            return updated

    async def cancel(self, *, rollout_id: str, actor: str) -> None:
        async with self._lock(rollout_id):
            rollout = await self.get(rollout_id)
            ended = machine.cancel_preflight(rollout, actor=actor, now=self._clock())
            decision = Decision(ended, (Announce(f"<@{actor}> cancelled the rollout."),))
            await self._apply(rollout, decision, await self.plan_of(rollout))
            await self._record(actor, "cancel", "ok", rollout)

    # -- dispatch -----------------------------------------------------------------------------

    async def dispatch(self, *, rollout_id: str, actor: str) -> Rollout:
        """Dispatch the workflow; the click is also the approval of the first stages."""
        async with self._lock(rollout_id):
            rollout = await self.get(rollout_id)
            plan = await self.plan_of(rollout)
            now = self._clock()
            try:
                begun = machine.begin_dispatch(rollout, now=now)
            except InvalidTransition as error:
                await self._refuse(actor, "dispatch", rollout, error.message)
                raise
            begun = await self._store.save(begun)
            inputs = plan.dispatch_inputs(
                tag=rollout.tag, feature_flags_ready=True, baselines=baselines(plan)
            )
            try:
                run = await self._github.dispatch(
                    workflow_file=plan.workflow.file,
                    ref=plan.workflow.ref,
                    inputs=inputs,
                    dispatched_at=now,
                )
            except RunNotIdentified as error:
                # The dispatch went through but the run is not known yet: the poller keeps
                # looking for it (never a second dispatch, never someone else's run).
                await self._record(actor, "dispatch", "run_not_identified", begun)
                await self._outbox.send(told(begun, f":warning: {error.message}"))
                raise
            except GitHubError as error:
                reverted = await self._store.save(replace(begun, phase=Phase.PREFLIGHT))
                await self._record(
                    actor, "dispatch", "github_error", reverted, {"error": error.message}
                )
                raise
            await self._record(actor, "dispatch", "ok", begun, {"run_id": run.run_id})
            await self._apply(begun, machine.dispatched(begun, plan, run), plan)
            await self._settle(rollout_id)
            return await self.get(rollout_id)

    async def find_dispatched_run(self, rollout: Rollout) -> None:
        """Attach the run our dispatch created, when the dispatch could not tell it (GitHub's
        answer was unclear, GitHub Enterprise, a restart). Only searches that answered count
        towards giving up: the rollout returns to its preflight when none found it in time."""
        if rollout.phase is not Phase.DISPATCHING or rollout.dispatched_at is None:
            return
        async with self._lock(rollout.id):
            current = await self.get(rollout.id)
            if current.phase is not Phase.DISPATCHING or current.dispatched_at is None:
                return
            plan = await self.plan_of(current)
            try:
                run = await self._github.find_dispatched_run(
                    workflow_file=plan.workflow.file,
                    ref=plan.workflow.ref,
                    dispatched_at=current.dispatched_at,
                )
            except GitHubError as error:
                # A failed look proves nothing: the run is looked for again at the next poll.
                log.warning("could not look for the run of %s: %s", current.tag, error.message)
                return
            if run is None:
                if self._clock() - current.dispatched_at > self._dispatch_search:
                    await self._give_up_dispatch(current, plan)
                return
            await self._record("rollout-bot", "attach_run", "ok", current, {"run_id": run.run_id})
            await self._apply(current, machine.dispatched(current, plan, run), plan)
            await self._reconcile_locked(rollout.id)

    async def _give_up_dispatch(self, rollout: Rollout, plan: RolloutPlan) -> None:
        """No run of ours could be told apart for too long: back to the preflight, so a person
        checks the workflow's runs on GitHub and dispatches again (never the bot on its own)."""
        back = replace(rollout, phase=Phase.PREFLIGHT, dispatched_at=None)
        text = (
            f":warning: No run of the dispatch of `{rollout.tag}` could be identified on GitHub "
            f"within {format_duration(self._dispatch_search)}. Check the runs of "
            f"*{plan.workflow.name}* (cancel any stray run), then dispatch again."
        )
        await self._record("rollout-bot", "attach_run", "gave_up", rollout)
        await self._apply(rollout, Decision(back, (Announce(text, failure=True),)), plan)

    # -- following the run --------------------------------------------------------------------

    async def reconcile(
        self, rollout_id: str, *, reviews: Sequence[EnvironmentReview] = ()
    ) -> Reconciled:
        """Compare the rollout with its run on GitHub and act on the difference. The poller
        and the webhook receiver both come here, so a change is acted on once, whichever
        sees it first. `reviews` (from a delivery) name reviewers GitHub's review history
        may not list yet."""
        async with self._lock(rollout_id):
            return await self._serialised(
                rollout_id, lambda: self._reconcile_locked(rollout_id, reviews=reviews)
            )

    async def _serialised(self, rollout_id: str, act: Callable[[], Awaitable[T]]) -> T:
        """Run `act` (which loads the rollout afresh) again when another replica saved the
        rollout first, so concurrent replicas take turns instead of failing (optimistic
        retry). Every step is level-triggered: a retry redoes only what is still missing."""
        for _ in range(CONCURRENT_RETRIES - 1):
            try:
                return await act()
            except ConcurrentChange:
                log.info("rollout %s changed on another replica; acting on its state", rollout_id)
        return await act()

    async def follow_github_event(
        self, *, rollout_id: str, event: github_events.RunEvent
    ) -> Reconciled:
        """A webhook delivery about the rollout's run: tell the thread what GitHub reported
        (shown at the `all` notification level), then reconcile as the poller would."""
        async with self._lock(rollout_id):
            rollout = await self.get(rollout_id)
            if rollout.phase is not Phase.RUNNING:
                return Reconciled(version=rollout.version)
            plan = await self.plan_of(rollout)
            with rollout_context(rollout_id):
                if (line := github_events.note(event, plan)) is not None:
                    said = Decision(rollout, (Announce(line, detail=True),))
                    await self._apply(rollout, said, plan)
                try:
                    return await self._reconcile_locked(rollout_id, reviews=event.reviews)
                except ConcurrentChange:
                    # Another replica acted on the same change first: nothing is left to do.
                    log.info("run %s changed under another replica; left to it", rollout.run_id)
                    return Reconciled()

    async def _settle(self, rollout_id: str) -> None:
        """Reconcile after a person's action was saved. Another replica may have saved the
        rollout meanwhile: it reconciles too, and the action itself stands."""
        try:
            await self._reconcile_locked(rollout_id)
        except ConcurrentChange:
            log.info("rollout %s changed on another replica; it follows the run", rollout_id)

    async def _reconcile_locked(
        self, rollout_id: str, *, reviews: Sequence[EnvironmentReview] = ()
    ) -> Reconciled:
        rollout = await self.get(rollout_id)
        if rollout.phase is not Phase.RUNNING or rollout.run_id is None:
            return Reconciled(version=rollout.version)
        with rollout_context(rollout_id):
            try:
                snapshot = await self._github.snapshot(rollout.run_id)
            except GitHubRateLimited as error:
                log.warning("could not read run %s: %s", rollout.run_id, error.message)
                return Reconciled(
                    version=rollout.version, rate_limited=True, retry_after=error.retry_after
                )
            except GitHubError as error:
                log.warning("could not read run %s: %s", rollout.run_id, error.message)
                return Reconciled(version=rollout.version)
            known = {(r.environment.casefold(), r.state) for r in snapshot.reviews}
            hinted = [r for r in reviews if (r.environment.casefold(), r.state) not in known]
            if hinted:
                snapshot = replace(snapshot, reviews=(*snapshot.reviews, *hinted))
            plan = await self.plan_of(rollout)
            decision = machine.reconcile(rollout, plan, snapshot, self._clock())
            acted = await self._apply(rollout, decision, plan)
            return Reconciled(snapshot=snapshot, version=acted.version)

    async def on_timer(self, timer: Timer) -> None:
        """A durable timer fired (on one replica; again after a failure, at a later time).
        The window it closes is the one it was scheduled for, whenever the retry runs."""
        if timer.kind != WINDOW_TIMER or timer.rollout_id is None or timer.payload is None:
            log.warning("ignoring timer %s of kind %s", timer.key, timer.kind)
            return
        rollout_id = timer.rollout_id
        track, stage = str(timer.payload["track"]), str(timer.payload["stage"])
        ends = _window_end(timer, rollout_id=rollout_id, track=track, stage=stage)

        async def close_window() -> None:
            rollout = await self.get(rollout_id)
            decision = machine.window_ended(rollout, track=track, stage=stage, due_at=ends)
            await self._apply(rollout, decision, await self.plan_of(rollout))
            await self._reconcile_locked(rollout_id)

        async with self._lock(rollout_id):
            with rollout_context(rollout_id):
                await self._serialised(rollout_id, close_window)

    async def on_timer_dead(self, timer: Timer, *, reason: str) -> None:
        """A window timer gave up (dead-lettered): hold the stage whose gate never ran, and
        tell the thread why, so the window is not silently dropped."""
        if timer.kind != WINDOW_TIMER or timer.rollout_id is None or timer.payload is None:
            return
        rollout_id = timer.rollout_id
        track, stage = str(timer.payload["track"]), str(timer.payload["stage"])
        ends = _window_end(timer, rollout_id=rollout_id, track=track, stage=stage)

        async def hold() -> None:
            rollout = await self.get(rollout_id)
            plan = await self.plan_of(rollout)
            decision = machine.window_timer_dead(
                rollout,
                plan,
                track=track,
                stage=stage,
                due_at=ends,
                attempts=timer.attempts,
                reason=reason,
            )
            if decision.rollout != rollout:
                await self._record(
                    "rollout-bot",
                    "window_timer",
                    "dead",
                    rollout,
                    {"why": reason},
                    track=track,
                    stage=stage,
                )
            await self._apply(rollout, decision, plan)

        async with self._lock(rollout_id):
            with rollout_context(rollout_id):
                await self._serialised(rollout_id, hold)

    async def _evaluate(self, rollout: Rollout, plan: RolloutPlan, read: ReadMetrics) -> None:
        source = metrics_source(plan.track(read.track).metrics, self._metrics_endpoints)
        reading = await source.read(rollout=rollout, track=read.track, stage=read.stage)
        if reading is None:
            await self._outbox.send([figures_request(rollout, track=read.track, stage=read.stage)])
            return
        await self._judge(
            rollout,
            plan,
            track=read.track,
            stage=read.stage,
            baseline=reading.baseline_crash,
            figures=reading.figures,
            actor=f"metrics:{reading.source}",
            reading=reading,
        )

    async def submit_figures(
        self, *, rollout_id: str, track: str, stage: str, figures: Figures, actor: str
    ) -> None:
        """An approver typed the observed rates of a stage (manual metrics)."""
        async with self._lock(rollout_id):
            rollout = await self.get(rollout_id)
            if rollout.track(track).stage(stage).state is not StageState.EVALUATING:
                raise InvalidTransition(
                    "Those figures are no longer asked for: the gate already decided."
                )
            plan = await self.plan_of(rollout)
            metrics = plan.track(track).metrics
            baseline = metrics.baseline_crash_rate
            await self._judge(
                rollout,
                plan,
                track=track,
                stage=stage,
                baseline=baseline,
                figures=figures,
                actor=actor,
            )
            await self._reconcile_locked(rollout_id)

    async def _judge(
        self,
        rollout: Rollout,
        plan: RolloutPlan,
        *,
        track: str,
        stage: str,
        baseline: Decimal | None,
        figures: Figures,
        actor: str,
        reading: Reading | None = None,
    ) -> None:
        verdict = plan.track(track).evaluate_gate(
            baseline_crash=baseline,
            current_crash=figures.crash_rate,
            current_error=figures.error_rate,
            sample=figures.sample,
        )
        await self._record(
            actor,
            "gate",
            verdict.verdict.value,
            rollout,
            machine.verdict_to_json(verdict),
            track=track,
            stage=stage,
        )
        decision = machine.gate_evaluated(
            rollout, plan, track=track, stage=stage, verdict=verdict, now=self._clock()
        )
        # When the stage took the verdict, the thread shows the figures behind it.
        shown = gate_card(rollout, track=track, stage=stage, verdict=verdict, reading=reading)
        await self._apply(rollout, decision, plan, also=[shown] if decision.effects else [])

    # -- people's actions ---------------------------------------------------------------------

    async def promote(
        self,
        *,
        actor: str,
        rollout_id: str | None = None,
        track: str | None = None,
        stage: str | None = None,
        override: bool = False,
    ) -> Rollout:
        """Approve the next stage of each track held on a gate (or of the one named, held at
        `stage` when given: a card's button names the stage it was drawn for).

        The approval goes to GitHub before the promotion is saved, so when GitHub fails the
        answer says so and the rollout stays as it was: the click can be repeated.
        """
        target = await self._target(rollout_id)
        async with self._lock(target.id):
            rollout = await self.get(target.id)
            plan = await self.plan_of(rollout)
            tracks = [track] if track else machine.holding_tracks(rollout)
            if not tracks:
                message = "Nothing is waiting for a Promote. " + where_it_stands(rollout, plan)
                await self._refuse(actor, "promote", rollout, message)
                raise InvalidTransition(message)
            current = rollout
            for name in tracks:
                held = current.track(name).current
                if stage is not None and (held is None or held.key != stage):
                    message = "This card is out of date: " + where_it_stands(current, plan)
                    await self._refuse(actor, "promote", current, message, track=name)
                    raise StaleCard(message)
                try:
                    decision = machine.promote(
                        current, plan, track=name, actor=actor, override=override
                    )
                except InvalidTransition as error:
                    await self._refuse(actor, "promote", current, error.message, track=name)
                    raise
                decision = await self._approve_first(decision, plan, track=name, actor=actor)
                current = await self._save_promotion(
                    current, decision, plan, track=name, actor=actor, override=override
                )
                await self._record(actor, "promote", "ok", current, track=name)
            await self._settle(rollout.id)
            return await self.get(rollout.id)

    async def _approve_first(
        self, decision: Decision, plan: RolloutPlan, *, track: str, actor: str
    ) -> Decision:
        """Approve the promoted stage on GitHub now, before the promotion is saved (a failure
        raises GitHubError and changes nothing). The run is reconciled with the promotion, so
        the stage is saved as deploying; other tracks' effects follow after the save."""
        promoted = decision.rollout
        if promoted.run_id is None:
            return decision
        try:
            snapshot = await self._github.snapshot(promoted.run_id)
        except GitHubError as error:
            await self._record(
                actor, "promote", "github_error", promoted, {"error": error.message}, track=track
            )
            raise
        seen = machine.reconcile(promoted, plan, snapshot, self._clock())
        approvals = [e for e in seen.effects if isinstance(e, Review) and e.track == track]
        for review in approvals:
            await self._review(promoted, review, strict=True)
        rest = tuple(effect for effect in seen.effects if effect not in approvals)
        return Decision(seen.rollout, (*decision.effects, *rest))

    async def _save_promotion(
        self,
        before: Rollout,
        decision: Decision,
        plan: RolloutPlan,
        *,
        track: str,
        actor: str,
        override: bool,
    ) -> Rollout:
        """Save a promotion GitHub already approved. Another replica may have saved the rollout
        meanwhile (a window, the other track): promote again on its state, never losing an
        approval that GitHub holds."""
        for _ in range(5):
            try:
                return await self._apply(before, decision, plan)
            except ConcurrentChange:
                before = await self.get(before.id)
                stage = before.track(track).current
                if stage is None or stage.state is not StageState.HOLDING:
                    return before  # someone else recorded it already
                decision = machine.promote(
                    before, plan, track=track, actor=actor, override=override
                )
        return await self._apply(before, decision, plan)

    async def abort(
        self, *, actor: str, gate: str, reason: str = "", rollout_id: str | None = None
    ) -> Rollout:
        """Roll back the relay-gated tracks (`gate="relay"`) or trip the desktop kill-switch."""
        target = await self._target(rollout_id)
        async with self._lock(target.id):
            rollout = await self.get(target.id)
            plan = await self.plan_of(rollout)
            names = [name for name, t in plan.tracks.items() if t.gate.value == gate]
            current = rollout
            for name in names:
                try:
                    decision = machine.abort(
                        current, plan, track=name, actor=actor, reason=reason, now=self._clock()
                    )
                except InvalidTransition as error:
                    await self._refuse(actor, f"abort_{gate}", current, error.message, track=name)
                    raise
                current = await self._apply(current, decision, plan)
                await self._record(
                    actor, f"abort_{gate}", "ok", current, {"reason": reason}, track=name
                )
            await self._settle(rollout.id)
            return await self.get(rollout.id)

    async def extend(self, *, actor: str, rollout_id: str, track: str, by: timedelta) -> Rollout:
        """Give a running window more time."""
        async with self._lock(rollout_id):
            rollout = await self.get(rollout_id)
            plan = await self.plan_of(rollout)
            try:
                decision = machine.extend(
                    rollout, plan, track=track, actor=actor, by=by, now=self._clock()
                )
            except InvalidTransition as error:
                await self._refuse(actor, "extend", rollout, error.message, track=track)
                raise
            extended = await self._apply(rollout, decision, plan)
            await self._record(actor, "extend", "ok", extended, {"by": str(by)}, track=track)
            return extended

    async def reevaluate(self, *, actor: str, rollout_id: str, track: str) -> Rollout:
        """Re-evaluate now: read the current stage's figures again and apply the gate as
        `bot.domain.controls.reevaluation` defines (a held stage takes the new verdict; an
        observed one only stops early on a failing verdict, never promotes early)."""
        async with self._lock(rollout_id):
            rollout = await self.get(rollout_id)
            plan = await self.plan_of(rollout)
            stage = rollout.track(track).current
            metrics = plan.track(track).metrics
            source = metrics_source(metrics, self._metrics_endpoints)
            reading = None
            if stage is not None:
                reading = await source.read(rollout=rollout, track=track, stage=stage.key)
            if stage is None or reading is None:
                message = (
                    f"{plan.track(track).label} has no gate to re-evaluate from a metrics source "
                    "(figures entered by hand are asked in the thread when a window ends)."
                )
                await self._refuse(actor, "reevaluate", rollout, message, track=track)
                raise InvalidTransition(message)
            verdict = plan.track(track).evaluate_gate(
                baseline_crash=reading.baseline_crash,
                current_crash=reading.figures.crash_rate,
                current_error=reading.figures.error_rate,
                sample=reading.figures.sample,
            )
            try:
                ready = reevaluation(rollout, plan, track=track, verdict=verdict)
            except InvalidTransition as error:
                await self._refuse(actor, "reevaluate", rollout, error.message, track=track)
                raise
            if ready is None:
                await self._record(
                    actor,
                    "gate",
                    verdict.verdict.value,
                    rollout,
                    {**machine.verdict_to_json(verdict), "interim": True},
                    track=track,
                    stage=stage.key,
                )
                spec = plan.track(track).stage(stage.key)
                ends = stage.window_ends_at
                until = f" until {machine.slack_time(ends)}" if ends is not None else ""
                text = (
                    f"<@{actor}> re-evaluated *{spec.label}* ({plan.track(track).label}) while "
                    f"observing: {verdict.verdict} ({verdict.summary}). The window runs on{until}; "
                    "the gate decides when it ends."
                )
                # A new card version: Re-evaluate may be clicked again for a later reading.
                redrawn = await self._store.save(
                    rollout, outbox=[*told(rollout, text), card(rollout)]
                )
                await self._outbox.flush(rollout.id)
                return redrawn
            evaluating = await self._apply(rollout, ready, plan)
            await self._judge(
                evaluating,
                plan,
                track=track,
                stage=stage.key,
                baseline=reading.baseline_crash,
                figures=reading.figures,
                actor=actor,
                reading=reading,
            )
            await self._settle(rollout_id)
            return await self.get(rollout_id)

    async def _target(self, rollout_id: str | None) -> Rollout:
        if rollout_id is not None:
            return await self.get(rollout_id)
        active = [r for r in await self._store.active() if r.phase is not Phase.PREFLIGHT]
        if not active:
            raise InvalidTransition(
                "There is no rollout in progress. Start one with `/rollout start <tag>`."
            )
        return active[0]

    # -- effects ------------------------------------------------------------------------------

    async def _apply(
        self,
        before: Rollout,
        decision: Decision,
        plan: RolloutPlan,
        *,
        also: Sequence[NewMessage] = (),
    ) -> Rollout:
        """Save the decision's rollout with what the channel must be told of it (its
        announcements, then `also`, then the card's redraw) in one transaction, carry out its
        other effects in order, and deliver the messages."""
        rollout = decision.rollout
        messages = [
            message
            for effect in decision.effects
            if isinstance(effect, Announce)
            for message in told(
                rollout,
                effect.text,
                notifications=plan.notifications,
                failure=effect.failure,
                detail=effect.detail,
            )
        ]
        messages.extend(also)
        changed = rollout != before
        if changed:
            messages.append(card(rollout))
            rollout = await self._store.save(rollout, outbox=messages)
        elif messages:
            await self._outbox.add(messages)
        reads: list[ReadMetrics] = []
        for effect in decision.effects:
            if isinstance(effect, Review):
                await self._review(rollout, effect)
            elif isinstance(effect, ScheduleWindow):
                await self._timers.schedule(
                    key=machine.window_timer_key(
                        rollout.id, effect.track, effect.stage, effect.due_at
                    ),
                    kind=WINDOW_TIMER,
                    due_at=effect.due_at,
                    now=self._clock(),
                    rollout_id=rollout.id,
                    payload={
                        "track": effect.track,
                        "stage": effect.stage,
                        "window_ends_at": effect.due_at.isoformat(),
                    },
                )
                self._on_timer_scheduled()
            elif isinstance(effect, CancelWindow):
                await self._timers.cancel(
                    key=machine.window_timer_key(
                        rollout.id, effect.track, effect.stage, effect.due_at
                    ),
                    now=self._clock(),
                )
            elif isinstance(effect, ReadMetrics):
                reads.append(effect)
        if messages:
            await self._outbox.flush(rollout.id)
        for read in reads:
            rollout = await self.get(rollout.id)
            await self._evaluate(rollout, plan, read)
        return await self.get(rollout.id) if reads else rollout

    async def _review(self, rollout: Rollout, review: Review, *, strict: bool = False) -> None:
        """Send a review; its failure is recorded and asked again by the next reconcile, or
        raised when `strict` (a person is waiting for the answer)."""
        assert rollout.run_id is not None
        state: ReviewState = "approved" if review.approve else "rejected"
        try:
            sent = await self._github.review(
                run_id=rollout.run_id,
                environments=[review.environment],
                state=state,
                comment=review.comment,
            )
        except GitHubError as error:
            # Level-triggered: the next reconcile asks again while GitHub still waits.
            log.warning("could not %s %s: %s", state[:-1], review.environment, error.message)
            await self._record(
                "rollout-bot",
                f"github_{state}",
                "error",
                rollout,
                {"environment": review.environment, "error": error.message},
                track=review.track,
            )
            if strict:
                raise
            return
        await self._record(
            "rollout-bot",
            f"github_{state}",
            "ok" if sent else "not_waiting",
            rollout,
            {"environment": review.environment},
            track=review.track,
        )

    # -- audit ----------------------------------------------------------------------------------

    async def _refuse(
        self, actor: str, action: str, rollout: Rollout, why: str, *, track: str | None = None
    ) -> None:
        await self._record(actor, action, "refused", rollout, {"why": why}, track=track)

    async def _record(
        self,
        actor: str,
        action: str,
        result: str,
        rollout: Rollout,
        detail: Mapping[str, Any] | None = None,
        *,
        track: str | None = None,
        stage: str | None = None,
    ) -> None:
        await self._audit.append(
            at=self._clock(),
            actor=actor,
            action=action,
            result=result,
            rollout_id=rollout.id,
            track=track,
            stage=stage,
            detail=detail,
        )

    def _lock(self, rollout_id: str) -> asyncio.Lock:
        return self._locks.setdefault(rollout_id, asyncio.Lock())


def _window_end(timer: Timer, *, rollout_id: str, track: str, stage: str) -> datetime:
    """The window end a timer closes, as stored when it was scheduled (a retry moves only its
    due time). Timers of earlier versions carry it in their key alone."""
    assert timer.payload is not None
    stored = timer.payload.get("window_ends_at")
    if stored is None:
        stored = timer.key.removeprefix(f"window:{rollout_id}:{track}:{stage}:")
    return datetime.fromisoformat(str(stored))


def baselines(plan: RolloutPlan) -> dict[str, Decimal]:
    """Each track's baseline crash rate, for the workflow's baseline inputs."""
    return {name: track.metrics.baseline_crash_rate for name, track in plan.tracks.items()}


def where_it_stands(rollout: Rollout, plan: RolloutPlan) -> str:
    parts = []
    for track in rollout.tracks:
        label = plan.track(track.name).label
        stage = track.current
        if track.state is not TrackState.ACTIVE or stage is None:
            parts.append(f"{label}: {track.state}")
            continue
        spec = plan.track(track.name).stage(stage.key)
        if stage.state is StageState.OBSERVING and stage.window_ends_at:
            parts.append(
                f"{label}: {spec.label} observing until {machine.slack_time(stage.window_ends_at)}"
            )
        else:
            parts.append(f"{label}: {spec.label} {stage.state}")
    return "; ".join(parts) + "."


def _not_checked(error: GitHubError) -> Check:
    """A preflight check GitHub failed to answer: not checked, and why, in a few words."""
    cause = error.message.split(" when asked to ", 1)[0]
    return Check(CheckState.ERROR, f"could not check ({cause}); not checked, Re-check it")


def _in_progress(active: Rollout, track: str) -> RolloutError:
    message = (active.message_ts or "").replace(".", "")
    link = f"https://slack.com/archives/{active.channel_id}/p{message}"
    return RolloutInProgress(
        f"`{active.tag}` is already rolling out (<{link}|{active.id}>, started by "
        f"<@{active.started_by}>). One rollout per track at a time: finish or cancel it first.",
        track=track,
        active_rollout_id=active.id,
    )


def _not_starter(rollout: Rollout) -> RolloutError:
    return NotAuthorized(
        f"Only <@{rollout.started_by}>, who started `{rollout.tag}`, confirms its feature flags."
    )
