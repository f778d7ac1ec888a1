"""What the simulated GitHub Actions holds: runs, their jobs and steps, reviews, deployments,
the transitions it reports, and the errors GitHub answers with."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sandbox.workflows import Job, Workflow

ReviewState = Literal["approved", "rejected"]
Gate = Literal["reviewers", "rule"]
"""What holds a waiting job: the environment's required reviewers, or its custom protection
rule (a GitHub App's), each answered through its own endpoint."""
SETUP_STEP = "Set up job"
COMPLETE_STEP = "Complete job"


def commit_sha(ref: str) -> str:
    """A stable fake commit sha for a ref, so the same ref always reports the same head_sha."""
    return hashlib.sha1(f"commit:{ref}".encode(), usedforsecurity=False).hexdigest()


class ActionsError(Exception):
    """A request GitHub would refuse; `status` is the HTTP status it answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _from(first: int) -> Callable[[], Iterator[int]]:
    return lambda: iter(range(first, 10**12))


@dataclass
class Ids:
    """Where new ids come from. GitHub's ids are global, so every repository of the simulator
    draws from one `Ids`: a run id, a job id or a deployment id names one thing only."""

    runs: Iterator[int] = field(default_factory=_from(9_001_000_001))
    jobs: Iterator[int] = field(default_factory=_from(40_001_000_001))
    deployments: Iterator[int] = field(default_factory=_from(2_100_000_001))
    statuses: Iterator[int] = field(default_factory=_from(3_200_000_001))
    environments: Iterator[int] = field(default_factory=_from(5_000_001))
    hooks: Iterator[int] = field(default_factory=_from(4_000_001))


@dataclass(frozen=True)
class JobFailure:
    """A scenario knob: make `step` (default: the job's last step) fail, printing `lines`."""

    step: str | None
    lines: tuple[str, ...]


@dataclass
class SimStep:
    name: str
    number: int
    status: str = "queued"
    conclusion: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    lines: tuple[str, ...] = ()


@dataclass
class SimJob:
    id: int
    run_id: int
    spec: Job
    created_at: datetime
    steps: list[SimStep]
    status: str = "queued"
    conclusion: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    due_at: datetime | None = None
    waiting_since: datetime | None = None
    failure: JobFailure | None = None
    gates: set[Gate] = field(default_factory=set)
    """The protection rules the waiting job still waits for."""
    deployment: Deployment | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def environment(self) -> str | None:
        return self.spec.environment


@dataclass
class SimRun:
    id: int
    number: int
    workflow: Workflow
    event: str
    branch: str
    head_sha: str
    actor: str
    inputs: dict[str, str]
    created_at: datetime
    updated_at: datetime
    jobs: list[SimJob] = field(default_factory=list)
    """The jobs of the current attempt (GitHub's jobs list shows the latest attempt's)."""
    status: str = "queued"
    conclusion: str | None = None
    attempt: int = 1
    attempt_started_at: datetime | None = None
    """When the current attempt started (GitHub's `run_started_at`: a re-run resets it)."""
    rerun_by: str = ""
    """Who re-ran it (GitHub's `triggering_actor` of a re-run); empty: `actor` started it."""

    @property
    def triggering_actor(self) -> str:
        return self.rerun_by or self.actor

    def job(self, key_or_name: str) -> SimJob:
        for job in self.jobs:
            if key_or_name in (job.key, job.name):
                return job
        raise KeyError(key_or_name)


@dataclass(frozen=True)
class Review:
    """One review of pending deployments, in the order they happened (`order` starts at 1)."""

    order: int
    run_id: int
    environments: tuple[str, ...]
    state: ReviewState
    comment: str
    actor: str
    at: datetime


@dataclass(frozen=True)
class Deployment:
    id: int
    run_id: int
    job_id: int
    environment: str
    ref: str
    sha: str
    creator: str
    created_at: datetime
    statuses: list[DeploymentStatus] = field(default_factory=list)
    """Oldest first (the API lists them newest first)."""


@dataclass(frozen=True)
class DeploymentStatus:
    id: int
    state: str
    at: datetime


@dataclass(frozen=True)
class Transition:
    """A state change worth a webhook: `kind` is the GitHub event name, `action` its action."""

    kind: Literal["workflow_run", "workflow_job", "deployment_review", "deployment_protection_rule"]
    action: str
    run: SimRun
    job: SimJob | None = None
    review: Review | None = None


def ancestors(run: SimRun, job: SimJob) -> list[SimJob]:
    """Every job `job` depends on, directly or not: `failure()` looks at all of them."""
    seen: dict[str, SimJob] = {}
    pending = list(job.spec.needs)
    while pending:
        key = pending.pop()
        if key not in seen:
            seen[key] = run.job(key)
            pending.extend(seen[key].spec.needs)
    return list(seen.values())
