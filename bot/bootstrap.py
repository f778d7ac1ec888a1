"""The app factory: `create_app(settings)` wires configuration, storage, Slack and GitHub.

Resources open and close in `cleanup_ctx`, in order: the database (migrated beforehand by
`rollout-bot migrate`), the services, then (in Socket Mode) the Slack connection. Routes:
`POST /slack/events`, `POST /github/webhook`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial

from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.adapters.github.dispatch import DispatchSearch
from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.protection_rules import ProtectionRules
from bot.adapters.github.transport import GitHubTransport, github_auth
from bot.adapters.metrics.sources import MetricsEndpoints, metrics_source
from bot.adapters.slack import lane_words, messages
from bot.adapters.slack.calls import CallCounter
from bot.adapters.slack.http import slack_session
from bot.adapters.slack.members import channel_members, group_members, time_zone
from bot.adapters.slack.notifier import SlackNotifier
from bot.adapters.slack.npm_board import SlackWalkthroughBoard
from bot.adapters.slack.npm_steps import WalkthroughSetup
from bot.adapters.telemetry import PrometheusTelemetry
from bot.config import Settings
from bot.domain.npm import github_web_url
from bot.domain.plan import NpmRelease
from bot.domain.unfollowed_runs import TIMER as UNFOLLOWED_TIMER
from bot.services.audit import AuditTrail
from bot.services.authz import Approvers, Audience, Memberships
from bot.services.catalog import CommandService, Services
from bot.services.clock import LoopClock, SystemClock
from bot.services.controls import ControlService
from bot.services.effects import EffectRunner
from bot.services.lane import ReleaseLane
from bot.services.npm_walkthrough import NpmTokenService
from bot.services.outbox import Outbox
from bot.services.readiness import Readiness
from bot.services.reports import RolloutReports
from bot.services.rollouts import RolloutService
from bot.services.scheduler import Retention, Scheduler, replica_name
from bot.services.telemetry import Backlog
from bot.services.unfollowed_runs import UnfollowedRunRules
from bot.services.webhooks import GitHubWebhooks
from bot.version import build
from handlers import ack_first, github_webhook, health, metrics, register_all, slack_events
from handlers.ack_first import AckFirst
from handlers.app_keys import ACKS, BOLT, READINESS, SERVICES, SETTINGS, TELEMETRY
from storage.audit_log import AuditLog
from storage.claims import ClaimStore
from storage.db import Database, create_engine, create_session_factory, mask_database_url, ping
from storage.deliveries import DeliveryLog
from storage.lane_holds import LaneHoldStore
from storage.migrate import schema_problem
from storage.outbox import OutboxStore
from storage.protection_rules import ProtectionRuleStore
from storage.rollout_store import RolloutStore
from storage.timers import TimerStore

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, socket_mode: bool = False, clock: LoopClock | None = None
) -> web.Application:
    """Build the aiohttp application. Nothing is opened until the app starts. `clock` is the
    system's unless a test brings one it moves."""
    app = web.Application(client_max_size=github_webhook.MAX_BODY)
    app[SETTINGS] = settings
    app[TELEMETRY] = PrometheusTelemetry(build())
    app[ACKS] = AckFirst()
    app.cleanup_ctx.append(functools.partial(_services, clock=clock or SystemClock()))
    # Cleaned up before the services (in reverse order): the work Slack was told is accepted
    # ends before the Slack session and the database engine close.
    drain = ack_first.Drain(app[ACKS], grace=settings.shutdown_grace_seconds)
    app.on_shutdown.append(drain.begins)
    app.cleanup_ctx.append(drain.finishes)
    if socket_mode:
        app.cleanup_ctx.append(_socket_mode)
    app.router.add_post("/slack/events", slack_events.receive)
    app.router.add_post("/github/webhook", github_webhook.receive)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", metrics.scrape)
    return app


