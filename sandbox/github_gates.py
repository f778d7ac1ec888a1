"""The environments' protection rules in the simulated GitHub Actions: a job that reaches an
environment waits while it has required reviewers (answered through `pending_deployments`) or
a GitHub App's custom protection rule (answered through the run's
`deployment_protection_rule` callback), and deploys once every rule approved; a rejection of
either fails it without running. The deployments GitHub creates for jobs, with their statuses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime

from sandbox.github_runs import (
    ActionsError,
    Deployment,
    DeploymentStatus,
    Gate,
    Ids,
    Review,
    ReviewState,
    SimJob,
    SimRun,
    Transition,
)


class EnvironmentGates(ABC):
    """What `ActionsEngine` does at an environment; the run/job machine supplies the rest."""

    runs: dict[int, SimRun]
    clock: Callable[[], datetime]
    environments: dict[str, int]
    protected: set[str]
    """Environments with required reviewers."""
    rule_environments: set[str]
    """Environments with the App's custom deployment protection rule."""
    reviews: list[Review]
    rule_reviews: list[Review]
    """The App's answers to its protection rule, oldest first."""
    bypasses: list[Review]
    """Admins' starts of waiting jobs past their protection rules, oldest first."""
    deployments: list[Deployment]
    ids: Ids

    @abstractmethod
    def process(self) -> bool: ...

    @abstractmethod
    def _begin(self, run: SimRun, job: SimJob, at: datetime) -> None: ...

    @abstractmethod
    def _complete(self, run: SimRun, job: SimJob, conclusion: str, at: datetime) -> None: ...

    @abstractmethod
    def _emit(self, transition: Transition) -> None: ...

    def waiting_jobs(self, run_id: int) -> list[SimJob]:
        return [job for job in self.runs[run_id].jobs if job.status == "waiting"]

    def review(
        self,
        run_id: int,
        *,
        environment_ids: list[int],
        state: ReviewState,
        comment: str,
        actor: str,
    ) -> list[Deployment]:
        """Approve or reject waiting environments of a run; every id must be waiting in it."""
        run = self.runs[run_id]
        waiting: dict[int, list[SimJob]] = {}
        for job in self.waiting_jobs(run_id):
            assert job.environment is not None
            if "reviewers" in job.gates:
                waiting.setdefault(self.environments[job.environment], []).append(job)
        if not environment_ids or any(env_id not in waiting for env_id in environment_ids):
            raise ActionsError(422, "No pending deployment requests to approve or reject")
        now = self.clock()
        jobs = [job for env_id in dict.fromkeys(environment_ids) for job in waiting[env_id]]
        names = tuple(dict.fromkeys(job.environment or "" for job in jobs))
        review = Review(len(self.reviews) + 1, run_id, names, state, comment, actor, now)
        self.reviews.append(review)
        created: list[Deployment] = []
        for job in jobs:
            self._emit(Transition("deployment_review", state, run, job, review))
            if state == "rejected":
                self._reject(run, job, now)
            elif (deployment := self._pass(run, job, "reviewers", actor, now)) is not None:
                created.append(deployment)
        self.process()
        return created

    def review_rule(
        self, run_id: int, *, environment: str, state: ReviewState, comment: str, actor: str
    ) -> None:
        """The App answers its custom protection rule for one environment of the run."""
        run, jobs, now = self.runs[run_id], self.rule_jobs(run_id, environment), self.clock()
        names = (jobs[0].environment or environment,)
        self.rule_reviews.append(
            Review(len(self.rule_reviews) + 1, run_id, names, state, comment, actor, now)
        )
        for job in jobs:
            if state == "rejected":
                self._reject(run, job, now)
            else:
                self._pass(run, job, "rule", actor, now)
        self.process()

    def bypass(self, run_id: int, *, environments: list[str], comment: str, actor: str) -> None:
        """A repository admin's "Start all waiting jobs" on the run's page: the jobs waiting at
        `environments` deploy past every protection rule (reviewers, the App's rule), with no
        answer from the App; its request stays unanswered, and the callback answers 422 from
        then on ("Bypassing deployment protection rules", GitHub's reviewing-deployments
        page). Nothing is listed among the reviewers' reviews."""
        run, now = self.runs[run_id], self.clock()
        names = {name.casefold() for name in environments}
        jobs = [j for j in self.waiting_jobs(run_id) if (j.environment or "").casefold() in names]
        if not jobs:
            raise ActionsError(422, "No pending deployments to bypass")
        self.bypasses.append(
            Review(
                len(self.bypasses) + 1, run_id, tuple(environments), "approved", comment, actor, now
            )
        )
        for job in jobs:
            job.gates.clear()
            deployment = job.deployment or self._deploy(run, job, actor, now)
            self._set_status(deployment, "in_progress", now)
            self._begin(run, job, now)
        self.process()

    def rule_jobs(self, run_id: int, environment: str) -> list[SimJob]:
        """The run's jobs waiting for the App's rule in `environment` (422 when none)."""
        jobs = [
            job
            for job in self.waiting_jobs(run_id)
            if "rule" in job.gates and (job.environment or "").casefold() == environment.casefold()
        ]
        if not jobs:
            raise ActionsError(
                422,
                f"No pending custom deployment requests in workflow run `{run_id}` "
                "to approve or reject",
            )
        return jobs

    def _pass(
        self, run: SimRun, job: SimJob, gate: Gate, actor: str, at: datetime
    ) -> Deployment | None:
        """One protection rule of a waiting job approved; it deploys once none is left."""
        job.gates.discard(gate)
        if job.gates:
            return None
        deployment = job.deployment or self._deploy(run, job, actor, at)
        self._set_status(deployment, "in_progress", at)
        self._begin(run, job, at)
        return deployment

    def _reject(self, run: SimRun, job: SimJob, at: datetime) -> None:
        job.steps = []
        job.gates.clear()
        self._complete(run, job, "failure", at)

    # -- processing -----------------------------------------------------------------------------

    def _gates(self, environment: str | None) -> set[Gate]:
        gates: set[Gate] = set()
        if environment in self.protected:
            gates.add("reviewers")
        if environment in self.rule_environments:
            gates.add("rule")
        return gates

    def _deploy(self, run: SimRun, job: SimJob, creator: str, at: datetime) -> Deployment:
        assert job.environment is not None
        deployment = Deployment(
            id=next(self.ids.deployments),
            run_id=run.id,
            job_id=job.id,
            environment=job.environment,
            ref=run.branch,
            sha=run.head_sha,
            creator=creator,
            created_at=at,
        )
        self.deployments.append(deployment)
        job.deployment = deployment
        return deployment

    def _set_status(self, deployment: Deployment, state: str, at: datetime) -> None:
        deployment.statuses.append(DeploymentStatus(next(self.ids.statuses), state, at))
