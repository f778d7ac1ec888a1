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

from bot.adapters.github.dispatch import DispatchSearch, WorkflowDispatch
from bot.adapters.github.history import RepositoryHistory
from bot.adapters.github.protection_rules import ProtectionRules
from bot.adapters.github.release import ReleaseReads
from bot.adapters.github.repository import RepositoryReads
from bot.adapters.github.runs import WorkflowRuns
from bot.adapters.github.transport import GitHubTransport
from bot.domain.run import RunSnapshot
from bot.services.ports import ReviewState


class PyGithubGateway:
    """`GitHubGateway` and `ReleaseGateway` for the repository `github` talks to (it is closed
    with the gateway). A call that one part answers as it is, is that part's own method, bound
    here (the ports in `bot.services.ports` document them)."""

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
        dispatch = WorkflowDispatch(github, search or DispatchSearch())
        self.dispatch = dispatch.dispatch
        self.find_dispatched_run = dispatch.find_dispatched_run
        self.dispatched_runs = dispatch.dispatched_runs
        self._runs = runs = WorkflowRuns(github)
        self.reported = runs.snapshot
        """The run as GitHub reports it, before the App's rule says which environments hold."""
        self.linkable_run = runs.linkable_run
        self.run_gone = runs.run_gone
        # preflight's reads
        repository = RepositoryReads(github)
        self.list_directory = repository.list_directory
        self.read_file = repository.read_file
        self.image_published = repository.image_published
        # what is in a release
        history = RepositoryHistory(github)
        self.compare = history.compare
        self.tag_exists = history.tag_exists
        self.latest_release = history.latest_release
        # the npm Release workflow
        release = ReleaseReads(github)
        self.secret = release.secret
        self.latest_run = release.latest_run
        self.release_run = release.release_run
        self.release_job = release.release_job
        self.job_log = release.job_log

    @property
    def repository(self) -> str:
        return self._github.repository

    async def close(self) -> None:
        """Wait for the calls in flight, then release the threads and the HTTP connections."""
        await self._github.close()

    async def snapshot(self, run_id: int) -> RunSnapshot:
        return await self.held(await self.reported(run_id))

    async def held(self, reported: RunSnapshot) -> RunSnapshot:
        return reported if self._rules is None else await self._rules.holding(reported)

    async def review(
        self, *, run_id: int, environments: Sequence[str], state: ReviewState, comment: str
    ) -> bool:
        # The App's rule first, then the reviewers for what the rule did not answer: an
        # environment may have both, but the App is never a required reviewer.
        answered = (
            await self._rules.answer(
                run_id=run_id, environments=environments, state=state, comment=comment
            )
            if self._rules is not None
            else set()
        )
        rest = [name for name in environments if name not in answered]
        reviewed = rest != [] and await self._runs.review(
            run_id=run_id, environments=rest, state=state, comment=comment
        )
        return bool(answered) or reviewed
