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
from bot.adapters.github.rule_looks import RuleLooks
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

    def __post_init__(self) -> None:
        self._looks = RuleLooks(self.requests, self.clock, self.jobs)

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
        snapshot = await self._looks.let_go(snapshot, known)
        if read_at is not None:
            await self._looks.not_applied(snapshot, known, read_at)
        waiting_jobs = sum(1 for j in snapshot.jobs.values() if j.status is JobStatus.WAITING)
        if not waiting_jobs:
            return snapshot  # nothing waits: a request still open was answered another way
        held = {r.environment for r in known if r.open and not self._looks.moved_on(r, snapshot)}
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
        ends_by = self.clock() + ANSWER_REACH
        await self.requests.sending(
            run_id=run_id, environment=environment, answer=state, ends_by=ends_by
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
                # waiting clears the mark (`RuleLooks.not_applied`).
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
