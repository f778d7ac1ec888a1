"""`rollout-bot backtest --plan plan.yml --from 2026-11-01 --to 2026-11-30 [--stage S]
[--track T] [--tag TAG] [--limit N] [--json]`: replay the plan's gates over past Prometheus data
and print how often each would have said PASS, ROLLBACK or INCONCLUSIVE, and when.

Exit status: 0 the replay ran (whatever the verdicts: it is a report, not a gate); 2 bad usage
or input (one line on stderr, nothing on stdout); 1 Prometheus cannot be reached or answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, NoReturn

from bot.adapters.metrics.live import MetricsProblem, utc_now
from bot.adapters.metrics.prometheus import PrometheusSource
from bot.adapters.metrics.prometheus_api import check_clock, public_url
from bot.cli.options import OperatorParser
from bot.cli.settings import release_tag
from bot.config import ConfigError, PrometheusSettings, load_settings
from bot.domain.durations import format_duration
from bot.domain.errors import RolloutError
from bot.domain.gate import GateKind, GateReason, Verdict, gate_reason_words
from bot.domain.gate_report import metric_rows, verdict_reason
from bot.domain.plan import PrometheusMetrics
from bot.domain.rollout import verdict_to_json
from bot.domain.service import DEFAULT_SERVICE, SERVICE_NAME
from bot.domain.text import whole_number
from bot.logs import configure_logging, password_forms
from bot.plan_file import load_plan
from bot.services.backtest import (
    Backtest,
    InvalidBacktest,
    JudgedWindow,
    Replay,
    StageBacktest,
    backtest,
    prepare,
)

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
DEFAULT_LIMIT = 10
PROG = "rollout-bot backtest"


class UsageError(RolloutError):
    """Bad usage or input; the message is the one line printed to stderr."""

    code = "usage"


class _Parser(OperatorParser):
    """argparse, but a usage error is one line (UsageError), not the usage block and a line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def main(args: Sequence[str], *, clock: Callable[[], datetime] = utc_now) -> int:
    """Run the backtest on `args` (after `backtest`); returns the exit status."""
    try:
        options = argument_parser().parse_args(list(args))
        replay = Replay(
            start=parse_moment("--from", options.start, end_of_day=False),
            end=parse_moment("--to", options.end, end_of_day=True),
            track=options.track,
            stage=options.stage,
            tag=options.tag,
            service=options.service,
        )
        settings = _settings()
        plan = load_plan(Path(options.plan))
        prepared = prepare(plan, replay, now=clock())
    except RolloutError as error:  # bad usage, a bad plan, a range or stage it cannot replay
        sys.stderr.write(f"{PROG}: {error.message}\n")
        return EXIT_USAGE
    url, within = str(settings.prometheus_url), settings.gate_metrics_timeout
    # A window without data is in the report; the source's warning about it is not for stderr.
    configure_logging(level="ERROR", fmt="text", secrets=sorted(password_forms(url)))

    def source(metrics: PrometheusMetrics) -> PrometheusSource:
        return PrometheusSource(
            metrics, url=url, clock=clock, charts=False, compare_clocks=False, within=within
        )

    async def read_and_judge() -> Backtest:
        await check_clock(url, within=within)  # whether it answers: the windows are past ones
        return await backtest(prepared, sources=source)

    try:
        result = asyncio.run(read_and_judge())
    except MetricsProblem as problem:
        sys.stderr.write(f"{PROG}: {problem}\n")
        return EXIT_UNREACHABLE
    except InvalidBacktest as error:
        sys.stderr.write(f"{PROG}: {error.message}\n")
        return EXIT_USAGE
    if options.json:
        json.dump(to_json(result, limit=options.limit, prometheus=url), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(table(result, limit=options.limit, prometheus=url))
    return EXIT_OK


def argument_parser() -> _Parser:
    """The command's arguments; a usage error raises UsageError (tests/test_docs.py reads the
    docs' examples with them)."""
    parser = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description="Replay the plan's gates over past Prometheus data (docs/backtest.md).",
    )
    parser.add_argument("--plan", required=True, help="the rollout plan (YAML)")
    parser.add_argument(
        "--from", dest="start", required=True, help="start: 2026-11-01 (UTC) or an ISO time"
    )
    parser.add_argument(
        "--to", dest="end", required=True, help="end: 2026-11-30 (the whole day) or an ISO time"
    )
    parser.add_argument("--track", help="replay this track only (relay, desktop...)")
    parser.add_argument("--stage", help="replay this stage only (canary, half...)")
    parser.add_argument(
        "--tag", type=release_tag, help="what $tag stands for in the plan's queries"
    )
    parser.add_argument(
        "--service",
        type=_service,
        default=DEFAULT_SERVICE,
        help=f"what $service stands for in the plan's queries ({DEFAULT_SERVICE})",
    )
    parser.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        help=f"list at most this many windows that did not pass, per stage ({DEFAULT_LIMIT})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _service(text: str) -> str:
    if SERVICE_NAME.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text[:64]!r} is not a service's name (lower case letters, digits and dashes)"
        )
    return text


