"""A local GitHub REST server that simulates GitHub Actions, for tests and `rollout-bot demo`.

`GitHubSimulator` serves the REST paths the bot uses on 127.0.0.1 (random port), with GitHub's
JSON, status codes and run/job/environment rules (see `github_actions`), so the real PyGithub
client can be pointed at it: `Github(base_url=gh.api_url, auth=Auth.Token(gh.token))`.
It serves one repository, or several (`add_repository`: each its own workflows, runs,
environments and webhooks, one API URL and one set of ids, as GitHub's are global).
It records every request, dispatch and review, and has knobs for failures and other actors
(the request pipeline, with its failures and faults, is `github_requests`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from bot.services.clock import SystemClock
from sandbox import github_json as shapes
from sandbox.github_actions import Clock
from sandbox.github_app import INSTALLATION_ID, SandboxApp
from sandbox.github_app_hook import AppHookRoutes
from sandbox.github_app_routes import AppRoutes
from sandbox.github_faults import FaultPlan
from sandbox.github_history import HistoryRoutes
from sandbox.github_hooks import HookRoutes
from sandbox.github_job_rerun import JobRerunRoutes
from sandbox.github_json import Json
from sandbox.github_repository import EventCallback, SimRepository, default_workflows
from sandbox.github_repository_routes import RepositoryRoutes
from sandbox.github_requests import RATE_LIMIT, ForcedFailure, RecordedRequest, RequestPipeline
from sandbox.github_routes import RunRoutes
from sandbox.github_rules import AppWebhook, RuleRoutes
from sandbox.github_runs import Ids
from sandbox.github_variation import GitHubVariation
from sandbox.loopback import LoopbackServer
from sandbox.workflows import Workflow

SANDBOX_TOKEN = "ghp_test"
_log = logging.getLogger(__name__)


class GitHubSimulator(RequestPipeline, LoopbackServer, SimRepository):
    """GitHub's REST API and Actions on a loopback port. The simulator is its first
    (default) repository: every repository knob called on it acts on that one, as before
    there were several; `add_repository` adds another and returns its handle."""

    def __init__(
        self,
        *,
        repository: str = "scriptum/scriptum",
        token: str = SANDBOX_TOKEN,
        actor: str = "release-bot",
        workflows: Iterable[Workflow] | None = None,
        protected_environments: Iterable[str] | None = None,
        enterprise: bool = False,
        clock: Clock | None = None,
        job_duration: timedelta = timedelta(0),
        default_branch: str = "main",
        tick: float = 0.05,
        fault_delay: float = 2.0,
        retry_after: int | str = 1,
        app: SandboxApp | None = None,
        variation: GitHubVariation | None = None,
    ) -> None:
        self.token = token
        self.variation = variation
        """Answers within GitHub's reference but unlike the regular ones (`github_variation`):
        short pages, other orders, unknown fields, nullable fields null; None: off."""
        self.actor = actor
        self.enterprise = enterprise
        self.clock = clock or SystemClock()
        self.dated = True
        """False: answers carry no `Date` (a proxy in front of GitHub Enterprise Server)."""
        self.cached_for: int | None = None
        """Seconds: answers served by a cache in front of GitHub that keeps them that long,
        their `Date` that much older and their `Age` saying so; None: served fresh."""
        self.ids = Ids()
        self.tokens: dict[str, str] = {token: actor}
        self.app = app
        """A GitHub App installed on the repositories' accounts, one installation each
        (`github_app`): its JWTs and installation tokens are accepted as GitHub does."""
        self._job_duration = job_duration
        self.repositories: dict[str, SimRepository] = {}
        """Every repository served, by lower-cased `owner/name` (GitHub's paths ignore case)."""
        self.renamed: dict[str, SimRepository] = {}
        """Former names (lower-cased) of renamed repositories (`rename`): their paths redirect."""
        self.teams: dict[str, set[str]] = {}
        """Teams of the organisations (lower-cased `org/slug`) and their active members'
        logins (`GET /orgs/{org}/teams/{team_slug}/memberships/{username}`)."""
        self.requests_without_deployment = False
        """Protection rule requests come with `deployment` null (GitHub's schema allows it)."""
        self._every_repository: list[EventCallback] = []
        SimRepository.__init__(
            self,
            self,
            repository,
            clock=self.clock,
            ids=self.ids,
            workflows=workflows or default_workflows(0),
            protected_environments=protected_environments,
            job_duration=job_duration,
            default_branch=default_branch,
            app_rule_environments=None if app is None else app.rule_environments,
        )
        self.repositories[repository.lower()] = self
        self.install_app_for(repository)
        # Container images published to GitHub Packages, by package name: their tags.
        self.images: dict[str, set[str]] = {}
        self.requests: list[RecordedRequest] = []
        self.rate_limit_remaining = RATE_LIMIT
        self._api_path = "/api/v3" if enterprise else ""
        self._tick = tick
        self._outbox: list[tuple[SimRepository, str, Json]] = []
        self.app_hook = AppWebhook()
        """The rule's App's webhook (`protection_rule`): the bot's `/github/webhook` while up."""
        self.check_run_links = False
        """Deployment statuses link the job as its check run (`.../runs/{job_id}`)."""
        self.lists_oldest_first = variation is not None
        """Deployments and a deployment's statuses are listed oldest first: GitHub's reference
        ("List deployments", "List deployment statuses") promises no order (GitHub lists
        them newest first, the default here, but in the variation mode)."""
        self.pending_lists_rules = True
        """`pending_deployments` lists the waits for a custom rule too (GitHub describes it as
        the environments "waiting for protection rules to pass"); False: reviewers' only."""
        self._app_outbox: list[tuple[str, Json]] = []
        self._flush_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._forced: list[ForcedFailure] = []
        self._faults = FaultPlan()
        self._holds = []
        self.holding = 0
        self.held_bodies: list[Any] = []
        self.fault_delay = fault_delay
        """Seconds a `timeout` fault holds its answer (longer than the client's timeout)."""
        self.retry_after = retry_after
        """The `Retry-After` of a secondary rate limit: seconds, or an HTTP-date."""

    def add_repository(
        self,
        repository: str,
        *,
        workflows: Iterable[Workflow] | None = None,
        protected_environments: Iterable[str] | None = None,
        default_branch: str = "main",
    ) -> SimRepository:
        """Serve another repository (`owner/name`) on the same API: its own workflows (the
        Deployment Strategy and Release workflows unless given, with ids of its own),
        environments, runs, files, history and webhooks. Returns its handle, which has the
        repository knobs the simulator has (`review`, `fail_job`, `hooks`, `history`...)."""
        if repository.lower() in self.repositories:
            raise ValueError(f"the simulator already serves {repository}")
        added = SimRepository(
            self,
            repository,
            clock=self.clock,
            ids=self.ids,
            workflows=workflows or default_workflows(len(self.repositories)),
            protected_environments=protected_environments,
            job_duration=self._job_duration,
            default_branch=default_branch,
        )
        self.repositories[repository.lower()] = added
        self.install_app_for(repository)
        return added

    def install_app_for(self, repository: str) -> None:
        """Install the App (if any) on `repository`'s owner, unless it is there already: an
        installation of its own per account, as GitHub has (`SandboxApp.install`)."""
        if self.app is not None:
            self.app.install(repository.split("/")[0])

    def app_installation_id(self, repository: str) -> int | None:
        """The installation id the App's deliveries from `repository` carry: its owner's
        installation's (None: the App is not installed there, or its installation is suspended,
        so GitHub sends nothing). Without an App, the sandbox's first installation id (a
        token-mode bot ignores such requests)."""
        if self.app is None:
            return INSTALLATION_ID
        installation = self.app.installation_of(repository)
        if installation is None or installation.suspended_at is not None:
            return None
        return installation.id

    def repository_named(self, full_name: str) -> SimRepository | None:
        """The repository served under `owner/name` (any case, as GitHub), or None."""
        return self.repositories.get(full_name.lower())

    # -- lifecycle ------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.on_response_prepare.append(self._dated)
        RunRoutes(self).register(app, self._api_path)
        JobRerunRoutes(self).register(app, self._api_path)
        RepositoryRoutes(self).register(app, self._api_path)
        HookRoutes(self).register(app, self._api_path)
        HistoryRoutes(self).register(app, self._api_path)
        RuleRoutes(self).register(app, self._api_path)
        if self.app is not None:
            AppRoutes(self).register(app, self._api_path)
            AppHookRoutes(self).register(app, self._api_path)
        return app

    async def _dated(self, _request: web.Request, response: web.StreamResponse) -> None:
        """Every answer's `Date` is GitHub's clock (HTTP's origin date, in whole seconds), as
        its jobs' times are: a GitHub whose clock is off shows it there too."""
        # Undated: a proxy that drops it (aiohttp sends one of its own when none is set, so
        # an empty one stands for none).
        made = self.clock() - timedelta(seconds=self.cached_for or 0)
        response.headers["Date"] = format_datetime(made, usegmt=True) if self.dated else ""
        if self.cached_for is not None:
            response.headers["Age"] = str(self.cached_for)

    async def start(self) -> None:
        await super().start()
        self._spawn(asyncio.get_running_loop().create_task(self._ticker()))

    async def stop(self) -> None:
        for held in self._holds:  # a held request would hold the server's stop for a minute
            held.released.set()
        if self.app is not None and self.app.lookups_answered is not None:
            self.app.lookups_answered.set()  # and so would a stalled installation lookup
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.app_hook.close()
        await super().stop()

    @property
    def html_url(self) -> str:
        """The web base (github.com's counterpart) that every `html_url` starts with."""
        return self.url

    @property
    def api_url(self) -> str:
        """The REST base to give the client (`/api/v3` under the host in enterprise mode)."""
        return f"{self.html_url}{self._api_path}"

    # -- scenario knobs and inspection ----------------------------------------------------------

    def add_token(self, token: str, login: str) -> None:
        """Accept another token, acting as `login` (a second person, a GitHub App's bot user)."""
        self.tokens[token] = login

    def on_event(self, callback: EventCallback) -> None:
        """Call `callback(event_name, payload)` for every `workflow_run`, `workflow_job` and
        `deployment_review` change of every repository, served now or added later (as an
        organization's or an App's webhook receives them), with payloads shaped like GitHub's
        webhook deliveries; `repository.full_name` says whose. With an App, this is the App's
        webhook: each payload names the installation on its repository's account
        (`installation.id`), and an account without one sends nothing. A repository's own
        webhook is its handle's `on_event`."""
        self._every_repository.append(callback)

    async def settle(self) -> None:
        """Run everything runnable at the clock's time to a fixed point and deliver its events."""
        self.run_actions()
        await self._flush()

    # -- plumbing -------------------------------------------------------------------------------

    def run_actions(self) -> bool:
        """Move every repository's runs as far as they go at the clock's time; True when
        anything moved."""
        moved = [repository.engine.process() for repository in self.repositories.values()]
        return any(moved)

    def listens_to(self, repository: SimRepository) -> bool:
        """Whether anyone receives `repository`'s events (else they are not even built)."""
        return bool(self._every_repository or repository.callbacks)

    def queue_event(self, repository: SimRepository, name: str, payload: Json) -> None:
        if self.variation is not None:
            payload = self.variation.payload(name, payload)
        self._outbox.append((repository, name, payload))

    def queue_app_event(self, name: str, payload: Json) -> None:
        if self.variation is not None:
            payload = self.variation.payload(name, payload)
        self._app_outbox.append((name, payload))

    def schedule_flush(self) -> None:
        if not (self._outbox or self._app_outbox):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a knob used from a thread): the next request or settle() delivers
        self._spawn(loop.create_task(self._flush()))

    def _spawn(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("GitHub simulator event delivery failed", exc_info=task.exception())

    async def _ticker(self) -> None:
        """Finish jobs whose duration ran out, when the clock moves without any request."""
        while True:
            await asyncio.sleep(self._tick)
            if self.run_actions():
                await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:
            while self._app_outbox:
                await self.app_hook.send(*self._app_outbox.pop(0))
            while self._outbox:
                repository, name, payload = self._outbox.pop(0)
                as_app = self._app_delivery(repository, payload)
                delivered = [(c, as_app) for c in self._every_repository if as_app is not None]
                delivered += [(c, payload) for c in repository.callbacks]
                for callback, body in delivered:
                    result = callback(name, body)
                    if inspect.isawaitable(result):
                        await result

    def _app_delivery(self, repository: SimRepository, payload: Json) -> Json | None:
        """`payload` as the every-repository webhook (`on_event`) receives it. With an App,
        that is the App's webhook: it names the installation on the repository's account
        and receives nothing from an account the App is not installed on."""
        if self.app is None:
            return payload
        number = self.app_installation_id(repository.repository)
        return None if number is None else {**payload, "installation": shapes.installation(number)}
