"""The app factory: `create_app(settings)` wires configuration, storage, Slack and GitHub.

Resources open and close in `cleanup_ctx`, in order: the database (migrated beforehand by
`rollout-bot migrate`), the services (and the chart worker's process, started in the
background with them), then (in Socket Mode) the Slack connection. Routes:
`POST /slack/events` (not in Socket Mode), `POST /github/webhook`, `GET /healthz`,
`GET /readyz`, `GET /metrics`.

Each service is wired by `bot.wiring.wire_service` (its GitHub repository, plan, approvers,
lane and controls) on what every service shares (`Shared`: the database, Slack, the outbox,
the timers), which this module opens.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from functools import partial

import aiohttp
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.adapters.chart_worker import ChartWorker
from bot.adapters.charts import charts_enabled
from bot.adapters.github.workers import GitHubWorkers
from bot.adapters.slack import messages
from bot.adapters.slack.bolt_app import bolt_app
from bot.adapters.slack.calls import CallCounter, web_api_retries
from bot.adapters.slack.http import SLACK_TIMEOUT_S, slack_session
from bot.adapters.slack.members import channel_members
from bot.adapters.slack.notifier import SlackNotifier
from bot.adapters.slack.socket_mode import connected
from bot.adapters.telemetry import PrometheusTelemetry
from bot.config import Settings
from bot.domain.service import Service
from bot.domain.unfollowed_runs import TIMER as UNFOLLOWED_TIMER
from bot.services.audit import AuditTrail
from bot.services.authz import Memberships
from bot.services.clock import LoopClock, SystemClock
from bot.services.directory import EveryService, ServiceDirectory
from bot.services.lapsed_reruns import lapsed_reruns_sweep
from bot.services.leases import replica_name
from bot.services.outbox import Outbox
from bot.services.polling import Sweep
from bot.services.readiness import Readiness
from bot.services.retention import Retention
from bot.services.scheduler import TIMER_WORKERS, Scheduler
from bot.version import build
from bot.wiring import Shared, Wired, clock_watch, database_backlog, request_budgets, wire_service
from handlers import ack_first, github_webhook, health, metrics, register_all, slack_events
from handlers.ack_first import AckFirst
from handlers.app_keys import (
    ACKS,
    BOLT,
    DIRECTORY,
    READINESS,
    REFUSALS,
    SERVICES,
    SETTINGS,
    TELEMETRY,
)
from handlers.bodies import HANDLER_ARGS
from handlers.refusals import RefusalLog
from storage.audit_log import AuditLog
from storage.claims import ClaimStore
from storage.db import Database, create_engine, create_session_factory, mask_database_url, ping
from storage.deliveries import DeliveryLog
from storage.lane_holds import LaneHoldStore
from storage.leases import ServerOffset
from storage.looks import LookStore
from storage.migrate import serving_problem
from storage.outbox import OutboxStore
from storage.protection_rules import ProtectionRuleStore
from storage.rollout_store import RolloutStore
from storage.timers import TimerStore

log = logging.getLogger(__name__)

GITHUB_WORKERS = 8
"""Threads for every service's GitHub calls (PyGithub is synchronous): the poller holds 7 at
most, so a person's call never waits behind polls, whatever the number of services."""

DATABASE_POOL = 2 * TIMER_WORKERS + 2
"""Database connections a replica keeps: each timer worker's statement and its lease renewal
(which can overlap it), the polls loop's and the outbox loop's. A renewal that waited for a
connection could let its lease run out under a worker that is still at work."""

DATABASE_OVERFLOW = 10
"""Connections opened beyond `DATABASE_POOL` for a burst (Slack requests and webhooks, their
flushes, the outbox's channels side by side) and closed again after: SQLAlchemy's default."""


def statement_timeout(settings: Settings) -> float:
    """Seconds one database statement may take (a wait for a lock included): a quarter of the
    lease, 15 s at the default. A lease is renewed every third of it, so a renewal held up by
    a lock fails and is tried again before the lease runs out, and ends by itself before
    `leases.holding` would cancel it mid-write; a window end, a delivery or a poll held up
    fails as a database error and its loop tries again, instead of waiting for ever."""
    return settings.lease_seconds / 4


def create_app(
    settings: Settings,
    *,
    socket_mode: bool = False,
    clock: LoopClock | None = None,
    charts: ChartWorker | None = None,
) -> web.Application:
    """Build the aiohttp application. Nothing is opened until the app starts. `clock` is the
    system's unless a test brings one it moves; `charts` is the app's own (ended with it)
    unless the caller brings one its apps share (the tests' in-process bots)."""
    app = web.Application(client_max_size=github_webhook.MAX_BODY, handler_args=HANDLER_ARGS)
    app[SETTINGS] = settings
    app[TELEMETRY] = PrometheusTelemetry(
        build(), webhooks_expected=settings.github_webhook_secret is not None
    )
    app[ACKS] = AckFirst()
    clock = clock or SystemClock()
    app[REFUSALS] = RefusalLog(clock=clock)
    app.cleanup_ctx.append(app[REFUSALS].counting)  # the last to end: after every request
    app.cleanup_ctx.append(functools.partial(_services, clock=clock, charts=charts))
    # Cleaned up before the services (in reverse order): the work Slack was told is accepted
    # ends before the Slack session and the database engine close.
    drain = ack_first.Drain(app[ACKS], grace=settings.shutdown_grace_seconds)
    app.on_shutdown.append(drain.begins)
    app.cleanup_ctx.append(drain.finishes)
    if socket_mode:
        app.cleanup_ctx.append(_socket_mode)
    else:
        # Over Socket Mode Slack comes through the socket only: no HTTP door for it to keep.
        app.router.add_post("/slack/events", slack_events.receive)
    app.router.add_post("/github/webhook", github_webhook.receive)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", metrics.scrape)
    return app


