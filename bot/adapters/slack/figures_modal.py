"""Block Kit of the manual-figures modal, in which approvers type the figures observed during a
stage's window, and the parser of what they submitted (validated before Slack is answered)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from slack_sdk.models.blocks import Block, InputBlock, NumberInputElement

from bot.adapters.slack.actions import Callback, FiguresMetadata
from bot.adapters.slack.blocks import ViewJson, modal, plain, section, submitted
from bot.adapters.slack.limits import INPUT_HINT, INPUT_LABEL, clip
from bot.adapters.slack.messages import slack_time
from bot.adapters.slack.rollout_words import stage_name
from bot.domain.controls import window_key
from bot.domain.gate import GateKind, exact_product, format_rate
from bot.domain.metrics import Figures
from bot.domain.plan import RolloutPlan
from bot.domain.rates import InvalidRate, parse_rate
from bot.domain.rollout import Rollout

# One input block per figure, each with the same action id.
CRASH_RATE_BLOCK = "crash_rate"
ERROR_RATE_BLOCK = "error_rate"
SAMPLE_BLOCK = "sample"
FIGURE_ACTION = "figure"


def _number_input(
    block_id: str, label: str, hint: str, *, decimal: bool, optional: bool = False
) -> InputBlock:
    return InputBlock(
        block_id=block_id,
        optional=optional,
        label=plain(label, INPUT_LABEL),
        hint=plain(hint, INPUT_HINT),
        element=NumberInputElement(
            action_id=FIGURE_ACTION, is_decimal_allowed=decimal, min_value="0"
        ),
    )


def figures_modal(rollout: Rollout, plan: RolloutPlan, track: str, stage: str) -> ViewJson:
    """The modal in which an approver types the figures observed during a stage's window."""
    plan_track = plan.track(track)
    spec = plan_track.stage(stage)
    observed = rollout.track(track).stage(stage)
    thresholds = plan_track.thresholds
    baseline = plan_track.metrics.baseline_crash_rate
    limit = format_rate(exact_product(baseline, thresholds.crash_multiplier))
    fails = "rolls back" if plan_track.gate is GateKind.RELAY else "trips the kill-switch"
    intro = f"*{rollout.tag}* · {plan_track.label} · {stage_name(spec)}"
    since = observed.observed_since
    if since is not None and observed.window_ends_at is not None:
        intro += f"\nWindow: {slack_time(since)} to {slack_time(observed.window_ends_at)}"
    blocks: list[Block] = [
        section(intro),
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
        rollout_id=rollout.id,
        track=track,
        stage=stage,
        channel_id=rollout.channel_id,
        window=window_key(observed),
    )
    return modal(
        "Observed figures",
        blocks,
        submit="Evaluate gate",
        callback_id=Callback.FIGURES,
        private_metadata=metadata.encode(),
    )


_WHOLE = re.compile(r"[0-9]{1,18}")
_MAX_NUMBER = 40


def _rate(values: Mapping[str, Any], block_id: str, name: str, errors: dict[str, str]) -> Decimal:
    """A rate in 0..1; on a bad one, records the error under the block id and returns 0."""
    text = submitted(values, block_id, FIGURE_ACTION).strip()
    try:
        if len(text) > _MAX_NUMBER:
            raise InvalidRate(f"{name} is too long for a rate; expected a fraction such as 0.001")
        rate = parse_rate(name, text)
    except InvalidRate as error:
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
    text = submitted(values, SAMPLE_BLOCK, FIGURE_ACTION).strip()
    if text:
        if _WHOLE.fullmatch(text):
            sample = int(text)
        else:
            shown = repr(clip(text, _MAX_NUMBER))
            errors[SAMPLE_BLOCK] = f"Sample size {shown} is not a whole number such as 2500"
    if errors:
        return None, errors
    return Figures(crash_rate=crash, error_rate=error_rate, sample=sample), {}
