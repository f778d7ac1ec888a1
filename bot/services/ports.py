"""The small interfaces behind which the world sits: GitHub, Slack, metrics, the clock (the
database's are in `store_ports`).

Services depend on these Protocols (and the records that cross them); production wires the real
adapters and `storage`, tests the same adapters against the sandbox servers (never fakes of the
client libraries).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from bot.domain.freeze_all import LanesTold
from bot.domain.gate import GateVerdict
from bot.domain.metrics import QueryWindow, Reading
from bot.domain.npm import ReleaseJob, ReleaseRun
from bot.domain.npm_secrets import PublishJob, SecretLevels
from bot.domain.plan import Metrics, RolloutPlan
from bot.domain.rollout import Event, Rollout
from bot.domain.rollout_summary import RolloutSummary
from bot.domain.run import RunRef, RunSnapshot
from bot.domain.run_link import LinkableRun
from bot.domain.unfollowed_runs import UnfollowedRun
from bot.services.changes import ChangesSource

ReviewState = Literal["approved", "rejected"]

BeforePost = Callable[[], Awaitable[None]]
"""Awaited just before each post or redraw of an outbox message (after what comes before it: a
read, a look in Slack), or each POST of a Release dispatch (after the read of the repository);
raises when the message's lease (`outbox_lease`), or the click's claim (`npm_claim`), no longer
lasts for one."""


@dataclass(frozen=True)
class ReviewAhead:
    """What a review of run `run_id` read on GitHub ahead of its post
    (`GitHubGateway.review_ahead`), for a review of any of `environments` (case-folded):
    `read`, the gateway's own, handed back to it as it was."""

    run_id: int
    environments: frozenset[str]
    read: object


class Clock(Protocol):
    def __call__(self) -> datetime:
        """Now, timezone-aware (UTC)."""
        ...


class WorkflowDispatch(Protocol):
    """A workflow dispatched, and the runs of the bot's own dispatches found again: what the
    rollouts and the npm walkthrough both ask of GitHub."""

    async def dispatch(
        self,
        *,
        workflow_file: str,
        ref: str,
        inputs: Mapping[str, str],
        dispatched_at: datetime,
        before_send: BeforePost | None = None,
    ) -> RunRef:
        """Dispatch the workflow and return the run it started; on GitHub Enterprise (which
        rejects `return_run_details`) find that run without ever taking someone else's.
        `before_send` is awaited just before each POST: what it raises is raised, nothing
        sent."""
        ...

    async def find_dispatched_run(
        self, *, workflow_file: str, ref: str, dispatched_at: datetime
    ) -> RunRef | None:
        """The run our own dispatch created at or after `dispatched_at`, if it can be told
        apart unambiguously (used after a restart in the middle of a dispatch)."""
        ...

    async def dispatched_runs(
        self,
        *,
        workflow_file: str,
        ref: str,
        dispatched_at: datetime,
        before: datetime | None = None,
    ) -> list[RunRef]:
        """Every run of the workflow our own account dispatched on `ref` since
        `dispatched_at` (and created by `before`, when given), none cancelled, newest first."""
        ...


