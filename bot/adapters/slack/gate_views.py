"""The gate card: a verdict a release engineer reads in two seconds, then every figure behind it.

For each metric: its value, baseline, limit, ratio to the limit, sample, window and a link to
the query. Pure functions of the verdict and the reading (the rows and words are
`bot.domain.gate_report`'s, shared with the terminal's `rollout-bot metrics`).
"""

from __future__ import annotations

from datetime import datetime

from slack_sdk.models.blocks import Block

from bot.adapters.slack.blocks import BlockJson, as_json, context, section
from bot.adapters.slack.messages import slack_time
from bot.domain.gate import GateVerdict, Verdict
from bot.domain.gate_report import (
    MetricRow,
    metric_rows,
    percent,
    times,
    verdict_reason,
    window_length,
)
from bot.domain.late_gate import LateGate
from bot.domain.metrics import Reading

MAX_LINK = 2500
_EMOJI = {
    Verdict.PASS: ":large_green_circle:",
    Verdict.INCONCLUSIVE: ":large_yellow_circle:",
    Verdict.ROLLBACK: ":red_circle:",
    Verdict.KILL_SWITCH: ":red_circle:",
}
_SOURCE_NAMES = {"prometheus": "Prometheus", "sentry": "Sentry"}


def headline(verdict: GateVerdict, stage_label: str) -> str:
    """The verdict in words, with the one figure that decided it."""
    rows = metric_rows(verdict, None)
    return _headline(verdict, stage_label, rows)


def _headline(verdict: GateVerdict, stage_label: str, rows: list[MetricRow]) -> str:
    lead = f"{_EMOJI[verdict.verdict]} *{stage_label} gate: {verdict.verdict}*."
    return f"{lead} {verdict_reason(verdict, rows)}"


def gate_card(
    *,
    verdict: GateVerdict,
    reading: Reading | None,
    stage_label: str,
    track_label: str,
    window: tuple[datetime, datetime] | None,
    chart_note: str | None = None,
) -> list[BlockJson]:
    """The card posted in the rollout's thread when a gate is evaluated."""
    rows = metric_rows(verdict, reading)
    blocks: list[Block] = [section(_headline(verdict, stage_label, rows))]
    if reading is not None and reading.late is not None:
        blocks.append(context(_late(reading.late)))
    where = _window_slack(window)
    for row in rows:
        baseline = f"baseline {row.baseline_shown} · " if row.metric != "error_rate" else ""
        sample = "—" if row.sample is None else f"{row.sample:,}"
        blocks.append(
            section(
                f"*{row.name}* ({track_label}): *{percent(row.value)}*, {_versus(row)}\n"
                f"{baseline}sample {sample} · window {where}"
            )
        )
        notes = []
        if row.link is not None and len(row.link) <= MAX_LINK:
            source = _SOURCE_NAMES.get(reading.source if reading else "", "the source")
            notes.append(f"<{row.link}|Open the query in {source}>")
        if row.problem:
            notes.append(f":warning: {row.problem}")
        if notes:
            blocks.append(context(" · ".join(notes)))
    source = reading.source if reading is not None else "entered by hand"
    footer = [f"Figures: {source}"]
    if chart_note:
        footer.append(chart_note)
    blocks.append(context(" · ".join(footer)))
    return as_json(blocks)


def gate_card_text(verdict: GateVerdict, stage_label: str) -> str:
    """The notification fallback: the headline without mrkdwn."""
    return headline(verdict, stage_label).replace("*", "")


def _versus(row: MetricRow) -> str:
    limit = f"{percent(row.limit)} ({row.rule})"
    return f"limit {limit}" if row.ratio is None else f"*{times(row.ratio)}* its limit of {limit}"


def _window_slack(window: tuple[datetime, datetime] | None) -> str:
    if window is None:
        return "unknown"
    start, end = window
    return f"{window_length(start, end)} ending {slack_time(end)}"


def _late(late: LateGate) -> str:
    """Which stretch a gate run late (the bot down, its timers behind) decided on, and why."""
    (start, end), (latest_start, latest_end) = late.window, late.latest
    deciding = "the latest stretch's" if late.latest_decided else "its window's"
    return (
        f":hourglass: Judged {window_length(end, latest_end)} after its window ended: "
        f"its window ({window_length(start, end)} ending {slack_time(end)}) gave "
        f"{late.window_verdict}, the latest {window_length(latest_start, latest_end)} "
        f"(ending {slack_time(latest_end)}) gave {late.latest_verdict}. The worse decides: "
        f"the figures below are {deciding}."
    )
