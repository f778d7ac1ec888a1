"""What the bot knows of a GitHub Actions run: a snapshot of its jobs, of the environments
waiting for review and of the reviews made so far. The poller and the webhook receiver both
read one through the gateway; the rollout machine reconciles its stages against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from bot.domain.protection_rules import RuleRequest


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
    started_at: datetime | None = None
    """When GitHub started the job (its `started_at`), once it runs or ran; None when not
    reported."""
    ran: bool = True
    """False when no runner ever took the job: skipped, or its environment was rejected."""
    job_id: int = 0
    """GitHub's id of the job (its check run's), 0 when not known."""

    @property
    def started(self) -> bool:
        """A runner took the job (it runs, or ran to an end other than skipped). A job that
        succeeded ran, whether or not its answer names a runner or steps (both optional)."""
        return self.status is JobStatus.IN_PROGRESS or (
            self.status is JobStatus.COMPLETED
            and not self.skipped
            and (self.ran or self.conclusion is JobConclusion.SUCCESS)
        )

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
class EnvironmentReview:
    """A review of one environment of the run: who approved or rejected it on GitHub."""

    environment: str
    state: str
    """`approved` or `rejected`."""
    reviewer: str
    """The GitHub login of the person (or the bot's own account)."""
    comment: str = ""


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
    reviews: tuple[EnvironmentReview, ...] = ()
    """The reviews of the run's environments so far (GitHub's review history of the run)."""
    rule_waits: frozenset[str] = frozenset()
    """Those of `waiting` that wait for the App's protection rule (a request open for them,
    or recovered into `unrequested`), not for a reviewer."""
    unrequested: tuple[RuleRequest, ...] = ()
    """Waits for the App's protection rule whose request never arrived, found from the
    deployments still waiting (among `waiting`): the service keeps them as requests."""
    attempt: int = 1
    """GitHub's `run_attempt`: 2 and up once someone re-ran the run (the same id, new jobs)."""
    by_the_bot: bool = False
    """Whether the bot's own GitHub account started the attempt (GitHub's `triggering_actor`):
    a re-run the bot sent, not one a person made on GitHub."""
    started_at: datetime | None = None
    """When the attempt started (GitHub's `run_started_at`, which a re-run resets); None when
    not reported."""
    bypassed: frozenset[str] = frozenset()
    """Environments whose job started (or ran) while the App's request for it was still
    open, unanswered: a repository admin started it past its protection rules on GitHub (or
    an answer of the bot's was applied though GitHub's reply was lost). The request is let
    go as this snapshot is read."""
    applied_unseen: frozenset[str] = frozenset()
    """Environments whose job started (or ran) on an answer of the bot's to the App's request
    whose reply from GitHub the bot had not seen (lost, or still on its way), or that a look
    found applied before the answer was recorded with the rollout."""
    late_starts: Mapping[str, timedelta] = field(default_factory=dict)
    """Environments whose job started (or ran) with an answer of the bot's marked posted, but
    later than `ANSWER_REACH` after its post had ended (`RuleRequest.started_late`), by how
    much: the answer may never have reached GitHub (its replica died in the middle of the
    post), and an admin may have started the job past its protection rules. Not among
    `applied_unseen`."""

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def job(self, name: str) -> JobSnapshot | None:
        return self.jobs.get(name)

    @property
    def waits_unexplained(self) -> bool:
        """Some job waits for what no environment in `waiting` explains: a protection rule's
        request whose delivery was lost (and not found yet), another App's rule, a wait timer
        or a reviewer who is not the bot."""
        jobs = sum(1 for job in self.jobs.values() if job.status is JobStatus.WAITING)
        return jobs > len({name.casefold() for name in self.waiting})

    def is_waiting(self, environment: str) -> bool:
        wanted = environment.casefold()
        return any(name.casefold() == wanted for name in self.waiting)

    def was_bypassed(self, environment: str) -> bool:
        wanted = environment.casefold()
        return any(name.casefold() == wanted for name in self.bypassed)

    def was_applied_unseen(self, environment: str) -> bool:
        wanted = environment.casefold()
        return any(name.casefold() == wanted for name in self.applied_unseen)

    def late_start(self, environment: str) -> timedelta | None:
        wanted = environment.casefold()
        late = [by for name, by in self.late_starts.items() if name.casefold() == wanted]
        return late[0] if late else None

    def review_of(self, environment: str) -> EnvironmentReview | None:
        """The latest review of an environment (a run attempt reviews each one at most once)."""
        wanted = environment.casefold()
        found = [r for r in self.reviews if r.environment.casefold() == wanted]
        return found[-1] if found else None


@dataclass(frozen=True)
class RunRef:
    """A dispatched run: its id and the page a person opens."""

    run_id: int
    html_url: str
    attempt: int = 1
    """The attempt followed from here (GitHub's `run_attempt`: a linked or adopted run may
    have been re-run)."""