class GitHubGateway(WorkflowDispatch, ChangesSource, Protocol):
    """What the bot asks of GitHub. Every method raises `GitHubError` (a RolloutError with a
    message fit for Slack and free of secrets) when GitHub refuses or fails."""

    @property
    def repository(self) -> str: ...  # `owner/name`, whose workflow runs this reads

    async def linkable_run(self, run_id: int) -> LinkableRun: ...  # a run a person names

    async def release_runs(
        self, *, workflow_file: str, tag: str, since: datetime
    ) -> list[LinkableRun]:
        """Every run of the workflow on the release tag `tag` created since `since`, or created
        before and still going (a run by hand that waits for its reviewers, a run re-run on
        GitHub: its creation time stays its first), by anyone (a person on GitHub too), none
        cancelled: what a scheduled dispatch looks for first, so a release run by hand is not
        run again."""
        ...

    async def run_gone(self, run_id: int) -> bool | None:
        """After GitHub answered 404 for the run: whether it is not there (deleted), rather
        than out of the credentials' reach (GitHub answers 404 for both); None when the
        repository itself does not read (out of reach, or GitHub failed to tell it)."""
        ...

    async def reported(self, run_id: int) -> RunSnapshot:
        """The run as GitHub's APIs report it (its jobs, the environments waiting for a
        reviewer), without the protection rule's requests kept in the database."""
        ...

    async def held(self, reported: RunSnapshot, *, read_at: datetime | None = None) -> RunSnapshot:
        """`reported` with the environments waiting for the App's protection rule among its
        waiting ones (the same snapshot in token mode); `read_at`: when its read began."""
        ...

    async def review(
        self,
        *,
        run_id: int,
        environments: Sequence[str],
        state: ReviewState,
        comment: str,
        attempt: int | None = None,
        ahead: ReviewAhead | None = None,
    ) -> bool:
        """Approve or reject the named waiting environments. False (and nothing sent) when
        none of them is waiting any more; GitHub's 422 for that case is not an error here.
        With `attempt` (the one the review is meant for), also False and nothing sent when
        the run was re-run since: GitHub's review names no attempt and would answer what
        waits on the latest. `ahead`: what it reads before it posts, read already
        (`review_ahead`, for this run and these environments); else read now. The attempt is
        read just before the post, whatever `ahead` holds, once something of it waits."""
        ...

    async def review_ahead(self, run_id: int, environments: Sequence[str]) -> ReviewAhead:
        """What a review of `environments` on the run reads on GitHub before it posts (what
        waits for the bot; the review history only when one of them does; not the run's
        attempt, read last), read before the rollout's lock is taken so that a person's action
        never waits for it; GitHub's failure is kept in it, the review's own failure."""
        ...

    async def latest_attempt(self, run_id: int) -> int:
        """The run's latest attempt (`run_attempt`), read as a conditional GET."""
        ...

    async def rerun_job(self, *, run_id: int, job_id: int, attempt: int) -> int:
        """Re-run job `job_id` of run `run_id`, whose latest attempt is `attempt`: GitHub runs
        it and the jobs that need it again as the run's next attempt, which is returned. A
        refusal (403 while the run goes, past its 30 days or 50 re-runs) raises GitHubError;
        after an unclear answer the run is read back (a later attempt: it was done), and
        RerunUnclear when that read fails too."""
        ...

    async def list_directory(self, *, path: str, ref: str) -> list[str]:
        """Paths of the files in a repository directory at `ref` ([] when it does not exist)."""
        ...

    async def read_file(self, *, path: str, ref: str) -> str:
        """A text file of the repository at `ref`."""
        ...

    async def image_published(self, *, package: str, tag: str) -> bool | None:
        """Whether the container image `package:tag` is published to GitHub Packages; None
        when the bot's credentials cannot tell (a GitHub App: GitHub's packages API takes
        only a personal access token (classic))."""
        ...


class ReleaseGateway(WorkflowDispatch, Protocol):
    """What the NPM_TOKEN walkthrough asks of GitHub about the npm Release workflow (and its
    dispatch). Every method raises `GitHubError` (saying which permission or setup is
    missing) on a refusal."""

    async def publish_job(self, *, workflow_file: str, ref: str, job: str) -> PublishJob:
        """The job as the workflow file at `ref` declares it: its environment, its OIDC
        permission (what the file cannot tell is said in the answer)."""
        ...

    async def secret_levels(self, name: str, job: PublishJob, *, ref: str) -> SecretLevels:
        """The Actions secret's name and dates (never its value) in the job's environment,
        the repository and its organization, with the environment's protection rules for a
        run from the branch `ref`. GitHubError only when the repository's cannot be read; a
        refusal for the environment's is in the answer."""
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


class AppInstallation(Protocol):
    """The GitHub App's installation on a service's repository (App mode only)."""

    async def is_ours(self, installation_id: int) -> bool:
        """Whether `installation_id` is the App's installation on the repository: the one in
        hand, else as GitHub says now (looked up at most once a minute, and only for so long
        as a webhook's answer may wait). GitHubError when GitHub could not tell (also within
        the minute after a lookup that got no answer)."""
        ...


class MetricsSource(Protocol):
    """Reads a stage's figures over a window its gate reads (`bot.domain.metrics.gate_windows`)."""

    async def read(self, window: QueryWindow) -> Reading | None:
        """The figures, or None when a person will supply them (the `manual` source). A
        reading without a `window` is of no window (`static` figures): read once."""
        ...


class WindowMetrics(Protocol):
    """Reads a track's figures over any window, past or present (what `backtest` replays)."""

    async def measure(self, window: QueryWindow) -> Reading:
        """Every figure of the gate over `window`, with the detail the gate card shows; a
        figure it cannot read is missing."""
        ...


