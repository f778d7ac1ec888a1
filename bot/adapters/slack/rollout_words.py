"""Words for a rollout's states, shared by its card, `/rollout status` and `history`: the emoji
of each state, a stage's and a track's standing in a few words, a gate verdict, the card's facts."""

from __future__ import annotations

from collections.abc import Collection

from bot.adapters.slack.messages import reason_text, slack_time
from bot.domain.durations import format_duration
from bot.domain.gate import GateKind, GateVerdict, Verdict, gate_reason_words
from bot.domain.plan import ManualMetrics, RolloutPlan, settle_of
from bot.domain.plan import Stage as PlanStage
from bot.domain.plan import Track as PlanTrack
from bot.domain.rollout import (
    CheckState,
    Left,
    Phase,
    Rollout,
    Stage,
    StageState,
    Track,
    TrackState,
    gate_missed,
    held_by_freeze,
    reached_label,
    state_words,
    tracks_left,
)

CHECK_EMOJI = {
    CheckState.PASS: ":white_check_mark:",
    CheckState.FAIL: ":x:",
    CheckState.ERROR: ":x:",
    CheckState.PENDING: ":hourglass_flowing_sand:",
    CheckState.SKIPPED: ":heavy_minus_sign:",
}

_STAGE_EMOJI = {
    StageState.PENDING: ":white_circle:",
    StageState.APPROVING: ":hourglass_flowing_sand:",
    StageState.DEPLOYING: ":rocket:",
    StageState.OBSERVING: ":eyes:",
    StageState.EVALUATING: ":mag:",
    StageState.HOLDING: ":double_vertical_bar:",
    StageState.PASSED: ":white_check_mark:",
    StageState.DEPLOYED: ":white_check_mark:",
    StageState.FAILED_GATE: ":red_circle:",
    StageState.REJECTED: ":no_entry:",
    StageState.FAILED: ":x:",
    StageState.STOPPED: ":black_square_for_stop:",
}

_TRACK_EMOJI = {
    TrackState.PENDING: ":white_circle:",
    TrackState.ACTIVE: ":arrow_forward:",
    TrackState.ABORTING: ":rotating_light:",
    TrackState.COMPLETED: ":white_check_mark:",
    TrackState.ROLLED_BACK: ":rewind:",
    TrackState.HALTED: ":octagonal_sign:",
    TrackState.FAILED: ":x:",
    TrackState.CANCELLED: ":heavy_minus_sign:",
}


def _where(spec: PlanStage) -> str:
    return f"{spec.percent}%" if spec.percent is not None else f"ring {spec.ring}"


def stage_name(spec: PlanStage) -> str:
    """The label, followed by the share or ring unless the label already says it."""
    where = f"{spec.percent}%" if spec.percent is not None else str(spec.ring)
    named = where.casefold() in spec.label.casefold()
    return f"*{spec.label}*" if named else f"*{spec.label}* ({_where(spec)})"


def stage_words(
    stage: Stage, spec: PlanStage, plan_track: PlanTrack, refused: Collection[str] = ()
) -> str:
    """`refused`: the environments whose approval (rejection) GitHub refused the bot, or
    failed for a while (`Rollout.refused_approvals`): a stage saved as deploying (rejected)
    there is not."""
    state = stage.state
    if _refused(stage, spec, refused):
        review = "rejection" if state is StageState.REJECTED else "approval"
        return f"held by GitHub: it has not taken the bot's {review} (see the thread)"
    if state is StageState.PENDING:
        window = spec.window
        return f"pending, window {format_duration(window)}" if window else "pending"
    if state is StageState.OBSERVING and stage.window_ends_at is not None:
        extended = " (extended)" if stage.extensions else ""
        words = f"observing until {slack_time(stage.window_ends_at)}{extended}"
        # Past the window's end while its gate waits for late figures: not a stuck timer.
        if settle := settle_of(plan_track.metrics):
            reads = slack_time(stage.window_ends_at + settle)
            words += f", its gate at {reads} (settle {format_duration(settle)})"
        return words
    if gate_missed(stage):
        return "holding: the gate could not run (see the thread)"
    if held_by_freeze(stage, plan_track):
        return "holding: a freeze held its automatic promotion, waiting for Promote"
    if state is StageState.EVALUATING:
        if isinstance(plan_track.metrics, ManualMetrics):
            return "window ended: waiting for the observed figures"
        # Its window may run on: a Re-evaluate's failing verdict whose save was lost left it
        # evaluating, and only its window's end (or a failing verdict) decides it.
        if (ends := stage.window_ends_at) is not None:
            return f"evaluating the gate (window until {slack_time(ends)})"
        return "window ended: evaluating the gate"
    return {
        StageState.APPROVING: "approving as soon as GitHub waits",
        StageState.DEPLOYING: "deploying",
        StageState.OBSERVING: "observing",
        StageState.HOLDING: "holding: waiting for Promote",
        StageState.PASSED: "passed",
        StageState.DEPLOYED: "deployed",
        StageState.FAILED_GATE: "gate failed",
        StageState.REJECTED: "rejected",
        StageState.FAILED: "failed on GitHub",
        StageState.STOPPED: "stopped",
    }[state]


