"""Block Kit of a rollout, built by pure functions from domain values: the preflight card, the
rollout card (one lane per track, updated in place), `/rollout status` and `history`, and the
modal in which approvers type the observed figures of a window.

Every builder keeps within Slack's limits (blocks per message, characters per text, elements
per actions block), whatever the plan's size: long lanes are split, overflow is cut with a note.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from bot.domain.controls import hold_of
from bot.domain.durations import format_duration
from bot.domain.gate import GateKind, GateReason, GateVerdict, Verdict, exact_product, format_rate
from bot.domain.metrics import Figures
from bot.domain.plan import ManualMetrics, RolloutPlan
from bot.domain.plan import Stage as PlanStage
from bot.domain.plan import Track as PlanTrack
from bot.domain.rollout import (
    Check,
    CheckState,
    Phase,
    Rollout,
    Stage,
    StageState,
    Track,
    TrackState,
    gate_missed,
    slack_time,
)
from bot.gate_cli import UsageError, parse_rate
from handlers.actions import Action, ButtonValue, Callback, FiguresMetadata
from handlers.views import Block

PlanFor = Callable[[Rollout], RolloutPlan]
"""The plan a rollout runs under (each rollout keeps the snapshot it was started with)."""

EXTEND_STEP = timedelta(minutes=15)
"""What one click on Extend window adds to the observation window."""

# Slack's Block Kit limits.
MAX_BLOCKS = 50
MAX_TEXT = 3000
MAX_HEADER = 150
MAX_ACTIONS = 25
MAX_BUTTON_TEXT = 75
_MAX_CONFIRM_TITLE = 100
_MAX_CONFIRM_TEXT = 300
_MAX_CONFIRM_BUTTON = 30
_MAX_HINT = 2000

# The manual-figures modal: one input block per figure, each with the same action id.
CRASH_RATE_BLOCK = "crash_rate"
ERROR_RATE_BLOCK = "error_rate"
SAMPLE_BLOCK = "sample"
FIGURE_ACTION = "figure"


# -- words for domain states -----------------------------------------------------------------

_CHECK_EMOJI = {
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

_REASON_WORDS = {
    GateReason.ERROR_RATE: "error rate",
    GateReason.ZERO_BASELINE: "crashes on a zero baseline",
    GateReason.CRASH_RATE: "crash rate",
    GateReason.INSUFFICIENT_SAMPLE: "not enough data",
    GateReason.NO_DATA: "no data",
}

# Stages the release has reached: deployed there, whatever happened after (a deploying job
# was approved: GitHub cannot stop it, so the release lands there).
_REACHED = frozenset(
    {
        StageState.DEPLOYING,
        StageState.OBSERVING,
        StageState.EVALUATING,
        StageState.HOLDING,
        StageState.PASSED,
        StageState.DEPLOYED,
        StageState.FAILED_GATE,
        StageState.STOPPED,
    }
)


def _where(spec: PlanStage) -> str:
    return f"{spec.percent}%" if spec.percent is not None else f"ring {spec.ring}"


def _stage_name(spec: PlanStage) -> str:
    """The label, followed by the share or ring unless the label already says it."""
    where = f"{spec.percent}%" if spec.percent is not None else str(spec.ring)
    named = where.casefold() in spec.label.casefold()
    return f"*{spec.label}*" if named else f"*{spec.label}* ({_where(spec)})"


def _stage_words(stage: Stage, spec: PlanStage, plan_track: PlanTrack) -> str:
    state = stage.state
    if state is StageState.PENDING:
        window = spec.window
        return f"pending, window {format_duration(window)}" if window else "pending"
    if state is StageState.OBSERVING and stage.window_ends_at is not None:
        extended = " (extended)" if stage.extensions else ""
        return f"observing until {slack_time(stage.window_ends_at)}{extended}"
    if gate_missed(stage):
        return "holding: the gate could not run (see the thread)"
    if state is StageState.EVALUATING:
        if isinstance(plan_track.metrics, ManualMetrics):
            return "window ended: waiting for the observed figures"
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


def verdict_words(verdict: GateVerdict) -> str:
    """`PASS`, `ROLLBACK (error rate)`, `KILL_SWITCH (crash rate)`, `INCONCLUSIVE`."""
    if verdict.verdict in (Verdict.PASS, Verdict.INCONCLUSIVE) or verdict.reason is None:
        return str(verdict.verdict)
    return f"{verdict.verdict} ({_REASON_WORDS[verdict.reason]})"


def _reached(track: Track, plan_track: PlanTrack) -> str | None:
    reached = [s for s in track.stages if s.state in _REACHED]
    return plan_track.stage(reached[-1].key).label if reached else None


def track_standing(track: Track, plan_track: PlanTrack) -> str:
    """Where a track stands in a few words: `at 50%`, `halted on beta ring: <why>`, ..."""
    reached = _reached(track, plan_track)
    state = track.state
    if state is TrackState.PENDING:
        return "not started"
    if state is TrackState.ACTIVE:
        current = track.current
        return f"at {plan_track.stage(current.key).label}" if current else "active"
    if state is TrackState.ABORTING:
        words = {
            TrackState.ROLLED_BACK: "rolling back",
            TrackState.HALTED: "tripping the kill-switch"
            + (f", stays on {reached}" if reached else ""),
        }.get(track.ending or TrackState.FAILED, "failing")
    elif state is TrackState.COMPLETED:
        last = plan_track.stages[-1].label
        return f"completed ({last})"
    elif state is TrackState.ROLLED_BACK:
        words = f"rolled back from {reached}" if reached else "rolled back"
    elif state is TrackState.HALTED:
        words = f"halted on {reached}" if reached else "halted before any ring"
    else:
        words = "failed" if state is TrackState.FAILED else "cancelled"
    return f"{words}: {track.ended_reason}" if track.ended_reason else words


def _stage_lines(stage: Stage, plan_track: PlanTrack) -> list[str]:
    spec = plan_track.stage(stage.key)
    lines = [
        f"{_STAGE_EMOJI[stage.state]} {_stage_name(spec)} · `{spec.environment}` · "
        f"{_stage_words(stage, spec, plan_track)}"
    ]
    if stage.verdict is not None:
        lines.append(f"      ↳ *{verdict_words(stage.verdict)}*: {stage.verdict.summary}")
    return lines


def _lane_title(track: Track, plan_track: PlanTrack) -> str:
    return f"{_TRACK_EMOJI[track.state]} *{plan_track.label}*: {track_standing(track, plan_track)}"


def _preflight_summary(rollout: Rollout) -> str:
    checks = rollout.preflight
    return "Preflight: " + " · ".join(
        f"{_CHECK_EMOJI[check.state]} {name}"
        for name, check in (
            ("flags", checks.flags),
            ("migrations", checks.migrations),
            ("image", checks.image),
        )
    )


# -- Block Kit pieces ------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _clip(text, limit), "emoji": True}


def _header(text: str) -> Block:
    return {"type": "header", "text": _plain(text, MAX_HEADER)}


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, MAX_TEXT)}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text, MAX_TEXT)}]}


def _sections(lines: Iterable[str]) -> list[Block]:
    """Lines packed into as few sections as Slack's 3000 characters per text allow."""
    chunks: list[str] = []
    for line in lines:
        line = _clip(line, MAX_TEXT)
        if chunks and len(chunks[-1]) + 1 + len(line) <= MAX_TEXT:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line)
    return [_section(chunk) for chunk in chunks]


