"""The production GitHub gateway: the `GitHubGateway` and `ReleaseGateway` ports for one
repository, on github.com or GitHub Enterprise Server, each call handed to the part that does it.

- `transport`: PyGithub in a thread pool, retried reads, conditional GETs, errors in words;
- `dispatch`: dispatching a workflow and finding the run it started;
- `runs`: reading a run and reviewing its waiting deployments;
- `protection_rules`: the environments that wait for the App's custom protection rule instead;
- `repository`: preflight's reads of files, directories and published images;
- `history`: what is in a release (a comparison, the latest GitHub Release);
- `release`: the npm Release walkthrough's secret, runs, jobs and logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.adapters.github.attempts import latest_attempt
from bot.adapters.github.dispatch import DispatchSearch, WorkflowDispatch
from bot.adapters.github.history import RepositoryHistory
from bot.adapters.github.protection_rules import ProtectionRules
from bot.adapters.github.release import ReleaseReads
from bot.adapters.github.repository import RepositoryReads
from bot.adapters.github.runs import WorkflowRuns
from bot.adapters.github.transport import GitHubTransport
from bot.adapters.github.workflow_jobs import publish_job
from bot.domain.npm import ReleaseJob, ReleaseRun
from bot.domain.npm_secrets import PublishJob, SecretLevels
from bot.domain.release_contents import WORKFLOWS_DIRECTORY, Comparison
from bot.domain.run import RunSnapshot
from bot.domain.run_link import LinkableRun
from bot.services.ports import ReviewState


class PyGithubGateway:
    """`GitHubGateway` and `ReleaseGateway` for the repository `github` talks to (it is closed
    with the gateway)."""

    def __init__(
        self,
        github: GitHubTransport,
        *,
        search: DispatchSearch | None = None,
        rules: ProtectionRules | None = None,
    ) -> None:
        self._github = github
        self._rules = rules
        """Without it (token mode), every environment is held by its reviewers."""
        # Dispatching is WorkflowDispatch's alone: its calls are the gateway's as they are.
        dispatch = WorkflowDispatch(github, search or DispatchSearch())
        self.dispatch = dispatch.dispatch
        self.find_dispatched_run = dispatch.find_dispatched_run
        self.dispatched_runs = dispatch.dispatched_runs
        self.release_runs = dispatch.release_runs
        self._runs = WorkflowRuns(github)
        self._repository = RepositoryReads(github)
        self._release = ReleaseReads(github)
        self._history = RepositoryHistory(github)

    @property
    def repository(self) -> str:
        return self._github.repository

    async def close(self) -> None:
        """Wait for the calls in flight, then release the threads and the HTTP connections."""
        await self._github.close()

    # -- workflow runs --------------------------------------------------------------------------

    async def snapshot(self, run_id: int) -> RunSnapshot:
        return await self.held(await self.reported(run_id))

    async def reported(self, run_id: int) -> RunSnapshot:
        return await self._runs.snapshot(run_id)

    async def held(self, reported: RunSnapshot, *, read_at: datetime | None = None) -> RunSnapshot:
        if self._rules is None:
            return reported
        return await self._rules.holding(reported, read_at=read_at)

    async def linkable_run(self, run_id: int) -> LinkableRun:
        return await self._runs.linkable_run(run_id)

    async def run_gone(self, run_id: int) -> bool | None:
        return await self._runs.run_gone(run_id)

    async def review(
        self,
        *,
        run_id: int,
        environments: Sequence[str],
        state: ReviewState,
        comment: str,
        attempt: int | None = None,
    ) -> bool:
        # The App's rule first, then the reviewers for what the rule did not answer: an
        # environment may have both, but the App is never a required reviewer. Each reads
        # the run's attempt once it knows something of it waits (`attempts`).
        answered: set[str] = set()
        if self._rules is not None:
            answered = await self._rules.answer(
                run_id=run_id,
                environments=environments,
                state=state,
                comment=comment,
                attempt=attempt,
            )
        rest = [name for name in environments if name not in answered]
        reviewed = rest != [] and await self._runs.review(
            run_id=run_id, environments=rest, state=state, comment=comment, attempt=attempt
        )
        return bool(answered) or reviewed

    async def latest_attempt(self, run_id: int) -> int:
        return await latest_attempt(self._github, run_id)

    async def rerun_job(self, *, run_id: int, job_id: int, attempt: int) -> int:
        return await self._runs.rerun_job(run_id=run_id, job_id=job_id, attempt=attempt)

    # -- preflight's reads ----------------------------------------------------------------------

    async def list_directory(self, *, path: str, ref: str) -> list[str]:
        return await self._repository.list_directory(path=path, ref=ref)

    async def read_file(self, *, path: str, ref: str) -> str:
        return await self._repository.read_file(path=path, ref=ref)

    async def image_published(self, *, package: str, tag: str) -> bool | None:
        return await self._repository.image_published(package=package, tag=tag)

    # -- what is in a release ------------------------------------------------------------------

    async def compare(self, *, base: str, head: str) -> Comparison:
        return await self._history.compare(base=base, head=head)

    async def tag_exists(self, tag: str) -> bool:
        return await self._history.tag_exists(tag)

    async def tags_starting(self, prefix: str) -> list[str]:
        return await self._history.tags_starting(prefix)

    async def tag_commit(self, tag: str) -> str | None:
        return await self._history.tag_commit(tag)

    async def latest_release(self) -> str | None:
        return await self._history.latest_release()

    # -- the npm Release workflow ---------------------------------------------------------------

    async def publish_job(self, *, workflow_file: str, ref: str, job: str) -> PublishJob:
        text = await self._repository.read_file(
            path=f"{WORKFLOWS_DIRECTORY}/{workflow_file}", ref=ref
        )
        return publish_job(text, job)

    async def secret_levels(self, name: str, job: PublishJob, *, ref: str) -> SecretLevels:
        return await self._release.secret_levels(name, job, ref=ref)

    async def latest_run(self, *, workflow_file: str) -> ReleaseRun | None:
        return await self._release.latest_run(workflow_file=workflow_file)

    async def release_run(self, run_id: int) -> ReleaseRun:
        return await self._release.release_run(run_id)

    async def release_job(self, *, run_id: int, name: str) -> ReleaseJob | None:
        return await self._release.release_job(run_id=run_id, name=name)

    async def job_log(self, job_id: int) -> str:
        return await self._release.job_log(job_id)
