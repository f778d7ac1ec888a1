"""Reading a workflow run on GitHub (its jobs, the deployments waiting for review, its review
history) and approving or rejecting its waiting deployments.

A review whose answer is unclear (5xx, timeout, reset) is read back from the run's pending
deployments and review history instead of being repeated. Pending deployments and reviews have
no PyGithub method: they go through its public `requester`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC
from typing import cast

from github import GithubException, UnknownObjectException

from bot.adapters.github.attempts import latest_attempt, not_for, read_attempt
from bot.adapters.github.job_snapshots import job_snapshot
from bot.adapters.github.pages import every_page
from bot.adapters.github.repository import learn_repository_id
from bot.adapters.github.reviews import post_json, post_review
from bot.adapters.github.schema import (
    PENDING,
    REVIEWS,
    Job,
    JobsPage,
    PendingDeployment,
    Review,
    Run,
)
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import GitHubError, RerunNotSeen, RerunUnclear
from bot.domain.run import EnvironmentReview, RunSnapshot
from bot.domain.run_link import LinkableRun
from bot.services.ports import ReviewAhead, ReviewState

_log = logging.getLogger(__name__)

_ReviewRead = tuple[list[PendingDeployment], list[Review]]
"""What waits for the bot on a run, and its review history."""


class WorkflowRuns:
    """Reads and reviews the runs of one repository."""

    def __init__(self, github: GitHubTransport) -> None:
        self._github = github

    # -- observing the run ----------------------------------------------------------------------

    async def snapshot(self, run_id: int) -> RunSnapshot:
        """The run read with conditional requests: what did not change since the last look
        costs GitHub a 304 (no rate limit) and is rebuilt from the answer kept then."""
        github = self._github

        def read() -> tuple[RunSnapshot, str]:
            path = github.runs_path(run_id)
            answer = github.get_conditional(path)
            run = Run.model_validate(answer)
            learn_repository_id(github, answer.get("repository"))
            jobs = {
                job.name: job_snapshot(
                    run_id,
                    job.name,
                    job.status or "queued",
                    job.conclusion,
                    None if job.completed_at is None else job.completed_at.astimezone(UTC),
                    job.html_url,
                    ran=bool(job.steps) or job.runner_id is not None,
                    job_id=job.id,
                    started_at=None if job.started_at is None else job.started_at.astimezone(UTC),
                )
                for job in self._run_jobs(run_id)
            }
            pending = PENDING.validate_python(
                github.get_conditional(f"{path}/pending_deployments") or []
            )
            return RunSnapshot(
                run_id=run_id,
                status=run.status or "queued",
                conclusion=run.conclusion,
                html_url=run.html_url,
                jobs=jobs,
                waiting=frozenset(
                    item.environment.name for item in pending if item.current_user_can_approve
                ),
                # GitHub's review history spans every attempt and names none: after a re-run,
                # an earlier attempt's approval would read as this attempt's (a stage promoted
                # on GitHub, its gate skipped). Only the first attempt's history is its own.
                reviews=self._reviews(run_id) if run.run_attempt == 1 else (),
                attempt=run.run_attempt,
                started_at=(
                    None if run.run_started_at is None else run.run_started_at.astimezone(UTC)
                ),
            ), "" if run.triggering_actor is None else run.triggering_actor.login

        snapshot, started_by = await github.call(f"read run {run_id}", read, run_id=run_id)
        if snapshot.attempt > 1 and started_by:  # a re-run: the bot's own, or a person's?
            bot = await github.actor_login()
            snapshot = replace(snapshot, by_the_bot=started_by.casefold() == bot.casefold())
        _log.info(
            "GitHub: run %s is %s; waiting for review: %s",
            run_id,
            snapshot.conclusion or snapshot.status,
            ", ".join(sorted(snapshot.waiting)) or "none",
        )
        return snapshot

    async def linkable_run(self, run_id: int) -> LinkableRun:
        """The run a person names to link to a rollout (GitHubError when GitHub has none)."""

        def read() -> LinkableRun:
            data = self._github.get_json(self._github.runs_path(run_id))
            return Run.model_validate(data).linkable_run()

        return await self._github.call(f"read run {run_id}", read, run_id=run_id, kind="link")

    async def run_gone(self, run_id: int) -> bool | None:
        """GitHub answers 404 alike for any path of a repository the credentials lost access to
        (an App's installation no longer given it, a token's access withdrawn): only the
        repository's own answer tells them apart (a conditional GET: 304 costs no rate limit).
        When it reads, the run is read once more: access given back between the first 404 and
        the repository's read must not make a run out of reach look deleted."""
        github = self._github
        try:
            answer = await github.call(
                f"read the repository {github.repository}",
                lambda: github.get_conditional(f"/repos/{github.repository}"),
            )
        except GitHubError:
            return None
        learn_repository_id(github, answer)
        try:
            await self.linkable_run(run_id)
        except GitHubError as again:
            return again.status == 404
        return False

    def _run_jobs(self, run_id: int) -> list[Job]:
        """Every job of the run's latest attempt, each page a conditional GET."""
        return run_jobs(self._github, f"{self._github.runs_path(run_id)}/jobs")

    def _reviews(self, run_id: int) -> tuple[EnvironmentReview, ...]:
        """Who approved or rejected which environment of the run (its review history)."""
        path = f"{self._github.runs_path(run_id)}/approvals"
        try:
            history = REVIEWS.validate_python(self._github.get_conditional(path) or [])
        except UnknownObjectException:
            return ()  # a GitHub Enterprise Server without the review history API
        return tuple(review for item in history for review in item.per_environment())

    def _history(self, run_id: int, *, conditional: bool = False) -> list[Review]:
        """The run's review history, every attempt's (empty on a GitHub Enterprise Server
        without its API); a conditional GET when `conditional` (a 304 costs no rate limit)."""
        path = f"{self._github.runs_path(run_id)}/approvals"
        read = self._github.get_conditional if conditional else self._github.get_json
        try:
            return REVIEWS.validate_python(read(path) or [])
        except UnknownObjectException:
            return []

    def _pending_deployments(self, run_id: int) -> list[PendingDeployment]:
        """The run's waits that the bot may review (not a wait timer, not someone else's)."""
        data = self._github.get_json(f"{self._github.runs_path(run_id)}/pending_deployments")
        pending = PENDING.validate_python(data or [])
        return [item for item in pending if item.current_user_can_approve]

    # -- reviewing pending deployments ----------------------------------------------------------

    async def _waiting(self, run_id: int) -> list[PendingDeployment]:
        """`_pending_deployments`, read through the transport (as a review's call)."""
        return await self._github.call(
            f"read the deployments waiting on run {run_id}",
            functools.partial(self._pending_deployments, run_id),
            run_id=run_id,
            kind="review",
        )

    async def review_ahead(self, run_id: int, environments: Sequence[str]) -> ReviewAhead:
        """What `review` of `environments` reads before it posts, but the run's attempt: what
        waits for the bot, and the review history only when one of them does (GitHub's failure
        to answer kept as its read)."""
        wanted = frozenset(name.casefold() for name in environments)

        def read() -> _ReviewRead:
            pending = self._pending_deployments(run_id)
            if not any(item.environment.name.casefold() in wanted for item in pending):
                return pending, []  # nothing to send: its history does not matter
            return pending, self._history(run_id, conditional=True)

        try:
            found: _ReviewRead | GitHubError = await self._github.call(
                f"read the deployments waiting on run {run_id}", read, run_id=run_id, kind="review"
            )
        except GitHubError as error:
            found = error
        return ReviewAhead(run_id, wanted, found)

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
        verb = "approve" if state == "approved" else "reject"
        names = ", ".join(environments)
        operation = f"{verb} {names} on run {run_id}"
        wanted = frozenset(name.casefold() for name in environments)
        if ahead is None or ahead.run_id != run_id or not wanted <= ahead.environments:
            ahead = await self.review_ahead(run_id, environments)
        pending, history = _read_of(ahead)
        ids_by_name = {item.environment.name.casefold(): item.environment.id for item in pending}
        ids = sorted({ids_by_name[name] for name in wanted if name in ids_by_name})
        if not ids:
            _log.info("GitHub: run %s: %s not waiting, nothing to %s", run_id, names, verb)
            return False
        # The attempt read last, just before the post, never ahead of it: a re-run since the
        # waits were read shows in it.
        latest = None if attempt is None else await latest_attempt(self._github, run_id)
        if not_for(run_id, attempt, latest, operation):
            return False
        # The history spans every attempt of the run and names none: only a review of ours
        # added since this read is this one (read back after an unclear answer).
        before = _ours(history, await self._github.actor_login(), state, ids)
        body = {"environment_ids": ids, "state": state, "comment": comment}
        path = f"{self._github.runs_path(run_id)}/pending_deployments"
        answer = await post_review(self._github, path, body, operation=operation, run_id=run_id)
        if answer is True:
            _log.info("GitHub: run %s: %s %s", run_id, state, names)
            return True
        if answer is False:
            return await self._unprocessable(run_id=run_id, ids=ids, operation=operation)
        unclear = answer
        return await self._read_back_review(
            run_id=run_id, ids=ids, state=state, operation=operation, unclear=unclear, before=before
        )

    # -- re-running a job ----------------------------------------------------------------------

    async def rerun_job(self, *, run_id: int, job_id: int, attempt: int) -> int:
        github = self._github
        operation = f"re-run job {job_id} of run {run_id}"
        path = f"/repos/{github.repository}/actions/jobs/{job_id}/rerun"
        try:
            await github.run(
                github.authenticated(functools.partial(post_json, github, path, {})),
                endpoint="rerun",
                operation=operation,
            )
        except (GithubException, OSError) as exc:
            unclear = github.unclear_answer(operation, exc, run_id=run_id, kind="rerun")
        else:
            _log.info("GitHub: run %s: job %s re-run as attempt %s", run_id, job_id, attempt + 1)
            return attempt + 1
        # Whether it was done: GitHub re-runs a job as the run's next attempt.
        try:
            now = await github.call(
                f"read back the attempt of run {run_id}",
                lambda: read_attempt(github, run_id, conditional=False),
                run_id=run_id,
            )
        except GitHubError as error:
            then = "It may have been re-run: it is not asked for again. Look at the run's page."
            text = _not_read_back(run_id, f"{unclear} when asked to {operation}", "done", error)
            raise RerunUnclear(f"{text} {then}") from None
        _log.warning(
            "GitHub: run %s: %s when asked to %s; read back: attempt %s (was %s)",
            run_id,
            unclear,
            operation,
            now,
            attempt,
        )
        if now > attempt:
            return now
        raise RerunNotSeen(
            f"{unclear} when asked to {operation}; GitHub shows it not re-run yet, and may still "
            "re-run it (a request it took late)."
        )

    async def _unprocessable(self, *, run_id: int, ids: Sequence[int], operation: str) -> bool:
        """GitHub answered 422: nothing of it waits there any more (False), or else it was not
        applied though it still waits for the bot ("Validation failed", or "the endpoint has
        been spammed"): a GitHubError, asked again at the next look."""
        if not {item.environment.id for item in await self._waiting(run_id)} & set(ids):
            return False
        # Not "the bot asks again": a person's Promote that GitHub did not take is not saved,
        # and nothing asks again for them (the bot's own reviews are asked again at each look).
        text = (
            f"GitHub answered 422 (Validation failed) when asked to {operation}, while it still "
            "waits there: it was not applied: try again."
        )
        _log.warning("GitHub: run %s: %s", run_id, text)
        raise GitHubError(text)

    async def _read_back_review(
        self,
        *,
        run_id: int,
        ids: Sequence[int],
        state: ReviewState,
        operation: str,
        unclear: str,
        before: int,
    ) -> bool:
        """After an unclear answer to a review, what GitHub holds now tells whether it was
        applied: True when the run's review history has one more review of ours of those
        environments than `before` (read before it was sent), False when someone else's
        review took them, GitHubError when they still wait."""

        def read() -> tuple[set[int], list[Review]]:
            waiting = {item.environment.id for item in self._pending_deployments(run_id)}
            return waiting, self._history(run_id)

        try:
            actor = await self._github.actor_login()
            waiting, history = await self._github.call(
                f"read back the reviews of run {run_id}", read, run_id=run_id, kind="review"
            )
        except GitHubError as error:
            then = "The bot looks again at its next poll; the card shows the outcome."
            text = _not_read_back(run_id, f"{unclear} when asked to {operation}", "applied", error)
            raise GitHubError(f"{text} {then}") from None
        if waiting & set(ids):
            # Repeating it is safe: a review of a deployment that no longer waits is refused.
            text = f"{unclear} when asked to {operation}; it was not applied: try again."
            _log.warning("GitHub: run %s: %s", run_id, text)
            raise GitHubError(text)
        ours = _ours(history, actor, state, ids) > before
        _log.warning(
            "GitHub: run %s: %s when asked to %s; read back: %s",
            run_id,
            unclear,
            operation,
            "it was applied" if ours else "someone else's review came first",
        )
        return ours


