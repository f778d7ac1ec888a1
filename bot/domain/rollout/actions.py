"""People's actions on a rollout: the preflight and dispatch, promote, extend, abort, cancel."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from bot.domain.durations import format_duration
from bot.domain.gate import GateKind, Verdict
from bot.domain.plan import RolloutPlan, settle_of
from bot.domain.plan import Stage as PlanStage
from bot.domain.plan import Track as PlanTrack
from bot.domain.rollout.effects import (
    Announce,
    Decision,
    Effect,
    ScheduleWindow,
)
from bot.domain.rollout.events import (
    RunDispatched,
    ScheduleCancelled,
    ScheduleHeld,
    StagePromoted,
    StopUnconfirmed,
    TrackStopped,
    WindowExtended,
)
from bot.domain.rollout.state import (
    WATCHED,
    Check,
    CheckState,
    InvalidTransition,
    Phase,
    Rollout,
    Stage,
    StageState,
    StopKind,
    StopReason,
    TrackState,
    gate_missed,
    reopened_from,
)
from bot.domain.rollout.words import state_words
from bot.domain.rollout.work import Work, advance, cancel_window, reached_label, utc_minute
from bot.domain.run import RunRef
from bot.domain.schedule import LATE_SAID, Held


def migration_check(plan: RolloutPlan, files: Mapping[str, str]) -> Check:
    """The workflow's own rule on the migration files at the ref: no DROP TABLE/DROP COLUMN."""
    rule = plan.preflight.migrations
    offending = [
        f"`{path}` line {number}: `{line.strip()}`"
        for path, text in sorted(files.items())
        if rule.applies_to(path)
        for number, line in rule.offending_lines(text)
    ]
    if offending:
        return Check(CheckState.FAIL, "destructive migration: " + "; ".join(offending))
    checked = sum(1 for path in files if rule.applies_to(path))
    return Check(CheckState.PASS, f"{checked} migration files, additive only")


def confirm_flags(rollout: Rollout, *, actor: str) -> Rollout:
    if rollout.phase is not Phase.PREFLIGHT:
        raise InvalidTransition("The preflight is over: this rollout was already dispatched.")
    flags = Check(CheckState.PASS, confirmed_by=actor)
    return replace(rollout, preflight=replace(rollout.preflight, flags=flags))


def begin_dispatch(
    rollout: Rollout, *, now: datetime, scheduled_at: datetime | None = None
) -> Rollout:
    """Mark the dispatch as under way (saved before GitHub is called, for restart safety). It
    consumes the schedule, whoever dispatches: a schedule never dispatches a rollout a second
    time. The scheduled dispatch (`scheduled_at`) goes only while it is still scheduled then
    (not cancelled, held or dispatched meanwhile)."""
    if rollout.phase is not Phase.PREFLIGHT:
        raise InvalidTransition(f"Rollout {rollout.tag} was already dispatched.")
    schedule = rollout.schedule
    if scheduled_at is not None and (
        schedule is None or not schedule.pending or schedule.at != scheduled_at
    ):
        raise InvalidTransition(f"The dispatch of `{rollout.tag}` is no longer scheduled.")
    blocking = rollout.preflight.blocking()
    if blocking:
        raise InvalidTransition("Dispatch is blocked. " + " ".join(blocking))
    return replace(rollout, phase=Phase.DISPATCHING, dispatched_at=now, schedule=None)


def cancel_schedule(rollout: Rollout, *, actor: str) -> Decision:
    """Cancel the dispatch scheduled for later; the preflight waits for a Dispatch click."""
    schedule = rollout.schedule
    if rollout.phase is not Phase.PREFLIGHT or schedule is None or not schedule.pending:
        raise InvalidTransition(f"No dispatch of {rollout.tag} is scheduled.")
    cancelled = replace(rollout, schedule=None)
    return Decision(cancelled, (Announce(ScheduleCancelled(actor, schedule.at)),))


def hold_schedule(rollout: Rollout, held: Held) -> Decision:
    """The scheduled dispatch did not go (`held` says why): the preflight waits for a person,
    as after any other preflight."""
    schedule = rollout.schedule
    if rollout.phase is not Phase.PREFLIGHT or schedule is None or not schedule.pending:
        return Decision(rollout)
    kept = replace(rollout, schedule=replace(schedule, held=held))
    return Decision(kept, (Announce(ScheduleHeld(schedule.at, held), failure=True),))


