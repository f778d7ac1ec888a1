"""The small interfaces behind which the world sits: GitHub, Slack, metrics, the clock.

Services depend on these Protocols; production wires the real adapters, tests the same
adapters against the sandbox servers (never fakes of the client libraries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal, Protocol

from bot.domain.gate import GateVerdict
from bot.domain.metrics import Reading
from bot.domain.npm import ReleaseJob, ReleaseRun, SecretMetadata
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout
from bot.domain.run import RunRef, RunSnapshot

ReviewState = Literal["approved", "rejected"]


class Clock(Protocol):
    def __call__(self) -> datetime:
        """Now, timezone-aware (UTC)."""
        ...


class GitHubGateway(Protocol):
    """What the bot asks of GitHub. Every method raises `GitHubError` (a RolloutError with a
    message fit for Slack and free of secrets) when GitHub refuses or fails."""

    async def dispatch(
        self, *, workflow_file: str, ref: str, inputs: Mapping[str, str], dispatched_at: datetime
    ) -> RunRef:
        """Dispatch the workflow and return the run it started; on GitHub Enterprise (which
        rejects `return_run_details`) find that run without ever taking someone else's."""
        ...

    async def find_dispatched_run(
        self, *, workflow_file: str, ref: str, dispatched_at: datetime
    ) -> RunRef | None:
        """The run our own dispatch created at or after `dispatched_at`, if it can be told
        apart unambiguously (used after a restart in the middle of a dispatch)."""
        ...

    async def snapshot(self, run_id: int) -> RunSnapshot:
        """The run, its jobs and its environments waiting for review."""
        ...

    async def review(
        self, *, run_id: int, environments: Sequence[str], state: ReviewState, comment: str
    ) -> bool:
        """Approve or reject the named waiting environments. False (and nothing sent) when
        none of them is waiting any more; GitHub's 422 for that case is not an error here."""
        ...

    async def list_directory(self, *, path: str, ref: str) -> list[str]:
        """Paths of the files in a repository directory at `ref` ([] when it does not exist)."""
        ...

    async def read_file(self, *, path: str, ref: str) -> str:
        """A text file of the repository at `ref`."""
        ...

    async def image_published(self, *, package: str, tag: str) -> bool:
        """Whether the container image `package:tag` is published to GitHub Packages."""
        ...


class ReleaseGateway(Protocol):
    """What the NPM_TOKEN walkthrough asks of GitHub about the npm Release workflow. Every
    method raises `GitHubError` (saying which permission or setup is missing) on a refusal."""

    async def secret(self, name: str) -> SecretMetadata | None:
        """A repository Actions secret's name and dates (never its value); None when unset."""
        ...

    async def latest_run(self, *, workflow_file: str) -> ReleaseRun | None:
        """The newest run of the workflow (any event, any branch), None when it never ran."""
        ...

    async def release_run(self, run_id: int) -> ReleaseRun:
        """One run of the workflow, as it stands now."""
        ...

    async def release_job(self, *, run_id: int, name: str) -> ReleaseJob | None:
        """The run's job with this display name, with its steps; None when it has none."""
        ...

    async def job_log(self, job_id: int) -> str:
        """The job's log text (its tail, when the log is very long)."""
        ...

    async def dispatch(
        self, *, workflow_file: str, ref: str, inputs: Mapping[str, str], dispatched_at: datetime
    ) -> RunRef:
        """Dispatch the workflow and return its run (as `GitHubGateway.dispatch`)."""
        ...

    async def find_dispatched_run(
        self, *, workflow_file: str, ref: str, dispatched_at: datetime
    ) -> RunRef | None:
        """The run our own dispatch created (as `GitHubGateway.find_dispatched_run`)."""
        ...


class MetricsSource(Protocol):
    """Reads a stage's figures at the end of its window."""

    async def read(self, *, rollout: Rollout, track: str, stage: str) -> Reading | None:
        """The figures, or None when a person will supply them (the `manual` source)."""
        ...


class DeliveryFailed(Exception):
    """Slack did not take a message. The outbox waits `retry_after` seconds when Slack said
    (HTTP 429), gives up at once when `permanent` (retrying cannot help: a channel the bot is
    not in, a message Slack refuses), and otherwise backs off and tries again."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.permanent = permanent


class Notifier(Protocol):
    """What the channel sees: one card per rollout, updated in place, and its thread. The
    outbox (`bot.outbox`) calls it to deliver what a state change wrote; every method raises
    `DeliveryFailed` when Slack did not take the message."""

    async def publish(self, rollout: Rollout, plan: RolloutPlan) -> str:
        """Post the rollout's card, or update it when it has a message; returns its ts."""
        ...

    async def announce(self, rollout: Rollout, text: str) -> None:
        """A reply in the rollout's thread."""
        ...

    async def post_failure(self, rollout: Rollout, text: str, *, channel: str) -> None:
        """A failure of the rollout in another channel (the plan's failure channel), with a
        link to the rollout's thread."""
        ...

    async def ask_for_figures(
        self, rollout: Rollout, plan: RolloutPlan, *, track: str, stage: str
    ) -> None:
        """Ask the approvers in the thread for a stage's observed rates (manual metrics)."""
        ...

    async def post_gate_card(
        self,
        rollout: Rollout,
        plan: RolloutPlan,
        *,
        track: str,
        stage: str,
        verdict: GateVerdict,
        reading: Reading | None,
    ) -> None:
        """The gate's verdict and every figure behind it in the thread, then a chart per
        gated metric (when the source gave a series and charts are installed)."""
        ...