def _confirm(title: str, text: str, yes: str, *, danger: bool) -> dict[str, Any]:
    return {
        "title": _plain(title, _MAX_CONFIRM_TITLE),
        "text": _plain(text, _MAX_CONFIRM_TEXT),
        "confirm": _plain(yes, _MAX_CONFIRM_BUTTON),
        "deny": _plain("Cancel", _MAX_CONFIRM_BUTTON),
        "style": "danger" if danger else "primary",
    }


def _button(
    label: str,
    action: Action,
    value: ButtonValue,
    *,
    style: str | None = None,
    confirm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": str(action),
        "text": _plain(label, MAX_BUTTON_TEXT),
        "value": value.encode(),
    }
    if style is not None:
        button["style"] = style
    if confirm is not None:
        button["confirm"] = confirm
    return button


def _actions(buttons: Sequence[dict[str, Any]]) -> list[Block]:
    return [
        {"type": "actions", "elements": list(buttons[i : i + MAX_ACTIONS])}
        for i in range(0, len(buttons), MAX_ACTIONS)
    ]


def _fit(blocks: list[Block], what: str) -> list[Block]:
    """At most MAX_BLOCKS blocks: dividers go first, then the tail, replaced by a note."""
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    blocks = [block for block in blocks if block["type"] != "divider"]
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    kept = blocks[: MAX_BLOCKS - 1]
    note = f"_{len(blocks) - len(kept)} more blocks not shown: {what}_"
    return [*kept, _context(note)]


