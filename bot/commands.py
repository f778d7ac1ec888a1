"""The long-running and operator commands of `rollout-bot` (everything but `gate`)."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from bot.app import create_app
from bot.config import ConfigError, DatabaseSettings, Settings, load_settings
from bot.domain.durations import format_duration
from bot.logs import configure_logging
from storage.db import mask_database_url
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
