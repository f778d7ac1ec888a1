"""The GitHub request budget: polls spread over passes and never spend the reserve kept for
people, and a person's click never waits behind polls in the transport's pool.

The poller's tests drive `RunPoller` on a rollout service of their own whose every look spends
what a look that changed costs (GitHub's answers, as the transport hands them to the budget);
the transport's run real PyGithub against the GitHub simulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cleared import cleared_rollout
from replicas import poll_stores, replica_sessions
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.adapters.github.budget import RequestBudget, RequestBudgets
from bot.adapters.github.dispatch import DispatchSearch
from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.transport import GitHubTransport
from bot.adapters.github.workers import GitHubWorkers
from bot.adapters.telemetry import PrometheusTelemetry
from bot.domain.errors import GitHubRateLimited
from bot.domain.rollout import Phase, Rollout
from bot.domain.service import DEFAULT_SERVICE
from bot.plan_file import load_plan
from bot.services.following import Reconciled
from bot.services.polling import RunPoller, is_polling, polling
from bot.version import build
from sandbox.clock import ManualClock
from sandbox.config import GITHUB_TOKEN, REPOSITORY
from sandbox.github import GitHubSimulator
from sandbox.workflows import deployment_strategy_workflow

NOW = datetime(2030, 1, 1, tzinfo=UTC)
EVERY = timedelta(seconds=10)
LIMIT = 5000
RESERVE = 1000  # 20% of the limit
COST = 4
PLAN = load_plan(None)


def running(name: str, run_id: int, service: str = DEFAULT_SERVICE) -> Rollout:
    rollout = cleared_rollout(PLAN, now=NOW, rollout_id=name)
    return replace(rollout, phase=Phase.RUNNING, run_id=run_id, service=service)


class ChangingRuns:
    """Active rollouts whose every look finds a change: it costs `COST` requests of its
    service's budget's window, as GitHub's answers would report them. A name `service:id`
    is a rollout of that service."""

    def __init__(self, budgets: RequestBudgets, names: list[str]) -> None:
        self.budgets = budgets
        self.rollouts = [
            running(name, run_id, *name.split(":")[:-1])
            for run_id, name in enumerate(names, start=1)
        ]
        self.looked: list[str] = []

    async def active(self) -> list[Rollout]:
        return self.rollouts

    async def reconcile(self, rollout_id: str) -> Reconciled:
        assert is_polling()  # the transport keeps a worker free of these calls
        self.looked.append(rollout_id)
        [rollout] = [rollout for rollout in self.rollouts if rollout.id == rollout_id]
        budget = self.budgets.of(rollout.service)
        if (seen := budget.seen) is None:  # GitHub's first answer
            reset = int((NOW + timedelta(hours=1)).timestamp())
            budget.observe(limit=LIMIT, remaining=RESERVE + COST + 1, reset=reset)
        else:
            reset = int(seen.reset.timestamp())
            budget.observe(limit=seen.limit, remaining=seen.remaining - COST, reset=reset)
        return Reconciled(version=rollout.version)

    async def look_again(self, rollout: Rollout, last: Reconciled) -> Reconciled:
        return await self.reconcile(rollout.id)

    async def find_dispatched_run(self, rollout: Rollout) -> None:
        raise AssertionError("no rollout is dispatching")


def deferred(telemetry: PrometheusTelemetry) -> float:
    return telemetry.registry.get_sample_value("rollout_bot_github_polls_deferred_total") or 0.0


@pytest.fixture
async def sessions(sqlite_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """One replica's database: its poller claims the looks it makes there."""
    async with replica_sessions(sqlite_database_url, 1) as [one]:
        yield one


def poller_on(
    budgets: RequestBudgets, names: list[str], sessions: async_sessionmaker[AsyncSession]
) -> tuple[RunPoller, ChangingRuns, ManualClock, PrometheusTelemetry]:
    clock = ManualClock(NOW)
    runs = ChangingRuns(budgets, names)
    telemetry = PrometheusTelemetry(build())
    poller = RunPoller(
        service=runs,
        **poll_stores(sessions),
        clock=clock,
        poll_interval=EVERY,
        budget=budgets,
        telemetry=telemetry,
    )
    return poller, runs, clock, telemetry


