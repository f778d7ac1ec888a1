"""Reading the deployments GitHub created for a run's jobs, as the App's rule does to recover a
lost request and to tell a 422 that means "answered already" from one that does not, in
whichever order GitHub lists them: its reference promises none for "List deployments" nor for
"List deployment statuses" (https://docs.github.com/rest/deployments/deployments,
https://docs.github.com/rest/deployments/statuses), so the simulator can list both oldest
first (`lists_oldest_first`). The real PyGithub, as the App's installation, against the
simulator; the requests in SQLite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_github_app import credentials
from test_github_gateway import START

from bot.adapters.github.dispatch import DispatchSearch
from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.protection_rules import ProtectionRules
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import GitHubError
from bot.domain.protection_rules import RuleRequest
from sandbox.clock import ManualClock
from sandbox.config import REPOSITORY
from sandbox.github import GitHubSimulator
from sandbox.github_app import SandboxApp
from sandbox.github_runs import Deployment
from sandbox.github_variation import GitHubVariation
from storage.protection_rules import ProtectionRuleStore

CANARY = "relay-canary-5"
CALLBACK = "/repos/*/actions/runs/*/deployment_protection_rule"


@dataclass
class Rule:
    gh: GitHubSimulator
    store: ProtectionRuleStore
    rules: ProtectionRules
    github: PyGithubGateway
    run_id: int


@pytest.fixture(params=["newest-first", "oldest-first", "variation"])
async def rule(
    request: pytest.FixtureRequest, session_factory: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Rule]:
    """A run the bot did not start, its canary waiting for the App's rule; lists in the order
    the parameter says."""
    app = SandboxApp()
    clock = ManualClock(START)
    # Variation: GitHub's default page (30) whatever `per_page` asks, other orders; or pages
    # of one (a status on each: the latest on the last page, oldest first).
    pages = {"variation": 30, "one-a-page": 1}.get(request.param)
    variation = GitHubVariation(page_size=pages) if pages is not None else None
    async with GitHubSimulator(app=app, clock=clock, variation=variation) as gh:
        gh.lists_oldest_first |= request.param == "oldest-first"  # variation: oldest first
        gh.protection_rule([CANARY])
        run_id = gh.create_foreign_run()
        transport = GitHubTransport(
            api_url=gh.api_url,
            app=credentials(app),
            repository=REPOSITORY,
            timeout=5,
            retries=0,
            backoff=0.01,
        )
        store = ProtectionRuleStore(session_factory)
        rules = ProtectionRules(
            transport,
            requests=store,
            clock=clock,
            app_id=app.app_id,
            recheck=timedelta(seconds=5),
            service="default",
        )
        github = PyGithubGateway(transport, rules=rules, search=DispatchSearch(attempts=1))
        try:
            yield Rule(gh, store, rules, github, run_id)
        finally:
            await github.close()


def canary_deployment(rule: Rule) -> Deployment:
    (deployment,) = [d for d in rule.gh.engine.deployments if d.environment == CANARY]
    return deployment


@pytest.mark.parametrize(
    "rule", ["newest-first", "oldest-first", "variation", "one-a-page"], indirect=True
)
async def test_a_422_for_a_request_answered_already_closes_it_whatever_the_lists_order(
    rule: Rule,
) -> None:
    """The App's answer was applied (the canary deploys) but the bot holds the request open:
    GitHub answers 422, and the deployment's latest status (created after `waiting`, on
    another page when GitHub pages by one) says it waits no more: the request is closed, not
    reported as still waiting."""
    deployment = canary_deployment(rule)
    request = RuleRequest(rule.run_id, CANARY, deployment.id, START)
    assert await rule.store.remember(request, delivery_id="d-1")
    app = rule.gh.app
    assert app is not None
    rule.gh.engine.review_rule(
        rule.run_id, environment=CANARY, state="approved", comment="", actor=app.bot_login
    )
    states = [s.state for s in deployment.statuses]  # oldest first
    assert states[0] == "waiting" and "waiting" not in states[1:]

    answered = await rule.rules.answer(
        run_id=rule.run_id, environments=[CANARY], state="approved", comment="ok"
    )

    assert answered == set()  # not this answer's doing: the reviewers' endpoint is asked next
    assert await rule.store.answer_of(run_id=rule.run_id, environment=CANARY) == "gone"


async def answered_422_still_waits(rule: Rule, *, request_environment: str) -> None:
    """GitHub answers the canary's callback 422 while its deployment still waits: the answer
    fails saying so, and the request (kept under `request_environment`) stays open."""
    rule.gh.fail_next("POST", CALLBACK, 422, {"message": "Validation Failed"})

    with pytest.raises(GitHubError, match="still waits"):
        await rule.rules.answer(
            run_id=rule.run_id, environments=[CANARY], state="approved", comment="ok"
        )

    assert await rule.store.answer_of(run_id=rule.run_id, environment=request_environment) is None


async def test_a_422_while_the_deployment_still_waits_keeps_the_request_open(rule: Rule) -> None:
    """The other side: GitHub's 422 ("the endpoint has been spammed") while the deployment's
    latest status is still `waiting` leaves the request open for the next try."""
    deployment = canary_deployment(rule)
    assert await rule.store.remember(
        RuleRequest(rule.run_id, CANARY, deployment.id, START), delivery_id="d-1"
    )
    await answered_422_still_waits(rule, request_environment=CANARY)


async def test_a_422_keeps_open_a_request_without_deployment_spelled_in_another_case(
    rule: Rule,
) -> None:
    """A request that names no deployment (GitHub's `deployment` may be null) is matched to
    the waiting deployment by its environment, whose name GitHub compares ignoring case: the
    request says `Relay-Canary-5`, the deployment `relay-canary-5`, and it still waits, so a
    422 leaves the request open instead of closing it as `gone`."""
    spelled = CANARY.title()
    assert spelled != CANARY and [d.environment for d in rule.gh.engine.deployments] == [CANARY]
    assert await rule.store.remember(RuleRequest(rule.run_id, spelled, 0, START), delivery_id="d-1")
    await answered_422_still_waits(rule, request_environment=spelled)


async def test_a_lost_request_is_found_beyond_the_first_page_of_the_commits_deployments(
    rule: Rule,
) -> None:
    """A commit deployed by many earlier runs: more than a page (100) of its deployments are
    older than the run. Listed oldest first, the run's own are on the last page: the bot reads
    every page and finds the canary's request, whose delivery was lost."""
    engine, canary = rule.gh.engine, canary_deployment(rule)
    older = [
        Deployment(
            id=canary.id - 1000 + n,
            run_id=canary.run_id - 1,
            job_id=canary.job_id - 1000 + n,
            environment=CANARY,
            ref=canary.ref,
            sha=canary.sha,
            creator=canary.creator,
            created_at=START - timedelta(days=1, minutes=n),
        )
        for n in range(150)
    ]
    engine.deployments[:0] = older

    snapshot = await rule.github.snapshot(rule.run_id)

    assert [(r.environment, r.deployment_id) for r in snapshot.unrequested] == [(CANARY, canary.id)]
