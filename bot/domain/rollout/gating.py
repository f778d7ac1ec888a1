"""Windows and gates: a window's end, the gate's verdict, a window timer that gave up."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from bot.domain.freeze import Freeze
from bot.domain.gate import GateKind, GateReason, GateVerdict, Verdict
from bot.domain.late_gate import LateGate
from bot.domain.plan import ManualMetrics, Metrics, PromoteMode, RolloutPlan, settle_of
from bot.domain.plan import Track as PlanTrack
from bot.domain.reasons import Reason
from bot.domain.rollout.effects import (
    Announce,
    Decision,
    ReadMetrics,
    ScheduleWindow,
)
from bot.domain.rollout.events import (
    GateFailed,
    GateInconclusive,
    GateMissed,
    GatePassed,
    TracksLeft,
)
from bot.domain.rollout.left import tracks_left
from bot.domain.rollout.state import (
    Rollout,
    Stage,
    StageState,
    StopKind,
    StopReason,
    TrackState,
    reopened_from,
    window_timer_key,
)
from bot.domain.rollout.work import Work, advance, reached_label


def _timer_still_closes(stage: Stage, due_at: datetime) -> bool:
    """Whether the window timer due at `due_at` still closes `stage`: its window ends then (not
    extended since) and no gate has decided it (it is not stopped or held)."""
    return stage.window_ends_at == due_at and stage.state in (
        StageState.OBSERVING,
        StageState.EVALUATING,
    )


EARLY_GATE_TIMER = "early_gate"
"""The timer kind of a failing verdict's backstop (`early_gate_timer_key`)."""


def early_gate_timer_key(
    rollout_id: str, track: str, stage: str, ends_at: datetime, *, asked_at: datetime
) -> str:
    """The timer that backs a Re-evaluate's failing verdict on a stage whose window ending at
    `ends_at` still runs, asked at `asked_at`: it runs the gate again and takes only a failing
    verdict (`early_gate_stands`), so it never ends a window early on a PASS. Its payload is
    a window timer's; its kind (`EARLY_GATE_TIMER`) is not, so no window timer's handler fires
    it."""
    window = window_timer_key(rollout_id, track, stage, ends_at).removeprefix("window:")
    return ":".join(("early-gate", window, asked_at.astimezone(UTC).isoformat()))


def early_gate_stands(rollout: Rollout, *, track: str, stage: str, ends_at: datetime) -> bool:
    """Whether a failing verdict's backstop for the window of `stage` ending at `ends_at` may
    still act: the stage observes or evaluates that window (not decided, extended or moved
    on since), its track still active."""
    active = rollout.track(track)
    return active.state is TrackState.ACTIVE and _timer_still_closes(active.stage(stage), ends_at)


def window_runs(stage: Stage, now: datetime, metrics: Metrics) -> bool:
    """Whether the window of `stage` still runs at `now`: its window's own timer (due at its
    end and the source's `settle`) is still to fire, so no gate may end it on a PASS."""
    ends = stage.window_ends_at
    return ends is not None and now < ends + settle_of(metrics)


def window_ended(rollout: Rollout, *, track: str, stage: str, due_at: datetime) -> Decision:
    """A window's timer fired. `due_at` is the window end the timer was scheduled for (not
    when a retry of it fires). Stale timers (an extended or stopped window) change nothing;
    a timer fired again after a failure mid-evaluation asks for the metrics again."""
    current = rollout.track(track).stage(stage)
    if not _timer_still_closes(current, due_at):
        return Decision(rollout)
    evaluating = replace(current, state=StageState.EVALUATING)
    updated = rollout.with_track(rollout.track(track).with_stage(evaluating))
    return Decision(updated, (ReadMetrics(track, stage),))


def window_timer_dead(
    rollout: Rollout,
    plan: RolloutPlan,
    *,
    track: str,
    stage: str,
    due_at: datetime,
    attempts: int,
    reason: Reason,
) -> Decision:
    """The timer of a window's end gave up after `attempts` failures, so the gate never ran.
    The stage holds without a verdict rather than observing forever: a person re-evaluates,
    extends the window, overrides with Promote or stops; the thread says what failed."""
    current = rollout.track(track).stage(stage)
    if not _timer_still_closes(current, due_at):
        return Decision(rollout)
    plan_track = plan.track(track)
    spec = plan_track.stage(stage)
    held = replace(current, state=StageState.HOLDING, verdict=None)
    manual = isinstance(plan_track.metrics, ManualMetrics)
    desktop = plan_track.gate is GateKind.DESKTOP
    told = GateMissed(plan_track.label, spec.label, due_at, attempts, reason, manual, desktop)
    return Decision(
        rollout.with_track(rollout.track(track).with_stage(held)),
        (Announce(told, failure=True),),
    )


