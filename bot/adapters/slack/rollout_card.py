"""Block Kit of the rollout card: the one parent message of a rollout, updated in place, with a
lane per track and only the buttons that apply now, and its plain-text fallback.

However large the plan, the card keeps within Slack's limits: long lanes are split into
sections, and blocks beyond a message's 50 are cut with a note.
"""

from __future__ import annotations

from datetime import timedelta

from slack_sdk.models.blocks import Block, ButtonElement, DividerBlock

from bot.adapters.slack.actions import Action, ButtonValue
from bot.adapters.slack.blocks import (
    BlockJson,
    actions,
    as_json,
    button,
    confirm,
    context,
    header,
    section,
    sections,
)
from bot.adapters.slack.limits import FALLBACK_TEXT, clip, fit
from bot.adapters.slack.preflight_card import preflight_card
from bot.adapters.slack.rollout_words import (
    card_facts,
    current_stage,
    lane_title,
    released,
    stage_lines,
    track_standing,
)
from bot.domain.controls import hold_of
from bot.domain.durations import format_duration
from bot.domain.gate import GateKind, Verdict
from bot.domain.plan import ManualMetrics, RolloutPlan
from bot.domain.plan import Stage as PlanStage
from bot.domain.plan import Track as PlanTrack
from bot.domain.rollout import (
    InvalidTransition,
    Left,
    Phase,
    Rollout,
    Stage,
    StageState,
    Track,
    TrackState,
    gate_missed,
    reached_label,
    rerun_refusal,
    tracks_left,
    tracks_to_stop,
)
from bot.domain.run_link import may_link

EXTEND_STEP = timedelta(minutes=15)
"""What one click on Extend window adds to the observation window."""


def rollout_card(rollout: Rollout, plan: RolloutPlan, *, named: bool = False) -> list[BlockJson]:
    """The one parent message of a rollout, updated in place: a lane per track, and only the
    buttons that apply now. While in preflight it is the preflight card."""
    if rollout.phase is Phase.PREFLIGHT:
        return preflight_card(rollout, plan, named=named)
    blocks: list[Block] = [
        header(f"Rollout {released(rollout, named=named)} · {rollout.phase}"),
        context(" · ".join(card_facts(rollout))),
    ]
    if may_link(rollout):
        value = ButtonValue(rollout_id=rollout.id, version=rollout.version).encode()
        blocks.append(
            section(
                ":mag: The run of the dispatch is not identified yet: the bot keeps looking. "
                "If it did start on GitHub, link it."
            )
        )
        blocks.extend(actions([button("Link a run…", Action.LINK_RUN, value)]))
    for track in rollout.tracks:
        plan_track = plan.track(track.name)
        lines = [lane_title(track, plan_track, rollout.refused_approvals)]
        for stage in track.stages:
            lines.extend(stage_lines(stage, plan_track, rollout.refused_approvals))
        blocks.append(DividerBlock())
        blocks.extend(sections(lines))
        blocks.extend(actions(_lane_buttons(rollout, plan, track, plan_track)))
    return as_json(fit(blocks, "`/rollout status` shows every track"))


def _lane_buttons(
    rollout: Rollout, plan: RolloutPlan, track: Track, plan_track: PlanTrack
) -> list[ButtonElement]:
    if track.state is TrackState.COMPLETED and plan_track.gate is GateKind.RELAY:
        # Roll back after the track completed: a redeploy of the previous good release, whose
        # confirm dialog (naming both tags) opens on click, when the previous tag is looked up.
        value = ButtonValue(rollout_id=rollout.id, track=track.name, version=rollout.version)
        return [button("Roll back to the previous release…", Action.REDEPLOY, value.encode())]
    if rerun_refusal(rollout, plan, track=track.name) is None and rollout.attempt:
        again = rerun_button(
            rollout.id,
            track.name,
            rollout.attempt,
            job=plan_track.on_failure.job,
            label=plan_track.label,
            desktop=plan_track.gate is GateKind.DESKTOP,
        )
        return [again]
    if rollout.phase is not Phase.RUNNING or track.state is not TrackState.ACTIVE:
        return []
    current = track.current
    value = ButtonValue(
        rollout_id=rollout.id,
        track=track.name,
        stage=current.key if current else None,
        version=rollout.version,
    )
    buttons: list[ButtonElement] = []
    if current is not None:
        spec = plan_track.stage(current.key)
        following = plan_track.next_stage(current.key)
        if current.state is StageState.HOLDING and following is not None:
            held = value.model_copy(update={"hold": hold_of(current)})
            buttons.append(_promote(rollout, current, spec, following, held))
        if current.state is StageState.OBSERVING or gate_missed(current):
            label = f"Extend window (+{format_duration(EXTEND_STEP)})"
            buttons.append(button(label, Action.EXTEND_WINDOW, value.encode()))
            buttons.append(button("Extend by…", Action.EXTEND_CUSTOM, value.encode()))
        gated = (StageState.OBSERVING, StageState.EVALUATING, StageState.HOLDING)
        manual = isinstance(plan_track.metrics, ManualMetrics)
        if current.state in gated and not manual:
            buttons.append(button("Re-evaluate now", Action.REEVALUATE, value.encode()))
        if current.state is StageState.EVALUATING and manual:
            figures = button("Enter figures", Action.ENTER_FIGURES, value.encode(), style="primary")
            buttons.append(figures)
    if (stop := _stop(rollout, plan, track, plan_track, value)) is not None:
        buttons.append(stop)
    return buttons


