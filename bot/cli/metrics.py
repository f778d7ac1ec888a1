"""`rollout-bot metrics <stage> --tag <tag>`: what a stage's gate would read now, for tuning the
plan's queries: its figures over a window of the stage's length ending now (with the track's
`metrics.settle`, that long ago), and the verdict."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from bot.adapters.metrics.live import LiveSource
from bot.adapters.metrics.sources import MetricsEndpoints, metrics_source
from bot.cli.options import OperatorParser
from bot.cli.settings import load_for_command, one_service, release_tag
from bot.domain.gate import GateVerdict
from bot.domain.gate_report import metric_rows, percent, times, verdict_reason, window_length
from bot.domain.metrics import QueryWindow, Reading, judge, window_ending
from bot.domain.plan import Stage, Track, settle_of


def argument_parser() -> argparse.ArgumentParser:
    """The command's arguments (tests/test_docs.py reads the docs' examples with them)."""
    parser = OperatorParser(
        prog="rollout-bot metrics",
        description="Print what a stage's gate would read now (for tuning queries).",
    )
    parser.add_argument("stage", help="the stage's key in the plan (canary, half, internal...)")
    parser.add_argument(
        "--tag", required=True, type=release_tag, help="the release tag the queries are for"
    )
    parser.add_argument("--track", help="the track, when several have a stage of that key")
    parser.add_argument("--service", help="the service, when the bot releases several")
    return parser


def latest_window(
    track: Track, name: str, stage: Stage, *, tag: str, service: str, now: datetime
) -> QueryWindow:
    """The latest window of the stage's length a gate would judge now: ending now, or with the
    track's `metrics.settle` that long ago, as a held stage's re-evaluation reads (the last
    minutes' figures are not all in yet: a crash reported at the app's next start)."""
    assert stage.window is not None  # only a stage with a window has a gate
    end = now - settle_of(track.metrics)
    return window_ending(end, stage.window, tag=tag, track=name, stage=stage.key, service=service)


def main(args: list[str]) -> int:
    options = argument_parser().parse_args(args)  # exits 2 with a usage line on bad arguments
    settings = load_for_command(log_level="ERROR")
    if settings is None:
        return 2
    service = one_service(settings, options.service, command="metrics")
    if service is None:
        return 2
    plan = service.plan
    found = [
        (name, track)
        for name, track in plan.tracks.items()
        if (options.track is None or name == options.track)
        and any(stage.key == options.stage for stage in track.stages)
    ]
    if len(found) != 1:
        stages = "; ".join(
            f"{name}: {', '.join(stage.key for stage in track.stages)}"
            for name, track in plan.tracks.items()
        )
        problem = "no track has" if not found else "several tracks have (name one with --track)"
        sys.stderr.write(f"rollout-bot metrics: {problem} a stage {options.stage!r} ({stages})\n")
        return 2
    name, track = found[0]
    stage = track.stage(options.stage)
    if stage.window is None:
        sys.stderr.write(
            f"rollout-bot metrics: {stage.label} has no observation window, so no gate\n"
        )
        return 2
    source = metrics_source(track.metrics, MetricsEndpoints.from_settings(settings))
    if not isinstance(source, LiveSource):
        sys.stderr.write(
            f"rollout-bot metrics: the {name} track reads no live metrics "
            f"(source: {track.metrics.source})\n"
        )
        return 2
    window = latest_window(
        track, name, stage, tag=options.tag, service=service.name, now=datetime.now(UTC)
    )
    reading = asyncio.run(source.measure(window))
    verdict = judge(track, reading)
    sys.stdout.write(
        plain_text(
            verdict=verdict,
            reading=reading,
            stage_label=stage.label,
            track_label=track.label,
            window=reading.window,
        )
    )
    return 0


def plain_text(
    *,
    verdict: GateVerdict,
    reading: Reading | None,
    stage_label: str,
    track_label: str,
    window: tuple[datetime, datetime] | None,
) -> str:
    """The gate card for a terminal: the verdict line, then a line per metric and its query."""
    rows = metric_rows(verdict, reading)
    # A reading for tuning the queries: nothing was rolled back or tripped.
    why = verdict_reason(verdict, rows, acted=False)
    head = f"{stage_label} gate: {verdict.verdict}. {why}"
    lines = [f"{track_label}: {head}", f"  window: {_window(window)}"]
    for row in rows:
        baseline = f"   baseline {row.baseline_shown}" if row.metric != "error_rate" else ""
        sample = "unknown" if row.sample is None else f"{row.sample:,}"
        lines.append(
            f"  {row.name.lower():<10}  {percent(row.value):>9}{baseline}   "
            f"limit {percent(row.limit)} ({row.rule})   {times(row.ratio)} the limit   "
            f"sample {sample}"
        )
        if row.problem:
            lines.append(f"    problem: {row.problem}")
        if row.link:
            lines.append(f"    query: {row.link}")
    return "\n".join(lines) + "\n"


def _window(window: tuple[datetime, datetime] | None) -> str:
    if window is None:
        return "unknown"
    start, end = window
    return (
        f"{window_length(start, end)}, {start.astimezone(UTC):%Y-%m-%d %H:%M:%S} "
        f"to {end.astimezone(UTC):%H:%M:%S} UTC"
    )
