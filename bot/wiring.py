"""One service's wiring (`wire_service`) on what every service of the app shares (`Shared`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.adapters.github.budget import RequestBudgets
from bot.adapters.github.dispatch import DispatchSearch
from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.installation_check import InstallationCheck
from bot.adapters.github.protection_rules import ProtectionRules
from bot.adapters.github.transport import GitHubTransport, github_auth
from bot.adapters.github.workers import GitHubWorkers
from bot.adapters.metrics.sources import MetricsEndpoints, metrics_source
from bot.adapters.slack import lane_words, messages
from bot.adapters.slack.members import group_members, time_zone
from bot.adapters.slack.npm_board import SlackWalkthroughBoard
from bot.adapters.slack.npm_steps import WalkthroughSetup
from bot.config import Settings
from bot.domain.freeze import FREEZE_END_TIMER
from bot.domain.freeze_all import FREEZE_ALL_TOLD_TIMER, FREEZE_LIFTED_TIMER
from bot.domain.npm import RELEASE_TIMER, github_web_url
from bot.domain.npm_secrets import trusted_publishing_on
from bot.domain.protection_rules import UNCONFIRMED_TIMER, environment_jobs
from bot.domain.service import Service
from bot.domain.unfollowed_runs import TIMER as UNFOLLOWED_TIMER
from bot.github_credentials import GitHubApp
from bot.services.audit import AuditTrail
from bot.services.authz import Approvers, Audience, Memberships
from bot.services.catalog import CommandService, Services
from bot.services.clock import LoopClock, SystemClock
from bot.services.clock_skew import SQLITE_SKIPPED, DatabaseClock
from bot.services.controls import ControlService
from bot.services.effects import EffectRunner
from bot.services.exactly_once import ExactlyOnce
from bot.services.freeze_all_told import FreezeAllTold
from bot.services.freeze_ends import FreezeEnds
from bot.services.freeze_lifted import FreezeLifted
from bot.services.lane import ReleaseLane
from bot.services.npm_release import LookPace
from bot.services.npm_walkthrough import NpmTokenService
from bot.services.outbox import Outbox
from bot.services.reports import RolloutReports
from bot.services.rollouts import RolloutService
from bot.services.telemetry import Backlog, Telemetry
from bot.services.unfollowed_runs import UnfollowedRunRules
from bot.services.webhooks import GitHubWebhooks
from storage.audit_log import AuditLog
from storage.claims import ClaimStore
from storage.db import Database, server_clock
from storage.deliveries import DeliveryLog
from storage.lane_holds import LaneHoldStore
from storage.leases import ServerOffset, same_clock
from storage.outbox import OutboxStore
from storage.protection_rules import ProtectionRuleStore
from storage.rollout_store import RolloutStore
from storage.timers import TimerStore

log = logging.getLogger(__name__)


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


def clock_watch(
    engine: AsyncEngine, *, telemetry: Telemetry, clock: LoopClock
) -> tuple[DatabaseClock | None, ServerOffset]:
    """The watch on the database server's clock against this replica's (PostgreSQL; on SQLite,
    one line says why there is none), and the offset this replica keeps its leases on
    (`storage.leases`): the watch's, on the system's clock. A test's clock stands for every
    replica's and the server's at once (moved, the server's would not follow): none then."""
    if engine.dialect.name != "postgresql":
        log.info("%s", SQLITE_SKIPPED)
        return None, same_clock
    watch = DatabaseClock(server=partial(server_clock, engine), clock=clock, telemetry=telemetry)
    return watch, watch.offset if isinstance(clock, SystemClock) else same_clock


async def database_backlog(
    settings: Settings,
    watch: DatabaseClock | None,
    *,
    telemetry: Telemetry,
    rollouts: RolloutStore,
    timers: TimerStore,
    clock: LoopClock,
) -> Backlog:
    """The gauges a scrape reads from the database; the server's clock against this replica's
    among them (`watch`, `bot.services.clock_skew`), read now too."""
    if watch is not None:
        await watch.first_check()
    return Backlog(
        telemetry=telemetry,
        rollouts=rollouts,
        timers=timers,
        clock=clock,
        overdue_after=timedelta(seconds=settings.lease_seconds),
        services=[service.name for service in settings.services()],
        database_clock=watch.check if watch is not None else None,
    )


def wire_service(shared: Shared, service: Service) -> Wired:
    """`service`'s controls, rollouts, lane and webhooks, its rows scoped to its name."""
    settings, sessions, clock = shared.settings, shared.sessions, shared.clock
    transport = GitHubTransport(
        api_url=str(settings.github_api_url),
        **github_auth(settings.github_credentials()),
        repository=service.repository,
        service=service.name,
        workers=shared.github_workers,
        timeout=settings.github_timeout,
        retries=settings.github_retries,
        backoff=settings.github_retry_backoff,
        telemetry=shared.telemetry,
        budget=shared.budgets.of(service.name),
        clock=clock,
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
            words=messages,
            on_timer_scheduled=shared.wake.set,
            telemetry=shared.telemetry,
            rule_requests=rule_requests,
            unanswered_after=timedelta(seconds=settings.github_unreadable_seconds),
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
    # A freeze holds a `promote: auto` stage for a person's Promote (docs/freezes.md).
    rollouts.promotions_frozen_with(lane.holds_promotion)
    ends = FreezeEnds(effects=rollouts.effects, lane=lane, outboxes=OutboxStore(sessions))
    rollouts.fires_timers_with(FREEZE_END_TIMER, ends)
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
            gone_after=timedelta(seconds=settings.github_unreadable_seconds),
        ),
    )
    # A `/rollout freeze` (one service's or `--all`) tells the threads it will hold by a timer.
    told = FreezeAllTold(lane=controls.lane, outboxes=OutboxStore(sessions))
    rollouts.fires_timers_with(FREEZE_ALL_TOLD_TIMER, told)
    # A `/rollout unfreeze` tells the threads of what the lifted freeze held by a timer.
    lifted = FreezeLifted(lane=controls.lane, outboxes=OutboxStore(sessions))
    rollouts.fires_timers_with(FREEZE_LIFTED_TIMER, lifted)
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
        installation=(
            InstallationCheck(transport=transport, clock=clock)
            if installation is not None
            else None
        ),
        unfollowed=controls.unfollowed.kept if controls.unfollowed is not None else None,
        timers=shared.timers,
        timers_changed=shared.wake.set,
        repository_id=lambda: transport.repository_id,
    )
    # The dispatches `start --at` schedules, and the default answers of runs nobody adopted,
    # fire from the rollouts' timers.
    rollouts.dispatches_scheduled_with(controls.scheduled_starts())
    if controls.unfollowed is not None:
        rollouts.fires_timers_with(UNFOLLOWED_TIMER, controls.unfollowed)
    if webhooks.unconfirmed is not None:
        rollouts.fires_timers_with(UNCONFIRMED_TIMER, webhooks.unconfirmed)
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
            rollouts=store,
            audit=AuditLog(sessions, service=service.name),
            clock=clock,
            time_zone_of=time_zone(shared.slack),
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
    trusted_publishing = trusted_publishing_on(str(settings.github_api_url))
    setup = WalkthroughSetup(
        repository=service.repository,
        web_url=github_web_url(str(settings.github_api_url)),
        npm=service.plan.npm,
        trusted_publishing=trusted_publishing,
        plan_workflow=service.plan.workflow.file,
        plan_environments=frozenset(environment_jobs(service.plan)),
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
            dispatch_search=timedelta(seconds=settings.dispatch_search_seconds),
        ),
        lane=lane,
        service=service.name,
        trusted_publishing=trusted_publishing,
    )
