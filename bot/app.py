"""The app factory: `create_app(settings)` wires configuration, storage, Slack and GitHub.

Resources open and close in `cleanup_ctx`, in order: the database (migrated on start), the
services, then (in Socket Mode) the Slack connection. Routes:
`POST /slack/events`, `POST /github/webhook`, `GET /healthz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.app_keys import BOLT, SERVICES, SETTINGS
from bot.audit import AuditTrail
from bot.authz import Approvers, Audience, GroupResolver, Memberships
from bot.config import Settings
from bot.controls import ControlService
from bot.domain.npm import github_web_url
from bot.domain.plan import NpmRelease
from bot.github_gateway import PyGithubGateway
from bot.metrics_sources import MetricsEndpoints
from bot.npm_token import NpmTokenService
from bot.outbox import Outbox
from bot.rollout_store import RolloutStore
from bot.rollouts import RolloutService
from bot.scheduler import Retention, Scheduler, replica_name
from bot.services import CommandService, Services
from bot.webhooks import GitHubWebhooks
from handlers import github_webhook, register_all, slack_events
from handlers.notifier import SlackNotifier
from handlers.npm_buttons import SlackWalkthroughBoard
from handlers.npm_views import WalkthroughSetup
from storage.claims import ClaimStore
from storage.db import create_engine, create_session_factory, mask_database_url, ping
from storage.deliveries import DeliveryLog
from storage.migrate import upgrade
from storage.outbox import OutboxStore
from storage.repositories import AuditLog
from storage.timers import TimerStore

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, socket_mode: bool = False) -> web.Application:
    """Build the aiohttp application. Nothing is opened until the app starts."""
    app = web.Application(client_max_size=github_webhook.MAX_BODY)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_services)
    if socket_mode:
        app.cleanup_ctx.append(_socket_mode)
    app.router.add_post("/slack/events", slack_events.receive)
    app.router.add_post("/github/webhook", github_webhook.receive)
    app.router.add_get("/healthz", _healthz)
    return app


def utc_now() -> datetime:
    return datetime.now(UTC)


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = create_engine(settings.database_url)
    log.info("database %s", mask_database_url(settings.database_url))
    github_token = settings.github_token
    assert github_token is not None  # the configuration refuses to start without one
    github = PyGithubGateway(
        api_url=str(settings.github_api_url),
        token=github_token.get_secret_value(),
        repository=settings.github_repository,
        timeout=settings.github_timeout,
        retries=settings.github_retries,
        backoff=settings.github_retry_backoff,
    )
    scheduler_task: asyncio.Task[None] | None = None
    outbox_task: asyncio.Task[None] | None = None
    npm_token: NpmTokenService | None = None
    webhooks: GitHubWebhooks | None = None
    try:
        await upgrade(settings.database_url)
        sessions = create_session_factory(engine)
        slack = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=str(settings.slack_api_url),
        )
        # Slack's rate limits answer 429 with Retry-After: wait and try again, twice.
        slack.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
        approvers = Approvers(settings.rollout_approvers, resolve_group=_group_members(slack))
        timers = TimerStore(sessions)
        store = RolloutStore(sessions, clock=utc_now)
        wake = asyncio.Event()
        owner = replica_name()
        outbox = Outbox(
            store=OutboxStore(sessions),
            rollouts=store,
            notifier=SlackNotifier(slack, approvers=settings.rollout_approvers),
            clock=utc_now,
            owner=owner,
            lease=timedelta(seconds=settings.lease_seconds),
        )
        rollouts = RolloutService(
            plan=settings.plan(),
            store=store,
            timers=timers,
            audit=AuditLog(sessions),
            github=github,
            outbox=outbox,
            clock=utc_now,
            on_timer_scheduled=wake.set,
            metrics_endpoints=MetricsEndpoints.from_settings(settings),
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
        )
        deliveries = DeliveryLog(sessions)
        webhooks = GitHubWebhooks(
            repository=settings.github_repository,
            rollouts=rollouts,
            store=store,
            deliveries=deliveries,
            clock=utc_now,
        )
        services = Services(
            settings=settings,
            engine=engine,
            sessions=sessions,
            commands=CommandService(release_channels=settings.release_channels),
            rollouts=rollouts,
            approvers=approvers,
            audience=Audience(
                approvers=approvers,
                release_channels=settings.release_channels,
                members=Memberships(_channel_members(slack), kind="channel"),
            ),
            npm_token=npm_token,
            webhooks=webhooks,
            controls=ControlService(
                rollouts=rollouts,
                claims=claims,
                audit=AuditLog(sessions),
                trail=AuditTrail(sessions),
                approvers=approvers,
                release_channels=settings.release_channels,
                github=github,
                outbox=outbox,
                clock=utc_now,
            ),
        )
        bolt = AsyncApp(
            client=slack,
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            # `handlers.slack_events` verifies the raw body before anything parses it.
            request_verification_enabled=False,
        )
        register_all(bolt, services)
        app[SERVICES] = services
        app[BOLT] = bolt
        scheduler = Scheduler(
            timers=timers,
            service=rollouts,
            clock=utc_now,
            poll_interval=timedelta(seconds=settings.github_poll_interval),
            max_attempts=settings.timer_max_attempts,
            lease=timedelta(seconds=settings.lease_seconds),
            retention=Retention(
                claims=claims,
                deliveries=deliveries,
                keep=timedelta(days=settings.retention_days),
            ),
            wake=wake,
            owner=owner,
        )
        scheduler_task = asyncio.create_task(scheduler.run(), name="scheduler")
        outbox_task = asyncio.create_task(outbox.run(), name="outbox")
        yield
    finally:
        for task in (outbox_task, scheduler_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if webhooks is not None:
            await webhooks.close()
        if npm_token is not None:
            await npm_token.close()
        await github.close()
        await engine.dispose()


def _npm_token_service(
    settings: Settings,
    npm: NpmRelease,
    *,
    github: PyGithubGateway,
    slack: AsyncWebClient,
    approvers: Approvers,
    claims: ClaimStore,
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
        clock=utc_now,
        poll_interval=timedelta(seconds=settings.github_poll_interval),
        claims=claims,
    )


def _group_members(slack: AsyncWebClient) -> GroupResolver:
    async def members(group: str) -> list[str]:
        try:
            answer = await slack.usergroups_users_list(usergroup=group)
        except SlackApiError as error:
            raise LookupError(
                f"usergroups.users.list {group}: {error.response.get('error')}"
            ) from None
        users: list[str] = answer.get("users") or []
        return users

    return members


def _channel_members(slack: AsyncWebClient) -> GroupResolver:
    async def members(channel: str) -> list[str]:
        found: list[str] = []
        try:
            async for page in await slack.conversations_members(channel=channel, limit=1000):
                found.extend(page.get("members") or [])
        except SlackApiError as error:
            raise LookupError(
                f"conversations.members {channel}: {error.response.get('error')}"
            ) from None
        return found

    return members


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
    if await ping(request.app[SERVICES].engine):
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "database unavailable"}, status=503)
