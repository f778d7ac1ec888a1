"""The production GitHub gateway: PyGithub, run in a bounded thread pool, off the event loop.

PyGithub is synchronous. Every call runs in a `ThreadPoolExecutor` through
`loop.run_in_executor`. Reads (GET, HEAD) are retried by PyGithub's own `GithubRetry` on 5xx,
timeouts, resets and rate limits, with backoff and jitter, honouring `Retry-After` and
`X-RateLimit-Reset` up to a bound; writes are never repeated by the library. A write whose
answer is unclear (5xx, timeout, reset) is looked up instead: a review is read back from the
run's pending deployments and review history, a dispatch is searched for among the runs.
What still fails surfaces as a `GitHubError` whose message a release engineer can act on (and
which never carries the token). Pending deployments have no PyGithub method: they go through
its public `requester`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.error import HTTPError
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import Request, urlopen

import requests
from github import (
    Auth,
    Github,
    GithubException,
    GithubRetry,
    RateLimitExceededException,
    UnknownObjectException,
)
from github.Workflow import Workflow
from github.WorkflowRun import WorkflowRun
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

from bot.domain.errors import GitHubError, GitHubRateLimited, RunNotIdentified
from bot.domain.npm import JobStep, ReleaseJob, ReleaseRun, SecretMetadata
from bot.domain.run import (
    EnvironmentReview,
    JobConclusion,
    JobSnapshot,
    JobStatus,
    RunRef,
    RunSnapshot,
)
from bot.ports import ReviewState

T = TypeVar("T")
_log = logging.getLogger(__name__)

# What each refusal usually means, by operation kind and status: the fix a person can make.
_HINTS: Mapping[tuple[str, int], str] = {
    ("dispatch", 403): "the token needs the Actions write permission on the repository",
    ("dispatch", 404): "check GITHUB_REPOSITORY and the workflow file name",
    ("review", 403): "the token needs a reviewer's rights on the environment",
    ("review", 404): "check GITHUB_REPOSITORY and that the run exists",
    ("read", 403): "the token needs read access to the repository's contents and Actions",
    ("read", 404): "check GITHUB_REPOSITORY and that the token can see the repository",
    ("secret", 403): (
        "the bot's GitHub token may not read the repository's Actions secrets: a fine-grained "
        "token needs the repository permission Secrets: Read, a classic token the repo scope, "
        "a GitHub App the Secrets read permission, and the account collaborator access"
    ),
    ("release", 403): (
        "the bot's GitHub token needs read access to Actions on the repository "
        "(fine-grained token: Actions: Read)"
    ),
    ("release", 404): (
        "check that the workflow file exists in .github/workflows on the default branch "
        "(the plan's npm.workflow) and GITHUB_REPOSITORY"
    ),
}


class PyGithubGateway:
    """`GitHubGateway` for one repository, on github.com or GitHub Enterprise Server."""

    def __init__(
        self,
        *,
        api_url: str,
        token: str,
        repository: str,
        max_workers: int = 4,
        actor: str | None = None,
        find_attempts: int = 10,
        find_delay: float = 1.0,
        clock_skew: timedelta = timedelta(seconds=2),
        timeout: int = 15,
        retries: int = 4,
        backoff: float = 0.5,
        rate_limit_wait: float = 30.0,
    ) -> None:
        if repository.count("/") != 1:
            raise ValueError("repository must be owner/name")
        if find_attempts < 1:
            raise ValueError("find_attempts must be at least 1")
        self._token = token
        self._repository = repository
        self._actor = actor
        self._find_attempts = find_attempts
        self._find_delay = find_delay
        self._clock_skew = clock_skew
        self._client = Github(
            base_url=api_url.rstrip("/"),
            auth=Auth.Token(token),
            timeout=timeout,
            retry=read_retry(total=retries, backoff=backoff, rate_limit_wait=rate_limit_wait),
            seconds_between_requests=None,
            seconds_between_writes=None,
            per_page=100,
            pool_size=max_workers,
            lazy=True,
        )
        self._repo = self._client.get_repo(repository)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="github")
        # The last answer (and its ETag) of each conditional GET, newest last.
        self._answers: OrderedDict[str, tuple[str, Any]] = OrderedDict()
        self._answers_lock = threading.Lock()

    async def close(self) -> None:
        """Wait for the calls in flight, then release the threads and the HTTP connections."""
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)
        self._client.close()

    # -- dispatch and finding the run -----------------------------------------------------------

    async def dispatch(
        self, *, workflow_file: str, ref: str, inputs: Mapping[str, str], dispatched_at: datetime
    ) -> RunRef:
        """Dispatch once. An unclear answer (5xx, timeout, reset) may hide a run that started:
        it is searched for, never dispatched again; RunNotIdentified when it cannot be found."""
        operation = f"dispatch {workflow_file} on {ref}"
        workflow = self._repo.get_workflow(workflow_file)  # lazy: no request
        send = functools.partial(
            workflow.create_dispatch, ref, dict(inputs), throw=True, return_run_details=True
        )
        try:
            try:
                started: bool | WorkflowRun = await self._run(send)
            except GithubException as exc:
                if not _rejects_run_details(exc):
                    raise
                _log.info(
                    "GitHub does not return run details (GitHub Enterprise Server); "
                    "dispatching %s on %s again without them and looking for the run",
                    workflow_file,
                    ref,
                )
                started = await self._run(
                    functools.partial(workflow.create_dispatch, ref, dict(inputs), throw=True)
                )
        except GithubException as exc:
            if exc.status < 500:
                raise self._explain(operation, exc, kind="dispatch") from exc
            unclear = f"GitHub answered {exc.status} ({self._scrub(_message(exc))})"
        except OSError as exc:
            if _never_sent(exc):
                raise self._unreachable(operation, exc) from exc
            unclear = f"GitHub gave no answer ({_network_failure(exc)})"
        else:
            if isinstance(started, WorkflowRun):
                _log.info("GitHub: dispatched %s on %s: run %s", workflow_file, ref, started.id)
                return RunRef(run_id=started.id, html_url=started.html_url)
            return await self._await_dispatched_run(workflow, workflow_file, ref, dispatched_at)
        _log.warning(
            "GitHub: %s when asked to %s; the run may have started: looking for it",
            unclear,
            operation,
        )
        return await self._await_dispatched_run(
            workflow, workflow_file, ref, dispatched_at, unclear=unclear
        )

    async def find_dispatched_run(
        self, *, workflow_file: str, ref: str, dispatched_at: datetime
    ) -> RunRef | None:
        workflow = self._repo.get_workflow(workflow_file)
        candidates = await self._candidates(workflow, workflow_file, ref, dispatched_at)
        if len(candidates) == 1:
            return candidates[0]
        _log.info(
            "GitHub: %d candidate runs of %s on %s since %s; none taken",
            len(candidates),
            workflow_file,
            ref,
            _iso(dispatched_at),
        )
        return None

    async def _await_dispatched_run(
        self,
        workflow: Workflow,
        workflow_file: str,
        ref: str,
        dispatched_at: datetime,
        *,
        unclear: str | None = None,
    ) -> RunRef:
        """Poll for the run our dispatch created: GitHub lists it only after a moment.
        `unclear` says what GitHub answered when it is not known that it accepted it."""
        for attempt in range(self._find_attempts):
            if attempt:
                await asyncio.sleep(self._find_delay)
            try:
                candidates = await self._candidates(workflow, workflow_file, ref, dispatched_at)
            except GitHubError:
                continue  # the dispatch may have started a run: a failed look is no answer
            if len(candidates) == 1:
                _log.info(
                    "GitHub: dispatched %s on %s: found run %s",
                    workflow_file,
                    ref,
                    candidates[0].run_id,
                )
                return candidates[0]
            if len(candidates) > 1:
                links = ", ".join(c.html_url for c in candidates)
                _log.warning(
                    "GitHub: dispatched %s on %s: ambiguous runs %s", workflow_file, ref, links
                )
                raise RunNotIdentified(
                    f"GitHub started {workflow_file} on {ref}, but the run could not be "
                    f"identified unambiguously: {len(candidates)} runs by the bot's account "
                    f"since {_iso(dispatched_at)} ({links}). Cancel the stray run on GitHub: "
                    "the bot keeps looking and takes the run once it is the only one "
                    "(after 10 minutes it returns the rollout to its preflight)."
                )
        _log.warning("GitHub: dispatched %s on %s: no run appeared", workflow_file, ref)
        accepted = (
            f"{unclear} when asked to dispatch {workflow_file} on {ref}, so it may have "
            "started a run"
            if unclear is not None
            else f"GitHub accepted the dispatch of {workflow_file} on {ref}"
        )
        raise RunNotIdentified(
            f"{accepted}, but no run of it appeared after {self._find_attempts} looks. The bot "
            "keeps looking, and nobody can dispatch again until the run is found or the search "
            "ends. Check the workflow's runs on GitHub."
        )

    async def _candidates(
        self, workflow: Workflow, workflow_file: str, ref: str, dispatched_at: datetime
    ) -> list[RunRef]:
        """Runs of this workflow dispatched by our account on `ref` since `dispatched_at`.

        `dispatched_at` is the bot's clock, taken just before the request; GitHub stamps the run
        with its own clock, so the bound is moved back by `clock_skew`. A wider margin risks
        catching an earlier run of ours (then the search is ambiguous and takes nothing); a
        narrower one risks missing our run when the clocks disagree.
        """
        actor = await self._actor_login()
        branch = _branch(ref)
        since = (dispatched_at - self._clock_skew).astimezone(UTC).replace(microsecond=0)

        def search() -> list[WorkflowRun]:
            runs = workflow.get_runs(
                actor=actor,
                branch=branch,
                event="workflow_dispatch",
                created=f">={_iso(since)}",
            )
            # The same filters again, client-side: taking another person's run is the one
            # mistake this must never make, whatever the server did with the query.
            return [
                run
                for run in runs
                if run.event == "workflow_dispatch"
                and run.head_branch == branch
                and run.actor is not None
                and run.actor.login.casefold() == actor.casefold()
                and run.created_at >= since
                # A run someone cancelled is out of the question: cancelling the stray run
                # is how a person resolves an ambiguous dispatch.
                and run.conclusion != "cancelled"
            ]

        runs = await self._call(f"list the runs of {workflow_file} on {ref}", search)
        return [RunRef(run_id=run.id, html_url=run.html_url) for run in runs]

    async def _actor_login(self) -> str:
        """The login the token acts as (GET /user once, then cached)."""
        if self._actor is None:
            self._actor = await self._call(
                "read the token's account", lambda: self._client.get_user().login
            )
        return self._actor

    # -- observing the run ----------------------------------------------------------------------

    async def snapshot(self, run_id: int) -> RunSnapshot:
        """The run read with conditional requests: what did not change since the last look
        costs GitHub a 304 (no rate limit) and is rebuilt from the answer kept then."""

        def read() -> RunSnapshot:
            path = self._runs_path(run_id)
            run = self._get_conditional(path)
            jobs: dict[str, JobSnapshot] = {}
            for job in self._run_jobs(run_id):
                jobs[job["name"]] = _job_snapshot(
                    run_id,
                    str(job["name"]),
                    str(job.get("status") or "queued"),
                    job.get("conclusion"),
                    _when(job["completed_at"]) if job.get("completed_at") else None,
                    job.get("html_url"),
                    ran=bool(job.get("steps")) or job.get("runner_id") is not None,
                )
            pending = self._get_conditional(f"{path}/pending_deployments")
            waiting = frozenset(
                item["environment"]["name"] for item in (pending or []) if isinstance(item, dict)
            )
            return RunSnapshot(
                run_id=run_id,
                status=str(run["status"]),
                conclusion=run.get("conclusion"),
                html_url=str(run["html_url"]),
                jobs=jobs,
                waiting=waiting,
                reviews=self._reviews(run_id),
            )

        snapshot = await self._call(f"read run {run_id}", read, run_id=run_id)
        _log.info(
            "GitHub: run %s is %s; waiting for review: %s",
            run_id,
            snapshot.conclusion or snapshot.status,
            ", ".join(sorted(snapshot.waiting)) or "none",
        )
        return snapshot

    def _run_jobs(self, run_id: int) -> list[dict[str, Any]]:
        """Every job of the run's latest attempt (the first page conditionally; a run with more
        than 100 jobs reads its further pages every time)."""
        path = f"{self._runs_path(run_id)}/jobs"
        first = self._get_conditional(path, {"per_page": 100})
        jobs = list(first.get("jobs") or []) if isinstance(first, dict) else []
        total = int(first.get("total_count") or 0) if isinstance(first, dict) else 0
        page = 1
        while len(jobs) < total:
            page += 1
            _, more = self._client.requester.requestJsonAndCheck(
                "GET", path, parameters={"per_page": 100, "page": page}
            )
            found = list(more.get("jobs") or []) if isinstance(more, dict) else []
            if not found:
                break
            jobs.extend(found)
        return [job for job in jobs if isinstance(job, dict) and job.get("name")]

    def _reviews(self, run_id: int) -> tuple[EnvironmentReview, ...]:
        """Who approved or rejected which environment of the run (its review history)."""
        try:
            history = self._get_conditional(f"{self._runs_path(run_id)}/approvals")
        except UnknownObjectException:
            return ()  # a GitHub Enterprise Server without the review history API
        reviews = []
        for item in history if isinstance(history, list) else []:
            user = item.get("user") or {}
            for environment in item.get("environments") or []:
                reviews.append(
                    EnvironmentReview(
                        environment=str(environment.get("name", "")),
                        state=str(item.get("state", "")),
                        reviewer=str(user.get("login", "")),
                        comment=str(item.get("comment") or ""),
                    )
                )
        return tuple(reviews)

    def _get_conditional(self, path: str, parameters: dict[str, Any] | None = None) -> Any:
        """GET with `If-None-Match` set to the ETag of the last answer for this URL. GitHub
        answers 304 Not Modified when nothing changed (not counted against the rate limit);
        the answer kept from last time is returned then."""
        key = path + (f"?{urlencode(sorted(parameters.items()))}" if parameters else "")
        with self._answers_lock:
            kept = self._answers.get(key)
        headers = {"If-None-Match": kept[0]} if kept is not None else {}
        requester = self._client.requester
        status, answer_headers, body = requester.requestJson("GET", path, parameters, headers)
        if status == 304 and kept is not None:
            return kept[1]
        data = json.loads(body) if body else None
        if status >= 400:
            output = data if isinstance(data, dict) else {"message": str(body)[:200]}
            raise requester.createException(status, answer_headers, output)
        etag = answer_headers.get("etag")
        if etag:
            with self._answers_lock:
                self._answers[key] = (str(etag), data)
                self._answers.move_to_end(key)
                while len(self._answers) > _KEPT_ANSWERS:
                    self._answers.popitem(last=False)
        return data

    def _pending_deployments(self, run_id: int) -> list[dict[str, Any]]:
        _, data = self._client.requester.requestJsonAndCheck(
            "GET", f"{self._runs_path(run_id)}/pending_deployments"
        )
        return list(data) if isinstance(data, list) else []

    def _runs_path(self, run_id: int) -> str:
        return f"/repos/{self._repository}/actions/runs/{run_id}"

    # -- reviewing pending deployments ----------------------------------------------------------

    async def review(
        self, *, run_id: int, environments: Sequence[str], state: ReviewState, comment: str
    ) -> bool:
        verb = "approve" if state == "approved" else "reject"
        names = ", ".join(environments)
        operation = f"{verb} {names} on run {run_id}"
        pending = await self._call(
            f"read the deployments waiting on run {run_id}",
            functools.partial(self._pending_deployments, run_id),
            run_id=run_id,
            kind="review",
        )
        ids_by_name = {
            item["environment"]["name"].casefold(): int(item["environment"]["id"])
            for item in pending
        }
        wanted = {name.casefold() for name in environments}
        ids = sorted({ids_by_name[name] for name in wanted if name in ids_by_name})
        if not ids:
            _log.info("GitHub: run %s: %s not waiting, nothing to %s", run_id, names, verb)
            return False
        body = {"environment_ids": ids, "state": state, "comment": comment}
        try:
            await self._run(
                functools.partial(
                    self._client.requester.requestJsonAndCheck,
                    "POST",
                    f"{self._runs_path(run_id)}/pending_deployments",
                    input=body,
                )
            )
        except GithubException as exc:
            if exc.status == 422:
                # Raced: the deployment stopped waiting between our read and our review.
                _log.info("GitHub: run %s: %s no longer waiting (%s)", run_id, names, _message(exc))
                return False
            if exc.status < 500:
                raise self._explain(operation, exc, run_id=run_id, kind="review") from exc
            unclear = f"GitHub answered {exc.status} ({self._scrub(_message(exc))})"
        except OSError as exc:
            if _never_sent(exc):
                raise self._unreachable(operation, exc, run_id=run_id) from exc
            unclear = f"GitHub gave no answer ({_network_failure(exc)})"
        else:
            _log.info("GitHub: run %s: %s %s", run_id, state, names)
            return True
        return await self._read_back_review(
            run_id=run_id, ids=ids, state=state, operation=operation, unclear=unclear
        )

    async def _read_back_review(
        self, *, run_id: int, ids: Sequence[int], state: ReviewState, operation: str, unclear: str
    ) -> bool:
        """After an unclear answer to a review, what GitHub holds now tells whether it was
        applied: True when the run's review history has our review of those environments,
        False when someone else's review took them, GitHubError when they still wait."""
        path = self._runs_path(run_id)

        def read() -> tuple[set[int], list[Any]]:
            waiting = {int(item["environment"]["id"]) for item in self._pending_deployments(run_id)}
            try:
                _, history = self._client.requester.requestJsonAndCheck("GET", f"{path}/approvals")
            except UnknownObjectException:
                history = []  # a GitHub Enterprise Server without the review history API
            return waiting, history if isinstance(history, list) else []

        try:
            actor = await self._actor_login()
            waiting, history = await self._call(
                f"read back the reviews of run {run_id}", read, run_id=run_id, kind="review"
            )
        except GitHubError as error:
            text = (
                f"{unclear} when asked to {operation}, and whether it was applied could not be "
                f"read back ({error.message}) The bot looks again at its next poll; the card "
                "shows the outcome."
            )
            _log.warning("GitHub: run %s: %s", run_id, text)
            raise GitHubError(text) from None
        if waiting & set(ids):
            # Repeating it is safe: a review of a deployment that no longer waits is refused.
            text = f"{unclear} when asked to {operation}; it was not applied: try again."
            _log.warning("GitHub: run %s: %s", run_id, text)
            raise GitHubError(text)
        ours = any(
            isinstance(entry, dict)
            and entry.get("state") == state
            and str((entry.get("user") or {}).get("login", "")).casefold() == actor.casefold()
            and {int(e.get("id", 0)) for e in entry.get("environments") or []} & set(ids)
            for entry in history
        )
        _log.warning(
            "GitHub: run %s: %s when asked to %s; read back: %s",
            run_id,
            unclear,
            operation,
            "it was applied" if ours else "someone else's review came first",
        )
        return ours

    # -- repository contents --------------------------------------------------------------------

    async def list_directory(self, *, path: str, ref: str) -> list[str]:
        operation = f"list {path} at {ref}"
        try:
            contents = await self._run(functools.partial(self._repo.get_contents, path, ref=ref))
        except GithubException as exc:
            # A missing directory is a plain "Not Found"; a missing ref says so ("No commit
            # found for the ref ..."), and must not read as "no files here".
            if exc.status == 404 and _message(exc) == "Not Found":
                _log.info("GitHub: %s: no such directory", operation)
                return []
            raise self._explain(operation, exc, kind="read") from exc
        except OSError as exc:
            raise self._unreachable(operation, exc) from exc
        if not isinstance(contents, list):
            raise GitHubError(f"Could not {operation}: it is a file, not a directory.")
        return sorted(entry.path for entry in contents if entry.type == "file")

    async def read_file(self, *, path: str, ref: str) -> str:
        operation = f"read {path} at {ref}"

        def read() -> str:
            content = self._repo.get_contents(path, ref=ref)
            if isinstance(content, list):
                raise GitHubError(f"Could not {operation}: it is a directory, not a file.")
            if content.encoding != "base64":
                # GitHub leaves `content` empty for files over 1 MB.
                raise GitHubError(
                    f"Could not {operation}: GitHub does not return its content "
                    f"({content.size} bytes is too large for the contents API)."
                )
            return content.decoded_content.decode("utf-8")

        return await self._call(operation, read, kind="read")

    # -- packages -------------------------------------------------------------------------------

    async def image_published(self, *, package: str, tag: str) -> bool:
        """Whether GitHub Packages has the container `package` with this tag (the repository
        owner's package, as an organisation's or else a user's)."""
        owner = self._repository.split("/")[0]
        operation = f"look up the container image {package}:{tag}"

        def lookup() -> bool:
            for kind in ("orgs", "users"):
                url = f"/{kind}/{owner}/packages/container/{package}/versions"
                try:
                    for page in range(1, 11):  # the newest 1,000 versions
                        _, versions = self._client.requester.requestJsonAndCheck(
                            "GET", url, parameters={"per_page": 100, "page": page}
                        )
                        if any(tag in _tags(version) for version in versions):
                            return True
                        if len(versions) < 100:
                            break
                    return False
                except GithubException as exc:
                    if exc.status != 404:
                        raise
            return False  # no such package (yet) under the organisation or the user

        return await self._call(operation, lookup, kind="read")

    # -- the npm Release workflow ---------------------------------------------------------------
    # Runs and jobs are read as JSON through the requester: one run is all that is needed, and
    # PyGithub's lists fetch pages of a hundred.

    async def secret(self, name: str) -> SecretMetadata | None:
        def read() -> SecretMetadata | None:
            secret = self._repo.get_secret(name)  # lazy: the first attribute fetches it
            try:
                return SecretMetadata(
                    name=secret.name, created_at=secret.created_at, updated_at=secret.updated_at
                )
            except UnknownObjectException:
                return None

        found = await self._call(f"read the Actions secret {name}", read, kind="secret")
        _log.info("GitHub: Actions secret %s %s", name, "is set" if found else "is not set")
        return found

    async def latest_run(self, *, workflow_file: str) -> ReleaseRun | None:
        path = f"/repos/{self._repository}/actions/workflows/{quote(workflow_file, safe='')}/runs"

        def read() -> ReleaseRun | None:
            _, data = self._client.requester.requestJsonAndCheck(
                "GET", path, parameters={"per_page": 1, "exclude_pull_requests": "true"}
            )
            runs = data.get("workflow_runs") if isinstance(data, dict) else None
            return _release_run(runs[0]) if runs else None

        return await self._call(f"list the runs of {workflow_file}", read, kind="release")

    async def release_run(self, run_id: int) -> ReleaseRun:
        def read() -> ReleaseRun:
            _, data = self._client.requester.requestJsonAndCheck("GET", self._runs_path(run_id))
            return _release_run(data)

        return await self._call(f"read run {run_id}", read, run_id=run_id, kind="release")

    async def release_job(self, *, run_id: int, name: str) -> ReleaseJob | None:
        def read() -> ReleaseJob | None:
            _, data = self._client.requester.requestJsonAndCheck(
                "GET", f"{self._runs_path(run_id)}/jobs", parameters={"per_page": 100}
            )
            jobs = data.get("jobs") if isinstance(data, dict) else None
            for job in jobs or []:
                # A matrix job is reported as "name (value, ...)".
                if job.get("name") == name or str(job.get("name", "")).startswith(f"{name} ("):
                    return _release_job(job)
            return None

        return await self._call(
            f"read the jobs of run {run_id}", read, run_id=run_id, kind="release"
        )

    async def job_log(self, job_id: int) -> str:
        operation = f"read the log of job {job_id}"

        def read() -> str:
            # GitHub answers 302 to a short-lived signed address on another host: fetched
            # without the token, which must never leave for a host that is not GitHub's API.
            headers, _ = self._client.requester.requestBlobAndCheck(
                "GET", f"/repos/{self._repository}/actions/jobs/{job_id}/logs"
            )
            location = str(headers.get("location") or "")
            if urlsplit(location).scheme not in ("https", "http"):
                raise GitHubError(f"Could not {operation}: GitHub gave no address for it.")
            try:
                return _download_tail(location, limit=_LOG_LIMIT)
            except HTTPError as exc:
                # 410 Gone: the log outlived the repository's retention period.
                raise GitHubError(
                    f"Could not {operation}: its download answered {exc.code} "
                    "(logs are deleted after the repository's retention period)."
                ) from None

        return await self._call(operation, read, kind="release")

    # -- plumbing -------------------------------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def _call(
        self,
        operation: str,
        fn: Callable[[], T],
        *,
        run_id: int | None = None,
        kind: str = "read",
    ) -> T:
        """Run `fn` in the pool; turn GitHub's refusals and network failures into GitHubError."""
        try:
            return await self._run(fn)
        except GithubException as exc:
            raise self._explain(operation, exc, run_id=run_id, kind=kind) from exc
        except OSError as exc:  # requests' errors are OSErrors
            raise self._unreachable(operation, exc, run_id=run_id) from exc
        except UnicodeDecodeError as exc:
            raise GitHubError(f"Could not {operation}: it is not UTF-8 text.") from exc

    def _explain(
        self, operation: str, exc: GithubException, *, run_id: int | None = None, kind: str
    ) -> GitHubError:
        status, message = exc.status, self._scrub(_message(exc))
        if status == 401:
            text = (
                f"GitHub rejected the token (401 {message}) when asked to {operation}: "
                "check GITHUB_TOKEN."
            )
        elif _rate_limited(exc):
            text = (
                f"GitHub rate limited the bot ({status}: {message}) when asked to {operation}; "
                f"{_reset_hint(exc)}"
            )
        elif status >= 500:
            # Only reads come here: an unclear answer to a write is looked up by the caller.
            text = f"GitHub answered {status} ({message}) when asked to {operation}; try again."
        else:
            text = f"GitHub refused to {operation} ({status}: {message})"
            hint = _HINTS.get((kind, status))
            text = f"{text}: {hint}." if hint else f"{text}."
        _log.warning("GitHub: run %s: %s", run_id if run_id is not None else "-", text)
        if _rate_limited(exc):
            return GitHubRateLimited(text, retry_after=_retry_after(exc))
        return GitHubError(text)

    def _unreachable(
        self, operation: str, exc: OSError, *, run_id: int | None = None
    ) -> GitHubError:
        text = (
            f"GitHub could not be reached when asked to {operation} "
            f"({_network_failure(exc)}); try again."
        )
        _log.warning("GitHub: run %s: %s", run_id if run_id is not None else "-", text)
        return GitHubError(text)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