# -- the preflight card ----------------------------------------------------------------------


def _check_line(title: str, check: Check, pending: str, skipped: str) -> str:
    if check.state is CheckState.SKIPPED:
        detail = skipped
    elif check.state is CheckState.PENDING:
        detail = check.detail or pending
    else:
        detail = check.detail or str(check.state)
    return f"{_CHECK_EMOJI[check.state]} *{title}*: {detail}"


def preflight_card(rollout: Rollout, plan: RolloutPlan) -> list[Block]:
    """The runbook's preconditions with their outcome; Dispatch only once all are clear."""
    checks = rollout.preflight
    open_ = rollout.phase is Phase.PREFLIGHT
    value = ButtonValue(rollout_id=rollout.id, version=rollout.version)
    flags = _section(
        _check_line(
            "Feature flags validated",
            checks.flags,
            pending=f"waiting for <@{rollout.started_by}> to confirm they are validated",
            skipped="not checked",
        )
    )
    if open_ and checks.flags.state is CheckState.PENDING:
        flags["accessory"] = _button("Feature flags validated", Action.CONFIRM_FLAGS, value)
    blocks: list[Block] = [
        _header(f"Preflight: {rollout.tag}"),
        _context(
            f"Started by <@{rollout.started_by}> · *{plan.workflow.name}* "
            f"(`{plan.workflow.file}` on `{plan.workflow.ref}`)"
        ),
        flags,
        _section(
            _check_line(
                "Migrations additive only",
                checks.migrations,
                pending="reading the migration files",
                skipped="not checked",
            )
        ),
        _section(
            _check_line(
                "Image tag published",
                checks.image,
                pending="checking the registry",
                skipped="not checked (turned off in the plan)",
            )
        ),
    ]
    if not open_:
        return [*blocks, _section(_after_preflight(rollout))]
    blocking = checks.blocking()
    cancel = _button("Cancel", Action.CANCEL_PREFLIGHT, value)
    if blocking:
        blocks.append(_section(":no_entry: Dispatch is blocked by: " + "; ".join(blocking)))
        unchecked = CheckState.ERROR in (checks.migrations.state, checks.image.state)
        recheck = [_button("Re-check", Action.RECHECK, value)] if unchecked else []
        return [*blocks, *_actions([*recheck, cancel])]
    firsts = ", ".join(f"{track.stages[0].label} ({track.label})" for track in plan.tracks.values())
    blocks.append(
        _section(
            f":large_green_circle: All checks are clear. Dispatch starts *{plan.workflow.name}* "
            f"and approves {firsts}."
        )
    )
    dispatch = _button("Dispatch", Action.DISPATCH, value, style="primary")
    return [*blocks, *_actions([dispatch, cancel])]


def _after_preflight(rollout: Rollout) -> str:
    if rollout.run_id is not None and rollout.run_url:
        return f":rocket: Dispatched: <{rollout.run_url}|run {rollout.run_id}>."
    if rollout.phase is Phase.DISPATCHING:
        return ":hourglass_flowing_sand: Dispatching…"
    reasons = {t.ended_reason for t in rollout.tracks if t.ended_reason}
    why = f": {'; '.join(sorted(reasons))}" if reasons else ""
    return f":heavy_minus_sign: Ended before dispatch{why}."


# -- the rollout card ------------------------------------------------------------------------


def rollout_card(rollout: Rollout, plan: RolloutPlan) -> list[Block]:
    """The one parent message of a rollout, updated in place: a lane per track, and only the
    buttons that apply now. While in preflight it is the preflight card."""
    if rollout.phase is Phase.PREFLIGHT:
        return preflight_card(rollout, plan)
    blocks: list[Block] = [
        _header(f"Rollout {rollout.tag} · {rollout.phase}"),
        _context(" · ".join(_card_facts(rollout))),
    ]
    for track in rollout.tracks:
        plan_track = plan.track(track.name)
        lines = [_lane_title(track, plan_track)]
        for stage in track.stages:
            lines.extend(_stage_lines(stage, plan_track))
        blocks.append({"type": "divider"})
        blocks.extend(_sections(lines))
        blocks.extend(_actions(_lane_buttons(rollout, track, plan_track)))
    return _fit(blocks, "`/rollout status` shows every track")


