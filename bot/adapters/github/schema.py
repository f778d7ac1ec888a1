"""GitHub's JSON answers that PyGithub has no method for, as typed models (pydantic).

Only the fields the bot reads; everything else GitHub sends is ignored. Fields GitHub may
leave out or send as null have defaults, so a sparse answer (GitHub Enterprise Server, an
older API version) still reads; an answer of another shape fails validation, which the
transport reports as a `GitHubError`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from bot.domain.npm import JobStep, ReleaseJob, ReleaseRun
from bot.domain.release_contents import ComparedCommit, Comparison
from bot.domain.run import EnvironmentReview
from bot.domain.run_link import LinkableRun


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Account(_Answer):
    login: str = ""


class Environment(_Answer):
    id: int = 0
    name: str = ""


class PendingDeployment(_Answer):
    """A deployment of a run waiting for protection rules (`GET .../pending_deployments`):
    required reviewers, a wait timer; `current_user_can_approve` says whether the caller is one
    of the reviewers (a GitHub App never is)."""

    environment: Environment
    current_user_can_approve: bool = False


class Review(_Answer):
    """One entry of a run's review history (`GET .../approvals`)."""

    state: str = ""
    comment: str | None = None
    user: Account | None = None
    environments: list[Environment] = Field(default_factory=list)

    @property
    def reviewer(self) -> str:
        return self.user.login if self.user is not None else ""

    def per_environment(self) -> list[EnvironmentReview]:
        return [
            EnvironmentReview(
                environment=environment.name,
                state=self.state,
                reviewer=self.reviewer,
                comment=self.comment or "",
            )
            for environment in self.environments
        ]


class Step(_Answer):
    name: str = ""
    status: str | None = None
    conclusion: str | None = None


class Job(_Answer):
    """A job of a workflow run (`GET .../runs/{id}/jobs`)."""

    id: int = 0
    name: str = ""
    status: str | None = None
    conclusion: str | None = None
    started_at: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None
    html_url: str | None = None
    steps: list[Step] = Field(default_factory=list)
    runner_id: int | None = None

    def release_job(self) -> ReleaseJob:
        return ReleaseJob(
            job_id=self.id,
            name=self.name,
            status=self.status or "queued",
            conclusion=self.conclusion,
            steps=tuple(
                JobStep(name=step.name, status=step.status or "queued", conclusion=step.conclusion)
                for step in self.steps
            ),
        )


class JobsPage(_Answer):
    total_count: int = 0
    jobs: list[Job] = Field(default_factory=list)


class Run(_Answer):
    """A workflow run (`GET .../runs/{id}`)."""

    id: int
    run_number: int | None = None
    html_url: str
    event: str | None = None
    head_branch: str | None = None
    head_sha: str = ""
    status: str | None = None
    conclusion: str | None = None
    created_at: AwareDatetime
    path: str = ""
    """The workflow file the run is of."""
    actor: Account | None = None
    triggering_actor: Account | None = None
    """Who started its latest attempt (a re-run's: who re-ran it)."""
    run_attempt: int = 1
    """2 and up once someone re-ran it: the same id, new jobs."""
    run_started_at: AwareDatetime | None = None
    """When its latest attempt started (a re-run resets it)."""

    def linkable_run(self) -> LinkableRun:
        return LinkableRun(
            run_id=self.id,
            html_url=self.html_url,
            workflow_path=self.path,
            head_branch=self.head_branch or "",
            status=self.status or "queued",
            created_at=self.created_at.astimezone(UTC),
            attempt=self.run_attempt,
            conclusion=self.conclusion,
            head_sha=self.head_sha,
            event=self.event or "",
        )

    def release_run(self) -> ReleaseRun:
        return ReleaseRun(
            run_id=self.id,
            number=self.run_number or 0,
            html_url=self.html_url,
            event=self.event or "",
            branch=self.head_branch or "",
            status=self.status or "queued",
            conclusion=self.conclusion,
            created_at=self.created_at.astimezone(UTC),
        )


class GitObject(_Answer):
    sha: str
    type: str
    """`commit`, or `tag` for an annotated tag's object."""


class Pointer(_Answer):
    """A tag's ref (`GET .../git/ref/tags/{tag}`) or an annotated tag (`GET .../git/tags/{sha}`):
    each names its `object`, a commit or (a tag's ref of an annotated tag) the tag object."""

    object: GitObject