def current_stage(
    track: Track, plan_track: PlanTrack, refused: Collection[str] = ()
) -> tuple[Stage, str] | None:
    """The stage an active track is on, with its words; None when the track is not active."""
    current = track.current
    if track.state is not TrackState.ACTIVE or current is None:
        return None
    return current, stage_words(current, plan_track.stage(current.key), plan_track, refused)


def verdict_words(verdict: GateVerdict) -> str:
    """`PASS`, `ROLLBACK (error rate)`, `KILL_SWITCH (crash rate)`, `INCONCLUSIVE`."""
    if verdict.verdict in (Verdict.PASS, Verdict.INCONCLUSIVE) or verdict.reason is None:
        return str(verdict.verdict)
    return f"{verdict.verdict} ({gate_reason_words(verdict.reason)})"


def track_standing(track: Track, plan_track: PlanTrack, refused: Collection[str] = ()) -> str:
    """Where a track stands in a few words: `at 50%`, `halted on beta ring: <why>`, ...
    `refused`: as `stage_words`; a stopping track GitHub holds does not say it rolls back."""
    reached = reached_label(plan_track, track)
    state = track.state
    if state is TrackState.PENDING:
        return "not started"
    if state is TrackState.ACTIVE:
        current = track.current
        return f"at {plan_track.stage(current.key).label}" if current else "active"
    if state is TrackState.ABORTING:
        stays = f", stays on {reached}" if reached and track.ending is TrackState.HALTED else ""
        words = state_words(track) + stays
        if held := _held_by_github(track, plan_track, refused):
            words = (
                f"not {state_words(track)} yet{stays}: GitHub has not taken {held} (see the thread)"
            )
            reason = track.ended_reason
            return f"{words}; {reason_text(reason)}" if reason else words
    elif state is TrackState.COMPLETED:
        last = plan_track.stages[-1].label
        return f"completed ({last})"
    elif state is TrackState.ROLLED_BACK:
        words = f"rolled back from {reached}" if reached else "rolled back, nothing was deployed"
    elif state is TrackState.HALTED:
        words = f"halted on {reached}" if reached else "halted before any ring"
    else:
        words = "failed" if state is TrackState.FAILED else "cancelled"
    return f"{words}: {reason_text(track.ended_reason)}" if track.ended_reason else words


def _refused(stage: Stage, spec: PlanStage, refused: Collection[str]) -> bool:
    """Saved as deploying (rejected), its approval (rejection) refused by GitHub
    (`Rollout.refused_approvals`)."""
    wanted = spec.environment.casefold()
    reviewed = stage.state in (StageState.DEPLOYING, StageState.REJECTED)
    return reviewed and any(n.casefold() == wanted for n in refused)


def _held_by_github(track: Track, plan_track: PlanTrack, refused: Collection[str]) -> str | None:
    """The review of the stopping `track` GitHub refused the bot (its next stage's rejection,
    its failure job's approval), in words; None when GitHub refused none of them."""
    for stage in track.stages:
        spec = plan_track.stage(stage.key)
        if _refused(stage, spec, refused):
            review = "rejection" if stage.state is StageState.REJECTED else "approval"
            return f"the bot's {review} of {spec.label}"
    failure = plan_track.on_failure
    if any(name.casefold() == failure.environment.casefold() for name in refused):
        return f"the bot's approval of {failure.job}"
    return None