def _card_facts(rollout: Rollout, *, preflight: bool = True) -> list[str]:
    facts = [f"Started by <@{rollout.started_by}>"]
    if rollout.run_id is not None and rollout.run_url:
        facts.append(f"<{rollout.run_url}|run {rollout.run_id}>")
    elif rollout.phase is Phase.DISPATCHING:
        facts.append("dispatching…")
    if rollout.ended_at is not None:
        facts.append(f"ended {slack_time(rollout.ended_at)}")
    if preflight:
        facts.append(_preflight_summary(rollout))
    return facts


def _lane_buttons(rollout: Rollout, track: Track, plan_track: PlanTrack) -> list[dict[str, Any]]:
    if track.state is TrackState.COMPLETED and plan_track.gate is GateKind.RELAY:
        # Roll back after the track completed: a redeploy of the previous good release, whose
        # confirm dialog (naming both tags) opens on click, when the previous tag is looked up.
        value = ButtonValue(rollout_id=rollout.id, track=track.name, version=rollout.version)
        return [_button("Roll back to the previous release…", Action.REDEPLOY, value)]
    if rollout.phase is not Phase.RUNNING or track.state is not TrackState.ACTIVE:
        return []
    current = track.current
    value = ButtonValue(
        rollout_id=rollout.id,
        track=track.name,
        stage=current.key if current else None,
        version=rollout.version,
    )
    buttons: list[dict[str, Any]] = []
    if current is not None:
        spec = plan_track.stage(current.key)
        following = plan_track.next_stage(current.key)
        if current.state is StageState.HOLDING and following is not None:
            held = value.model_copy(update={"hold": hold_of(current)})
            buttons.append(_promote(rollout, current, spec, following, held))
        if current.state is StageState.OBSERVING or gate_missed(current):
            label = f"Extend window (+{format_duration(EXTEND_STEP)})"
            buttons.append(_button(label, Action.EXTEND_WINDOW, value))
            buttons.append(_button("Extend by…", Action.EXTEND_CUSTOM, value))
        gated = (StageState.OBSERVING, StageState.EVALUATING, StageState.HOLDING)
        if current.state in gated and not isinstance(plan_track.metrics, ManualMetrics):
            buttons.append(_button("Re-evaluate now", Action.REEVALUATE, value))
        if current.state is StageState.EVALUATING and isinstance(plan_track.metrics, ManualMetrics):
            buttons.append(_button("Enter figures", Action.ENTER_FIGURES, value, style="primary"))
    buttons.append(_stop(rollout, track, plan_track, value))
    return buttons


def _promote(
    rollout: Rollout, stage: Stage, spec: PlanStage, following: PlanStage, value: ButtonValue
) -> dict[str, Any]:
    confirm = None
    if gate_missed(stage):
        confirm = _confirm(
            "Promote without a gate?",
            f"The {spec.label} gate never ran (see the thread). Promoting approves "
            f"{following.label} for {rollout.tag} without a verdict.",
            "Promote anyway",
            danger=True,
        )
    elif stage.verdict is not None and stage.verdict.verdict is Verdict.INCONCLUSIVE:
        confirm = _confirm(
            "Override an inconclusive gate?",
            f"The {spec.label} gate was INCONCLUSIVE ({stage.verdict.summary}). Promoting "
            f"overrides it and approves {following.label} for {rollout.tag} without a verdict.",
            "Promote anyway",
            danger=True,
        )
    return _button(
        f"Promote to {following.label}", Action.PROMOTE, value, style="primary", confirm=confirm
    )


