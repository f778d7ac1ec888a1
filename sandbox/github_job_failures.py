"""The job failures a test scripts into the simulated GitHub Actions, kept until a run starts."""

from __future__ import annotations

from typing import Literal

from sandbox.github_runs import JobFailure, SimRun
from sandbox.workflows import Workflow


class FailurePlan:
    """Failures for the next run that has the job, or for every run (`ActionsEngine.fail_job`)."""

    def __init__(self) -> None:
        self._next: list[tuple[str, JobFailure]] = []
        self._every: list[tuple[str, JobFailure]] = []

    def add(self, runs: Literal["next", "every"], job: str, failure: JobFailure) -> None:
        (self._next if runs == "next" else self._every).append((job, failure))

    def attach(self, run: SimRun) -> None:
        """Give a new run its failures; a `next` one goes to the first run that has its job."""
        for job_name, failure in self._every:
            _attach(run, job_name, failure)
        remaining: list[tuple[str, JobFailure]] = []
        for job_name, failure in self._next:
            if not _attach(run, job_name, failure):
                remaining.append((job_name, failure))
        self._next = remaining


def has_job(workflow: Workflow, key_or_name: str) -> bool:
    return any(key_or_name in (job.key, job.name) for job in workflow.jobs)


def _attach(run: SimRun, job_name: str, failure: JobFailure) -> bool:
    if not has_job(run.workflow, job_name):
        return False
    run.job(job_name).failure = failure
    return True