async def _services(
    app: web.Application, *, clock: LoopClock, charts: ChartWorker | None
) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    telemetry = app[TELEMETRY]
    log.info("%s starting", build())
    engine = create_engine(
        settings.database_url,
        statement_timeout_s=statement_timeout(settings),
        pool_size=DATABASE_POOL,
        max_overflow=DATABASE_OVERFLOW,
    )
    log.info("database %s", mask_database_url(settings.database_url))
    sessions = create_session_factory(engine)
    slack_http = slack_session()
    # The outbox's posts may take half its lease at most: a post is sent only with that much
    # lease left, so none is still on its way when its message can be taken over.
    outbox_request_timeout = min(float(SLACK_TIMEOUT_S), settings.lease_seconds / 2)
    posting_http = slack_session(timeout_s=outbox_request_timeout)
    github_workers = GitHubWorkers(GITHUB_WORKERS)
    chart_worker = charts or ChartWorker()
    if charts_enabled():
        chart_worker.start()  # ahead of the first chart, so that no chart waits for its start
    scheduler: Scheduler | None = None
    outbox: Outbox | None = None
    notifier: SlackNotifier | None = None
    wired: list[Wired] = []
    try:
        slack = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=str(settings.slack_api_url),
            session=slack_http,
            retry_handlers=web_api_retries(telemetry),
        )
        watch, server_offset = clock_watch(engine, telemetry=telemetry, clock=clock)
        timers = TimerStore(sessions, server_offset=server_offset)
        store = RolloutStore(sessions, clock=clock)  # every service's rollouts
        owner = replica_name()
        configured = settings.services()
        outbox, notifier = _outbox(
            app,
            posting_http,
            sessions,
            configured,
            clock=clock,
            owner=owner,
            charts=chart_worker,
            request_timeout=timedelta(seconds=outbox_request_timeout),
            server_offset=server_offset,
        )
        shared = Shared(
            settings=settings,
            sessions=sessions,
            database=Database(engine, sessions),
            slack=slack,
            outbox=outbox,
            timers=timers,
            claims=ClaimStore(sessions, lease=timedelta(seconds=settings.claim_lease_seconds)),
            deliveries=DeliveryLog(sessions),
            telemetry=telemetry,
            backlog=await database_backlog(
                settings, watch, telemetry=telemetry, rollouts=store, timers=timers, clock=clock
            ),
            clock=clock,
            wake=asyncio.Event(),
            trail=audit_trail(sessions),
            # A token has one rate limit; an App with repositories of several owners has an
            # installation (and a rate limit) per owner (docs/github-polling.md).
            budgets=request_budgets(
                settings, {s.name: s.repository for s in configured}, clock=clock
            ),
            github_workers=github_workers,
            members=Memberships(channel_members(slack), kind="channel", keep_failures=True),
        )
        for service in configured:
            wired.append(wire_service(shared, service))
        requests = ProtectionRuleStore(sessions)  # every service's
        directory = ServiceDirectory(
            tuple(w.services for w in wired),
            rollouts=store,
            runs=requests,
            lanes=LaneHoldStore(sessions),  # every service's, for `/rollout freeze --all`
        )
        bolt = bolt_app(slack, signing_secret=settings.slack_signing_secret.get_secret_value())
        bolt.middleware(ack_first.in_context(app[ACKS]))
        register_all(bolt, directory, app[REFUSALS])
        app[SERVICES] = directory.each[0]
        app[DIRECTORY] = directory
        app[BOLT] = bolt
        scheduler = Scheduler(
            timers=timers,
            service=EveryService((w.services.rollouts for w in wired), rollouts=store),
            words=messages,
            looks=LookStore(sessions),
            deliveries=shared.deliveries,
            clock=clock,
            poll_interval=timedelta(seconds=settings.github_poll_interval),
            max_attempts=settings.timer_max_attempts,
            lease=timedelta(seconds=settings.lease_seconds),
            workers=TIMER_WORKERS,  # DATABASE_POOL follows from them
            retention=Retention(
                claims=shared.claims,
                deliveries=shared.deliveries,
                keep=timedelta(days=settings.retention_days),
                rules=requests,
                timers=timers,
                holds=LaneHoldStore(sessions),  # every service's
            ),
            wake=shared.wake,
            owner=owner,
            telemetry=telemetry,
            sweep=lapsed_reruns_sweep(
                directory, shared.claims, clock, _sweeps(directory, requests)
            ),
            budget=shared.budgets,
        )
        app[READINESS] = _readiness(settings, scheduler, outbox, engine=engine, clock=clock)
        scheduler.start()
        outbox.start()
        yield
    finally:
        if scheduler is not None and outbox is not None:  # unless a drain stopped them
            grace = timedelta(seconds=settings.shutdown_grace_seconds)
            await _stop_loops(scheduler, outbox, grace=grace)
        for one in wired:
            await one.close()
        await github_workers.close()
        if notifier is not None:  # the charts that follow their messages, then their worker
            await notifier.close(grace=settings.shutdown_grace_seconds)
        if charts is None:  # the app's own
            await chart_worker.close()
        await slack_http.close()
        await posting_http.close()
        await engine.dispose()


