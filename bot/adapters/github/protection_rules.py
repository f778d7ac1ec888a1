"""Holding stages by the App's custom deployment protection rule, environment by environment
(App mode only: a token cannot answer a rule).

GitHub decides which: an environment for which a `deployment_protection_rule` request of this
run is open waits for the App, and is answered through the run's callback
(`POST .../actions/runs/{run_id}/deployment_protection_rule`); any other waits for a reviewer
and goes through `pending_deployments` as in token mode. A request whose webhook was lost is
found from the deployment GitHub created for the job (its latest status `waiting`, linking one
of the run's jobs), on an environment where the App's rule is enabled, unless a request the bot
holds is already that deployment's (docs/protection-rules.md).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from datetime import datetime, timedelta
from urllib.parse import quote

from bot.adapters.github.attempts import latest_attempt, not_for
from bot.adapters.github.pages import every_page
from bot.adapters.github.refusals import unless_missing
from bot.adapters.github.reviews import post_review
from bot.adapters.github.schema import (
    DEPLOYMENT_STATUSES,
    DEPLOYMENTS,
    Deployment,
    DeploymentStatus,
    Run,
    latest_status,
)
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import GitHubError
from bot.domain.protection_rules import (
    ANSWER_REACH,
    RuleRequest,
    WaitingDeployment,
    unexplained,
)
from bot.domain.run import JobStatus, RunSnapshot
from bot.services.ports import Clock, ReviewState
from bot.services.store_ports import ProtectionRuleRequests

_log = logging.getLogger(__name__)

_PAGE = 100
"""GitHub's largest page. Its reference promises no order for deployments nor for their
statuses ("List deployments", "List deployment statuses"): every page of the commit's
deployments and of their statuses is read, and a deployment's latest status is the one
created last."""
_PAGES = 10
"""At most this many pages of a commit's deployments (a thousand: its runs and re-runs), and
of a deployment's statuses."""


def enabled_rule_apps(github: GitHubTransport, environment: str) -> dict[int, str] | None:
    """The Apps whose custom protection rule is enabled on `environment`, id to slug (in the
    pool's thread); None when the repository has no such environment."""
    path = (
        f"/repos/{github.repository}/environments/{quote(environment, safe='')}"
        "/deployment_protection_rules"
    )

    def apps() -> dict[int, str]:
        data = github.get_conditional(path)
        return {
            int(rule["app"]["id"]): str(rule["app"]["slug"])
            for rule in data.get("custom_deployment_protection_rules", [])
            if rule.get("enabled") and isinstance(rule.get("app"), dict)
        }

    return unless_missing(apps)


