"""The long-running and operator commands of `rollout-bot` (everything but `gate`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot.app import create_app
from bot.audit import AuditTrail, Timeline, UnknownTag
from bot.config import ConfigError, DatabaseSettings, Settings, load_settings
from bot.domain.durations import format_duration
from bot.domain.metrics import QueryWindow
from bot.logs import configure_logging
from bot.metrics_sources import MetricsEndpoints, metrics_source
from bot.prometheus import PrometheusSource
from bot.sentry import SentrySource
from handlers.gate_views import plain_text
from storage.db import create_engine, create_session_factory, mask_database_url
from storage.migrate import upgrade


def _report(error: ConfigError) -> int:
    sys.stderr.write("configuration problems:\n")
    for problem in error.problems:
        sys.stderr.write(f"  - {problem}\n")
    return 2


def _run(settings: Settings, *, socket_mode: bool) -> int:
    configure_logging(
        level=settings.log_level, fmt=settings.log_format, secrets=settings.secret_values()
    )
    # run_app turns SIGTERM and SIGINT into a graceful shutdown that runs every cleanup.
    web.run_app(
        create_app(settings, socket_mode=socket_mode),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
    )
    return 0


def serve() -> int:
    try:
        settings = load_settings(Settings)
    except ConfigError as error:
        return _report(error)
    return _run(settings, socket_mode=False)


def socket() -> int:
    try:
        settings = load_settings(Settings)
    except ConfigError as error:
        return _report(error)
    token = settings.slack_app_token
    if token is None or not token.get_secret_value().startswith("xapp-"):
        return _report(
            ConfigError(["SLACK_APP_TOKEN: Socket Mode needs an app-level token (xapp-...)"])
        )
    return _run(settings, socket_mode=True)


def migrate() -> int:
    try:
        settings = load_settings(DatabaseSettings)
    except ConfigError as error:
        return _report(error)
    asyncio.run(upgrade(settings.database_url))
    sys.stdout.write(f"migrated {mask_database_url(settings.database_url)}\n")
    return 0


def check_config() -> int:
    try:
        settings = load_settings(Settings)
    except ConfigError as error:
        return _report(error)
    rows = settings.describe()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        sys.stdout.write(f"{name.ljust(width)}  {value}\n")
    plan = settings.plan()
    sys.stdout.write(f"\nplan: {settings.rollout_plan or 'built-in (Scriptum)'}\n")
    for name, track in plan.tracks.items():
        stages = " -> ".join(
            stage.label + (f" ({format_duration(stage.window)})" if stage.window else "")
            for stage in track.stages
        )
        sys.stdout.write(f"  {name}: {stages}; on failure {track.on_failure.environment}\n")
    return 0


def metrics(args: list[str]) -> int:
    """`rollout-bot metrics <stage> --tag <tag>`: read a stage's gate figures now, over a
    window of the stage's length ending now, and print them with the verdict they would give."""
    parser = argparse.ArgumentParser(
        prog="rollout-bot metrics",
        description="Print what a stage's gate would read now (for tuning queries).",
    )
    parser.add_argument("stage", help="the stage's key in the plan (canary, half, internal...)")
    parser.add_argument("--tag", required=True, help="the release tag the queries are for")
    parser.add_argument("--track", help="the track, when several have a stage of that key")
    try:
        options = parser.parse_args(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        settings = load_settings(Settings)
    except ConfigError as error:
        return _report(error)
    configure_logging(level="ERROR", fmt=settings.log_format, secrets=settings.secret_values())
    plan = settings.plan()
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
    if not isinstance(source, PrometheusSource | SentrySource):
        sys.stderr.write(
            f"rollout-bot metrics: the {name} track reads no live metrics "
            f"(source: {track.metrics.source})\n"
        )
        return 2
    now = datetime.now(UTC)
    start = now - stage.window
    window = QueryWindow(
        tag=options.tag, track=name, stage=stage.key, start=start, end=now, rollout_start=start
    )
    reading = asyncio.run(source.measure(window))
    verdict = track.evaluate_gate(
        baseline_crash=reading.baseline_crash,
        current_crash=reading.figures.crash_rate,
        current_error=reading.figures.error_rate,
        sample=reading.figures.sample,
    )
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


def audit(args: list[str]) -> int:
    """`rollout-bot audit <tag> [--json]`: the audit timeline of the tag's newest rollout, as
    lines or as JSON on stdout; exit 2 with a message for an unknown tag."""
    parser = argparse.ArgumentParser(
        prog="rollout-bot audit",
        description="Print the audit timeline of a release's newest rollout.",
    )
    parser.add_argument("tag", help="the release tag, as given to /rollout start")
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON")
    try:
        options = parser.parse_args(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        settings = load_settings(DatabaseSettings)
    except ConfigError as error:
        return _report(error)
    try:
        timeline = asyncio.run(_read_timeline(settings.database_url, options.tag))
    except UnknownTag as error:
        sys.stderr.write(f"rollout-bot audit: {error.message.replace('`', '')}\n")
        return 2
    except (SQLAlchemyError, OSError) as error:
        where = mask_database_url(settings.database_url)
        sys.stderr.write(f"rollout-bot audit: cannot read {where}: {type(error).__name__}\n")
        return 1
    if options.json:
        json.dump(timeline.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    sys.stdout.write(f"{timeline.tag} ({timeline.rollout_id}), started by {timeline.started_by}\n")
    for event in timeline.events:
        where = "/".join(part for part in (event.track, event.stage) if part)
        sys.stdout.write(
            f"{event.at.isoformat()}  {event.actor:<16} {event.action:<24} {event.result}"
            + (f"  [{where}]" if where else "")
            + "\n"
        )
    return 0


async def _read_timeline(database_url: str, tag: str) -> Timeline:
    engine = create_engine(database_url)
    try:
        return await AuditTrail(create_session_factory(engine)).timeline(tag)
    finally:
        await engine.dispose()