def gate_evaluated(
    rollout: Rollout,
    plan: RolloutPlan,
    *,
    track: str,
    stage: str,
    verdict: GateVerdict,
    now: datetime,
    late: LateGate | None = None,
    frozen: Freeze | None = None,
) -> Decision:
    """Act on a gate's verdict: hold (or auto-promote) on PASS, stop on a failure, extend
    once then hold on INCONCLUSIVE. Only a stage being evaluated takes a verdict. `late`: the
    gate ran late and read two stretches, which the thread is told. `frozen`: the freeze that
    holds the rollout's lane now (none of its overrides or roll-back pass covering it): a
    `promote: auto` stage then holds for a person's Promote, as a `promote: manual` one does,
    and stays held when the freeze lifts (the bot never ships on its own out of a freeze)."""
    current = rollout.track(track).stage(stage)
    if current.state is not StageState.EVALUATING:
        return Decision(rollout)
    work = Work(rollout)
    plan_track = plan.track(track)
    spec = plan_track.stage(stage)
    judged = replace(current, verdict=verdict)
    figures = verdict.summary
    if verdict.verdict is Verdict.PASS:
        following = plan_track.next_stage(stage)
        assert following is not None  # only stages with a window are gated; the last has none
        auto = spec.observe is not None and spec.observe.promote is PromoteMode.AUTO
        if auto and frozen is None:
            advance(work, track, judged, following)
            work.effects.append(
                Announce(GatePassed(spec.label, figures, following.label, True, late))
            )
        else:
            work.set_track(work.track(track).with_stage(replace(judged, state=StageState.HOLDING)))
            held_by = frozen if auto else None  # a manual stage holds whatever the lane
            passed = GatePassed(spec.label, figures, following.label, False, late, held_by)
            work.effects.append(Announce(passed))
    elif verdict.verdict is Verdict.INCONCLUSIVE:
        extension = spec.observe.inconclusive_extension if spec.observe else None
        # More data never makes a saved plan's unusable threshold usable: hold at once.
        waits = verdict.reason is not GateReason.UNUSABLE_THRESHOLD
        if waits and extension is not None and current.extensions == 0 and current.window_ends_at:
            ends = now + extension
            extended = replace(
                judged,
                state=StageState.OBSERVING,
                window_ends_at=ends,
                extensions=1,
                observed_from=reopened_from(current, now, settle_of(plan_track.metrics)),
            )
            work.set_track(work.track(track).with_stage(extended))
            work.effects.append(ScheduleWindow(track, stage, ends))
            work.effects.append(
                Announce(GateInconclusive(spec.label, figures, extension, ends, late=late))
            )
        else:
            work.set_track(work.track(track).with_stage(replace(judged, state=StageState.HOLDING)))
            desktop = plan_track.gate is GateKind.DESKTOP
            held = GateInconclusive(
                spec.label, figures, reason=verdict.reason, late=late, desktop=desktop
            )
            work.effects.append(Announce(held, failure=True))
    else:
        failed = replace(judged, state=StageState.FAILED_GATE)
        ending = TrackState.ROLLED_BACK if plan_track.gate is GateKind.RELAY else TrackState.HALTED
        reason = StopReason(
            StopKind.GATE_FAILED,
            subject=spec.label,
            outcome=str(verdict.verdict),
            detail=verdict.reason.value if verdict.reason else "",
        )
        stopped = replace(
            work.track(track).with_stage(failed),
            state=TrackState.ABORTING,
            ending=ending,
            ended_reason=reason,
        )
        work.set_track(stopped)
        told = GateFailed(
            plan_track.label,
            spec.label,
            verdict.verdict,
            verdict.reason,
            figures,
            reached_label(plan_track, stopped),
            desktop=ending is TrackState.HALTED,
            failure_job=plan_track.on_failure.job,
            late=late,
        )
        work.effects.append(Announce(told, failure=True))
        # A gate stops its own track: say what the other tracks of its gate still do.
        left = tracks_left(work.rollout, plan, gate=plan_track.gate, stopping=(track,))
        if left:
            desktop = plan_track.gate is GateKind.DESKTOP
            work.effects.append(Announce(TracksLeft(rollout.tag, desktop, left), failure=True))
    return work.decision()


def held_by_freeze(stage: Stage, plan_track: PlanTrack) -> bool:
    """A `promote: auto` stage whose gate passed, holding for a Promote: a freeze held its
    automatic promotion (`gate_evaluated`'s `frozen`), and a person decides when it goes on."""
    observe = plan_track.stage(stage.key).observe
    return (
        stage.state is StageState.HOLDING
        and stage.verdict is not None
        and stage.verdict.verdict is Verdict.PASS
        and observe is not None
        and observe.promote is PromoteMode.AUTO
    )


def held_by_freezes(rollout: Rollout, plan: RolloutPlan) -> tuple[str, ...]:
    """The stages of `rollout` a freeze held for a Promote (`held_by_freeze`), each as
    `Stage → next stage` in its plan's labels."""
    return tuple(stages_held_by_freezes(rollout, plan).values())


def stages_held_by_freezes(rollout: Rollout, plan: RolloutPlan) -> dict[str, str]:
    """`held_by_freezes` by `track:stage`, which names each hold (a freeze's end is told once
    per stage it held)."""
    held = {}
    for track in rollout.tracks:
        plan_track = plan.track(track.name)
        current = track.current
        following = plan_track.next_stage(current.key) if current is not None else None
        if current is not None and following is not None and held_by_freeze(current, plan_track):
            label = f"{plan_track.stage(current.key).label} → {following.label}"
            held[f"{track.name}:{current.key}"] = label
    return held
