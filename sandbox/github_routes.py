"""The REST handlers of the GitHub simulator: paths, validation and answers as GitHub gives them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox import github_json as shapes
from sandbox.github_json import Json
from sandbox.github_runs import ActionsError, SimJob, SimRun
from sandbox.workflows import Workflow

if TYPE_CHECKING:
    from sandbox.github import GitHubSimulator
    from sandbox.github_repository import SimRepository

DOWNLOAD_PREFIX = "/_sandbox"
ACTOR = web.RequestKey("actor", str)
BODY = web.RequestKey("body", object)
_RUN_FILTERS = ("event", "branch", "actor", "status", "created", "head_sha")


@dataclass(frozen=True)
class Dispatch:
    """A workflow_dispatch the simulator accepted, and the run it created."""

    workflow_id: int
    workflow_path: str
    ref: str
    inputs: dict[str, str]
    return_run_details: bool
    actor: str
    at: datetime
    run_id: int


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(data, status=status, headers=dict(headers or {}))


def invalid(detail: str) -> ActionsError:
    return ActionsError(422, f"Invalid request.\n\n{detail}")


def not_found() -> ActionsError:
    return ActionsError(404, "Not Found")


def normalize_ref(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    return ref


def _parse_bound(text: str) -> tuple[datetime, datetime]:
    """A date or a timestamp of GitHub's search syntax as a half-open [start, end) interval."""
    if len(text) == 10:
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return day, day + timedelta(days=1)
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when, when + timedelta(seconds=1)


def created_filter_matches(expression: str, created_at: datetime) -> bool:
    """GitHub's `created` filter: `>=T`, `>T`, `<=T`, `<T`, `A..B` (with `*`), or a date/time."""
    when = created_at.replace(microsecond=0)
    for operator in (">=", "<=", ">", "<"):
        if expression.startswith(operator):
            start, end = _parse_bound(expression.removeprefix(operator))
            return {
                ">=": when >= start,
                "<=": when < end,
                ">": when >= end,
                "<": when < start,
            }[operator]
    if ".." in expression:
        low, high = expression.split("..", 1)
        after = low == "*" or when >= _parse_bound(low)[0]
        return after and (high == "*" or when < _parse_bound(high)[1])
    start, end = _parse_bound(expression)
    return start <= when < end


def _run_matches(sim: SimRun, filters: Mapping[str, str]) -> bool:
    for name, value in filters.items():
        matched = {
            "event": sim.event == value,
            "branch": sim.branch == value,
            "actor": sim.actor.lower() == value.lower(),
            "status": value in (sim.status, sim.conclusion),
            "head_sha": sim.head_sha == value,
        }.get(name)
        if name == "created":
            matched = created_filter_matches(value, sim.created_at)
        if matched is False:
            return False
    return True