def _read_of(ahead: ReviewAhead) -> _ReviewRead:
    """What `WorkflowRuns.review_ahead` read, or GitHub's failure to answer it raised."""
    if isinstance(ahead.read, GitHubError):
        raise ahead.read
    return cast(_ReviewRead, ahead.read)


def _ours(history: Sequence[Review], actor: str, state: ReviewState, ids: Sequence[int]) -> int:
    """How many reviews in the run's `history` are `actor`'s, `state`, of any of `ids`."""
    return sum(
        entry.state == state
        and entry.reviewer.casefold() == actor.casefold()
        and bool({environment.id for environment in entry.environments} & set(ids))
        for entry in history
    )


def _not_read_back(run_id: int, unclear: str, done: str, error: GitHubError) -> str:
    """A write answered unclearly (`unclear`) whose outcome could not be read back either:
    said in the log and to the person, who learns whether it was `done` nowhere else."""
    text = f"{unclear}, and whether it was {done} could not be read back ({error.message})"
    _log.warning("GitHub: run %s: %s", run_id, text)
    return text


def run_jobs(github: GitHubTransport, path: str) -> list[Job]:
    """Every job at `path` (a run's `.../jobs`, its latest attempt's), page by page as
    GitHub links them (in the pool's thread; each page a conditional GET). A run has at most
    a few hundred jobs (a matrix has at most 256)."""
    return [
        job
        for page in every_page(github, path, {"per_page": 100}, most=_JOB_PAGES)
        for job in JobsPage.model_validate(page).jobs
        if job.name
    ]


_JOB_PAGES = 50
"""Pages of a run's jobs read at most: every job GitHub lists, at any page size it keeps."""
