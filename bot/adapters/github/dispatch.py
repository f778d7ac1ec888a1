"""Dispatching a workflow on GitHub and finding the run it started.

GitHub's dispatch API says nothing of the run it starts (github.com returns its id when asked;
GitHub Enterprise Server does not): the run is found among the runs our account dispatched on
the ref since just before the request. An unclear answer (5xx, timeout, reset) may hide a run
that started: it is searched for, never dispatched again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from github import GithubException
from github.Repository import Repository
from github.WorkflowRun import WorkflowRun

from bot.adapters.github.pages import every_page
from bot.adapters.github.refusals import message
from bot.adapters.github.repository import learn_repository_id
from bot.adapters.github.schema import Run, RunsPage
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import GitHubError, RunNotIdentified
from bot.domain.run import RunRef
from bot.domain.run_link import LinkableRun, branch_of
from bot.services.ports import BeforePost

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchSearch:
    """How the run a dispatch started is looked for: `attempts` looks `delay` seconds apart,
    among the runs created since the dispatch less `clock_skew` (GitHub's clock is not ours)."""

    attempts: int = 10
    delay: float = 1.0
    clock_skew: timedelta = timedelta(seconds=2)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")


class WorkflowDispatch:
    """Dispatches the workflows of one repository and finds the runs they started."""

    def __init__(self, github: GitHubTransport, search: DispatchSearch) -> None:
        self._github = github
        self._search = search

    async def dispatch(
        self,
        *,
        workflow_file: str,
        ref: str,
        inputs: Mapping[str, str],
        dispatched_at: datetime,
        before_send: BeforePost | None = None,
    ) -> RunRef:
        """Dispatch once. An unclear answer (5xx, timeout, reset) may hide a run that started:
        it is searched for, never dispatched again; RunNotIdentified when it cannot be found.
        `before_send` is awaited right before each POST (after the repository's read, which
        may be slow): what it raises is raised, nothing sent."""
        ready = before_send or _at_once
        operation = f"dispatch {workflow_file} on {ref}"
        repo = await self._repository_now(operation)
        workflow = repo.get_workflow(workflow_file)  # lazy: no request
        # The App's installation token is had first, in the same thread: a mint that fails is
        # a GitHubError saying nothing was sent, never an unclear answer to the dispatch.
        send = self._github.authenticated(
            functools.partial(
                workflow.create_dispatch, ref, dict(inputs), throw=True, return_run_details=True
            )
        )
        # What `ready` raises (its look at the database away, say) is no answer of GitHub's:
        # never taken for an unclear one, which would search for a run nothing sent.
        await ready()
        try:
            started: bool | WorkflowRun = await self._github.run(
                send, endpoint="dispatch", operation=operation
            )
        except (GithubException, OSError) as exc:
            if not (isinstance(exc, GithubException) and _rejects_run_details(exc)):
                return await self._unclear(workflow_file, ref, dispatched_at, operation, exc)
            _log.info(
                "GitHub does not return run details (GitHub Enterprise Server); "
                "dispatching %s on %s again without them and looking for the run",
                workflow_file,
                ref,
            )
            await ready()  # the first POST was refused: nothing started
            try:
                started = await self._github.run(
                    self._github.authenticated(
                        functools.partial(workflow.create_dispatch, ref, dict(inputs), throw=True)
                    ),
                    endpoint="dispatch",
                    operation=operation,
                )
            except (GithubException, OSError) as again:
                return await self._unclear(workflow_file, ref, dispatched_at, operation, again)
        if isinstance(started, WorkflowRun):
            _log.info("GitHub: dispatched %s on %s: run %s", workflow_file, ref, started.id)
            return RunRef(run_id=started.id, html_url=started.html_url)
        return await self._await_dispatched_run(workflow_file, ref, dispatched_at)

    async def _unclear(
        self,
        workflow_file: str,
        ref: str,
        dispatched_at: datetime,
        operation: str,
        exc: GithubException | OSError,
    ) -> RunRef:
        """GitHub's answer to the dispatch's POST was `exc`: a refusal is raised (nothing
        started); an unclear one (a 5xx, a timeout, a reset) may hide a run: it is looked for."""
        unclear = self._github.unclear_answer(operation, exc, kind="dispatch")
        _log.warning(
            "GitHub: %s when asked to %s; the run may have started: looking for it",
            unclear,
            operation,
        )
        return await self._await_dispatched_run(workflow_file, ref, dispatched_at, unclear=unclear)

    async def _repository_now(self, operation: str) -> Repository:
        """The repository under its name now. GitHub answers a write at a renamed or
        transferred repository's former name `307 Temporary Redirect`, which PyGithub does not
        follow (and its dispatch would read as sent); a read is answered 301, which it does.
        So the repository is read first (conditionally: a 304 costs no rate limit) and the
        dispatch goes to the name it answers with. A read that fails is the dispatch's
        GitHubError: nothing was sent."""
        github = self._github

        def name_now() -> str:
            data = github.get_conditional(f"/repos/{github.repository}")
            learn_repository_id(github, data)
            name = data.get("full_name") if isinstance(data, dict) else None
            return name if isinstance(name, str) and name.count("/") == 1 else github.repository

        name = await github.call(operation, name_now)  # a read, counted as one
        if name.casefold() == github.repository.casefold():
            return github.repo
        _log.warning(
            "GitHub: %s was renamed or transferred to %s: dispatching there; set the "
            "service's repository to its new name",
            github.repository,
            name,
        )
        renamed = github.client.get_repo(name)  # lazy: no request
        github.dates.watch(renamed.requester)
        return renamed

    async def find_dispatched_run(
        self, *, workflow_file: str, ref: str, dispatched_at: datetime
    ) -> RunRef | None:
        candidates = await self.dispatched_runs(
            workflow_file=workflow_file, ref=ref, dispatched_at=dispatched_at
        )
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
        workflow_file: str,
        ref: str,
        dispatched_at: datetime,
        *,
        unclear: str | None = None,
    ) -> RunRef:
        """Poll for the run our dispatch created: GitHub lists it only after a moment.
        `unclear` says what GitHub answered when it is not known that it accepted it."""
        for attempt in range(self._search.attempts):
            if attempt:
                await asyncio.sleep(self._search.delay)
            try:
                candidates = await self.dispatched_runs(
                    workflow_file=workflow_file, ref=ref, dispatched_at=dispatched_at
                )
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
                    "(after 10 minutes it returns the rollout to its preflight).",
                    accepted=unclear is None,
                )
        _log.warning("GitHub: dispatched %s on %s: no run appeared", workflow_file, ref)
        accepted = (
            f"{unclear} when asked to dispatch {workflow_file} on {ref}, so it may have "
            "started a run"
            if unclear is not None
            else f"GitHub accepted the dispatch of {workflow_file} on {ref}"
        )
        raise RunNotIdentified(
            f"{accepted}, but no run of it appeared after {self._search.attempts} looks. The bot "
            "keeps looking, and nobody can dispatch again until the run is found or the search "
            "ends. Check the workflow's runs on GitHub.",
            accepted=unclear is None,
        )

    async def dispatched_runs(
        self,
        *,
        workflow_file: str,
        ref: str,
        dispatched_at: datetime,
        before: datetime | None = None,
    ) -> list[RunRef]:
        """`dispatched_at` is the bot's clock, taken just before the request; GitHub stamps the
        run with its own clock, so the bound is moved back by `clock_skew` (and `before`
        forward). A wider margin risks catching an earlier run of ours (then the search is
        ambiguous and takes nothing); a narrower one risks missing our run when the clocks
        disagree."""
        actor = await self._github.actor_login()
        runs = await self._runs_on(
            workflow_file, ref, since=dispatched_at, before=before, dispatched_by=actor
        )
        return [RunRef(run.id, run.html_url, run.run_attempt) for run in runs]

    async def release_runs(
        self, *, workflow_file: str, tag: str, since: datetime
    ) -> list[LinkableRun]:
        runs = await self._runs_on(workflow_file, tag, since=since, or_going=True)
        return [run.linkable_run() for run in runs]

    async def _runs_on(
        self,
        workflow_file: str,
        ref: str,
        *,
        since: datetime,
        before: datetime | None = None,
        dispatched_by: str | None = None,
        or_going: bool = False,
    ) -> list[Run]:
        """The workflow's runs on `ref` created since `since` (and by `before`), none
        cancelled; given `dispatched_by`, only the runs that account dispatched; `or_going`:
        the runs created earlier that have not completed too (every run on `ref` is listed)."""
        branch = branch_of(ref)
        skew = self._search.clock_skew
        since = (since - skew).astimezone(UTC).replace(microsecond=0)
        until = None if before is None else (before + skew).astimezone(UTC).replace(microsecond=0)
        # GitHub's date syntax: `>=A`, or the range `A..B` (both ends included).
        created = f">={_iso(since)}" if until is None else f"{_iso(since)}..{_iso(until)}"

        github = self._github
        path = f"/repos/{github.repository}/actions/workflows/{quote(workflow_file, safe='')}/runs"
        query: dict[str, str | int] = {"branch": branch, "per_page": 100}
        if not or_going:
            query["created"] = created
        if dispatched_by is not None:
            query |= {"actor": dispatched_by, "event": "workflow_dispatch"}

        def ours(run: Run) -> bool:
            return dispatched_by is None or (
                run.event == "workflow_dispatch"
                and run.actor is not None
                and run.actor.login.casefold() == dispatched_by.casefold()
            )

        def search() -> list[Run]:
            # Every page GitHub links (ours was created since the dispatch: one, as a rule),
            # conditionally: while no run appears, the poller's looks are 304s. A page may
            # be shorter than asked for: the next may hold a second run of ours.
            listed = [
                run
                for page in every_page(github, path, query, most=_RUN_PAGES)
                for run in RunsPage.model_validate(page).workflow_runs
            ]
            # The same filters again, client-side: taking another person's run is the one
            # mistake this must never make, whatever the server did with the query.
            return [
                run
                for run in listed
                if ours(run)
                and run.head_branch == branch
                and (run.created_at >= since or (or_going and run.status != "completed"))
                and (until is None or run.created_at <= until)
                # A run someone cancelled is out of the question: cancelling the stray run
                # is how a person resolves an ambiguous dispatch.
                and run.conclusion != "cancelled"
            ]

        return await self._github.call(f"list the runs of {workflow_file} on {ref}", search)


_RUN_PAGES = 10
"""Pages of runs a search reads at most: GitHub's runs API answers a filtered list up to
1,000 runs ("List workflow runs for a workflow")."""


def _rejects_run_details(exc: GithubException) -> bool:
    """GitHub Enterprise Server's answer to `return_run_details` (a key it does not know)."""
    return exc.status in (400, 422) and "return_run_details" in message(exc)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _at_once() -> None:
    """A dispatch sent with no look first (a rollout's: its save before it is the guard)."""
