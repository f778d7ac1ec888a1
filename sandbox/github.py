"""A local GitHub REST server that simulates GitHub Actions, for tests and `rollout-bot demo`.

`GitHubSimulator` serves the REST paths the bot uses on 127.0.0.1 (random port), with GitHub's
JSON, status codes and run/job/environment rules (see `github_actions`), so the real PyGithub
client can be pointed at it: `Github(base_url=gh.api_url, auth=Auth.Token(gh.token))`.
It records every request, dispatch and review, and has knobs for failures and other actors
(the request pipeline, with its failures and faults, is `github_requests`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Literal

from aiohttp import web

from bot.services.clock import SystemClock
from sandbox import github_json as shapes
from sandbox.github_actions import ActionsEngine, Clock
from sandbox.github_app import AppRoutes, SandboxApp
from sandbox.github_app_hook import AppHookRoutes
from sandbox.github_faults import FaultPlan
from sandbox.github_history import History, HistoryRoutes
from sandbox.github_hooks import Hook, HookRoutes
from sandbox.github_json import Json, Urls
from sandbox.github_repository_routes import RepositoryRoutes
from sandbox.github_requests import RATE_LIMIT, ForcedFailure, RecordedRequest, RequestPipeline
from sandbox.github_routes import Dispatch, RunRoutes
from sandbox.github_rules import APP_LOGIN, AppWebhook, RuleRoutes, requested_payload
from sandbox.github_runs import Review, SimRun, Transition
from sandbox.loopback import LoopbackServer
from sandbox.workflows import (
    Workflow,
    deployment_strategy_workflow,
    release_workflow,
    workflow_file,
)

EventCallback = Callable[[str, Json], Awaitable[None] | None]

DEFAULT_MIGRATION = (
    "-- Initial relay schema (expand phase: additive only)\n"
    "CREATE TABLE documents (\n"
    "    id UUID PRIMARY KEY,\n"
    "    title TEXT NOT NULL,\n"
    "    created_at TIMESTAMPTZ NOT NULL DEFAULT now()\n"
    ");\n"
    "CREATE INDEX documents_created_at ON documents (created_at);\n"
)
SANDBOX_TOKEN = "ghp_test"
_log = logging.getLogger(__name__)


class GitHubSimulator(RequestPipeline, LoopbackServer):
    """GitHub's REST API for one repository and its Actions workflows, on a loopback port."""

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
        retry_after: int = 1,
        app: SandboxApp | None = None,
    ) -> None:
        if repository.count("/") != 1:
            raise ValueError("repository must be owner/name")
        self.repository = repository
        self.token = token
        self.actor = actor
        self.enterprise = enterprise
        self.default_branch = default_branch
        self.clock = clock or SystemClock()
        self.tokens: dict[str, str] = {token: actor}
        self.app = app
        """A GitHub App installed on the repository (`github_app`): its JWTs and installation
        tokens are accepted as GitHub does."""
        self.refs: set[str] = {default_branch}
        self.files: dict[str, dict[str, str]] = {
            default_branch: {"crates/relay/src/db/migrations/0001_init.sql": DEFAULT_MIGRATION}
        }
        self.hooks: list[Hook] = []
        """The repository's webhooks and their deliveries (`add_hook`), for the doctor."""
        self.secrets: dict[str, datetime] = {}
        self.history = History()
        """Commits, tags and releases (what compare and releases/latest answer from)."""
        self.secrets_forbidden = False
        # Container images published to GitHub Packages, by package name: their tags.
        self.images: dict[str, set[str]] = {}
        self.requests: list[RecordedRequest] = []
        self.dispatches: list[Dispatch] = []
        self.engine = ActionsEngine(
            workflows=workflows or (deployment_strategy_workflow(), release_workflow()),
            protected_environments=protected_environments,
            clock=self.clock,
            secrets=self.secrets,
            files=self.files,
            job_duration=job_duration,
        )
        self.engine.listeners.append(self._record_transition)
        for spec in self.engine.workflows:
            self.files[default_branch][spec.path] = workflow_file(spec)
        self.rate_limit_remaining = RATE_LIMIT
        self._api_path = "/api/v3" if enterprise else ""
        self._tick = tick
        self._callbacks: list[EventCallback] = []
        self._outbox: list[tuple[str, Json]] = []
        self.app_hook = AppWebhook()
        """The rule's App's webhook (`protection_rule`): the bot's `/github/webhook` while up."""
        self.rule_app = APP_LOGIN
        self.check_run_links = False
        """Deployment statuses link the job as its check run (`.../runs/{job_id}`)."""
        self.unlisted_deployments: set[str] = set()
        """Environments whose deployments GitHub does not list yet (its lists lag its events)."""
        self.pending_lists_rules = True
        """`pending_deployments` lists the waits for a custom rule too (GitHub describes it as
        the environments "waiting for protection rules to pass"); False: reviewers' only."""
        self.requests_without_deployment = False
        """Protection rule requests come with `deployment` null (GitHub's schema allows it)."""
        self._app_outbox: list[tuple[str, Json]] = []
        self._flush_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._forced: list[ForcedFailure] = []
        self._faults = FaultPlan()
        self.fault_delay = fault_delay
        """Seconds a `timeout` fault holds its answer (longer than the client's timeout)."""
        self.retry_after = retry_after
        """The `Retry-After` seconds of a secondary rate limit."""

    # -- lifecycle ------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        RunRoutes(self).register(app, self._api_path)
        RepositoryRoutes(self).register(app, self._api_path)
        HookRoutes(self).register(app, self._api_path)
        HistoryRoutes(self).register(app, self._api_path)
        RuleRoutes(self).register(app, self._api_path)
        if self.app is not None:
            AppRoutes(self).register(app, self._api_path)
            AppHookRoutes(self).register(app, self._api_path)
        return app

    async def start(self) -> None:
        await super().start()
        self._spawn(asyncio.get_running_loop().create_task(self._ticker()))

    async def stop(self) -> None:
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

    @property
    def urls(self) -> Urls:
        return Urls(api=self.api_url, html=self.html_url, repository=self.repository)

    # -- scenario knobs and inspection ----------------------------------------------------------

    @property
    def reviews(self) -> list[Review]:
        return self.engine.reviews

    @property
    def runs(self) -> dict[int, SimRun]:
        return self.engine.runs

    def run(self, run_id: int) -> SimRun:
        return self.engine.runs[run_id]

    def environment_id(self, name: str) -> int:
        return self.engine.environments[name]

    def waiting_environments(self, run_id: int) -> list[str]:
        return [job.environment or "" for job in self.engine.waiting_jobs(run_id)]

    def add_hook(self, url: str) -> Hook:
        """A repository webhook posting to `url`; record its deliveries with `deliver`."""
        hook = Hook(id=4_000_001 + len(self.hooks), url=url)
        self.hooks.append(hook)
        return hook

    def protection_rule(
        self, environments: Iterable[str], *, app: str = APP_LOGIN, reviewers: bool = False
    ) -> None:
        """Enable `app`'s custom deployment protection rule on these environments (without
        their required reviewers unless `reviewers`): a job reaching one waits for the App."""
        names = set(environments)
        self.engine.rule_environments |= names
        self.rule_app = app
        if self.app is not None:  # the installed App's rule (its slug is what GitHub lists)
            self.app.rule_environments |= names
            self.rule_app = self.app.bot_login
        if not reviewers:
            self.engine.protected -= names

    def remove_workflow(self, file_name: str) -> None:
        """Delete a workflow file from the repository (every ref): GitHub no longer knows it."""
        self.engine.workflows = [w for w in self.engine.workflows if w.file_name != file_name]
        for tree in self.files.values():
            tree.pop(f".github/workflows/{file_name}", None)

    def add_token(self, token: str, login: str) -> None:
        """Accept another token, acting as `login` (a second person, a GitHub App's bot user)."""
        self.tokens[token] = login

    def set_job_duration(self, job: str, duration: timedelta) -> None:
        """How long a job (key or display name) runs on the clock once started."""
        self.engine.job_durations[job] = duration

    def fail_job(
        self,
        run: int | Literal["next", "every"],
        job: str,
        *,
        log: str = "Error: Process completed with exit code 1.",
        step: str | None = None,
    ) -> None:
        """Make a job (key or display name) fail in one run, the next run, or every run.

        The failing step (default: the job's last step) prints `log`; later steps are skipped.
        """
        self.engine.fail_job(run, job, lines=tuple(log.splitlines()), step=step)

    def create_foreign_run(
        self,
        *,
        actor: str = "someone-else",
        branch: str | None = None,
        created_at: datetime | None = None,
        workflow: str | int | None = None,
        event: str = "workflow_dispatch",
        inputs: Mapping[str, str] | None = None,
    ) -> int:
        """Start a run that the bot did not dispatch (another person, branch or time)."""
        spec = self._workflow(str(workflow)) if workflow is not None else self.engine.workflows[0]
        if spec is None:
            raise KeyError(workflow)
        run = self.engine.start_run(
            spec,
            event=event,
            branch=branch or self.default_branch,
            actor=actor,
            inputs=spec.default_inputs() if inputs is None else inputs,
            created_at=created_at,
        )
        self.engine.process()
        self._schedule_flush()
        return run.id

    def review(
        self,
        run_id: int,
        environments: Iterable[str],
        state: Literal["approved", "rejected"],
        *,
        comment: str = "",
        actor: str = "octocat",
    ) -> None:
        """A person reviews pending deployments on github.com (not through the bot's token)."""
        ids = [self.engine.environments[name] for name in environments]
        self.engine.review(run_id, environment_ids=ids, state=state, comment=comment, actor=actor)
        self._schedule_flush()

    def on_event(self, callback: EventCallback) -> None:
        """Call `callback(event_name, payload)` for every `workflow_run`, `workflow_job` and
        `deployment_review` change, with payloads shaped like GitHub's webhook deliveries."""
        self._callbacks.append(callback)

    async def settle(self) -> None:
        """Run everything runnable at the clock's time to a fixed point and deliver its events."""
        self.engine.process()
        await self._flush()

    # -- plumbing -------------------------------------------------------------------------------

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
            if self.engine.process():
                await self._flush()

    def _schedule_flush(self) -> None:
        if not ((self._outbox and self._callbacks) or self._app_outbox):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a knob used from a thread): the next request or settle() delivers
        self._spawn(loop.create_task(self._flush()))

    async def _flush(self) -> None:
        async with self._flush_lock:
            while self._app_outbox:
                await self.app_hook.send(*self._app_outbox.pop(0))
            while self._outbox:
                name, payload = self._outbox.pop(0)
                for callback in list(self._callbacks):
                    result = callback(name, payload)
                    if inspect.isawaitable(result):
                        await result

    def _record_transition(self, transition: Transition) -> None:
        if transition.kind == "deployment_protection_rule":
            assert transition.job is not None
            payload = requested_payload(
                self.urls,
                transition.run,
                transition.job,
                default_branch=self.default_branch,
                sender=transition.run.actor,
                with_deployment=not self.requests_without_deployment,
            )
            self._app_outbox.append((transition.kind, payload))
        elif self._callbacks:
            self._outbox += shapes.webhook_events(
                self.urls, transition, default_branch=self.default_branch, reviewer=self.actor
            )

    def _workflow(self, id_or_file: str) -> Workflow | None:
        for spec in self.engine.workflows:
            if id_or_file in (str(spec.id), spec.file_name):
                return spec
        return None