def _tags(version: Any) -> list[str]:
    metadata = version.get("metadata") if isinstance(version, dict) else None
    container = metadata.get("container") if isinstance(metadata, dict) else None
    tags = container.get("tags") if isinstance(container, dict) else None
    return [str(tag) for tag in tags] if isinstance(tags, list) else []


_KEPT_ANSWERS = 512
"""Conditional GET answers kept (about four per run followed): the oldest go first."""

_LOG_LIMIT = 4 * 1024 * 1024
"""The bytes of a job log kept: its end, where npm's errors are."""


def _download_tail(url: str, *, limit: int) -> str:
    request = Request(url, headers={"User-Agent": "rollout-bot"})  # noqa: S310 - http(s) only
    kept = bytearray()
    with urlopen(request, timeout=30) as response:  # noqa: S310 - http(s) checked by the caller
        while chunk := response.read(64 * 1024):
            kept += chunk
            if len(kept) > limit:
                del kept[:-limit]
    return kept.decode("utf-8", errors="replace")


def _when(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def _release_run(data: Any) -> ReleaseRun:
    return ReleaseRun(
        run_id=int(data["id"]),
        number=int(data.get("run_number") or 0),
        html_url=str(data["html_url"]),
        event=str(data.get("event") or ""),
        branch=str(data.get("head_branch") or ""),
        status=str(data.get("status") or "queued"),
        conclusion=data.get("conclusion"),
        created_at=_when(data["created_at"]),
    )


def _release_job(data: Any) -> ReleaseJob:
    return ReleaseJob(
        job_id=int(data["id"]),
        name=str(data["name"]),
        status=str(data.get("status") or "queued"),
        conclusion=data.get("conclusion"),
        steps=tuple(
            JobStep(
                name=str(step.get("name", "")),
                status=str(step.get("status") or "queued"),
                conclusion=step.get("conclusion"),
            )
            for step in data.get("steps") or []
        ),
    )


def _message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"]).strip()
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    return str(data or exc.message or "no message")[:200].strip()


def read_retry(*, total: int, backoff: float, rate_limit_wait: float) -> GithubRetry:
    """PyGithub's retry, for reads only (GET, HEAD): up to `total` more attempts on 5xx, 429,
    rate-limited 403s, timeouts and resets, with exponential backoff and jitter. It waits as
    GitHub asks (`Retry-After`, `X-RateLimit-Reset`) up to `rate_limit_wait` seconds; a longer
    wait fails at once with the rate limit error (the poller paces itself by it). The last
    answer of an exhausted retry is returned as is, so a 502 still reads as a 502."""
    return GithubRetry(
        total=total,
        backoff_factor=backoff,
        backoff_jitter=backoff,
        backoff_max=rate_limit_wait,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=[429, *range(500, 600)],  # GithubRetry adds 403 (rate limits only)
        raise_on_status=False,
        secondary_rate_wait=rate_limit_wait,
        max_rate_limit_wait=rate_limit_wait,
        retry_after_max=max(int(rate_limit_wait), 1),
    )


def _never_sent(exc: OSError) -> bool:
    """Whether the request certainly never reached GitHub (no connection could be made), as
    opposed to a timeout or a reset after it was sent, when it may have been carried out."""
    return isinstance(exc, requests.exceptions.ConnectTimeout) or isinstance(
        _cause(exc), NewConnectionError | ConnectTimeoutError
    )


def _network_failure(exc: OSError) -> str:
    """What went wrong on the network, in words (never the URL: it may name the host)."""
    if isinstance(exc, requests.exceptions.Timeout) or isinstance(_cause(exc), ReadTimeoutError):
        return "no answer in time"
    if _never_sent(exc):
        return "no connection could be made"
    return "the connection was closed without an answer"


def _cause(exc: OSError) -> object:
    reason = exc.args[0] if exc.args else None
    return getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause


def _rejects_run_details(exc: GithubException) -> bool:
    """GitHub Enterprise Server's answer to `return_run_details` (a key it does not know)."""
    text = _message(exc)
    return exc.status in (400, 422) and "return_run_details" in text


def _rate_limited(exc: GithubException) -> bool:
    if isinstance(exc, RateLimitExceededException) or exc.status == 429:
        return True
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    return exc.status == 403 and (
        headers.get("x-ratelimit-remaining") == "0" or "rate limit" in _message(exc).lower()
    )


def _retry_after(exc: GithubException) -> float | None:
    """Seconds GitHub asks to wait: `Retry-After`, or until `X-RateLimit-Reset` when no
    requests are left; None when it did not say."""
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    if (retry_after := str(headers.get("retry-after", ""))).isdigit():
        return float(retry_after)
    reset = str(headers.get("x-ratelimit-reset", ""))
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(0.0, int(reset) - time.time())
    return None


def _reset_hint(exc: GithubException) -> str:
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    if (retry_after := headers.get("retry-after", "")).isdigit():
        return f"try again in {retry_after} s."
    if (reset := headers.get("x-ratelimit-reset", "")).isdigit():
        at = datetime.fromtimestamp(int(reset), UTC)
        return f"the limit resets at {at:%H:%M:%S} UTC."
    return "try again later."


def _job_snapshot(
    run_id: int,
    name: str,
    status: str,
    conclusion: str | None,
    completed_at: datetime | None,
    html_url: str | None,
    *,
    ran: bool = True,
) -> JobSnapshot:
    """A job as the domain sees it. GitHub adds statuses and conclusions over time: an unknown
    status counts as queued (not started, nothing to act on yet); an unknown conclusion of a
    completed job counts as a failure, so the rollout reports it instead of waiting forever."""
    try:
        job_status = JobStatus(status)
    except ValueError:
        job_status = JobStatus.QUEUED
    job_conclusion: JobConclusion | None = None
    if job_status is JobStatus.COMPLETED:
        try:
            job_conclusion = JobConclusion(conclusion or "")
        except ValueError:
            _log.warning(
                "GitHub: run %s: job %r ended with unknown conclusion %r; treated as a failure",
                run_id,
                name,
                conclusion,
            )
            job_conclusion = JobConclusion.FAILURE
    return JobSnapshot(
        name=name,
        status=job_status,
        conclusion=job_conclusion,
        completed_at=completed_at,
        html_url=html_url,
        ran=ran,
    )


def _branch(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    return ref


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