async def test_near_exhaustion_polls_are_put_off_and_resume_after_the_reset(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    budgets = RequestBudgets()
    reset = NOW + timedelta(minutes=30)
    budgets.of(DEFAULT_SERVICE).observe(
        limit=LIMIT, remaining=RESERVE + COST - 1, reset=int(reset.timestamp())
    )
    poller, runs, clock, telemetry = poller_on(budgets, ["a", "b"], sessions)

    for _ in range(3):
        await poller.poll()
        clock.advance(EVERY)
    assert runs.looked == []  # one more look could spend the reserve
    assert deferred(telemetry) == 6
    assert set(poller.deferred) == {"a", "b"}

    clock.advance(reset - clock())  # GitHub's limit is whole again
    await poller.poll()
    assert runs.looked == ["a", "b"]
    assert poller.deferred == {}


async def test_looks_put_off_go_first_at_the_next_pass_and_none_starves(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    budgets = RequestBudgets()
    budget = budgets.of(DEFAULT_SERVICE)
    reset = NOW + timedelta(hours=1)
    # 100 requests above the reserve: a pass may spend a tenth of them, two looks.
    budget.observe(limit=LIMIT, remaining=RESERVE + 100, reset=int(reset.timestamp()))
    poller, runs, clock, telemetry = poller_on(budgets, ["a", "b", "c", "d", "e"], sessions)

    passes = []
    for _ in range(4):
        before = len(runs.looked)
        await poller.poll()
        passes.append(runs.looked[before:])
        clock.advance(EVERY)

    # a and b are due again at the second pass, but c and d have waited longer; then e.
    # Each pass may spend a tenth of what is left: the fourth, one look.
    assert passes == [["a", "b"], ["c", "d"], ["e", "a"], ["b"]]
    assert deferred(telemetry) == 3 + 3 + 3 + 3
    seen = budget.seen
    assert seen is not None and seen.remaining == RESERVE + 100 - 7 * COST


async def test_before_githubs_first_answer_a_look_goes_and_its_answer_paces_the_rest(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    poller, runs, _, telemetry = poller_on(RequestBudgets(), ["a", "b", "c"], sessions)

    await poller.poll()

    assert runs.looked == ["a"]  # GitHub answered: one more look could spend the reserve
    assert deferred(telemetry) == 2


async def test_each_app_installation_paces_its_own_services_polls(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # An App installed on two accounts: acme's services share acme's installation's limit,
    # globex's service has its own. acme's is spent down to its reserve; globex's is not.
    budgets = RequestBudgets({"api": "acme", "web": "ACME", "billing": "globex"})
    assert budgets.of("api") is budgets.of("web") is not budgets.of("billing")
    reset = int((NOW + timedelta(minutes=30)).timestamp())
    budgets.of("api").observe(limit=LIMIT, remaining=RESERVE + COST - 1, reset=reset)
    budgets.of("billing").observe(limit=LIMIT, remaining=LIMIT, reset=reset)
    names = ["api:1", "web:2", "billing:3", "billing:4"]
    poller, runs, _, telemetry = poller_on(budgets, names, sessions)

    await poller.poll()

    assert runs.looked == ["billing:3", "billing:4"]  # after acme's were refused
    assert set(poller.deferred) == {"api:1", "web:2"}
    assert deferred(telemetry) == 2


class GitHubRuns:
    """Active rollouts whose every look reads their run on GitHub (real PyGithub against the
    simulator) through their service's gateway, on its budget."""

    def __init__(self, gateways: Mapping[str, PyGithubGateway], rollouts: list[Rollout]) -> None:
        self.gateways = gateways
        self.rollouts = rollouts

    async def active(self) -> list[Rollout]:
        return self.rollouts

    async def reconcile(self, rollout_id: str) -> Reconciled:
        [rollout] = [rollout for rollout in self.rollouts if rollout.id == rollout_id]
        assert rollout.run_id is not None
        try:
            await self.gateways[rollout.service].snapshot(rollout.run_id)
        except GitHubRateLimited as limited:
            return Reconciled(
                version=rollout.version, rate_limited=True, retry_after=limited.retry_after
            )
        return Reconciled(version=rollout.version)

    async def look_again(self, rollout: Rollout, last: Reconciled) -> Reconciled:
        return await self.reconcile(rollout.id)

    async def find_dispatched_run(self, rollout: Rollout) -> None:
        raise AssertionError("no rollout is dispatching")


async def test_a_rate_limit_pauses_the_polls_of_its_installation_only(
    gh: GitHubSimulator, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """...and the sweep of kept protection-rule requests (runs' cards) goes on for the other
    installation's services: it used to stop for every service while any one limit held."""
    # An App installed on two accounts: acme's installation meets a secondary rate limit
    # (no wait said: a minute at least). globex's canaries are still followed meanwhile.
    clock = ManualClock(NOW)
    budgets = RequestBudgets({"api": "acme", "billing": "globex"}, clock=clock)
    gateways = {service: gateway_on(gh, budgets.of(service)) for service in ("api", "billing")}
    try:
        acme, globex = gh.create_foreign_run(), gh.create_foreign_run()
        rollouts = [running("api:1", acme, "api"), running("billing:2", globex, "billing")]
        poller = RunPoller(
            service=GitHubRuns(gateways, rollouts),
            **poll_stores(sessions),
            clock=clock,
            poll_interval=EVERY,
            budget=budgets,
        )

        swept: list[list[str]] = []

        async def sweep(may_call: Callable[[str], bool]) -> None:
            swept.append([service for service in ("api", "billing") if may_call(service)])

        async def run_reads(after: timedelta) -> dict[int, list[int]]:
            """Move the clock, poll once: the statuses of each run's reads."""
            clock.advance(after)
            before = len(gh.requests)
            await poller.poll(sweep)
            paths = {f"/repos/{REPOSITORY}/actions/runs/{run}": run for run in (acme, globex)}
            reads: dict[int, list[int]] = {acme: [], globex: []}
            for request in gh.requests[before:]:
                if request.method == "GET" and request.path in paths:
                    reads[paths[request.path]].append(request.status)
            return reads

        assert await run_reads(timedelta(0)) == {acme: [200], globex: [200]}
        secondary = {"message": "You have exceeded a secondary rate limit. Please wait."}
        gh.fail_next("GET", f"/repos/*/actions/runs/{acme}", 403, secondary)
        assert await run_reads(EVERY) == {acme: [403], globex: [304]}  # acme's came first
        assert set(poller.paused) == {"acme"}
        assert await run_reads(EVERY * 3) == {acme: [], globex: [304]}  # acme's waits
        # The sweep of kept requests (runs' cards) goes on for globex's services alone.
        assert swept[-1] == ["billing"]

        resumed = await run_reads(poller.paused["acme"] - clock())
        assert resumed[acme] == [304]
        assert poller.paused == {}
    finally:
        for gateway in gateways.values():
            await gateway.close()


# -- the transport ---------------------------------------------------------------------------


@pytest.fixture
async def gh() -> AsyncIterator[GitHubSimulator]:
    async with GitHubSimulator(token=GITHUB_TOKEN, fault_delay=0.5) as sim:
        yield sim


def gateway_on(
    gh: GitHubSimulator, budget: RequestBudget, *, telemetry: PrometheusTelemetry | None = None
) -> PyGithubGateway:
    transport = GitHubTransport(
        api_url=gh.api_url,
        token=GITHUB_TOKEN,
        repository=REPOSITORY,
        max_workers=2,
        budget=budget,
        **({"telemetry": telemetry} if telemetry is not None else {}),
    )
    return PyGithubGateway(transport, search=DispatchSearch(attempts=3, delay=0.01))


async def test_polls_never_spend_the_reserve_a_person_may(gh: GitHubSimulator) -> None:
    budget = RequestBudget()
    telemetry = PrometheusTelemetry(build())
    gateway = gateway_on(gh, budget, telemetry=telemetry)
    try:
        runs = [gh.create_foreign_run() for _ in range(4)]
        gh.rate_limit_remaining = RESERVE + 10
        now = datetime.now(UTC)  # the simulator's reset is an hour from its wall clock
        first = await gateway.snapshot(runs[0])  # a person's look: the budget learns
        seen = budget.seen
        assert seen is not None and (seen.limit, seen.remaining) == (LIMIT, RESERVE + 6)

        # A pass as long as the window may spend all that is left above the reserve.
        allowance = budget.open_pass(now=now, every=timedelta(hours=1))
        looked = []
        for run_id in runs[1:]:
            if allowance.may_poll():
                with polling():
                    await gateway.snapshot(run_id)
                looked.append(run_id)
        assert looked == runs[1:2]  # a second look could have dipped into the reserve
        assert gh.rate_limit_remaining == RESERVE + 2

        # The reserve is people's: a click's look goes, and unchanged answers cost nothing.
        assert await gateway.snapshot(runs[0]) == first
        assert gh.rate_limit_remaining == RESERVE + 2
        not_modified = telemetry.registry.get_sample_value("rollout_bot_github_not_modified_total")
        assert not_modified == 4  # the run, its jobs, its waiting, its reviews
        await gateway.snapshot(runs[3])
        assert gh.rate_limit_remaining == RESERVE - 2
    finally:
        await gateway.close()


async def test_a_click_goes_through_while_polls_hold_the_pool(gh: GitHubSimulator) -> None:
    gateway = gateway_on(gh, RequestBudget())
    try:
        inputs = {**deployment_strategy_workflow().default_inputs(), "relay_image_tag": "v1.4.2"}
        started = await gateway.dispatch(
            workflow_file="deployment-strategy.yml",
            ref="main",
            inputs=inputs,
            dispatched_at=datetime.now(UTC),
        )
        slow = gh.create_foreign_run()
        # GitHub holds its answers to the poller's reads of the slow run.
        gh.fault_next("GET", f"/repos/*/actions/runs/{slow}", "timeout", times=2)

        async def poll() -> None:
            with polling():
                await gateway.snapshot(slow)

        polls = [asyncio.create_task(poll()) for _ in range(2)]
        for _ in range(200):  # until GitHub holds the first poll's answer
            if gh.faults_injected["timeout"]:
                break
            await asyncio.sleep(0.01)
        assert gh.faults_injected["timeout"] == 1

        approved = await gateway.review(
            run_id=started.run_id, environments=["relay-canary-5"], state="approved", comment=""
        )

        assert approved
        assert not any(task.done() for task in polls)  # the click did not wait for them
        await asyncio.gather(*polls)
        assert gh.faults_injected["timeout"] == 2
    finally:
        await gateway.close()


async def test_every_service_shares_the_threads_and_people_keep_one(gh: GitHubSimulator) -> None:
    billing = gh.add_repository("scriptum/billing-api")
    workers = GitHubWorkers(2)  # the app's: one for polls, one kept for people
    relay, other = (
        GitHubTransport(api_url=gh.api_url, token=GITHUB_TOKEN, repository=name, workers=workers)
        for name in (REPOSITORY, billing.repository)
    )
    try:
        slow = gh.create_foreign_run()
        gh.fault_next("GET", f"/repos/*/actions/runs/{slow}", "timeout")  # GitHub holds it

        def read(transport: GitHubTransport, path: str) -> Any:
            return transport.call("read", lambda: transport.get_json(path))

        async def poll(transport: GitHubTransport, path: str) -> None:
            with polling():
                await read(transport, path)

        finished: list[str] = []
        held = asyncio.create_task(poll(relay, relay.runs_path(slow)))
        held.add_done_callback(lambda _: finished.append("relay's poll"))
        for _ in range(200):  # until GitHub holds the relay's poll
            if gh.faults_injected["timeout"]:
                break
            await asyncio.sleep(0.01)
        waiting = asyncio.create_task(poll(other, f"/repos/{billing.repository}"))
        waiting.add_done_callback(lambda _: finished.append("billing's poll"))

        # A person's call on the other service goes at once; its poll waits for the share.
        await read(other, f"/repos/{billing.repository}")
        finished.append("billing's person")
        await asyncio.gather(held, waiting)
        assert finished == ["billing's person", "relay's poll", "billing's poll"]
    finally:
        for transport in (relay, other):
            await transport.close()
        await workers.close()


def test_a_transport_keeps_a_worker_for_people() -> None:
    with pytest.raises(ValueError, match="one is kept for people's calls"):
        GitHubTransport(
            api_url="http://127.0.0.1:9", token=GITHUB_TOKEN, repository=REPOSITORY, max_workers=1
        )
