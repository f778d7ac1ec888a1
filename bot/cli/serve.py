"""`rollout-bot serve`: the bot over HTTP (POST /slack/events, POST /github/webhook,
GET /healthz, GET /readyz).

It refuses to start on a database whose migrations are not at this version's head. On SIGTERM
(or SIGINT) it drains: `/readyz` answers 503 at once, the scheduler stops claiming and gives
back its timers, the requests in flight finish (within SHUTDOWN_GRACE_SECONDS), then the work
Slack was told is accepted (`handlers.ack_first`, within SHUTDOWN_GRACE_SECONDS again), then it
closes the Slack session and the database engine and exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from functools import partial

from aiohttp import web

from bot.adapters.slack.socket_mode import SocketRefused
from bot.bootstrap import create_app
from bot.cli.database import refused, serve_refusal
from bot.cli.settings import OPEN_METRICS, load, unguarded
from bot.config import Settings
from bot.logs import configure_logging
from handlers.app_keys import READINESS

log = logging.getLogger(__name__)


def main() -> int:
    settings = load(Settings)
    if settings is None:
        return 2
    return run(settings, socket_mode=False)


def run(settings: Settings, *, socket_mode: bool) -> int:
    """Serve until SIGTERM or SIGINT, then drain and exit 0; 2 when the database's migrations
    are behind or ahead of this version (one line says which, and what to do), when it
    cannot listen on HOST:PORT (one line), or when Slack refuses the app-level token of
    `socket` (one line, naming Slack's error)."""
    if refused(partial(serve_refusal, settings.database_url), nothing="served"):
        return 2
    configure_logging(
        level=settings.log_level, fmt=settings.log_format, secrets=settings.secret_values()
    )
    if (why := unguarded(settings)) is not None:
        log.warning("%s: %s", OPEN_METRICS, why)
    try:
        asyncio.run(_serve(create_app(settings, socket_mode=socket_mode), settings))
    except OSError as error:  # the port is taken, or the host is not this machine's
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, error)
        return 2
    except SocketRefused as refusal:  # `socket`: the app-level token, refused by Slack
        log.error("%s", refusal)
        return 2
    return 0


async def _serve(app: web.Application, settings: Settings) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_grace_seconds)
    try:
        # A start that fails part way (Slack refusing the app-level token) closes what it
        # had opened (the database, the scheduler) in the `finally`.
        await runner.setup()
        # What start-up made (modules, the ORM's mappings, the clients) lives as long as the
        # process: out of the collector's sight, a full collection no longer walks it all, a
        # pause of the event loop that fell on whichever acks were in flight (docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        await web.TCPSite(runner, settings.host, settings.port).start()
        log.info("serving on %s:%d", settings.host, settings.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("asked to stop")
        await app[READINESS].drain()
    finally:
        # Stops listening, lets the requests in flight and their work finish, then closes
        # every resource (`bot.bootstrap.create_app`).
        await runner.cleanup()
    log.info("stopped")