def dispatched(
    rollout: Rollout,
    plan: RolloutPlan,
    run: RunRef,
    *,
    linked_by: str | None = None,
    scheduled_for: datetime | None = None,
) -> Decision:
    """The run exists (found, or linked by hand by `linked_by`). The Dispatch click is also
    the approval of each track's first stage. A dispatch scheduled for `scheduled_for` that
    went LATE_SAID or more after it says how late."""
    if rollout.phase in (Phase.RUNNING, Phase.ENDED):
        raise InvalidTransition(
            f"Rollout {rollout.tag} is already attached to run {rollout.run_id}: nothing changed."
        )
    tracks = tuple(
        replace(
            track,
            state=TrackState.ACTIVE,
            stages=(replace(track.stages[0], state=StageState.APPROVING), *track.stages[1:]),
        )
        for track in rollout.tracks
    )
    started = replace(
        rollout,
        phase=Phase.RUNNING,
        run_id=run.run_id,
        run_url=run.html_url,
        tracks=tracks,
        attempt=run.attempt,
    )
    firsts = tuple((plan.track(t.name).stages[0].label, plan.track(t.name).label) for t in tracks)
    late = (
        rollout.dispatched_at - scheduled_for
        if scheduled_for is not None and rollout.dispatched_at is not None
        else timedelta(0)
    )
    told = RunDispatched(
        plan.workflow.name, rollout.tag, run.run_id, run.html_url, firsts, linked_by=linked_by
    )
    if late >= LATE_SAID:
        told = replace(told, late=late)
    return Decision(started, (Announce(told),))


def cancel_preflight(rollout: Rollout, *, actor: str, now: datetime) -> Rollout:
    if rollout.phase is not Phase.PREFLIGHT:
        raise InvalidTransition("Only a rollout still in preflight can be cancelled.")
    tracks = tuple(
        replace(
            t,
            state=TrackState.CANCELLED,
            ended_at=now,
            ended_reason=StopReason(StopKind.CANCELLED, actor=actor),
        )
        for t in rollout.tracks
    )
    return replace(rollout, phase=Phase.ENDED, tracks=tracks, ended_at=now)


def promote(
    rollout: Rollout, plan: RolloutPlan, *, track: str, actor: str, override: bool = False
) -> Decision:
    """Approve the next stage after the current one's gate. An INCONCLUSIVE hold is only
    promoted with `override` (the button's confirm dialog says so)."""
    current_track = rollout.track(track)
    plan_track = plan.track(track)
    stage = current_track.current
    if current_track.state is not TrackState.ACTIVE or stage is None:
        raise InvalidTransition(f"{plan_track.label} is {current_track.state}: nothing to promote.")
    spec = plan_track.stage(stage.key)
    if stage.state is not StageState.HOLDING:
        raise InvalidTransition(_not_holding(plan_track, spec, stage))
    inconclusive = stage.verdict is not None and stage.verdict.verdict is Verdict.INCONCLUSIVE
    if inconclusive and not override:
        raise InvalidTransition(
            f"{spec.label} is held on an INCONCLUSIVE gate: promote it with the Promote button, "
            "which asks you to confirm the override."
        )
    if gate_missed(stage) and not override:
        raise InvalidTransition(
            f"The gate of {spec.label} never ran: promote it with the Promote button, which "
            "asks you to confirm the override (or Re-evaluate first)."
        )
    following = plan_track.next_stage(stage.key)
    assert following is not None
    work = Work(rollout)
    advance(work, track, stage, following)
    overrode = (
        StageState.HOLDING if inconclusive else StageState.PENDING if gate_missed(stage) else None
    )
    work.effects.append(Announce(StagePromoted(actor, plan_track.label, following.label, overrode)))
    return work.decision()


def _not_holding(plan_track: PlanTrack, spec: PlanStage, stage: Stage) -> str:
    settle = settle_of(plan_track.metrics)
    if stage.state is StageState.OBSERVING and stage.window_ends_at and settle:
        return (
            f"{spec.label} ({plan_track.label}) is still observing: its window ends at "
            f"{utc_minute(stage.window_ends_at)}, its gate reads it at "
            f"{utc_minute(stage.window_ends_at + settle)} (settle {format_duration(settle)}) "
            "and decides first."
        )
    if stage.state is StageState.OBSERVING and stage.window_ends_at:
        return (
            f"{spec.label} ({plan_track.label}) is still observing until "
            f"{utc_minute(stage.window_ends_at)}; its gate decides first."
        )
    return f"{spec.label} ({plan_track.label}) is {stage.state}, not waiting for a Promote."