def _stop(
    rollout: Rollout, track: Track, plan_track: PlanTrack, value: ButtonValue
) -> dict[str, Any]:
    failure = plan_track.on_failure.job
    if plan_track.gate is GateKind.RELAY:
        confirm = _confirm(
            f"Roll back {plan_track.label}?",
            f"Stops {rollout.tag} on {plan_track.label}: the next stage is rejected and "
            f"{failure} is approved. This cannot be undone.",
            "Roll back",
            danger=True,
        )
        return _button("Roll back", Action.ROLLBACK, value, style="danger", confirm=confirm)
    reached = _reached(track, plan_track)
    stays = f"the release stays on the {reached}" if reached else "no ring was reached yet"
    confirm = _confirm(
        f"Trip the kill-switch of {plan_track.label}?",
        f"Stops promotion of {rollout.tag} for good: {stays}, the next ring is rejected and "
        f"{failure} is approved.",
        "Trip the kill-switch",
        danger=True,
    )
    return _button("Kill-switch", Action.KILL, value, style="danger", confirm=confirm)


def rollout_text(rollout: Rollout, plan: RolloutPlan) -> str:
    """The card's plain-text fallback (notifications, screen readers)."""
    lanes = []
    for track in rollout.tracks:
        plan_track = plan.track(track.name)
        lane = f"{plan_track.label}: {track_standing(track, plan_track)}"
        current = track.current
        if track.state is TrackState.ACTIVE and current is not None:
            spec = plan_track.stage(current.key)
            lane += f" ({_stage_words(current, spec, plan_track)})"
        lanes.append(lane)
    return _clip(f"Rollout {rollout.tag} ({rollout.phase}). " + ". ".join(lanes), MAX_TEXT)


# -- /rollout status and history -------------------------------------------------------------


def _status_lines(rollout: Rollout, plan: RolloutPlan) -> list[str]:
    facts = [f"*{rollout.tag}* · {rollout.phase}", *_card_facts(rollout, preflight=False)]
    lines = [" · ".join(facts)]
    for track in rollout.tracks:
        plan_track = plan.track(track.name)
        line = f"• {_lane_title(track, plan_track)}"
        current = track.current
        if track.state is TrackState.ACTIVE and current is not None:
            spec = plan_track.stage(current.key)
            line += f": {_stage_words(current, spec, plan_track)}"
            if current.verdict is not None:
                line += f"; gate {verdict_words(current.verdict)}: {current.verdict.summary}"
        lines.append(line)
    return lines


def status_blocks(rollouts: Sequence[Rollout], plan_for: PlanFor) -> list[Block]:
    """`/rollout status`: the active rollouts and where each of their tracks stands."""
    active = [rollout for rollout in rollouts if rollout.active]
    if not active:
        return [_section("No active rollouts.")]
    blocks: list[Block] = [_header("Active rollouts")]
    for rollout in active:
        blocks.extend(_sections(_status_lines(rollout, plan_for(rollout))))
    return _fit(blocks, "finish or cancel a rollout to see the others")


def history_blocks(rollouts: Sequence[Rollout], plan_for: PlanFor) -> list[Block]:
    """`/rollout history`: the last rollouts, in the order given, and how each track ended."""
    if not rollouts:
        return [_section("No rollouts yet.")]
    blocks: list[Block] = [_header("Recent rollouts")]
    for rollout in rollouts:
        plan = plan_for(rollout)
        when = (
            f"ended {slack_time(rollout.ended_at)}"
            if rollout.ended_at is not None
            else str(rollout.phase)
        )
        lines = [
            f"*{rollout.tag}* · started {slack_time(rollout.created_at)} by "
            f"<@{rollout.started_by}> · {when}"
        ]
        lines.extend(f"• {_lane_title(track, plan.track(track.name))}" for track in rollout.tracks)
        blocks.extend(_sections(lines))
    return _fit(blocks, "`/rollout history <tag>` shows one rollout")


# -- the manual-figures modal ------------------------------------------------------------------


def _number_input(
    block_id: str, label: str, hint: str, *, decimal: bool, optional: bool = False
) -> Block:
    return {
        "type": "input",
        "block_id": block_id,
        "optional": optional,
        "label": _plain(label, 2000),
        "hint": _plain(hint, _MAX_HINT),
        "element": {
            "type": "number_input",
            "action_id": FIGURE_ACTION,
            "is_decimal_allowed": decimal,
            "min_value": "0",
        },
    }