def _promote(
    rollout: Rollout, stage: Stage, spec: PlanStage, following: PlanStage, value: ButtonValue
) -> ButtonElement:
    dialog = None
    if gate_missed(stage):
        dialog = confirm(
            "Promote without a gate?",
            f"The {spec.label} gate never ran (see the thread). Promoting approves "
            f"{following.label} for {rollout.tag} without a verdict.",
            "Promote anyway",
            danger=True,
        )
    elif stage.verdict is not None and stage.verdict.verdict is Verdict.INCONCLUSIVE:
        dialog = confirm(
            "Override an inconclusive gate?",
            f"The {spec.label} gate was INCONCLUSIVE ({stage.verdict.summary}). Promoting "
            f"overrides it and approves {following.label} for {rollout.tag} without a verdict.",
            "Promote anyway",
            danger=True,
        )
    label = f"Promote to {following.label}"
    return button(label, Action.PROMOTE, value.encode(), style="primary", confirm=dialog)


def _stop(
    rollout: Rollout, plan: RolloutPlan, track: Track, plan_track: PlanTrack, value: ButtonValue
) -> ButtonElement | None:
    """Roll back or Kill-switch: it stops every track of the lane's gate still running. None
    when nothing can be stopped (the lane deploys its last stage, which GitHub cannot stop: a
    relay lane offers the roll back after it once it completes), so no button is refused."""
    failure = plan_track.on_failure.job
    relay = plan_track.gate is GateKind.RELAY
    try:
        stopping = tracks_to_stop(rollout, plan, gate=plan_track.gate)
    except InvalidTransition:
        return None
    kept = [
        left.track
        for left in tracks_left(rollout, plan, gate=plan_track.gate, stopping=stopping)
        if left.why in (Left.COMPLETED, Left.LANDING)
    ]
    if relay:
        label, action, yes = "Roll back", Action.ROLLBACK, "Roll back"
        title = f"Roll back {plan_track.label}?"
        text = (
            f"Stops {rollout.tag} on {plan_track.label}: the next stage is rejected and "
            f"{failure} is approved. This cannot be undone."
        )
    else:
        label, action, yes = "Kill-switch", Action.KILL, "Trip the kill-switch"
        title = f"Trip the kill-switch of {plan_track.label}?"
        reached = reached_label(plan_track, track)
        stays = f"the release stays on the {reached}" if reached else "no ring was reached yet"
        text = (
            f"Stops promotion of {rollout.tag} for good: {stays}, the next ring is rejected and "
            f"{failure} is approved."
        )
    if len(stopping) > 1 or (stopping and kept):
        # The click stops more than this lane, or leaves a track of the gate on the release.
        title = f"{label}: {len(stopping)} of {len(stopping) + len(kept)} tracks?"
        names = " and ".join(plan.track(name).label for name in stopping)
        text = (
            f"Stops {rollout.tag} on {names}: the next stage of each is rejected and its "
            f"{'rollback' if relay else 'kill-switch'} job approved."
        )
        if kept:
            # First: Slack keeps 300 characters of the text, and this must not be what is cut.
            after = " (Roll back to the previous release… on its lane)" if relay else ""
            text = f"Not stopped: {' and '.join(kept)} stays on {rollout.tag}{after}. {text}"
    dialog = confirm(title, text, yes, danger=True)
    return button(label, action, value.encode(), style="danger", confirm=dialog)


def rerun_button(
    rollout_id: str, track: str, attempt: int, *, job: str, label: str, desktop: bool
) -> ButtonElement:
    """Re-run the failure job `job` of the track `track` (labelled `label`) that failed on
    GitHub in the run's `attempt` (on the card's lane, and under the thread's message that
    tells it failed)."""
    what = "kill-switch" if desktop else "rollback"
    value = ButtonValue(rollout_id=rollout_id, track=track, attempt=attempt)
    dialog = confirm(
        f"Re-run {what}?",
        f"GitHub runs {job} of {label} again, as a new attempt of the run, and the bot approves "
        "its environment as it did the first time.",
        f"Re-run {what}",
        danger=True,
    )
    return button(f"Re-run {what}", Action.RERUN_FAILURE_JOB, value.encode(), confirm=dialog)


def rollout_text(rollout: Rollout, plan: RolloutPlan) -> str:
    """The card's plain-text fallback (notifications, screen readers)."""
    lanes = []
    for track in rollout.tracks:
        plan_track = plan.track(track.name)
        standing = track_standing(track, plan_track, rollout.refused_approvals)
        lane = f"{plan_track.label}: {standing}"
        current = current_stage(track, plan_track, rollout.refused_approvals)
        lanes.append(f"{lane} ({current[1]})" if current else lane)
    return clip(f"Rollout {rollout.tag} ({rollout.phase}). " + ". ".join(lanes), FALLBACK_TEXT)
