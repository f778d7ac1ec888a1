"""What the bot knows of a GitHub Actions run: a snapshot of its jobs and of the environments
waiting for review. Both the poller and (later) webhooks produce these; the rollout machine
reconciles its stages against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    WAITING = "waiting"
    COMPLETED = "completed"


class JobConclusion(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    NEUTRAL = "neutral"
    ACTION_REQUIRED = "action_required"


@dataclass(frozen=True)
class JobSnapshot:
    """One job of the run, by its display name (the jobs API reports names, not keys)."""

    name: str
    status: JobStatus
    conclusion: JobConclusion | None = None
    completed_at: datetime | None = None
    html_url: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is JobStatus.COMPLETED and self.conclusion is JobConclusion.SUCCESS

    @property
    def failed(self) -> bool:
        """Completed without success and without being skipped."""
        return self.status is JobStatus.COMPLETED and self.conclusion not in (
            JobConclusion.SUCCESS,
            JobConclusion.SKIPPED,
            None,
        )

    @property
    def skipped(self) -> bool:
        return self.status is JobStatus.COMPLETED and self.conclusion is JobConclusion.SKIPPED


@dataclass(frozen=True)
class RunSnapshot:
    """The run as GitHub reported it at one moment."""

    run_id: int
    status: str
    conclusion: str | None
    html_url: str
    jobs: Mapping[str, JobSnapshot] = field(default_factory=dict)
    waiting: frozenset[str] = frozenset()
    """Names of the environments with a pending deployment review (case as GitHub reports)."""

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def job(self, name: str) -> JobSnapshot | None:
        return self.jobs.get(name)

    def is_waiting(self, environment: str) -> bool:
        wanted = environment.casefold()
        return any(name.casefold() == wanted for name in self.waiting)


@dataclass(frozen=True)
class RunRef:
    """A dispatched run: its id and the page a person opens."""

    run_id: int
    html_url: str