async def _services(app: web.Application, *, clock: LoopClock) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    telemetry = app[TELEMETRY]
    log.info("%s starting", build())
    engine = create_engine(settings.database_url)
    log.info("database %s", mask_database_url(settings.database_url))
    credentials = settings.github_credentials()
    sessions = create_session_factory(engine)
    transport = GitHubTransport(
        api_url=str(settings.github_api_url),
        **github_auth(credentials),
        repository=settings.github_repository,
        timeout=settings.github_timeout,
        retries=settings.github_retries,
        backoff=settings.github_retry_backoff,
        telemetry=telemetry,
    )
    rule_requests = ProtectionRuleStore(sessions)
    installation = transport.installation
    # Only a GitHub App answers protection rules: a token's answer is refused (404).
    rules = (
        ProtectionRules(
            transport,
            requests=rule_requests,
            clock=clock,
            app_id=installation.app_id,
            recheck=timedelta(seconds=settings.github_poll_interval),
        )
        if installation is not None
        else None
    )
    search = DispatchSearch(delay=settings.github_dispatch_look_interval)
    github = PyGithubGateway(transport, rules=rules, search=search)
    slack_http = slack_session()
    scheduler: Scheduler | None = None
    outbox: Outbox | None = None
    npm_token: NpmTokenService | None = None
    webhooks: GitHubWebhooks | None = None
    try:
        slack = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=str(settings.slack_api_url),
            session=slack_http,
        )
        # Slack's rate limits answer 429 with Retry-After: wait and try again, twice. The
        # counter comes first: it sees every attempt, the 429s too.
        slack.retry_handlers.insert(0, CallCounter(telemetry))
        slack.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
        approvers = Approvers(settings.rollout_approvers, resolve_group=group_members(slack))
        timers = TimerStore(sessions)
        store = RolloutStore(sessions, clock=clock)
        wake = asyncio.Event()
        owner = replica_name()
        # The outbox's posts go through a client that never posts again on its own (after a
        # dropped connection, or a 429's wait while the message's lease runs out): the outbox
        # retries, looking first, and waits out a 429 for the whole channel.
        posting = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=str(settings.slack_api_url),
            session=slack_http,
            retry_handlers=[CallCounter(telemetry)],
        )
        outbox = Outbox(
            store=OutboxStore(sessions),
            rollouts=store,
            audit=AuditLog(sessions),
            notifier=SlackNotifier(posting, approvers=settings.rollout_approvers),
            clock=clock,
            owner=owner,
            lease=timedelta(seconds=settings.lease_seconds),
        )
        rollouts = RolloutService(
            plan=settings.plan(),
            effects=EffectRunner(
                store=store,
                timers=timers,
                audit=AuditLog(sessions),
                github=github,
                outbox=outbox,
                clock=clock,
                on_timer_scheduled=wake.set,
                telemetry=telemetry,
                rule_requests=rule_requests,
            ),
            metrics=partial(metrics_source, endpoints=MetricsEndpoints.from_settings(settings)),
            words=messages,
            dispatch_search=timedelta(seconds=settings.dispatch_search_seconds),
        )
        claims = ClaimStore(sessions, lease=timedelta(seconds=settings.claim_lease_seconds))
        npm_token = _npm_token_service(
            settings,
            rollouts.plan.npm,
            github=github,
            slack=slack,
            approvers=approvers,
            claims=claims,
            clock=clock,
        )
        deliveries = DeliveryLog(sessions)
        lane = ReleaseLane(
            holds=LaneHoldStore(sessions), plan=rollouts.plan, clock=clock, words=lane_words
        )
        controls = ControlService(
            rollouts=rollouts,
            claims=claims,
            audit=AuditLog(sessions),
            trail=audit_trail(sessions),
            approvers=approvers,
            release_channels=settings.release_channels,
            clock=clock,
            lane=lane,
            time_zone_of=time_zone(slack),
            unfollowed=UnfollowedRunRules(
                rules=rule_requests,
                channel_id=settings.release_channels[0],
                timeout=timedelta(seconds=settings.unfollowed_run_timeout),
                default=settings.unfollowed_run_default,
            ),
        )
        webhooks = GitHubWebhooks(
            repository=settings.github_repository,
            rollouts=rollouts,
            store=store,
            deliveries=deliveries,
            rules=rule_requests,
            clock=clock,
            telemetry=telemetry,
            api_url=str(settings.github_api_url),
            installation_id=(
                (lambda: installation.installation_id) if installation is not None else None
            ),
            unfollowed=controls.unfollowed.kept if controls.unfollowed is not None else None,
        )
        services = Services(
            settings=settings,
            database=Database(engine, sessions),
            commands=CommandService(release_channels=settings.release_channels),
            rollouts=rollouts,
            approvers=approvers,
            audience=Audience(
                approvers=approvers,
                release_channels=settings.release_channels,
                members=Memberships(channel_members(slack), kind="channel"),
            ),
            npm_token=npm_token,
            webhooks=webhooks,
            lane=lane,
            controls=controls,
            reports=RolloutReports(rollouts=store, audit=AuditLog(sessions), clock=clock),
            telemetry=telemetry,
            backlog=Backlog(
                telemetry=telemetry,
                rollouts=store,
                timers=timers,
                clock=clock,
                overdue_after=timedelta(seconds=settings.lease_seconds),
            ),
        )
        # The dispatches `start --at` schedules, and the default answers of runs nobody
        # adopted, fire from the rollouts' timers.
        rollouts.dispatches_scheduled_with(services.controls.scheduled_starts())
        if services.controls.unfollowed is not None:
            rollouts.fires_timers_with(UNFOLLOWED_TIMER, services.controls.unfollowed)
        bolt = AsyncApp(
            name="rollout-bot",  # Bolt would otherwise walk the call stack to name itself
            client=slack,
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            # `handlers.slack_events` verifies the raw body before anything parses it.
            request_verification_enabled=False,
        )
        bolt.middleware(ack_first.in_context(app[ACKS]))
        register_all(bolt, services)
        app[SERVICES] = services
        app[BOLT] = bolt
        scheduler = Scheduler(
            timers=timers,
            service=rollouts,
            clock=clock,
            poll_interval=timedelta(seconds=settings.github_poll_interval),
            max_attempts=settings.timer_max_attempts,
            lease=timedelta(seconds=settings.lease_seconds),
            retention=Retention(
                claims=claims,
                deliveries=deliveries,
                keep=timedelta(days=settings.retention_days),
                rules=rule_requests,
            ),
            wake=wake,
            owner=owner,
            telemetry=telemetry,
            sweep=services.controls.unfollowed.sweep if services.controls.unfollowed else None,
        )
        app[READINESS] = _readiness(settings, scheduler, outbox, engine=engine, clock=clock)
        scheduler.start()
        outbox.start()
        yield
    finally:
        if scheduler is not None and outbox is not None:  # unless a drain stopped them
            grace = timedelta(seconds=settings.shutdown_grace_seconds)
            await _stop_loops(scheduler, outbox, grace=grace)
        if webhooks is not None:
            await webhooks.close()
        if npm_token is not None:
            await npm_token.close()
        await github.close()
        await slack_http.close()
        await engine.dispose()


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


def _npm_token_service(
    settings: Settings,
    npm: NpmRelease,
    *,
    github: PyGithubGateway,
    slack: AsyncWebClient,
    approvers: Approvers,
    claims: ClaimStore,
    clock: LoopClock,
) -> NpmTokenService:
    """The NPM_TOKEN walkthrough, its message drawn in Slack, its checks asked of GitHub."""
    setup = WalkthroughSetup(
        repository=settings.github_repository,
        web_url=github_web_url(str(settings.github_api_url)),
        npm=npm,
    )
    return NpmTokenService(
        github=github,
        board=SlackWalkthroughBoard(slack, setup=setup),
        approvers=approvers,
        npm=npm,
        clock=clock,
        poll_interval=timedelta(seconds=settings.github_poll_interval),
        claims=claims,
    )


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