def extend(
    rollout: Rollout,
    plan: RolloutPlan,
    *,
    track: str,
    actor: str,
    by: timedelta,
    now: datetime,
) -> Decision:
    """Move the end of the running window of a track by `by` (a person wants more data).
    A window already over (its timer late, or given up: a gate that never ran) observes again
    until `by` from now, its window the latest stretch of the length it was observed for and
    `by` (`reopened_from`): moved by `by` from its end, it could end in the past, and its gate
    run at once on the figures of hours ago. A window within its `settle` is not over: its gate
    has not read it yet, and runs `settle` after the moved end (in the future)."""
    current_track = rollout.track(track)
    plan_track = plan.track(track)
    stage = current_track.current
    if (
        current_track.state is not TrackState.ACTIVE
        or stage is None
        or not (stage.state is StageState.OBSERVING or gate_missed(stage))
        or stage.window_ends_at is None
    ):
        raise InvalidTransition(f"{plan_track.label} has no window running: nothing to extend.")
    spec = plan_track.stage(stage.key)
    missed = gate_missed(stage)
    settle = settle_of(plan_track.metrics)
    over = missed or now > stage.window_ends_at + settle
    ends = (now if over else stage.window_ends_at) + by
    observed_from = reopened_from(stage, now, settle) if over else stage.observed_from
    moved = replace(
        stage, state=StageState.OBSERVING, window_ends_at=ends, observed_from=observed_from
    )
    effects: list[Effect] = [] if missed else [cancel_window(track, stage)]
    effects.append(ScheduleWindow(track, stage.key, ends))
    effects.append(Announce(WindowExtended(actor, plan_track.label, spec.label, by, ends)))
    return Decision(rollout.with_track(current_track.with_stage(moved)), tuple(effects))


def abort(
    rollout: Rollout,
    plan: RolloutPlan,
    *,
    track: str,
    actor: str,
    reason: str,
    now: datetime,
    waiting: Collection[str] | None = (),
) -> Decision:
    """Stop a track by hand: roll back the relay, or trip the desktop kill-switch. `waiting`:
    the environments GitHub waits at now, when the run was read (`held_on_github`); None when
    it could not be read."""
    refusal = _why_not_stoppable(rollout, plan, track, waiting)
    if refusal is not None:
        raise InvalidTransition(refusal)
    current_track = rollout.track(track)
    plan_track = plan.track(track)
    relay = plan_track.gate is GateKind.RELAY
    stage = current_track.current
    if stage is not None and held_on_github(plan_track, stage, waiting):
        # Its approval never reached GitHub: not reached, the stop rejects it.
        stage = replace(stage, state=StageState.APPROVING)
        current_track = current_track.with_stage(stage)
    work = Work(rollout)
    track_now = current_track
    if stage is not None and stage.state in WATCHED:
        if stage.state is StageState.OBSERVING:
            work.effects.append(cancel_window(track, stage))
        track_now = track_now.with_stage(replace(stage, state=StageState.STOPPED))
    ending = TrackState.ROLLED_BACK if relay else TrackState.HALTED
    why = StopReason(
        StopKind.ROLLED_BACK if relay else StopKind.KILL_SWITCH, actor=actor, detail=reason
    )
    work.set_track(replace(track_now, state=TrackState.ABORTING, ending=ending, ended_reason=why))
    stopped: TrackStopped | StopUnconfirmed = TrackStopped(
        plan_track.label,
        why,
        reached_label(plan_track, current_track),
        desktop=not relay,
        failure_job=plan_track.on_failure.job,
    )
    if waiting is None and _landing(plan_track, stage):  # GitHub deploys it, or holds it
        last = plan_track.stages[-1].label
        stopped = StopUnconfirmed(plan_track.label, why, last, not relay, stopped.failure_job)
    work.effects.append(Announce(stopped, failure=True))
    return work.decision()


