"""A local GitHub REST server that simulates GitHub Actions, for tests and `rollout-bot demo`.

`GitHubSimulator` serves the REST paths the bot uses on 127.0.0.1 (random port), with GitHub's
JSON, status codes and run/job/environment rules (see `github_actions`), so the real PyGithub
client can be pointed at it: `Github(base_url=gh.api_url, auth=Auth.Token(gh.token))`.
It records every request, dispatch and review, and has knobs for failures and other actors.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import inspect
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

from bot.sandbox import github_json as shapes
from bot.sandbox.github_actions import (
    ActionsEngine,
    ActionsError,
    Clock,
    Review,
    SimRun,
    Transition,
    system_clock,
)
from bot.sandbox.github_faults import (
    SECONDARY_RATE_LIMIT_MESSAGE,
    FaultKind,
    FaultPlan,
    request_id,
)
from bot.sandbox.github_json import Json, Urls
from bot.sandbox.github_routes import (
    ACTOR,
    BODY,
    DOWNLOAD_PREFIX,
    Dispatch,
    Routes,
    json_response,
)
from bot.sandbox.workflows import Workflow, deployment_strategy_workflow, release_workflow

EventCallback = Callable[[str, Json], Awaitable[None] | None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEFAULT_MIGRATION = (
    "-- Initial relay schema (expand phase: additive only)\n"
    "CREATE TABLE documents (\n"
    "    id UUID PRIMARY KEY,\n"
    "    title TEXT NOT NULL,\n"
    "    created_at TIMESTAMPTZ NOT NULL DEFAULT now()\n"
    ");\n"
    "CREATE INDEX documents_created_at ON documents (created_at);\n"
)
RATE_LIMIT = 5000
SANDBOX_TOKEN = "ghp_test"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the simulator received (never its Authorization header)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    if_none_match: str | None = None
    """The ETag a conditional GET sent (`If-None-Match`)."""
    fault: str | None = None
    """The fault injected into the answer (`github_faults.FaultKind`), if any; a dropped
    connection is recorded with the status of the answer that was never sent."""


@dataclass
class _ForcedFailure:
    method: str
    pattern: str
    status: int
    body: Json
    remaining: int


class GitHubSimulator:
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
    ) -> None:
        if repository.count("/") != 1:
            raise ValueError("repository must be owner/name")
        self.repository = repository
        self.token = token
        self.actor = actor
        self.enterprise = enterprise
        self.default_branch = default_branch
        self.clock = clock or system_clock
        self.tokens: dict[str, str] = {token: actor}
        self.refs: set[str] = {default_branch}
        self.files: dict[str, dict[str, str]] = {
            default_branch: {"crates/relay/src/db/migrations/0001_init.sql": DEFAULT_MIGRATION}
        }
        self.secrets: dict[str, datetime] = {}
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
        self.rate_limit_remaining = RATE_LIMIT
        self._api_path = "/api/v3" if enterprise else ""
        self._tick = tick
        self._callbacks: list[EventCallback] = []
        self._outbox: list[tuple[str, Json]] = []
        self._flush_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._forced: list[_ForcedFailure] = []
        self._faults = FaultPlan()
        self.fault_delay = fault_delay
        """Seconds a `timeout` fault holds its answer (longer than the client's timeout)."""
        self.retry_after = retry_after
        """The `Retry-After` seconds of a secondary rate limit."""
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> GitHubSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._spawn(asyncio.get_running_loop().create_task(self._ticker()))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def html_url(self) -> str:
        """The web base (github.com's counterpart) that every `html_url` starts with."""
        return f"http://127.0.0.1:{self._port}"

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

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int,
        body: Json | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests matching (method, glob on the path) with an error.

        The path is relative to the API base, for example `/repos/*/actions/runs/*/jobs`.
        A 403 without a body is GitHub's primary rate limit answer.
        """
        if body is None:
            if status == 403:
                body = shapes.error("API rate limit exceeded for user ID 1.", status)
            else:
                body = shapes.error("Server Error" if status >= 500 else "Error", status)
        self._forced.append(_ForcedFailure(method.upper(), path_pattern, status, body, times))

    def fault_next(self, method: str, path_pattern: str, kind: str, *, times: int = 1) -> None:
        """Inject the fault `kind` (`github_faults.FaultKind`) into the next `times` requests
        matching (method or `*`, glob on the path relative to the API base)."""
        self._faults.next(method, path_pattern, kind, times=times)

    def inject_faults(self, *, rate: float, seed: int, kinds: Sequence[str] | None = None) -> None:
        """Fault about `rate` of all API requests from now on, drawn from `kinds` (default: every
        kind) by a generator seeded with `seed`; rate 0 turns it off. See `github_faults`."""
        self._faults.random(rate=rate, seed=seed, kinds=kinds)

    @property
    def faults_injected(self) -> Counter[str]:
        """How many faults of each kind were injected so far."""
        return self._faults.injected

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
        if not (self._outbox and self._callbacks):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a knob used from a thread): the next request or settle() delivers
        self._spawn(loop.create_task(self._flush()))

    async def _flush(self) -> None:
        async with self._flush_lock:
            while self._outbox:
                name, payload = self._outbox.pop(0)
                for callback in list(self._callbacks):
                    result = callback(name, payload)
                    if inspect.isawaitable(result):
                        await result

    def _record_transition(self, transition: Transition) -> None:
        if not self._callbacks:
            return
        urls, branch = self.urls, self.default_branch
        base: Json = {
            "repository": shapes.repository(urls, default_branch=branch),
            "sender": shapes.user(urls, transition.run.actor),
        }
        sim_job = transition.job
        if transition.kind == "workflow_run":
            payload = {
                "action": transition.action,
                "workflow_run": shapes.run(urls, transition.run, default_branch=branch),
                "workflow": shapes.workflow(urls, transition.run.workflow, default_branch=branch),
                **base,
            }
            self._outbox.append(("workflow_run", payload))
        elif transition.kind == "workflow_job" and sim_job is not None:
            payload = {
                "action": transition.action,
                "workflow_job": shapes.job(urls, sim_job, transition.run),
                **base,
            }
            self._outbox.append(("workflow_job", payload))
            if transition.action == "waiting":
                self._outbox.append(
                    (
                        "deployment_review",
                        shapes.deployment_review_event(
                            urls,
                            "requested",
                            transition.run,
                            sim_job,
                            None,
                            default_branch=branch,
                            reviewer=self.actor,
                        ),
                    )
                )
        elif sim_job is not None:
            payload = shapes.deployment_review_event(
                urls,
                transition.action,
                transition.run,
                sim_job,
                transition.review,
                default_branch=branch,
                reviewer=self.actor,
            )
            self._outbox.append(("deployment_review", payload))

    def _workflow(self, id_or_file: str) -> Workflow | None:
        for spec in self.engine.workflows:
            if id_or_file in (str(spec.id), spec.file_name):
                return spec
        return None

    def _rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": str(self.rate_limit_remaining),
            "X-RateLimit-Used": str(RATE_LIMIT - self.rate_limit_remaining),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Resource": "core",
        }

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        request[BODY] = body
        path = request.path.removeprefix(self._api_path) or "/"
        fault = None
        if request.path.startswith(f"{self._api_path}/") and not path.startswith(
            f"{DOWNLOAD_PREFIX}/"
        ):
            fault = self._faults.draw(request.method, path)
        response = await self._faulty(request, handler, path, body, fault)
        self.requests.append(
            RecordedRequest(
                request.method,
                path,
                dict(request.query),
                body,
                response.status,
                request.headers.get("If-None-Match"),
                fault.value if fault is not None else None,
            )
        )
        self._schedule_flush()
        if fault is FaultKind.ACCEPT_THEN_DROP and request.transport is not None:
            request.transport.abort()  # the request took effect; its answer is never sent
        return response

    async def _faulty(
        self,
        request: web.Request,
        handler: Handler,
        path: str,
        body: Any,
        fault: FaultKind | None,
    ) -> web.StreamResponse:
        """The answer to the request, with `fault` injected (see `github_faults`)."""
        if fault is FaultKind.SERVER_ERROR:
            return json_response(shapes.error("Server Error", 502), 502, self._rate_headers())
        if fault is FaultKind.SECONDARY_RATE_LIMIT:
            status = self._faults.rate_limit_status()
            message = SECONDARY_RATE_LIMIT_MESSAGE.format(request_id=request_id())
            headers = {**self._rate_headers(), "Retry-After": str(self.retry_after)}
            return json_response(shapes.error(message, status), status, headers)
        if fault is FaultKind.TIMEOUT:
            await asyncio.sleep(self.fault_delay)
        response = await self._respond(request, handler, path, body)
        if fault is FaultKind.APPLY_THEN_502:
            return json_response(shapes.error("Server Error", 502), 502, self._rate_headers())
        return response

    async def _respond(
        self, request: web.Request, handler: Handler, path: str, body: Any
    ) -> web.StreamResponse:
        if not request.path.startswith(f"{self._api_path}/"):
            return json_response(shapes.error("Not Found", 404), 404)
        if not path.startswith(f"{DOWNLOAD_PREFIX}/"):
            denied = self._authenticate(request)
            if denied is not None:
                return denied
        for forced in self._forced:
            if forced.method in ("*", request.method) and fnmatch.fnmatchcase(path, forced.pattern):
                forced.remaining -= 1
                self._forced = [f for f in self._forced if f.remaining > 0]
                headers = self._rate_headers()
                if forced.status == 403 and "rate limit" in str(forced.body.get("message", "")):
                    headers["X-RateLimit-Remaining"] = "0"
                return json_response(forced.body, forced.status, headers)
        if isinstance(body, str):
            return json_response(shapes.error("Problems parsing JSON", 400), 400)
        self.engine.process()
        try:
            response = await handler(request)
        except web.HTTPException:
            # aiohttp's own 404/405 for unknown paths: GitHub answers 404 for both.
            response = json_response(shapes.error("Not Found", 404), 404)
        except ActionsError as exc:
            response = json_response(shapes.error(exc.message, exc.status), exc.status)
        if (
            request.method == "GET"
            and response.status == 200
            and isinstance(response, web.Response)
        ):
            payload = response.body if isinstance(response.body, bytes) else b""
            etag = 'W/"' + hashlib.sha256(payload).hexdigest()[:40] + '"'
            response.headers["ETag"] = etag
            if etag in request.headers.get("If-None-Match", ""):
                return web.Response(status=304, headers={"ETag": etag, **self._rate_headers()})
        self.rate_limit_remaining = max(self.rate_limit_remaining - 1, 0)
        response.headers.update(self._rate_headers())
        return response

    def _authenticate(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if not header:
            return json_response(shapes.error("Requires authentication", 401), 401)
        if scheme.lower() not in ("token", "bearer") or credential.strip() not in self.tokens:
            return json_response(shapes.error("Bad credentials", 401), 401)
        request[ACTOR] = self.tokens[credential.strip()]
        return None

    def _add_routes(self, app: web.Application) -> None:
        Routes(self).register(app, self._api_path)