def figures_modal(rollout: Rollout, plan: RolloutPlan, track: str, stage: str) -> dict[str, Any]:
    """The modal in which an approver types the figures observed during a stage's window."""
    plan_track = plan.track(track)
    spec = plan_track.stage(stage)
    observed = rollout.track(track).stage(stage)
    thresholds = plan_track.thresholds
    baseline = plan_track.metrics.baseline_crash_rate
    limit = format_rate(exact_product(baseline, thresholds.crash_multiplier))
    fails = "rolls back" if plan_track.gate is GateKind.RELAY else "trips the kill-switch"
    intro = f"*{rollout.tag}* · {plan_track.label} · {_stage_name(spec)}"
    if observed.window_started_at is not None and observed.window_ends_at is not None:
        intro += (
            f"\nWindow: {slack_time(observed.window_started_at)} to "
            f"{slack_time(observed.window_ends_at)}"
        )
    blocks: list[Block] = [
        _section(intro),
        _number_input(
            CRASH_RATE_BLOCK,
            "Observed crash rate",
            f"A fraction: 0.01 = 1%. The baseline is {format_rate(baseline)}; the gate {fails} "
            f"above {limit} ({format_rate(thresholds.crash_multiplier)}x the baseline).",
            decimal=True,
        ),
    ]
    if plan_track.gate is GateKind.RELAY and thresholds.error_threshold is not None:
        blocks.append(
            _number_input(
                ERROR_RATE_BLOCK,
                "Observed error rate",
                "A fraction: 0.01 = 1% (errors / requests). The gate rolls back above "
                f"{format_rate(thresholds.error_threshold)}.",
                decimal=True,
            )
        )
    sample_hint = "How many requests or sessions the rates were measured on."
    if thresholds.min_sample > 0:
        sample_hint += f" Below {thresholds.min_sample} the gate gives no verdict."
    blocks.append(
        _number_input(SAMPLE_BLOCK, "Sample size", sample_hint, decimal=False, optional=True)
    )
    metadata = FiguresMetadata(
        rollout_id=rollout.id, track=track, stage=stage, channel_id=rollout.channel_id
    )
    return {
        "type": "modal",
        "callback_id": str(Callback.FIGURES),
        "private_metadata": metadata.encode(),
        "title": _plain("Observed figures", 24),
        "submit": _plain("Evaluate gate", 24),
        "close": _plain("Cancel", 24),
        "blocks": blocks,
    }


_WHOLE = re.compile(r"[0-9]{1,18}")
_MAX_NUMBER = 40


def _submitted(values: Mapping[str, Any], block_id: str) -> str:
    block = values.get(block_id)
    entry = block.get(FIGURE_ACTION) if isinstance(block, Mapping) else None
    value = entry.get("value") if isinstance(entry, Mapping) else None
    return value.strip() if isinstance(value, str) else ""


def _rate(values: Mapping[str, Any], block_id: str, name: str, errors: dict[str, str]) -> Decimal:
    """A rate in 0..1; on a bad one, records the error under the block id and returns 0."""
    text = _submitted(values, block_id)
    try:
        if len(text) > _MAX_NUMBER:
            raise UsageError(f"{name} is too long for a rate; expected a fraction such as 0.001")
        rate = parse_rate(name, text)
    except UsageError as error:
        errors[block_id] = str(error)
        return Decimal(0)
    if rate > 1:
        errors[block_id] = f"{name} {text} is above 1 (100%): rates are fractions, 0.01 = 1%"
    return rate


def parse_figures(values: Mapping[str, Any]) -> tuple[Figures | None, dict[str, str]]:
    """The figures of a submitted figures modal (its `view.state.values`), or the errors keyed
    by block id for Slack's `response_action: errors`. The error rate is read when the modal
    asked for it (Slack submits every input block, empty ones included)."""
    errors: dict[str, str] = {}
    crash = _rate(values, CRASH_RATE_BLOCK, "Crash rate", errors)
    error_rate = None
    if ERROR_RATE_BLOCK in values:
        error_rate = _rate(values, ERROR_RATE_BLOCK, "Error rate", errors)
    sample = None
    text = _submitted(values, SAMPLE_BLOCK)
    if text:
        if _WHOLE.fullmatch(text):
            sample = int(text)
        else:
            shown = repr(_clip(text, _MAX_NUMBER))
            errors[SAMPLE_BLOCK] = f"Sample size {shown} is not a whole number such as 2500"
    if errors:
        return None, errors
    return Figures(crash_rate=crash, error_rate=error_rate, sample=sample), {}