def tracks_to_stop(
    rollout: Rollout, plan: RolloutPlan, *, gate: GateKind, waiting: Collection[str] | None = ()
) -> list[str]:
    """The tracks a Roll back (`relay` gate) or a Kill-switch (`desktop` gate) stops: every
    track of that gate that can still be stopped, in the plan's order. One that completed or
    already stopped is left as it is and never keeps another of its gate running. Raises the
    first track's refusal when none can be stopped, and says which stop applies when the plan
    has no track of `gate` (a web service's plan has no rings to kill)."""
    names = [name for name, track in plan.tracks.items() if track.gate is gate]
    if not names:
        raise InvalidTransition(_no_track_of(rollout, plan, gate))
    refusals = [_why_not_stoppable(rollout, plan, name, waiting) for name in names]
    stoppable = [name for name, refusal in zip(names, refusals, strict=True) if refusal is None]
    if names and not stoppable:
        raise InvalidTransition(str(refusals[0]))
    return stoppable


def _no_track_of(rollout: Rollout, plan: RolloutPlan, gate: GateKind) -> str:
    """The refusal of a stop whose gate the plan has no track of, naming the stop it has."""
    others = " and ".join(track.label for track in plan.tracks.values() if track.gate is not gate)
    if gate is GateKind.RELAY:
        return (
            f"The plan of `{rollout.tag}` has no relay-gated track: there is nothing to roll "
            f"back, nothing was changed. {others} stops with the kill-switch: `/rollout kill`."
        )
    return (
        f"The plan of `{rollout.tag}` has no desktop-gated track: there is no kill-switch to "
        f"trip, nothing was changed. {others} stops with a roll back: `/rollout rollback`."
    )


def held_on_github(plan_track: PlanTrack, stage: Stage, waiting: Collection[str] | None) -> bool:
    """A stage saved as deploying that GitHub still holds at its environment (`waiting`, as
    the run was read; None: it could not be read): the bot's approval failed, and the next
    look would send it again. A stop may still reject it."""
    if waiting is None:
        return False
    environment = plan_track.stage(stage.key).environment.casefold()
    return stage.state is StageState.DEPLOYING and any(
        name.casefold() == environment for name in waiting
    )


def _landing(plan_track: PlanTrack, stage: Stage | None) -> bool:
    """Whether `stage` is the track's last, saved as deploying."""
    final = plan_track.stages[-1]
    return stage is not None and stage.key == final.key and stage.state is StageState.DEPLOYING


def _why_not_stoppable(
    rollout: Rollout, plan: RolloutPlan, track: str, waiting: Collection[str] | None = ()
) -> str | None:
    """Why a track cannot be stopped by hand now (None: it can)."""
    current_track = rollout.track(track)
    plan_track = plan.track(track)
    relay = plan_track.gate is GateKind.RELAY
    verb = "roll back" if relay else "trip the kill-switch of"
    if rollout.phase is Phase.PREFLIGHT:
        return f"`{rollout.tag}` has not been dispatched yet: nothing to {verb}."
    if rollout.phase is Phase.DISPATCHING:
        # Its tracks wait for the run (PENDING): nothing is approved until it is found.
        return (
            f"`{rollout.tag}` was dispatched, but its run is not identified yet: there is "
            f"nothing to {verb}, nothing was changed. Nothing is approved until the bot finds "
            "the run (or someone links it: Link a run… on the card); a run that started waits "
            "at its first stages on GitHub, where it can be cancelled."
        )
    if current_track.state is TrackState.COMPLETED:
        last = plan_track.stages[-1].label
        return (
            f"{plan_track.label} already completed ({last}) for `{rollout.tag}`: "
            f"there is no stage left to stop, nothing was changed."
        )
    if current_track.state is not TrackState.ACTIVE:
        return f"{plan_track.label} is already {state_words(current_track)}: nothing was changed."
    stage = current_track.current
    final = plan_track.stages[-1]
    # Unread (`waiting` None), a landing stage may still be held after a failed approval that
    # the next look would send again: the stop is saved, and rejects it if GitHub holds it.
    landing = waiting is not None and _landing(plan_track, stage)
    if landing and not (stage is not None and held_on_github(plan_track, stage, waiting)):
        # GitHub only stops a job by rejecting its environment; this one was approved.
        return (
            f"{plan_track.label} is already deploying {final.label} for `{rollout.tag}`: "
            "there is no stage left to stop, nothing was changed."
        )
    return None