@dataclass(eq=False)
class ProtectionRules:
    """The rule's side of reading and reviewing a run (see the module's docstring)."""

    github: GitHubTransport
    _: KW_ONLY
    requests: ProtectionRuleRequests
    clock: Clock
    app_id: int
    recheck: timedelta
    """How long an environment's rules, once read, are taken as they were (a poll)."""
    service: str
    """The service whose repository's runs these are (the requests found are its)."""
    jobs: Mapping[str, str] = field(default_factory=dict)
    """Each gated environment's job (`environment_jobs`): an open request whose job
    runs or ran already no longer waits (its answer was applied, though GitHub's reply to it
    was lost), and explains no waiting job."""
    _enabled: dict[str, tuple[bool, datetime]] = field(default_factory=dict, init=False)

    async def holding(
        self, snapshot: RunSnapshot, *, read_at: datetime | None = None
    ) -> RunSnapshot:
        """The snapshot (its read begun at `read_at`) with the environments that wait for the
        App among `waiting`, and the waits whose request never arrived as `unrequested` (for
        the service to keep)."""
        if snapshot.completed:
            return snapshot  # its requests are closed with the run (`close_run`)
        run_id = snapshot.run_id
        known = await self.requests.for_run(run_id)
        snapshot = await self._let_go(snapshot, known)
        if read_at is not None:
            await self._not_applied(snapshot, known, read_at)
        waiting_jobs = sum(1 for j in snapshot.jobs.values() if j.status is JobStatus.WAITING)
        if not waiting_jobs:
            return snapshot  # nothing waits: a request still open was answered another way
        held = {r.environment for r in known if r.open and not self._moved_on(r, snapshot)}
        explained = {name.casefold() for name in (*snapshot.waiting, *held)}
        found: list[RuleRequest] = []
        if waiting_jobs > len(explained):
            # A job waits for something no review and no request explains: a request whose
            # delivery was lost, another App's rule, a wait timer, or a reviewer who is not
            # the bot; only the first is the App's to answer.
            job_ids = {j.job_id for j in snapshot.jobs.values() if j.status is JobStatus.WAITING}
            for deployment in await self._waiting_deployments(run_id, job_ids):
                name = deployment.environment
                if name.casefold() in explained or not unexplained(deployment, known):
                    continue
                if not await self._rule_enabled(name):
                    continue
                found.append(
                    RuleRequest(run_id, name, deployment.id, self.clock(), service=self.service)
                )
                explained.add(name.casefold())
        if not held and not found:
            return snapshot
        rule_waits = frozenset(held | {r.environment for r in found})
        return replace(
            snapshot,
            waiting=snapshot.waiting | rule_waits,
            rule_waits=rule_waits,
            unrequested=tuple(found),
        )

    async def _let_go(self, snapshot: RunSnapshot, known: Sequence[RuleRequest]) -> RunSnapshot:
        """Close the open requests whose job runs or ran: GitHub no longer waits for the App
        there. One the bot had posted an answer to that GitHub may have applied (`sent`: its
        reply lost, or not yet seen) is closed with that answer, its environment among the
        snapshot's `applied_unseen`; any other as `gone`, among `bypassed` (a repository
        admin started the job past its protection rules). Left open, such a request would be
        answered later, by a click, a stop, or on a re-run of the run whose job asks again at
        that environment (the callback names the run and the environment only), or offered on
        a card once the rollout ended. One let go already (by a look that failed or was
        overtaken after it, here or on another replica) is told the same way still, as long
        as it is its environment's latest request and of the snapshot's attempt (`_of_attempt`:
        an earlier attempt's tells nothing of this one's job), and the look acted on tells it
        too: one closed with the answer the bot posted (`sent` kept, `_let_go_unseen`), among
        `applied_unseen`; one closed as `gone`, among `bypassed`. One closed with the answer
        the bot posted whose job GitHub started later than `ANSWER_REACH` after the post had
        ended (`sent_at`: its replica may have died in the middle) is among `late_starts`
        instead: the answer may not have reached GitHub, the start may be an admin's bypass."""
        moved = [r for r in known if r.open and self._moved_on(r, snapshot)]
        latest = [
            r
            for r in {r.environment.casefold(): r for r in known}.values()
            if _of_attempt(snapshot, r)
        ]
        gone = [r for r in latest if r.answer == "gone" and self._moved_on(r, snapshot)]
        unseen = [r for r in latest if _let_go_unseen(r) and self._moved_on(r, snapshot)]
        for request in moved:
            closed = await self.requests.close(
                run_id=request.run_id,
                environment=request.environment,
                answer=request.sent or "gone",
                at=self.clock(),
            )
            if closed and request.sent is None:
                _log.warning(
                    "GitHub: run %s: the job at %s started without the App's answer to its "
                    "protection rule (a repository admin started it past its protection "
                    "rules): its request is let go",
                    request.run_id,
                    request.environment,
                )
            elif closed and (late := self._late(request, snapshot)) is not None:
                _log.warning(
                    "GitHub: run %s: the job at %s started %s after the bot's answer (%s) had "
                    "been posted, its outcome never learned: the answer may not have reached "
                    "GitHub, and a repository admin may have started the job past its "
                    "protection rules",
                    request.run_id,
                    request.environment,
                    late,
                    request.sent,
                )
            elif closed:
                _log.info(
                    "GitHub: run %s: the job at %s went on: the bot's answer (%s) was applied",
                    request.run_id,
                    request.environment,
                    request.sent,
                )
        sent = [r for r in moved if r.sent is not None] + unseen
        late_starts = {
            r.environment: late
            for r in sent
            if (late := self._late(r, snapshot)) is not None
        }
        return replace(
            snapshot,
            bypassed=frozenset(
                {r.environment for r in moved if r.sent is None} | {r.environment for r in gone}
            ),
            applied_unseen=frozenset(
                r.environment for r in sent if r.environment not in late_starts
            ),
            late_starts=late_starts,
        )

    def _late(self, request: RuleRequest, snapshot: RunSnapshot) -> timedelta | None:
        """How late the request's job started after the bot's answer to it had been posted
        (`RuleRequest.started_late`, by GitHub's start of the job)."""
        job = snapshot.job(self.jobs.get(request.environment.casefold(), ""))
        return request.started_late(None if job is None else job.started_at)

    async def _not_applied(
        self, snapshot: RunSnapshot, known: Sequence[RuleRequest], read_at: datetime
    ) -> None:
        """Clear the mark of an answer whose outcome the bot never learned (`sent_at`) once a
        read begun after its post ended sees the job still waiting: GitHub did not apply it,
        and a start of the job later is no answer of the bot's (an admin's bypass)."""
        for request in known:
            job = snapshot.job(self.jobs.get(request.environment.casefold(), ""))
            ended = request.sent_at
            if not request.open or ended is None or ended >= read_at or job is None:
                continue
            if job.status is not JobStatus.WAITING:
                continue
            cleared = await self.requests.not_applied(
                run_id=request.run_id, environment=request.environment, sent_at=ended
            )
            if cleared:
                _log.info(
                    "GitHub: run %s: the job at %s still waits: the bot's answer (%s) whose "
                    "outcome it never learned was not applied",
                    request.run_id,
                    request.environment,
                    request.sent,
                )

    def _moved_on(self, request: RuleRequest, snapshot: RunSnapshot) -> bool:
        """Whether the request's job runs or ran: it waits no more, whatever the request says."""
        job = snapshot.job(self.jobs.get(request.environment.casefold(), ""))
        return job is not None and job.status in (JobStatus.IN_PROGRESS, JobStatus.COMPLETED)

    async def answer(
        self,
        *,
        run_id: int,
        environments: Sequence[str],
        state: ReviewState,
        comment: str,
        attempt: int | None = None,
    ) -> set[str]:
        """Answer those of `environments` that wait for the App; the environments answered
        (or found answered by another replica), which the reviewers' endpoint must not be
        asked about. A refusal while the job still waits raises GitHubError, the request open.
        With `attempt` (the one the answer is meant for), nothing is answered once the run
        was re-run since: the callback names no attempt either (`attempts`)."""
        held = [
            r
            for r in await self.requests.open_for_run(run_id)
            if any(r.named(name) for name in environments)
        ]
        if held and attempt is not None:
            latest = await latest_attempt(self.github, run_id)
            if not_for(run_id, attempt, latest, f"answer {', '.join(environments)} (its rule)"):
                return set()
        answered: set[str] = set()
        for request in held:
            if await self._answer_one(request, state, comment):
                answered.update(n for n in environments if request.named(n))
        return answered

    async def _answer_one(self, request: RuleRequest, state: ReviewState, comment: str) -> bool:
        """Whether `state` is the request's answer now (False: it no longer waits)."""
        run_id, environment = request.run_id, request.environment
        verb = "approve" if state == "approved" else "reject"
        operation = f"{verb} {environment} on run {run_id} (protection rule)"
        body = {"environment_name": environment, "state": state, "comment": comment}
        path = f"{self.github.runs_path(run_id)}/deployment_protection_rule"
        # Marked before it is posted: a poll reading the job started before this call has
        # closed the request takes it for the bot's answer, not for an admin's bypass; and
        # dated by when the post ends at the latest, so that a read begun later that sees the
        # job still waiting clears the mark, even if this replica dies in the middle.
        await self.requests.sending(
            run_id=run_id, environment=environment, answer=state, ends_by=self.clock() + ANSWER_REACH
        )
        try:
            answer = await post_review(self.github, path, body, operation=operation, run_id=run_id)
        except GitHubError:
            await self.requests.sending(run_id=run_id, environment=environment, answer=None)
            raise  # refused: not applied
        if isinstance(answer, str):
            # Whether it was applied: the same answer again is applied now (204) or was
            # applied already (422); GitHub tells no other way apart from the reviewers' waits.
            again = await post_review(self.github, path, body, operation=operation, run_id=run_id)
            if isinstance(again, str):
                text = (
                    f"{answer} when asked to {operation}, and whether it was applied could not "
                    f"be read back ({again}) The bot looks again at its next poll; the card "
                    "shows the outcome."
                )
                _log.warning("GitHub: run %s: %s", run_id, text)
                # Its outcome unknown from now: a read begun later that sees the job still
                # waiting clears the mark (`_not_applied`).
                await self.requests.unknown(run_id=run_id, environment=environment, at=self.clock())
                raise GitHubError(text)
            _log.warning(
                "GitHub: run %s: %s when asked to %s; read back: %s",
                run_id,
                answer,
                operation,
                "applied now" if again else "applied already",
            )
        elif answer is False:
            return await self._refused(request, state, operation)
        else:
            _log.info("GitHub: run %s: %s %s through the rule", run_id, state, environment)
        closed = await self.requests.close(
            run_id=run_id, environment=environment, answer=state, at=self.clock()
        )
        if not closed:
            _log.info("GitHub: run %s: %s was closed by another replica", run_id, environment)
        return True

    async def _refused(self, request: RuleRequest, state: ReviewState, operation: str) -> bool:
        """GitHub answered 422: nothing of the App's waits there any more, or "the endpoint
        has been spammed". Only a deployment seen no longer waiting closes the request."""
        run_id, environment = request.run_id, request.environment
        if await self.requests.answer_of(run_id=run_id, environment=environment) == state:
            return True  # another replica's answer came first
        still = await self._waiting_deployments(run_id, job_ids=None)
        if not any(d.id == request.deployment_id or request.named(d.environment) for d in still):
            await self.requests.close(
                run_id=run_id, environment=environment, answer="gone", at=self.clock()
            )
            return await self.requests.answer_of(run_id=run_id, environment=environment) == state
        await self.requests.sending(run_id=run_id, environment=environment, answer=None)
        # As the reviewers' 422 (`runs.py`): no refusal (asked again at each look, told as
        # not taken once it lasts), and a person's Promote GitHub did not take is not saved.
        raise GitHubError(
            f"GitHub answered 422 (Validation failed) when asked to {operation}, while the job "
            "still waits there: it was not applied: try again."
        )

    async def _rule_enabled(self, environment: str) -> bool:
        """Whether the App's rule is enabled on `environment` (read at most once a poll)."""
        now = self.clock()
        cached = self._enabled.get(environment)
        if cached is not None and now - cached[1] < self.recheck:
            return cached[0]
        apps = await self.github.call(
            f"read the protection rules of environment {environment}",
            lambda: enabled_rule_apps(self.github, environment),
        )
        enabled = apps is not None and self.app_id in apps
        self._enabled[environment] = (enabled, now)
        return enabled

    async def _waiting_deployments(
        self, run_id: int, job_ids: Collection[int] | None
    ) -> list[WaitingDeployment]:
        """The run's deployments whose latest status is `waiting` (linking one of `job_ids`,
        or any job when None: then every deployment since the run began counts)."""
        github = self.github
        path = github.runs_path(run_id)

        def read() -> list[WaitingDeployment]:
            run = Run.model_validate(github.get_conditional(path))
            found = []
            for deployment in _deployments(github, run.head_sha):
                if deployment.created_at < run.created_at:
                    continue  # an older run of the same commit
                latest = latest_status(_statuses(github, deployment.id))
                if latest is None or latest.state != "waiting":
                    continue
                if job_ids is None or latest.of_jobs(job_ids):
                    found.append(
                        WaitingDeployment(
                            deployment.id, deployment.environment, deployment.created_at
                        )
                    )
            return found

        return await github.call(
            f"read the deployments waiting on run {run_id}", read, run_id=run_id
        )