class SimulatorRoutes:
    """What the REST handlers share: the simulator, the repository of the path, pagination."""

    def __init__(self, sim: GitHubSimulator) -> None:
        self.sim = sim

    def _repository(self, request: web.Request) -> SimRepository:
        """The repository `/repos/{owner}/{repo}/...` names (404 Not Found, as GitHub
        answers, for one the simulator does not serve)."""
        full_name = f"{request.match_info['owner']}/{request.match_info['repo']}"
        found = self.sim.repository_named(full_name)
        if found is None:
            raise not_found()
        return found

    def _workflow(self, request: web.Request) -> tuple[SimRepository, Workflow]:
        repository = self._repository(request)
        spec = repository.workflow(request.match_info["workflow"])
        if spec is None:
            raise not_found()
        return repository, spec

    def _listing(
        self, request: web.Request, items: list[Json], *, wrapped_in: str | None = None
    ) -> web.Response:
        """A page of `items` and its Link header: bare, or under `wrapped_in` by `total_count`."""
        try:
            per_page = min(max(int(request.query.get("per_page", "30")), 1), 100)
            page = max(int(request.query.get("page", "1")), 1)
        except ValueError as exc:
            raise invalid("per_page and page must be integers.") from exc
        if self.sim.variation is not None:
            per_page = self.sim.variation.per_page(per_page)
        last = max((len(items) + per_page - 1) // per_page, 1)
        named = [("prev", page - 1), ("next", page + 1), ("first", 1), ("last", last)]
        if self.sim.variation is not None:
            named = self.sim.variation.links(named)
        links = []
        for rel, number in named:
            if (rel in ("prev", "first") and page > 1) or (rel in ("next", "last") and page < last):
                links.append(f'<{request.url.update_query(page=str(number))}>; rel="{rel}"')
        headers = {"Link": ", ".join(links)} if links else {}
        shown = items[(page - 1) * per_page : page * per_page]
        answer = shown if wrapped_in is None else {"total_count": len(items), wrapped_in: shown}
        return json_response(answer, headers=headers)


class RunRoutes(SimulatorRoutes):
    """Dispatches, workflow runs, jobs and their logs, and the reviews of deployments."""

    def register(self, app: web.Application, prefix: str) -> None:
        actions = f"{prefix}/repos/{{owner}}/{{repo}}/actions"
        app.router.add_post(f"{actions}/workflows/{{workflow}}/dispatches", self.dispatch)
        app.router.add_get(f"{actions}/workflows/{{workflow}}/runs", self.list_workflow_runs)
        app.router.add_get(f"{actions}/runs", self.list_runs)
        app.router.add_get(f"{actions}/runs/{{run_id:\\d+}}", self.get_run)
        app.router.add_post(f"{actions}/runs/{{run_id:\\d+}}/cancel", self.cancel_run)
        app.router.add_post(f"{actions}/runs/{{run_id:\\d+}}/rerun", self.rerun_run)
        app.router.add_get(f"{actions}/runs/{{run_id:\\d+}}/jobs", self.list_jobs)
        pending = f"{actions}/runs/{{run_id:\\d+}}/pending_deployments"
        app.router.add_get(pending, self.list_pending_deployments)
        app.router.add_post(pending, self.review_pending_deployments)
        app.router.add_get(f"{actions}/runs/{{run_id:\\d+}}/approvals", self.list_approvals)
        app.router.add_get(f"{actions}/jobs/{{job_id:\\d+}}", self.get_job)
        app.router.add_get(f"{actions}/jobs/{{job_id:\\d+}}/logs", self.job_logs_redirect)
        download = f"{prefix}{DOWNLOAD_PREFIX}"
        app.router.add_get(f"{download}/job-logs/{{job_id:\\d+}}", self.download_job_logs)

    def _run(self, request: web.Request) -> tuple[SimRepository, SimRun]:
        repository = self._repository(request)
        sim = repository.runs.get(int(request.match_info["run_id"]))
        if sim is None:
            raise not_found()
        return repository, sim

    def _job(self, repositories: list[SimRepository], job_id: int) -> tuple[SimJob, SimRun]:
        for repository in repositories:
            for sim_run in repository.runs.values():
                for sim_job in sim_run.jobs:
                    if sim_job.id == job_id:
                        return sim_job, sim_run
        raise not_found()

    def _run_json(self, repository: SimRepository, sim: SimRun) -> Json:
        return shapes.run(repository.urls, sim, default_branch=repository.default_branch)

    def _runs_response(
        self, request: web.Request, repository: SimRepository, workflow_id: int | None
    ) -> web.Response:
        filters = {name: request.query[name] for name in _RUN_FILTERS if name in request.query}
        try:
            matching = [
                sim
                for sim in repository.runs.values()
                if workflow_id in (None, sim.workflow.id)
                and _run_matches(sim, filters)
                and sim.workflow.path not in repository.unlisted_workflows
            ]
        except ValueError as exc:
            raise invalid(
                f"For 'created', {filters.get('created')!r} is not a valid date."
            ) from exc
        # Newest first, as GitHub lists them (its reference promises no order); variation: oldest.
        newest_first = self.sim.variation is None
        matching.sort(key=lambda sim: (sim.created_at, sim.id), reverse=newest_first)
        items = [self._run_json(repository, sim) for sim in matching]
        return self._listing(request, items, wrapped_in="workflow_runs")

    # -- dispatch -------------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.Response:
        repository, spec = self._workflow(request)
        body = request.get(BODY)
        if not isinstance(body, dict):
            raise invalid("Body must be a JSON object.")
        permitted = {"ref", "inputs"} | (set() if self.sim.enterprise else {"return_run_details"})
        for key in body:
            if key not in permitted:
                raise invalid(f'"{key}" is not a permitted key.')
        if "ref" not in body:
            raise invalid('"ref" wasn\'t supplied.')
        ref = body["ref"]
        if not isinstance(ref, str):
            raise invalid(f"For 'properties/ref', {json.dumps(ref)} is not a string.")
        return_details = body.get("return_run_details", False)
        if not isinstance(return_details, bool):
            raise invalid(
                f"For 'properties/return_run_details', {json.dumps(return_details)} "
                "is not a boolean."
            )
        inputs = body.get("inputs", {})
        if not isinstance(inputs, dict):
            raise invalid(f"For 'properties/inputs', {json.dumps(inputs)} is not an object.")
        for name, value in inputs.items():
            if not isinstance(value, str):
                raise invalid(f"For 'properties/{name}', {json.dumps(value)} is not a string.")
        if "workflow_dispatch" not in spec.events:
            raise ActionsError(422, "Workflow does not have 'workflow_dispatch' trigger")
        branch = normalize_ref(ref)
        if branch not in repository.refs and branch not in repository.files:
            raise ActionsError(422, f"No ref found for: {ref}")
        declared = {spec_input.name for spec_input in spec.inputs}
        unexpected = sorted(set(inputs) - declared)
        if unexpected:
            raise ActionsError(422, f"Unexpected inputs provided: {json.dumps(unexpected)}")
        for spec_input in spec.inputs:
            if spec_input.required and spec_input.name not in inputs:
                raise ActionsError(422, f"Required input '{spec_input.name}' not provided")
        actor = request[ACTOR]
        sim_run = repository.engine.start_run(
            spec, event="workflow_dispatch", branch=branch, actor=actor, inputs=inputs
        )
        repository.dispatches.append(
            Dispatch(
                workflow_id=spec.id,
                workflow_path=spec.path,
                ref=ref,
                inputs=dict(inputs),
                return_run_details=return_details,
                actor=actor,
                at=sim_run.created_at,
                run_id=sim_run.id,
            )
        )
        repository.engine.process()
        if not return_details:
            return web.Response(status=204)
        run_json = self._run_json(repository, sim_run)
        return json_response(
            {
                "workflow_run_id": sim_run.id,
                "run_url": run_json["url"],
                "html_url": run_json["html_url"],
            }
        )

    # -- runs and jobs --------------------------------------------------------------------------

    async def list_runs(self, request: web.Request) -> web.Response:
        return self._runs_response(request, self._repository(request), None)

    async def list_workflow_runs(self, request: web.Request) -> web.Response:
        repository, spec = self._workflow(request)
        return self._runs_response(request, repository, spec.id)

    async def get_run(self, request: web.Request) -> web.Response:
        return json_response(self._run_json(*self._run(request)))

    async def cancel_run(self, request: web.Request) -> web.Response:
        repository, sim_run = self._run(request)
        repository.engine.cancel(sim_run.id)
        return json_response({}, status=202)

    async def rerun_run(self, request: web.Request) -> web.Response:
        repository, sim_run = self._run(request)
        repository.engine.rerun(sim_run.id, by=request[ACTOR])
        repository.engine.process()
        return json_response({}, status=201)

    async def list_jobs(self, request: web.Request) -> web.Response:
        repository, sim_run = self._run(request)
        items = [shapes.job(repository.urls, sim_job, sim_run) for sim_job in sim_run.jobs]
        return self._listing(request, items, wrapped_in="jobs")

    async def get_job(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        sim_job, sim_run = self._job([repository], int(request.match_info["job_id"]))
        return json_response(shapes.job(repository.urls, sim_job, sim_run))

    async def job_logs_redirect(self, request: web.Request) -> web.Response:
        repository = self._repository(request)
        sim_job, _ = self._job([repository], int(request.match_info["job_id"]))
        location = f"{self.sim.api_url}{DOWNLOAD_PREFIX}/job-logs/{sim_job.id}"
        return web.Response(status=302, headers={"Location": location})

    async def download_job_logs(self, request: web.Request) -> web.Response:
        # Job ids are global: the download link names the job alone, as GitHub's does.
        repositories = list(self.sim.repositories.values())
        sim_job, _ = self._job(repositories, int(request.match_info["job_id"]))
        lines: list[str] = []
        for step in sim_job.steps:
            if step.started_at is None:
                continue
            stamp = shapes.log_timestamp(step.started_at)
            lines.append(f"{stamp} ##[group]{step.name}")
            lines.append(f"{stamp} ##[endgroup]")
            lines.extend(f"{stamp} {line}" for line in step.lines)
            if step.conclusion == "failure":
                lines.append(f"{stamp} ##[error]Process completed with exit code 1.")
        return web.Response(text="".join(f"{line}\n" for line in lines), content_type="text/plain")

    # -- reviews --------------------------------------------------------------------------------

    async def list_pending_deployments(self, request: web.Request) -> web.Response:
        repository, sim_run = self._run(request)
        seen: dict[str, Json] = {}
        for sim_job in repository.engine.waiting_jobs(sim_run.id):
            assert sim_job.environment is not None
            # Every environment waiting for its protection rules; only its required reviewers
            # (the simulator's reviewer account) may approve it here.
            reviewers = "reviewers" in sim_job.gates
            if not reviewers and not self.sim.pending_lists_rules:
                continue
            env_id = repository.engine.environments[sim_job.environment]
            seen.setdefault(
                sim_job.environment,
                shapes.pending_deployment(
                    repository.urls,
                    sim_job,
                    env_id,
                    reviewer=self.sim.actor if reviewers else None,
                    can_approve=reviewers and request[ACTOR] == self.sim.actor,
                ),
            )
        return json_response(list(seen.values()))

    async def list_approvals(self, request: web.Request) -> web.Response:
        """The run's review history: every approval or rejection, by whom, oldest first."""
        repository, sim_run = self._run(request)
        urls, ids = repository.urls, repository.engine.environments
        reviews = [r for r in repository.reviews if r.run_id == sim_run.id]
        return json_response([shapes.review(urls, review, ids) for review in reviews])

    async def review_pending_deployments(self, request: web.Request) -> web.Response:
        repository, sim_run = self._run(request)
        body = request.get(BODY)
        if not isinstance(body, dict):
            raise invalid("Body must be a JSON object.")
        for key in ("environment_ids", "state", "comment"):
            if key not in body:
                raise invalid(f'"{key}" wasn\'t supplied.')
        ids = body["environment_ids"]
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise invalid(
                f"For 'properties/environment_ids', {json.dumps(ids)} is not an array of integers."
            )
        state = body["state"]
        if state not in ("approved", "rejected"):
            raise invalid(
                f"For 'properties/state', {json.dumps(state)} "
                'is not one of ["approved", "rejected"].'
            )
        comment = body["comment"]
        if not isinstance(comment, str):
            raise invalid(f"For 'properties/comment', {json.dumps(comment)} is not a string.")
        created = repository.engine.review(
            sim_run.id, environment_ids=ids, state=state, comment=comment, actor=request[ACTOR]
        )
        return json_response([shapes.deployment(repository.urls, d) for d in created])
