"""The app factory: `create_app(settings)` wires configuration, storage, Slack and GitHub.

Resources open and close in `cleanup_ctx`, in order: the database (migrated beforehand by
`rollout-bot migrate`), the services (and the chart worker's process, started at the first
chart), then (in Socket Mode) the Slack connection. Routes:
`POST /slack/events` (not in Socket Mode), `POST /github/webhook`, `GET /healthz`,
`GET /readyz`, `GET /metrics`.

One service's wiring (`wire_service`: its GitHub repository, plan, approvers, lane and
controls) is built on what every service shares (`Shared`: the database, Slack, the outbox,
the timers).

Size exception: this is the one module that knows every concrete class (the import contracts
let nothing else import adapters and storage together), and it reads best whole: the app's
resources and one service's, in the order they open.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.adapters.chart_worker import ChartWorker
from bot.adapters.github.budget import RequestBudgets
from bot.adapters.github.dispatch import DispatchSearch
from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.protection_rules import ProtectionRules
from bot.adapters.github.transport import GitHubTransport, github_auth
from bot.adapters.github.workers import GitHubWorkers
from bot.adapters.metrics.sources import MetricsEndpoints, metrics_source
from bot.adapters.slack import lane_words, messages
from bot.adapters.slack.bolt_app import bolt_app
from bot.adapters.slack.calls import CallCounter, PostsOnce
from bot.adapters.slack.http import SLACK_TIMEOUT_S, slack_session
from bot.adapters.slack.members import channel_members, group_members, time_zone
from bot.adapters.slack.notifier import SlackNotifier
from bot.adapters.slack.npm_board import SlackWalkthroughBoard
from bot.adapters.slack.npm_steps import WalkthroughSetup
from bot.adapters.telemetry import PrometheusTelemetry
from bot.config import Settings
from bot.domain.npm import RELEASE_TIMER, github_web_url
from bot.domain.protection_rules import environment_jobs
from bot.domain.service import Service
from bot.domain.unfollowed_runs import TIMER as UNFOLLOWED_TIMER
from bot.github_credentials import GitHubApp
from bot.services.audit import AuditTrail
from bot.services.authz import Approvers, Audience, Memberships
from bot.services.catalog import CommandService, Services
from bot.services.clock import LoopClock, SystemClock
from bot.services.controls import ControlService
from bot.services.directory import EveryService, ServiceDirectory
from bot.services.effects import EffectRunner
from bot.services.exactly_once import ExactlyOnce
from bot.services.lane import ReleaseLane
from bot.services.leases import replica_name
from bot.services.npm_release import LookPace
from bot.services.npm_walkthrough import NpmTokenService
from bot.services.outbox import Outbox
from bot.services.polling import Sweep
from bot.services.readiness import Readiness
from bot.services.reports import RolloutReports
from bot.services.retention import Retention
from bot.services.rollouts import RolloutService
from bot.services.scheduler import TIMER_WORKERS, Scheduler
from bot.services.telemetry import Backlog, Telemetry
from bot.services.unfollowed_runs import UnfollowedRunRules
from bot.services.webhooks import GitHubWebhooks
from bot.version import build
from handlers import ack_first, github_webhook, health, metrics, register_all, slack_events
from handlers.ack_first import AckFirst
from handlers.app_keys import ACKS, BOLT, DIRECTORY, READINESS, SERVICES, SETTINGS, TELEMETRY
from storage.audit_log import AuditLog
from storage.claims import ClaimStore
from storage.db import Database, create_engine, create_session_factory, mask_database_url, ping
from storage.deliveries import DeliveryLog
from storage.lane_holds import LaneHoldStore
from storage.looks import LookStore
from storage.migrate import schema_problem
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


@dataclass(frozen=True)
class Shared:
    """What every service of the app uses: one of each."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    database: Database
    slack: AsyncWebClient
    outbox: Outbox
    timers: TimerStore
    claims: ClaimStore
    deliveries: DeliveryLog
    telemetry: Telemetry
    backlog: Backlog
    clock: LoopClock
    wake: asyncio.Event
    """Set when a timer is written, so the scheduler looks at once."""
    trail: AuditTrail
    budgets: RequestBudgets
    """The token's rate limit, or each App installation's, shared by its services' polls and
    clicks."""
    github_workers: GitHubWorkers
    """The threads every service's GitHub calls run in (the poller may hold all but one)."""
    members: Memberships
    """Who is in which channel (one cache: services share channels)."""


@dataclass
class Wired:
    """One service's `Services`, and what to close when the app stops."""

    services: Services
    github: PyGithubGateway
    closers: list[PyGithubGateway | GitHubWebhooks] = field(default_factory=list)

    async def close(self) -> None:
        """Stop the webhook tasks, then close GitHub's client."""
        for closer in self.closers:
            await closer.close()