class NamedRef(_Answer):
    """One ref of `GET .../git/matching-refs/{prefix}`: its full name (`refs/tags/v1.4.2`)."""

    ref: str


class RunsPage(_Answer):
    workflow_runs: list[Run] = Field(default_factory=list)


class Secret(_Answer):
    """An Actions secret as GitHub lists it: its name and dates, never its value."""

    name: str
    created_at: AwareDatetime
    updated_at: AwareDatetime


class SecretsPage(_Answer):
    secrets: list[Secret] = Field(default_factory=list)


class _Container(_Answer):
    tags: list[str] = Field(default_factory=list)


class _PackageMetadata(_Answer):
    container: _Container = Field(default_factory=_Container)


class PackageVersion(_Answer):
    """A version of a container package in GitHub Packages (its tags)."""

    metadata: _PackageMetadata = Field(default_factory=_PackageMetadata)

    @property
    def tags(self) -> list[str]:
        return self.metadata.container.tags


class _GitCommit(_Answer):
    message: str = ""


class _Parent(_Answer):
    sha: str


class _File(_Answer):
    filename: str


class _Commit(_Answer):
    sha: str
    commit: _GitCommit = Field(default_factory=_GitCommit)
    author: Account | None = None
    """The GitHub account of the author; null when GitHub cannot match the commit's e-mail."""
    parents: list[_Parent] = Field(default_factory=list)


class CommitComparison(_Answer):
    """`GET /repos/{o}/{r}/compare/{base}...{head}`: at most 250 commits, the newest of the
    comparison (listed oldest first), and 300 files; `total_commits` counts every commit."""

    html_url: str
    total_commits: int
    behind_by: int = 0
    commits: list[_Commit] = Field(default_factory=list)
    files: list[_File] = Field(default_factory=list)

    def comparison(self) -> Comparison:
        return Comparison(
            total_commits=self.total_commits,
            commits=tuple(
                ComparedCommit(
                    sha=commit.sha,
                    message=commit.commit.message,
                    author=commit.author.login if commit.author and commit.author.login else None,
                    parents=tuple(parent.sha for parent in commit.parents),
                )
                for commit in self.commits
            ),
            files=tuple(file.filename for file in self.files),
            behind_by=self.behind_by,
            html_url=self.html_url,
        )


class Release(_Answer):
    """`GET /repos/{o}/{r}/releases/latest`: the latest published, non-prerelease release."""

    tag_name: str


PENDING = TypeAdapter(list[PendingDeployment])
REVIEWS = TypeAdapter(list[Review])
PACKAGE_VERSIONS = TypeAdapter(list[PackageVersion])


class Deployment(_Answer):
    """A deployment (`GET /repos/{owner}/{repo}/deployments`)."""

    id: int
    environment: str = ""
    created_at: AwareDatetime


class DeploymentStatus(_Answer):
    """A deployment's status (`GET .../deployments/{id}/statuses`, in no order GitHub's
    reference promises: the latest is the one created last); an Actions deployment's log and
    target link the job that deploys, as `.../actions/runs/{run_id}/job/{job_id}` or as
    `.../runs/{job_id}?check_suite_focus=true` (a job's id is its check run's)."""

    id: int = 0
    created_at: AwareDatetime | None = None
    state: str = ""
    log_url: str | None = None
    target_url: str | None = None

    def of_jobs(self, job_ids: Collection[int]) -> bool:
        """Whether it links one of these jobs."""
        return any(
            int(found) in job_ids
            for url in (self.log_url, self.target_url)
            if url
            for found in _JOB_LINK.findall(url)
        )


_JOB_LINK = re.compile(r"/(?:runs|job)/(\d+)")


_NEVER = datetime.min.replace(tzinfo=UTC)
"""Before any status a double gives without `created_at` (GitHub always gives it)."""


def latest_status(statuses: Collection[DeploymentStatus]) -> DeploymentStatus | None:
    """The status created last (ids break a tie within a second); None when there is none."""
    return max(statuses, key=lambda s: (s.created_at or _NEVER, s.id), default=None)


DEPLOYMENTS = TypeAdapter(list[Deployment])
DEPLOYMENT_STATUSES = TypeAdapter(list[DeploymentStatus])