def _of_attempt(snapshot: RunSnapshot, request: RuleRequest) -> bool:
    """Whether `request` may be of the snapshot's attempt. Requests name no attempt (nor does
    the callback): one kept before a re-run began (GitHub's `run_started_at`, which a re-run
    resets) asked for an earlier attempt's job, and how it was closed says nothing of this
    attempt's. GitHub re-runs only a completed run, so its requests all came before."""
    started = snapshot.started_at
    return snapshot.attempt == 1 or started is None or request.requested_at >= started


def _let_go_unseen(request: RuleRequest) -> bool:
    """Whether the closed `request` was closed with the answer the bot posted to it (`sent`,
    kept once closed): GitHub applied it, whether the click saw its reply or a look found the
    job started first (the reply on its way, or lost: `sent_at`). A refused or unapplied
    answer clears `sent` while the request is open; an admin's bypass closes it as `gone`."""
    return not request.open and request.sent is not None and request.answer == request.sent


def _statuses(github: GitHubTransport, deployment_id: int) -> list[DeploymentStatus]:
    """A deployment's statuses, every page GitHub links (in the pool's thread): the latest may
    be on any of them, GitHub promising no order."""
    path = f"/repos/{github.repository}/deployments/{deployment_id}/statuses"
    return [
        status
        for page in every_page(github, path, {"per_page": _PAGE}, most=_PAGES)
        for status in DEPLOYMENT_STATUSES.validate_python(page or [])
    ]


def _deployments(github: GitHubTransport, sha: str) -> list[Deployment]:
    """The deployments of the commit `sha`, page by page as GitHub links them (in the pool's
    thread), up to `_PAGES` pages."""
    path = f"/repos/{github.repository}/deployments"
    parameters = {"sha": sha, "per_page": _PAGE}
    return [
        deployment
        for page in every_page(github, path, parameters, most=_PAGES)
        for deployment in DEPLOYMENTS.validate_python(page or [])
    ]