def wire_service(shared: Shared, service: Service) -> Wired:
    """`service`'s controls, rollouts, lane and webhooks, its rows scoped to its name."""
    settings, sessions, clock = shared.settings, shared.sessions, shared.clock
    transport = GitHubTransport(
        api_url=str(settings.github_api_url),
        **github_auth(settings.github_credentials()),
        repository=service.repository,
        workers=shared.github_workers,
        timeout=settings.github_timeout,
        retries=settings.github_retries,
        backoff=settings.github_retry_backoff,
        telemetry=shared.telemetry,
        budget=shared.budgets.of(service.name),
    )
    rule_requests = ProtectionRuleStore(sessions, service=service.name)
    installation = transport.installation
    # Only a GitHub App answers protection rules: a token's answer is refused (404).
    rules = (
        ProtectionRules(
            transport,
            requests=rule_requests,
            clock=clock,
            app_id=installation.app_id,
            recheck=timedelta(seconds=settings.github_poll_interval),
            service=service.name,
            jobs=environment_jobs(service.plan),
        )
        if installation is not None
        else None
    )
    search = DispatchSearch(delay=settings.github_dispatch_look_interval)
    github = PyGithubGateway(transport, rules=rules, search=search)
    approvers = Approvers(service.approvers, resolve_group=group_members(shared.slack))
    store = RolloutStore(sessions, clock=clock, service=service.name)
    rollouts = RolloutService(
        plan=service.plan,
        effects=EffectRunner(
            store=store,
            timers=shared.timers,
            audit=AuditLog(sessions, service=service.name),
            github=github,
            outbox=shared.outbox,
            clock=clock,
            on_timer_scheduled=shared.wake.set,
            telemetry=shared.telemetry,
            rule_requests=rule_requests,
        ),
        metrics=partial(metrics_source, endpoints=MetricsEndpoints.from_settings(settings)),
        words=messages,
        dispatch_search=timedelta(seconds=settings.dispatch_search_seconds),
        unread_after=timedelta(seconds=settings.github_unreadable_seconds),
        service=service.name,
    )
    lane = ReleaseLane(
        holds=LaneHoldStore(sessions, service=service.name),
        plan=service.plan,
        clock=clock,
        words=lane_words,
        rollouts=store,
        service=service.name,
    )
    npm_token = _npm_token_service(shared, service, github=github, approvers=approvers, lane=lane)
    controls = ControlService(
        rollouts=rollouts,
        claims=shared.claims,
        audit=AuditLog(sessions, service=service.name),
        trail=shared.trail,
        approvers=approvers,
        release_channels=service.release_channels,
        clock=clock,
        lane=lane,
        time_zone_of=time_zone(shared.slack),
        unfollowed=UnfollowedRunRules(
            rules=rule_requests,
            channel_id=service.release_channels[0],
            timeout=timedelta(seconds=settings.unfollowed_run_timeout),
            default=settings.unfollowed_run_default,
        ),
    )
    webhooks = GitHubWebhooks(
        repository=service.repository,
        service=service.name,
        rollouts=rollouts,
        store=store,
        deliveries=shared.deliveries,
        rules=rule_requests,
        clock=clock,
        telemetry=shared.telemetry,
        api_url=str(settings.github_api_url),
        installation_id=(
            (lambda: installation.installation_id) if installation is not None else None
        ),
        unfollowed=controls.unfollowed.kept if controls.unfollowed is not None else None,
        repository_id=lambda: transport.repository_id,
    )
    # The dispatches `start --at` schedules, and the default answers of runs nobody adopted,
    # fire from the rollouts' timers.
    rollouts.dispatches_scheduled_with(controls.scheduled_starts())
    if controls.unfollowed is not None:
        rollouts.fires_timers_with(UNFOLLOWED_TIMER, controls.unfollowed)
    # The walkthroughs' Release runs are followed one look (a timer) at a time.
    rollouts.fires_timers_with(RELEASE_TIMER, npm_token.looks)
    services = Services(
        service=service,
        settings=settings,
        database=shared.database,
        commands=CommandService(release_channels=service.release_channels, words=messages),
        rollouts=rollouts,
        approvers=approvers,
        audience=Audience(
            approvers=approvers,
            release_channels=service.release_channels,
            members=shared.members,
        ),
        npm_token=npm_token,
        webhooks=webhooks,
        lane=lane,
        controls=controls,
        reports=RolloutReports(
            rollouts=store, audit=AuditLog(sessions, service=service.name), clock=clock
        ),
        telemetry=shared.telemetry,
        backlog=shared.backlog,
    )
    return Wired(services, github, closers=[webhooks, github])