def _limit(text: str) -> int:
    if (limit := whole_number(text)) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 0")
    return limit


def _settings() -> PrometheusSettings:
    try:
        return load_settings(PrometheusSettings)
    except ConfigError as error:
        raise UsageError("; ".join(error.problems)) from None


def parse_moment(flag: str, text: str, *, end_of_day: bool) -> datetime:
    """A date (`2026-11-30`: midnight UTC, or the next midnight for the end of a range) or an
    ISO 8601 time (`2026-11-30T12:00`, UTC unless it gives an offset)."""
    try:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            moment = datetime.combine(day, time(), UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a date, or at the calendar's edge (9999-12-31)
        raise UsageError(
            f"{flag} {text!r} is not a date or time (2026-11-01, 2026-11-01T09:30Z)"
        ) from None


def table(result: Backtest, *, limit: int, prometheus: str) -> str:
    """The report for people: per stage, the verdicts' counts and the windows that did not pass."""
    lines = [
        f"Backtest from {_moment(result.start)} to {_moment(result.end)} UTC "
        f"(Prometheus {public_url(prometheus)})"
    ]
    lines += [f"Not replayed: {track} (metrics source {src})" for track, src in result.skipped]
    for stage in result.stages:
        lines += ["", *_stage_lines(stage, limit)]
    return "\n".join(lines) + "\n"


def _stage_lines(stage: StageBacktest, limit: int) -> list[str]:
    total = len(stage.windows)
    counts = stage.counts()
    lines = [
        f"{stage.track_label}, {stage.stage_label} ({stage.track}/{stage.stage}): "
        f"{total:,} windows of {format_duration(stage.window)}"
    ]
    for verdict in _verdicts(stage):
        reasons = ", ".join(
            f"{gate_reason_words(reason)} {count:,}"
            for reason, count in stage.reasons(verdict).most_common()
        )
        share = f"{counts[verdict] / total:.1%}"
        row = f"  {verdict.value:<13}{counts[verdict]:>7,}  {share:>6}"
        lines.append(f"{row}   {reasons}" if reasons else row)
    failed = stage.not_passed()
    if failed:
        lines.append("  not PASS:")
    for judged in failed[:limit]:
        lines.append(f"    {_span(judged)}  {judged.verdict.verdict.value:<13}{_figures(judged)}")
    if len(failed) > limit:
        lines.append(f"    … and {len(failed) - limit:,} more")
    return lines


def to_json(result: Backtest, *, limit: int, prometheus: str) -> dict[str, Any]:
    """The report for machines: the same counts, and the same bounded list of windows."""
    return {
        "from": result.start.isoformat(),
        "to": result.end.isoformat(),
        "prometheus": public_url(prometheus),
        "skipped": [{"track": track, "source": src} for track, src in result.skipped],
        "stages": [
            {
                "track": stage.track,
                "stage": stage.stage,
                "window": format_duration(stage.window),
                "windows": len(stage.windows),
                "verdicts": {v.value: stage.counts()[v] for v in _verdicts(stage)},
                "reasons": {
                    v.value: {r.value: n for r, n in stage.reasons(v).most_common()}
                    for v in _verdicts(stage)
                    if v is not Verdict.PASS
                },
                "not_passed": [
                    {
                        "start": judged.start.isoformat(),
                        "end": judged.end.isoformat(),
                        "summary": _figures(judged),
                        "problems": _problems(judged),
                        **verdict_to_json(judged.verdict),
                    }
                    for judged in stage.not_passed()[:limit]
                ],
                "more": max(0, len(stage.not_passed()) - limit),
            }
            for stage in result.stages
        ],
    }


def _verdicts(stage: StageBacktest) -> tuple[Verdict, ...]:
    """PASS, the track's failing verdict, INCONCLUSIVE: each shown even when none said it."""
    gate = stage.windows[0].verdict.gate
    failing = Verdict.ROLLBACK if gate is GateKind.RELAY else Verdict.KILL_SWITCH
    return (Verdict.PASS, failing, Verdict.INCONCLUSIVE)


def _figures(judged: JudgedWindow) -> str:
    """The figures the verdict was decided on or, without data, why a figure is missing (no
    series, NaN, an error), in the gate card's words."""
    verdict = judged.verdict
    if verdict.reason is GateReason.NO_DATA:
        return verdict_reason(verdict, metric_rows(verdict, judged.reading))
    return verdict.summary


def _problems(judged: JudgedWindow) -> dict[str, str]:
    return {m.name: m.problem for m in judged.reading.metrics if m.problem is not None}


def _span(judged: JudgedWindow) -> str:
    start, end = judged.start.astimezone(UTC), judged.end.astimezone(UTC)
    shown = f"{end:%H:%M}" if end - start < timedelta(days=1) else _moment(end)
    return f"{_moment(start)}-{shown}"


def _moment(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}"