def _outbox(
    app: web.Application,
    posting_http: aiohttp.ClientSession,
    sessions: async_sessionmaker[AsyncSession],
    services: tuple[Service, ...],
    *,
    clock: LoopClock,
    owner: str,
    charts: ChartWorker,
    request_timeout: timedelta,
    server_offset: ServerOffset,
) -> tuple[Outbox, SlackNotifier]:
    """The outbox every service posts through, and its notifier (closed apart: the charts
    that follow their messages). Its posts go through a client that never posts again on its
    own (after a dropped connection, or a 429's wait while the message's lease runs out): the
    outbox retries, looking first, and waits out a 429 for the whole channel. `posting_http`'s
    calls may take `request_timeout`, which must be below the lease (the outbox refuses to be
    built otherwise)."""
    settings = app[SETTINGS]
    posting = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=str(settings.slack_api_url),
        session=posting_http,
        retry_handlers=[CallCounter(app[TELEMETRY])],
    )
    notifier = SlackNotifier(
        posting, approvers={service.name: service.approvers for service in services}, charts=charts
    )
    outbox = Outbox(
        store=OutboxStore(sessions, server_offset=server_offset),
        rollouts=RolloutStore(sessions, clock=clock),
        audit=AuditLog(sessions),
        notifier=notifier,
        clock=clock,
        owner=owner,
        request_timeout=request_timeout,
        lease=timedelta(seconds=settings.lease_seconds),
        telemetry=app[TELEMETRY],
    )
    return outbox, notifier


def _sweeps(directory: ServiceDirectory, rules: ProtectionRuleStore) -> Sweep | None:
    """The sweep of kept protection-rule requests that have no card (App mode): every
    service's read in one query, each handed to its service."""
    runs = {
        s.service.name: s.controls.unfollowed
        for s in directory.each
        if s.controls.unfollowed is not None
    }
    if not runs:
        return None

    async def sweep(may_call: Callable[[str], bool]) -> None:
        found = await rules.without_timer(UNFOLLOWED_TIMER)
        for name, one in runs.items():
            its = [request for request in found if request.service == name]
            if its and may_call(name):  # not while its installation's rate limit holds
                await one.sweep(its)

    return sweep


def _readiness(
    settings: Settings,
    scheduler: Scheduler,
    outbox: Outbox,
    *,
    engine: AsyncEngine,
    clock: LoopClock,
) -> Readiness:
    """`/readyz` of this replica; draining it stops the scheduler, which gives its timers back,
    and the outbox loop."""
    return Readiness(
        database=partial(ping, engine),
        schema=partial(serving_problem, engine),
        last_tick=lambda: scheduler.last_tick,
        clock=clock,
        # Renewed every third of a lease, a timer in hand outlasting one is stuck.
        stale_after=timedelta(
            seconds=max(3 * settings.github_poll_interval, settings.lease_seconds)
        ),
        stoppers=[
            partial(
                _stop_loops,
                scheduler,
                outbox,
                grace=timedelta(seconds=settings.shutdown_grace_seconds),
            )
        ],
    )


async def _stop_loops(scheduler: Scheduler, outbox: Outbox, *, grace: timedelta) -> None:
    """The scheduler and the outbox loop end their work in hand side by side, within one
    grace (never cancelled earlier: a task cancelled amid a database call can leave its
    connection, and SQLite's write lock, behind); what the outbox holds waits for a replica."""
    await asyncio.gather(scheduler.stop(grace=grace), outbox.stop(grace=grace))


def audit_trail(sessions: async_sessionmaker[AsyncSession]) -> AuditTrail:
    """The audit timelines, read from the database (for `/rollout history` and the CLI)."""
    return AuditTrail(rollouts=RolloutStore(sessions, clock=SystemClock()), log=AuditLog(sessions))


async def _socket_mode(app: web.Application) -> AsyncIterator[None]:
    token = app[SETTINGS].slack_app_token
    assert token is not None  # the `socket` command refuses to start without it
    link = await connected(app[BOLT], token.get_secret_value(), clock=app[READINESS].clock)
    log.info("connected to Slack over Socket Mode")
    # A link down past its grace is not ready; a drain answers what Slack sent, then closes the
    # socket before anything else: Slack sends what comes next to another replica's connection.
    app[READINESS].links.append(link.problem)
    app[READINESS].stoppers.insert(0, link.drain)
    try:
        yield
    finally:
        await link.close()