def stage_lines(stage: Stage, plan_track: PlanTrack, refused: Collection[str] = ()) -> list[str]:
    spec = plan_track.stage(stage.key)
    emoji = ":warning:" if _refused(stage, spec, refused) else _STAGE_EMOJI[stage.state]
    lines = [
        f"{emoji} {stage_name(spec)} · `{spec.environment}` · "
        f"{stage_words(stage, spec, plan_track, refused)}"
    ]
    if stage.verdict is not None:
        lines.append(f"      ↳ *{verdict_words(stage.verdict)}*: {stage.verdict.summary}")
    return lines


def lane_title(track: Track, plan_track: PlanTrack, refused: Collection[str] = ()) -> str:
    standing = track_standing(track, plan_track, refused)
    return f"{_TRACK_EMOJI[track.state]} *{plan_track.label}*: {standing}"


def _preflight_summary(rollout: Rollout) -> str:
    checks = rollout.preflight
    return "Preflight: " + " · ".join(
        f"{CHECK_EMOJI[check.state]} {name}"
        for name, check in (
            ("flags", checks.flags),
            ("migrations", checks.migrations),
            ("image", checks.image),
        )
    )


def released(rollout: Rollout, *, named: bool) -> str:
    """What a rollout releases, as its card's title says it: the tag, after the service's name
    when the bot releases several (`named`: `billing-api v2.0.0`)."""
    return f"{rollout.service} {rollout.tag}" if named else rollout.tag


def card_facts(rollout: Rollout, *, preflight: bool = True) -> list[str]:
    facts = [f"Started by <@{rollout.started_by}>"]
    if rollout.run_id is not None and rollout.run_url:
        facts.append(f"<{rollout.run_url}|run {rollout.run_id}>")
    elif rollout.phase is Phase.DISPATCHING:
        facts.append("dispatching…")
    schedule = rollout.schedule
    if rollout.phase is Phase.PREFLIGHT and schedule is not None and schedule.pending:
        facts.append(f"dispatch scheduled for {slack_time(schedule.at)}")
    if rollout.ended_at is not None:
        facts.append(f"ended {slack_time(rollout.ended_at)}")
    if preflight:
        facts.append(_preflight_summary(rollout))
    return facts


def stop_note(rollout: Rollout, plan: RolloutPlan, gate: GateKind) -> str:
    """The answer to `/rollout rollback` or `kill`: what it stopped, and never a stop of every
    track when one of the gate completed or is landing (the thread says what to do), nor a stop
    made on GitHub while its run could not be read (the thread says what is pending)."""
    desktop = gate is GateKind.DESKTOP
    done = "Kill-switch tripped for" if desktop else "Rolling back"
    stop = "Kill-switch" if desktop else "Roll back"
    answer = f"{done} `{rollout.tag}`: see its thread."
    # A stop kept while its read of the run failed, whose next read found the last stage
    # approved after all: deploying, or landed unobserved; GitHub deploys it whatever the stop.
    landing = [
        f"*{plan_track.label}* to *{plan_track.stages[-1].label}*"
        for name, plan_track in plan.tracks.items()
        if plan_track.gate is gate
        and (track := rollout.track(name)).state not in (TrackState.ACTIVE, TrackState.COMPLETED)
        and (last := track.stage(plan_track.stages[-1].key)).window_started_at is None
        and last.state in (StageState.DEPLOYING, StageState.STOPPED)
    ]
    if rollout.unread_since is not None:
        answer = (
            f"{stop} of `{rollout.tag}` saved, but GitHub could not be read: nothing is "
            "rejected or approved on GitHub yet. The bot does it as soon as GitHub answers; "
            "see its thread."
        )
    elif landing:
        answer = (
            f"{stop} of `{rollout.tag}` saved, but GitHub had already approved "
            f"{', '.join(landing)}, and it cannot stop an approved job: that release lands "
            "there; see its thread."
        )
    kept = [
        f"*{left.track}* ({left.why}, {left.reached})"
        for left in tracks_left(rollout, plan, gate=gate, stopping=())
        if left.why in (Left.COMPLETED, Left.LANDING)
    ]
    if kept:
        still = ", ".join(kept)
        answer += f" Not stopped, still on `{rollout.tag}`: {still}; the thread says what to do."
    return answer