class DeliveryFailed(Exception):
    """Slack did not take a message. The outbox waits `retry_after` seconds when Slack said
    (HTTP 429), gives up at once when `permanent` (retrying cannot help: a channel the bot is
    not in, a message Slack refuses), and otherwise backs off and tries again. `card_gone`: the
    message it updates or replies to is no longer in the channel (someone deleted the card).
    `channel_refused`: Slack's reason when the channel refuses the bot itself (it is not a
    member, the channel is archived), so that nothing more can be posted there; with
    `replies_only`, its thread replies only (its posting permissions let it post, not reply).
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        card_gone: bool = False,
        channel_refused: str | None = None,
        replies_only: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.permanent = permanent or card_gone or channel_refused is not None
        self.card_gone = card_gone
        self.channel_refused = channel_refused
        self.replies_only = replies_only and channel_refused is not None


@dataclass(frozen=True)
class Undelivered:
    """A message a refusing channel was not told: its outbox kind, its rollout's tag."""

    kind: str
    tag: str | None


@dataclass(frozen=True)
class RefusalNotice:
    """The notice, in `channel`, that `refusing` refuses the bot (Slack's `refusal`), or its
    thread replies only (`replies_only`); `key` its outbox message, `look_since` when a retry
    first looks for an earlier attempt's post."""

    channel: str
    refusing: str
    refusal: str
    undelivered: Sequence[Undelivered]
    key: int
    look_since: datetime | None
    replies_only: bool = False


@dataclass(frozen=True)
class LaneNotice:
    """The notice, in the release channel `channel`, of a `/rollout freeze --all` or
    `unfreeze --all` typed in another (`told`); `key` its outbox message, `look_since` when a
    retry first looks for an earlier attempt's post."""

    channel: str
    told: LanesTold
    key: int
    look_since: datetime | None


class Notifier(Protocol):
    """What the channel sees: one card per rollout, updated in place, and its thread. The
    outbox (`bot.services.outbox`) calls it to deliver what a state change wrote; every method
    raises `DeliveryFailed` when Slack did not take the message. One given `before_post` awaits
    it just before each post or redraw, after its look for an earlier attempt's."""

    async def publish(self, rollout: Rollout, plan: RolloutPlan, before_post: BeforePost) -> str:
        """Post the rollout's card, or update it when it has a message; returns its ts (a new
        one when someone deleted the card: it is posted again)."""
        ...

    async def find_card(self, rollout: Rollout) -> str | None:
        """The ts of the rollout's card when an earlier attempt posted it (its answer was
        lost), else None."""
        ...

    async def posted(self, rollout: Rollout, *, key: int, channel: str, since: datetime) -> bool:
        """Whether an earlier attempt posted the outbox message `key` (written at `since`): in
        the rollout's thread, or at the top of `channel` when that is another channel (a
        failure)."""
        ...

    async def tell_refused(self, notice: RefusalNotice, before_post: BeforePost) -> None:
        """Tell the failure channel that a release channel refuses the bot, how to fix it and
        what was not delivered there (not if an earlier attempt posted it)."""
        ...

    async def tell_lane(self, notice: LaneNotice, before_post: BeforePost) -> None:
        """Tell a release channel of a `/rollout freeze --all` or `unfreeze --all` typed in
        another (not if an earlier attempt posted it)."""
        ...

    async def tell_asker(self, notice: LaneNotice, *, refusal: str) -> None:
        """Tell the person who typed the command, where they typed it (only they see it), that
        the notice's channel refuses the bot (Slack's `refusal`) and how to fix it."""
        ...

    async def announce(self, rollout: Rollout, told: Event | str, *, key: int) -> None:
        """A reply in the rollout's thread, telling of an event (or a line of text); `key`
        (its outbox message) marks the post."""
        ...

    async def post_failure(
        self, rollout: Rollout, told: Event | str, *, channel: str, key: int
    ) -> None:
        """A failure of the rollout in another channel (the plan's failure channel), with a
        link to the rollout's thread."""
        ...

    async def ask_for_figures(
        self, rollout: Rollout, plan: RolloutPlan, *, track: str, stage: str, key: int
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
        key: int,
        window: tuple[datetime, datetime] | None = None,
    ) -> None:
        """The gate's verdict and every figure behind it in the thread, then a chart per
        gated metric (when the source gave a series and charts are installed). `window`: the
        one the figures were for (else the reading's, else the stage's as it stands)."""
        ...

    async def post_summary(self, rollout: Rollout, summary: RolloutSummary, *, key: int) -> None:
        """The report of a rollout that has ended, in its thread."""

    async def draw_unfollowed(
        self, card: UnfollowedRun, *, channel: str, before_post: BeforePost
    ) -> None:
        """Post the card of a run the bot did not start, or redraw it once decided (an earlier
        post is found by its metadata, so it is never posted twice)."""


class MetricsSources(Protocol):
    def __call__(self, config: Metrics) -> MetricsSource:
        """The source a track's `metrics` section names."""
        ...


# -- storage: the stores ---------------------------------------------------------------------