def _npm_token_service(
    shared: Shared,
    service: Service,
    *,
    github: PyGithubGateway,
    approvers: Approvers,
    lane: ReleaseLane,
) -> NpmTokenService:
    """The NPM_TOKEN walkthrough of the service's repository, drawn in Slack."""
    settings = shared.settings
    setup = WalkthroughSetup(
        repository=service.repository,
        web_url=github_web_url(str(settings.github_api_url)),
        npm=service.plan.npm,
    )
    return NpmTokenService(
        github=github,
        board=SlackWalkthroughBoard(shared.slack, setup=setup),
        approvers=approvers,
        npm=service.plan.npm,
        clock=shared.clock,
        claims=shared.claims,
        once=ExactlyOnce(claims=shared.claims, clock=shared.clock, words=messages),
        timers=shared.timers,
        timers_changed=shared.wake.set,
        pace=LookPace(
            every=timedelta(seconds=settings.github_poll_interval),
            resume_after=timedelta(seconds=settings.lease_seconds),
        ),
        lane=lane,
        service=service.name,
    )


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
    app = web.Application(client_max_size=github_webhook.MAX_BODY)
    app[SETTINGS] = settings
    app[TELEMETRY] = PrometheusTelemetry(
        build(), webhooks_expected=settings.github_webhook_secret is not None
    )
    app[ACKS] = AckFirst()
    app.cleanup_ctx.append(
        functools.partial(_services, clock=clock or SystemClock(), charts=charts)
    )
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
    app.router.add_get("/healthz", _healthz)
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
    scheduler: Scheduler | None = None
    outbox: Outbox | None = None
    wired: list[Wired] = []
    try:
        # The counter comes first: it sees every attempt, the 429s too. A network error is
        # tried again once, but not on a post that may have reached Slack; Slack's rate
        # limits answer 429 with Retry-After: wait and try again, twice.
        slack = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=str(settings.slack_api_url),
            session=slack_http,
            retry_handlers=[
                CallCounter(telemetry),
                PostsOnce(),
                AsyncRateLimitErrorRetryHandler(max_retry_count=2),
            ],
        )
        timers = TimerStore(sessions)
        store = RolloutStore(sessions, clock=clock)  # every service's rollouts
        owner = replica_name()
        configured = settings.services()
        outbox = _outbox(
            app,
            posting_http,
            sessions,
            configured,
            clock=clock,
            owner=owner,
            charts=chart_worker,
            request_timeout=timedelta(seconds=outbox_request_timeout),
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
            backlog=Backlog(
                telemetry=telemetry,
                rollouts=store,
                timers=timers,
                clock=clock,
                overdue_after=timedelta(seconds=settings.lease_seconds),
                services=[service.name for service in configured],
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
            tuple(w.services for w in wired), rollouts=store, runs=requests
        )
        bolt = bolt_app(slack, signing_secret=settings.slack_signing_secret.get_secret_value())
        bolt.middleware(ack_first.in_context(app[ACKS]))
        register_all(bolt, directory)
        app[SERVICES] = directory.each[0]
        app[DIRECTORY] = directory
        app[BOLT] = bolt
        scheduler = Scheduler(
            timers=timers,
            service=EveryService((w.services.rollouts for w in wired), rollouts=store),
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
            sweep=_sweeps(directory, requests),
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
) -> Outbox:
    """The outbox every service posts through. Its posts go through a client that never
    posts again on its own (after a dropped connection, or a 429's wait while the message's
    lease runs out): the outbox retries, looking first, and waits out a 429 for the whole
    channel. `posting_http`'s calls may take `request_timeout`, which must be below the lease
    (the outbox refuses to be built otherwise)."""
    settings = app[SETTINGS]
    posting = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=str(settings.slack_api_url),
        session=posting_http,
        retry_handlers=[CallCounter(app[TELEMETRY])],
    )
    return Outbox(
        store=OutboxStore(sessions),
        rollouts=RolloutStore(sessions, clock=clock),
        audit=AuditLog(sessions),
        notifier=SlackNotifier(
            posting,
            approvers={service.name: service.approvers for service in services},
            charts=charts,
        ),
        clock=clock,
        owner=owner,
        request_timeout=request_timeout,
        lease=timedelta(seconds=settings.lease_seconds),
        telemetry=app[TELEMETRY],
    )


def request_budgets(
    settings: Settings, repositories: Mapping[str, str], *, clock: LoopClock | None = None
) -> RequestBudgets:
    """The budgets of the services' `repositories` (by service name): one for a token, or for
    an App of one fixed installation; otherwise one per owner, whose installation the App's
    calls for that owner's repositories use."""
    credentials = settings.github_credentials()
    if not isinstance(credentials, GitHubApp) or credentials.installation_id is not None:
        return RequestBudgets(clock=clock)
    owners = {name: repo.split("/", 1)[0] for name, repo in repositories.items()}
    return RequestBudgets(owners, clock=clock)


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
        # Behind is not ready; ahead is the rolling upgrade under way (additive migrations).
        schema=partial(schema_problem, engine, newer_is_fine=True),
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
    handler = AsyncSocketModeHandler(app[BOLT], token.get_secret_value())
    await handler.connect_async()  # type: ignore[no-untyped-call]
    log.info("connected to Slack over Socket Mode")
    try:
        yield
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]


async def _healthz(request: web.Request) -> web.Response:
    """Liveness: 200 while the process answers, whatever the database does (a database
    outage is `/readyz`'s to report: restarting every replica would not end it)."""
    running = build()
    database = "ok" if await request.app[SERVICES].database.ping() else "unavailable"
    return web.json_response(
        {"status": "ok", "database": database, "version": running.version, "commit": running.commit}
    )
