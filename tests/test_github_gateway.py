"""The production GitHub gateway: real PyGithub, through the gateway, against the simulator.

The simulator serves on the test's event loop, so a gateway that ran PyGithub on the loop would
hang its own requests; the thread test checks where the client runs explicitly as well.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from test_rerun_unconfirmed import until

from bot.adapters.github.budget import RequestBudget, SecondaryBackoff
from bot.adapters.github.dispatch import DispatchSearch
from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.runs import _job_snapshot
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import GitHubError, GitHubRateLimited, RunNotIdentified
from bot.domain.run import JobConclusion, JobStatus, RunRef
from sandbox.clock import ManualClock
from sandbox.config import GITHUB_TOKEN, REPOSITORY
from sandbox.github import GitHubSimulator
from sandbox.workflows import deployment_strategy_workflow

START = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
WORKFLOW = "deployment-strategy.yml"
INPUTS = {**deployment_strategy_workflow().default_inputs(), "relay_image_tag": "v1.4.2"}
CANARY = "Relay rollout 5% canary (30m)"
MIGRATIONS = "crates/relay/src/db/migrations"
DISPATCHES = "/repos/*/actions/workflows/*/dispatches"
FIND_ATTEMPTS = 3
TIMEOUT = 1
"""Seconds the gateway waits for an answer; the simulator's `timeout` fault waits longer."""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def gh(clock: ManualClock) -> AsyncIterator[GitHubSimulator]:
    async with GitHubSimulator(clock=clock, token=GITHUB_TOKEN, fault_delay=1.5) as sim:
        yield sim


@pytest.fixture
async def ghes(clock: ManualClock) -> AsyncIterator[GitHubSimulator]:
    async with GitHubSimulator(clock=clock, token=GITHUB_TOKEN, enterprise=True) as sim:
        yield sim


def open_gateway(
    sim: GitHubSimulator, api_url: str | None = None, *, budget: RequestBudget | None = None
) -> PyGithubGateway:
    transport = GitHubTransport(
        api_url=api_url or sim.api_url,
        token=GITHUB_TOKEN,
        repository=REPOSITORY,
        timeout=TIMEOUT,
        backoff=0.01,
        budget=budget,
    )
    return PyGithubGateway(transport, search=DispatchSearch(attempts=FIND_ATTEMPTS, delay=0.01))


@pytest.fixture
async def apart(
    gh: GitHubSimulator, clock: ManualClock
) -> AsyncIterator[tuple[PyGithubGateway, PyGithubGateway]]:
    """Two installations' gateways on one GitHub, each with its own request budget on the
    test's clock: a rate limit that holds the first must leave the second's calls going."""
    gateway = open_gateway(gh, budget=RequestBudget(clock=clock))
    elsewhere = open_gateway(gh, budget=RequestBudget(clock=clock))
    yield gateway, elsewhere
    await gateway.close()
    await elsewhere.close()


@pytest.fixture
async def gateway(gh: GitHubSimulator) -> AsyncIterator[PyGithubGateway]:
    gateway = open_gateway(gh)
    yield gateway
    await gateway.close()


@pytest.fixture
async def ghes_gateway(ghes: GitHubSimulator) -> AsyncIterator[PyGithubGateway]:
    gateway = open_gateway(ghes)
    yield gateway
    await gateway.close()


async def start(
    gateway: PyGithubGateway,
    *,
    ref: str = "main",
    inputs: Mapping[str, str] = INPUTS,
    at: datetime = START,
) -> RunRef:
    """`WORKFLOW` dispatched through the gateway: the run it started."""
    return await gateway.dispatch(workflow_file=WORKFLOW, ref=ref, inputs=inputs, dispatched_at=at)


async def dispatch(gateway: PyGithubGateway, ref: str = "main") -> int:
    return (await start(gateway, ref=ref)).run_id


async def approve_canary(gateway: PyGithubGateway, run_id: int) -> bool:
    return await gateway.review(
        run_id=run_id, environments=["relay-canary-5"], state="approved", comment=""
    )


def posts(sim: GitHubSimulator, suffix: str) -> list[int]:
    """Statuses of the POSTs the simulator received on paths ending with `suffix`."""
    return [r.status for r in sim.requests if r.method == "POST" and r.path.endswith(suffix)]


# -- dispatch -----------------------------------------------------------------------------------


async def test_dispatch_returns_the_run_it_started_with_exactly_the_inputs_sent(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    started = await start(gateway)

    [recorded] = gh.dispatches
    assert started.run_id == recorded.run_id
    assert started.html_url == f"{gh.html_url}/{REPOSITORY}/actions/runs/{recorded.run_id}"
    assert recorded.inputs == INPUTS
    assert (recorded.ref, recorded.return_run_details, recorded.actor) == (
        "main",
        True,
        "release-bot",
    )


@pytest.mark.parametrize(
    ("run_404s", "repository_404", "gone"),
    [
        pytest.param(2, False, True, id="404 on both sides of the repository's read: deleted"),
        pytest.param(1, False, False, id="404, then the run: access given back meanwhile"),
        pytest.param(2, True, None, id="the repository answers 404 too: access lost"),
    ],
)
async def test_a_run_answering_404_is_gone_only_when_the_repository_reads(
    gh: GitHubSimulator,
    gateway: PyGithubGateway,
    run_404s: int,
    repository_404: bool,
    gone: bool | None,
) -> None:
    """GitHub answers 404 alike for a deleted run and for a repository out of the credentials'
    reach: the run is gone (its requests closed as a deleted run's) only when the repository
    reads, and the run answers 404 again after that read."""
    run_id = await dispatch(gateway)
    gh.fail_next("GET", f"/repos/{REPOSITORY}/actions/runs/{run_id}", 404, times=run_404s)
    if repository_404:
        gh.fail_next("GET", f"/repos/{REPOSITORY}", 404)
    with pytest.raises(GitHubError) as refused:
        await gateway.linkable_run(run_id)
    assert refused.value.status == 404

    assert await gateway.run_gone(run_id) is gone


async def test_a_dispatch_github_refuses_is_explained_and_not_retried(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    with pytest.raises(GitHubError) as raised:
        await start(gateway, inputs={**INPUTS, "surprise": "1"})

    assert raised.value.message == (
        f"GitHub refused to dispatch {WORKFLOW} on main "
        '(422: Unexpected inputs provided: ["surprise"]).'
    )
    assert posts(gh, "/dispatches") == [422]
    assert gh.runs == {}


async def test_enterprise_fallback_finds_our_run_among_foreign_ones(
    ghes: GitHubSimulator, ghes_gateway: PyGithubGateway
) -> None:
    ghes.refs.add("hotfix")
    foreign = {
        ghes.create_foreign_run(actor="alice"),
        ghes.create_foreign_run(actor="release-bot", branch="hotfix"),
        ghes.create_foreign_run(actor="release-bot", created_at=START - timedelta(minutes=5)),
        ghes.create_foreign_run(actor="release-bot", event="push"),
    }

    started = await start(ghes_gateway)

    [recorded] = ghes.dispatches
    assert started.run_id == recorded.run_id and started.run_id not in foreign
    assert started.html_url.endswith(f"/actions/runs/{recorded.run_id}")
    assert recorded.inputs == INPUTS and recorded.return_run_details is False
    assert posts(ghes, "/dispatches") == [422, 204]
    assert (
        await ghes_gateway.find_dispatched_run(
            workflow_file=WORKFLOW, ref="main", dispatched_at=START
        )
        == started
    )


async def test_enterprise_fallback_refuses_to_choose_between_two_runs_of_ours(
    ghes: GitHubSimulator, ghes_gateway: PyGithubGateway
) -> None:
    earlier = ghes.create_foreign_run(actor="release-bot")

    with pytest.raises(RunNotIdentified) as raised:
        await dispatch(ghes_gateway)

    [recorded] = ghes.dispatches
    assert "could not be identified unambiguously" in raised.value.message
    assert f"/actions/runs/{earlier}" in raised.value.message
    assert f"/actions/runs/{recorded.run_id}" in raised.value.message
    assert "Cancel the stray run" in raised.value.message
    found = await ghes_gateway.find_dispatched_run(
        workflow_file=WORKFLOW, ref="main", dispatched_at=START
    )
    assert found is None


async def test_enterprise_fallback_gives_up_when_no_run_of_ours_appears(
    ghes: GitHubSimulator, ghes_gateway: PyGithubGateway
) -> None:
    # Our clock runs an hour ahead of GitHub's: the run GitHub stamps is "older" than the
    # dispatch, so it must not be taken.
    with pytest.raises(RunNotIdentified) as raised:
        await start(ghes_gateway, at=START + timedelta(hours=1))

    assert "no run of it appeared" in raised.value.message
    listings = [r for r in ghes.requests if r.path.endswith(f"/workflows/{WORKFLOW}/runs")]
    assert len(listings) == FIND_ATTEMPTS
    assert listings[0].query["created"] == ">=2026-11-29T02:59:58Z"
    assert listings[0].query["actor"] == "release-bot"


async def test_find_dispatched_run_without_a_dispatch_finds_nothing(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    gh.create_foreign_run(actor="alice")
    found = await gateway.find_dispatched_run(
        workflow_file=WORKFLOW, ref="main", dispatched_at=START
    )
    assert found is None
    run_id = await dispatch(gateway)
    found = await gateway.find_dispatched_run(
        workflow_file=WORKFLOW, ref="refs/heads/main", dispatched_at=START
    )
    assert found is not None and found.run_id == run_id


async def test_the_pollers_search_for_a_dispatched_run_is_a_conditional_request(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    async def search() -> list[int]:
        looked = len(gh.requests)
        await gateway.find_dispatched_run(workflow_file=WORKFLOW, ref="main", dispatched_at=START)
        return [r.status for r in gh.requests[looked:] if r.path.endswith(f"{WORKFLOW}/runs")]

    assert await search() == [200]
    remaining = gh.rate_limit_remaining
    assert await search() == [304]  # no run appeared: nothing spent
    assert gh.rate_limit_remaining == remaining
    run_id = await dispatch(gateway)
    assert await search() == [200]
    assert gh.requests[-1].if_none_match is not None
    assert gh.dispatches[-1].run_id == run_id


# -- snapshot and reviews -----------------------------------------------------------------------


async def test_snapshot_shows_the_canary_waiting_after_preflight(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    run_id = await dispatch(gateway)

    snapshot = await gateway.snapshot(run_id)

    assert (snapshot.run_id, snapshot.status, snapshot.conclusion) == (run_id, "waiting", None)
    assert snapshot.html_url.endswith(f"/actions/runs/{run_id}")
    assert snapshot.waiting == {"relay-canary-5", "desktop-internal"}
    assert snapshot.is_waiting("Relay-Canary-5")
    preflight = snapshot.jobs["Relay preflight checks"]
    assert preflight.succeeded and preflight.completed_at == START
    assert preflight.html_url is not None and f"/runs/{run_id}/job/" in preflight.html_url
    assert snapshot.jobs[CANARY].status is JobStatus.WAITING
    assert snapshot.jobs["Relay rollout 50% (60m)"].status is JobStatus.QUEUED
    assert len(snapshot.jobs) == 9


async def test_approving_the_canary_runs_it_and_the_50_percent_stage_waits(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    run_id = await dispatch(gateway)

    assert await gateway.review(
        run_id=run_id, environments=["Relay-Canary-5"], state="approved", comment="canary go"
    )

    snapshot = await gateway.snapshot(run_id)
    assert snapshot.jobs[CANARY].succeeded
    assert snapshot.jobs["Relay rollout 50% (60m)"].status is JobStatus.WAITING
    assert snapshot.waiting == {"relay-rollout-50", "desktop-internal"}
    [review] = gh.reviews
    assert (review.environments, review.state, review.comment, review.actor) == (
        ("relay-canary-5",),
        "approved",
        "canary go",
        "release-bot",
    )


async def test_rejecting_the_next_stage_makes_the_rollback_wait(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    run_id = await dispatch(gateway)
    await approve_canary(gateway, run_id)

    rejected = await gateway.review(
        run_id=run_id,
        environments=["relay-rollout-50"],
        state="rejected",
        comment="error rate 2.0% > 1.0%",
    )

    assert rejected is True
    snapshot = await gateway.snapshot(run_id)
    assert snapshot.jobs["Relay rollout 50% (60m)"].failed
    assert snapshot.jobs["Relay rollout 100%"].skipped
    assert snapshot.jobs["Relay auto-rollback"].status is JobStatus.WAITING
    assert snapshot.is_waiting("relay-rollback")
    assert [(r.environments, r.state) for r in gh.reviews] == [
        (("relay-canary-5",), "approved"),
        (("relay-rollout-50",), "rejected"),
    ]


async def test_reviewing_an_environment_that_is_not_waiting_sends_nothing(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    run_id = await dispatch(gateway)

    reviewed = await gateway.review(
        run_id=run_id, environments=["relay-rollout-50"], state="approved", comment=""
    )

    assert reviewed is False
    assert posts(gh, "/pending_deployments") == []
    assert gh.reviews == []


async def test_a_review_that_raced_a_change_on_github_is_not_an_error(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    """A person approves the canary on github.com between the bot's read of what waits and
    its POST: GitHub answers 422, and a look finds nothing of it waiting any more."""
    run_id = await dispatch(gateway)
    answered = gh.hold("POST", "/repos/*/actions/runs/*/pending_deployments")
    sent = asyncio.create_task(approve_canary(gateway, run_id))
    await until(lambda: gh.holding)
    gh.review(run_id, ["relay-canary-5"], "approved", actor="octocat")
    answered.set()

    assert await sent is False
    assert posts(gh, "/pending_deployments") == [422]


async def test_a_read_back_on_a_re_run_does_not_take_an_earlier_attempts_review_for_its_own(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    """Attempt 1: the bot approved the canary. Attempt 2 (a re-run): the canary waits again,
    the bot's approval is answered 502, not applied, and a person rejects it meanwhile. The
    review history spans every attempt and names none: the bot's approval of attempt 1 there
    is not this one (before, the read back said "applied")."""
    run_id = await dispatch(gateway)
    assert await approve_canary(gateway, run_id)
    gh.engine.cancel(run_id)
    gh.engine.rerun(run_id, by="octocat")
    assert (await gateway.snapshot(run_id)).is_waiting("relay-canary-5")
    pending = "/repos/*/actions/runs/*/pending_deployments"
    answered = gh.hold("POST", pending)
    gh.fault_next("POST", pending, "server_error")
    sent = asyncio.create_task(approve_canary(gateway, run_id))
    await until(lambda: gh.holding)
    gh.review(run_id, ["relay-canary-5"], "rejected", actor="octocat")
    answered.set()

    assert await sent is False  # someone else's review came first
    assert posts(gh, "/pending_deployments")[-1] == 502


async def test_a_422_while_the_environment_still_waits_is_not_read_as_not_waiting(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    """GitHub answers 422 ("Validation Failed") though the canary still waits for the bot: not
    applied, and not "nothing waits here" either (the bot asks again, and tells it if it
    lasts); before, it was taken for a race and forgotten."""
    run_id = await dispatch(gateway)
    gh.fail_next(
        "POST", "/repos/*/actions/runs/*/pending_deployments", 422, {"message": "Validation Failed"}
    )

    with pytest.raises(GitHubError) as raised:
        await approve_canary(gateway, run_id)

    assert "422" in raised.value.message and "still waits" in raised.value.message
    assert not raised.value.refused  # asked again at the next look; told if it lasts
    assert (await gateway.snapshot(run_id)).is_waiting("relay-canary-5")


@pytest.mark.parametrize(
    ("status", "body", "explained"),
    [
        pytest.param(
            500,
            None,
            "GitHub answered 500 (Server Error) when asked to approve relay-canary-5 on run "
            "{run_id}; it was not applied: try again.",
            id="a server error",
        ),
        pytest.param(
            403,
            {"message": "Resource not accessible by integration"},
            "GitHub refused to approve relay-canary-5 on run {run_id} "
            "(403: Resource not accessible by integration): "
            "the token needs a reviewer's rights on the environment.",
            id="a token without reviewer rights",
        ),
    ],
)
async def test_a_review_github_refuses_is_explained_changes_nothing_and_a_retry_works(
    gh: GitHubSimulator,
    gateway: PyGithubGateway,
    status: int,
    body: dict[str, str] | None,
    explained: str,
) -> None:
    run_id = await dispatch(gateway)
    gh.fail_next("POST", "/repos/*/actions/runs/*/pending_deployments", status, body)

    with pytest.raises(GitHubError) as raised:
        await approve_canary(gateway, run_id)

    assert raised.value.message == explained.format(run_id=run_id)
    assert gh.reviews == []
    assert (await gateway.snapshot(run_id)).is_waiting("relay-canary-5")
    assert await approve_canary(gateway, run_id)
    assert [r.environments for r in gh.reviews] == [("relay-canary-5",)]


async def test_rate_limiting_says_when_the_limit_resets(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    run_id = await dispatch(gateway)
    gh.fail_next("GET", "/repos/*/actions/runs/*/jobs", 403)

    with pytest.raises(GitHubError) as raised:
        await gateway.snapshot(run_id)

    assert raised.value.message.startswith(
        f"GitHub rate limited the bot (403: API rate limit exceeded for user ID 1.) "
        f"when asked to read run {run_id}; the limit resets at "
    )
    assert raised.value.message.endswith(" UTC.")


async def test_a_bad_token_is_reported_without_the_token(clock: ManualClock) -> None:
    # The simulator knows another token: ours (the sandbox secret the log scan looks for)
    # is the bad one.
    async with GitHubSimulator(clock=clock) as sim:
        gateway = open_gateway(sim)
        try:
            with pytest.raises(GitHubError) as raised:
                await dispatch(gateway)
        finally:
            await gateway.close()

    assert raised.value.message == (
        f"GitHub rejected the token (401 Bad credentials) when asked to dispatch {WORKFLOW} "
        "on main: check GITHUB_TOKEN."
    )
    assert GITHUB_TOKEN not in repr(raised.value)
    assert sim.runs == {}


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_github_is_an_error_not_a_crash(gh: GitHubSimulator) -> None:
    gateway = open_gateway(gh, api_url=f"http://127.0.0.1:{closed_port()}/api")
    try:
        with pytest.raises(GitHubError) as raised:
            await gateway.snapshot(1)
    finally:
        await gateway.close()
    assert raised.value.message.startswith("GitHub could not be reached when asked to read run 1")


@pytest.mark.parametrize(
    ("status", "conclusion", "expected_status", "expected_conclusion"),
    [
        ("completed", "success", JobStatus.COMPLETED, JobConclusion.SUCCESS),
        ("completed", "startup_failure", JobStatus.COMPLETED, JobConclusion.FAILURE),
        ("completed", None, JobStatus.COMPLETED, JobConclusion.FAILURE),
        ("pending", None, JobStatus.QUEUED, None),
        ("requested", "success", JobStatus.QUEUED, None),
        ("waiting", None, JobStatus.WAITING, None),
    ],
)
def test_unknown_job_states_do_not_crash_and_never_read_as_success(
    status: str,
    conclusion: str | None,
    expected_status: JobStatus,
    expected_conclusion: JobConclusion | None,
) -> None:
    job = _job_snapshot(1, "job", status, conclusion, None, None)
    assert (job.status, job.conclusion) == (expected_status, expected_conclusion)


# -- contents -----------------------------------------------------------------------------------


async def test_migrations_are_listed_and_read_at_a_ref(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    gh.files["v1.4.2"] = {
        f"{MIGRATIONS}/0002_drop.sql": "ALTER TABLE documents DROP COLUMN title;\n",
        f"{MIGRATIONS}/0001_init.sql": "CREATE TABLE documents (id UUID);\n",
        f"{MIGRATIONS}/archive/0000_old.sql": "-- old\n",
    }

    assert await gateway.list_directory(path=MIGRATIONS, ref="main") == [
        f"{MIGRATIONS}/0001_init.sql"
    ]
    assert await gateway.list_directory(path=MIGRATIONS, ref="v1.4.2") == [
        f"{MIGRATIONS}/0001_init.sql",
        f"{MIGRATIONS}/0002_drop.sql",
    ]
    text = await gateway.read_file(path=f"{MIGRATIONS}/0001_init.sql", ref="main")
    assert text.startswith("-- Initial relay schema (expand phase: additive only)\n")
    assert "CREATE INDEX documents_created_at" in text
    dropped = await gateway.read_file(path=f"{MIGRATIONS}/0002_drop.sql", ref="v1.4.2")
    assert dropped == "ALTER TABLE documents DROP COLUMN title;\n"


async def test_a_missing_directory_is_empty_but_a_missing_ref_is_an_error(
    gateway: PyGithubGateway,
) -> None:
    assert await gateway.list_directory(path="no/such/dir", ref="main") == []

    with pytest.raises(GitHubError) as missing_ref:
        await gateway.list_directory(path=MIGRATIONS, ref="v9.9.9")
    assert "(404: No commit found for the ref v9.9.9)" in missing_ref.value.message
    # The repository is found: the tag is what is missing, and the error says so.
    assert "not this tag or commit" in missing_ref.value.message
    assert "GITHUB_REPOSITORY" not in missing_ref.value.message
    with pytest.raises(GitHubError) as missing_file_ref:
        await gateway.read_file(path=f"{MIGRATIONS}/0001_init.sql", ref="v9.9.9")
    assert "not this tag or commit: it was deleted from GitHub" in missing_file_ref.value.message
    with pytest.raises(GitHubError) as missing_file:
        await gateway.read_file(path=f"{MIGRATIONS}/0009_none.sql", ref="main")
    assert missing_file.value.message.startswith(
        f"GitHub refused to read {MIGRATIONS}/0009_none.sql at main (404: Not Found)"
    )


async def test_a_missing_repository_is_told_as_one_not_as_a_missing_tag(
    gh: GitHubSimulator,
) -> None:
    transport = GitHubTransport(
        api_url=gh.api_url, token=GITHUB_TOKEN, repository="acme/no-such-repo", timeout=TIMEOUT
    )
    gateway = PyGithubGateway(transport, search=DispatchSearch(attempts=FIND_ATTEMPTS, delay=0))
    try:
        with pytest.raises(GitHubError) as missing:
            await gateway.read_file(path=f"{MIGRATIONS}/0001_init.sql", ref="v9.9.9")
    finally:
        await gateway.close()
    assert missing.value.message.endswith(
        "(404: Not Found): check GITHUB_REPOSITORY and that the token can see the repository."
    )


# -- threading ----------------------------------------------------------------------------------


class _ThreadRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.threads: list[int | None] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.threads.append(record.thread)


@pytest.fixture
def client_threads() -> Iterator[_ThreadRecorder]:
    """The thread of every request PyGithub logs (its requester logs each one at DEBUG)."""
    recorder = _ThreadRecorder()
    logger = logging.getLogger("github.Requester")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(recorder)
    try:
        yield recorder
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(previous)


async def test_pygithub_never_runs_on_the_event_loop_thread(
    gateway: PyGithubGateway, client_threads: _ThreadRecorder
) -> None:
    run_id = await dispatch(gateway)
    await gateway.snapshot(run_id)
    await approve_canary(gateway, run_id)
    await gateway.list_directory(path=MIGRATIONS, ref="main")

    assert len(client_threads.threads) >= 6
    assert threading.get_ident() not in client_threads.threads


async def test_image_published_reads_the_container_package_tags(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    gh.images["relay"] = {"v1.4.1", "v1.4.2"}
    assert await gateway.image_published(package="relay", tag="v1.4.2") is True
    assert await gateway.image_published(package="relay", tag="v1.5.0") is False
    assert await gateway.image_published(package="no-such-package", tag="v1.4.2") is False


async def test_image_lookup_that_github_refuses_is_an_error(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    gh.images["relay"] = {"v1.4.2"}
    gh.fail_next("GET", "/orgs/*/packages/container/*/versions", 403)
    with pytest.raises(GitHubError) as raised:
        await gateway.image_published(package="relay", tag="v1.4.2")
    assert "container image relay:v1.4.2" in raised.value.message


# -- faults: reads retry, writes are looked up, never repeated ---------------------------------


def statuses(sim: GitHubSimulator, method: str, path: str) -> list[int]:
    return [r.status for r in sim.requests if r.method == method and r.path == path]


async def test_a_read_that_meets_two_502s_is_retried_and_succeeds(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    run_id = await dispatch(gateway)
    path = f"/repos/{REPOSITORY}/actions/runs/{run_id}"
    gh.fault_next("GET", path, "server_error", times=2)

    snapshot = await gateway.snapshot(run_id)

    assert snapshot.is_waiting("relay-canary-5")
    assert statuses(gh, "GET", path) == [502, 502, 200]
    assert gh.faults_injected == {"server_error": 2}


async def test_a_read_rate_limited_by_the_secondary_limit_waits_as_github_asks(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    run_id = await dispatch(gateway)
    path = f"/repos/{REPOSITORY}/actions/runs/{run_id}/jobs"
    gh.fault_next("GET", path, "secondary_rate_limit", times=2)
    began = time.monotonic()

    snapshot = await gateway.snapshot(run_id)

    assert time.monotonic() - began >= 2 * gh.retry_after  # Retry-After honoured, twice
    assert CANARY in snapshot.jobs
    assert statuses(gh, "GET", path) == [403, 429, 200]


SECONDARY = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}


async def test_secondary_rate_limits_in_a_row_hold_every_call_back_longer_each_time(
    gh: GitHubSimulator,
    clock: ManualClock,
    apart: tuple[PyGithubGateway, PyGithubGateway],
) -> None:
    """GitHub's REST docs: a secondary rate limit that says no wait asks for a minute, and
    "if your request continues to fail due to a secondary rate limit, wait for an
    exponentially increasing amount of time between retries". The hold is the credentials':
    a person's call is refused with the wait, unsent; another installation's calls go."""
    gateway, elsewhere = apart
    run_id = await dispatch(gateway)
    run = f"/repos/{REPOSITORY}/actions/runs/{run_id}"
    waits = []
    for _ in range(3):
        gh.fail_next("GET", run, 403, SECONDARY)
        with pytest.raises(GitHubRateLimited) as limited:
            await gateway.snapshot(run_id)
        assert limited.value.retry_after is not None
        waits.append(limited.value.retry_after)
        sent = len(gh.requests)
        with pytest.raises(GitHubRateLimited) as held:  # a person's click, meanwhile
            await approve_canary(gateway, run_id)
        assert len(gh.requests) == sent  # not sent
        assert "nothing was sent to read the deployments waiting on" in held.value.message
        assert "try again in " in held.value.message
        assert (await elsewhere.snapshot(run_id)).run_id == run_id  # its own limit
        clock.advance(timedelta(seconds=limited.value.retry_after + 1))
    assert 60 <= waits[0] <= 75 and 120 <= waits[1] <= 150 and 240 <= waits[2] <= 300

    assert await approve_canary(gateway, run_id)  # an answer: the count starts again
    gh.fail_next("GET", run, 429, SECONDARY)
    with pytest.raises(GitHubRateLimited) as again:
        await gateway.snapshot(run_id)
    assert again.value.retry_after is not None and 60 <= again.value.retry_after <= 75
    assert "try again in 1 min" in again.value.message


async def test_a_secondary_rate_limit_with_retry_after_holds_every_call_back_until_then(
    gh: GitHubSimulator,
    clock: ManualClock,
    apart: tuple[PyGithubGateway, PyGithubGateway],
) -> None:
    """GitHub's REST docs: "If the retry-after response header is present, you should not
    retry your request until after that many seconds has elapsed." Not only the poller: a
    person's call on those credentials is refused at once, unsent, with the wait; another
    installation's calls go."""
    gh.retry_after = 600
    gateway, elsewhere = apart
    run_id = await dispatch(gateway)
    waiting = f"/repos/{REPOSITORY}/actions/runs/{run_id}/pending_deployments"
    gh.fault_next("POST", waiting, "secondary_rate_limit")
    with pytest.raises(GitHubRateLimited) as limited:
        await approve_canary(gateway, run_id)
    assert limited.value.retry_after == 600
    sent = len(gh.requests)
    with pytest.raises(GitHubRateLimited) as held:  # a person's look, meanwhile
        await gateway.snapshot(run_id)
    assert len(gh.requests) == sent  # not sent
    assert held.value.message.startswith("GitHub's secondary rate limit holds the bot's")
    assert "nothing was sent to read run" in held.value.message
    assert "try again in 10 min." in held.value.message
    assert (await elsewhere.snapshot(run_id)).run_id == run_id  # its own limit

    clock.advance(timedelta(seconds=599))
    with pytest.raises(GitHubRateLimited) as held:
        await approve_canary(gateway, run_id)
    assert "try again in 1 s." in held.value.message
    clock.advance(timedelta(seconds=1))
    assert await approve_canary(gateway, run_id)
    assert posts(gh, "/pending_deployments")[-1] == 200


@pytest.mark.parametrize("as_date", [False, True], ids=["seconds", "http-date"])
async def test_a_read_is_never_asked_again_before_a_longer_retry_after(
    gh: GitHubSimulator, gateway: PyGithubGateway, clock: ManualClock, as_date: bool
) -> None:
    """A `Retry-After` longer than the bot may wait on a read (30 s): urllib3 would sleep 30 s
    and ask again, 570 s before GitHub allows. The read fails at once with GitHub's wait. As
    an HTTP-date (RFC 9110 §10.2.3) it is read against the answer's own `Date` (GitHub's
    clock, the sandbox's here): it was not read as a wait, and the read was asked again."""
    later = format_datetime(clock() + timedelta(seconds=600), usegmt=True)
    gh.retry_after = later if as_date else 600
    run_id = await dispatch(gateway)
    path = f"/repos/{REPOSITORY}/actions/runs/{run_id}"
    gh.fault_next("GET", path, "secondary_rate_limit", times=2)
    began = time.monotonic()

    with pytest.raises(GitHubRateLimited) as limited:
        await gateway.snapshot(run_id)

    assert time.monotonic() - began < 5  # nothing slept on
    assert statuses(gh, "GET", path) == [403]  # asked once
    assert limited.value.retry_after == 600
    assert "try again in 600 s." in limited.value.message


def test_secondary_rate_limits_wait_at_most_the_longest_with_jitter(clock: ManualClock) -> None:
    draws = iter([0.0, 1.0] * 10)
    backoff = SecondaryBackoff(clock, draw=lambda: next(draws))
    waits = []
    for _ in range(8):
        waits.append(backoff.limited())
        clock.advance(timedelta(seconds=waits[-1]))
    assert waits == [60.0, 150.0, 240.0, 600.0, 960.0, 1200.0, 960.0, 1200.0]
    backoff.answered()
    assert backoff.limited() == 60.0


async def test_a_read_that_times_out_is_retried(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    run_id = await dispatch(gateway)
    path = f"/repos/{REPOSITORY}/actions/runs/{run_id}/pending_deployments"
    gh.fault_next("GET", path, "timeout")

    snapshot = await gateway.snapshot(run_id)

    assert snapshot.waiting == {"relay-canary-5", "desktop-internal"}
    assert gh.faults_injected == {"timeout": 1}
    # Asked twice, no more: the late answer is recorded when it is sent, a moment from now or
    # already (the retry's answer and the snapshot's other reads may take that long).
    await until(lambda: len(statuses(gh, "GET", path)) == 2)
    assert statuses(gh, "GET", path) == [200, 200]


async def test_exhausted_retries_report_githubs_last_answer(clock: ManualClock) -> None:
    async with GitHubSimulator(clock=clock, token=GITHUB_TOKEN) as sim:
        gateway = PyGithubGateway(
            GitHubTransport(
                api_url=sim.api_url, token=GITHUB_TOKEN, repository=REPOSITORY, retries=2, backoff=0
            )
        )
        try:
            sim.fault_next("GET", "/repos/*/actions/runs/1", "server_error", times=5)
            with pytest.raises(GitHubError) as raised:
                await gateway.snapshot(1)
        finally:
            await gateway.close()
    assert raised.value.message == (
        "GitHub answered 502 (Server Error) when asked to read run 1; try again."
    )
    assert sim.faults_injected == {"server_error": 3}


@pytest.mark.parametrize("fault", ["apply_then_502", "accept_then_drop"])
async def test_an_approval_github_applied_but_did_not_answer_clearly_is_done(
    gh: GitHubSimulator, gateway: PyGithubGateway, fault: str
) -> None:
    run_id = await dispatch(gateway)
    gh.fault_next("POST", "/repos/*/actions/runs/*/pending_deployments", fault)

    reviewed = await approve_canary(gateway, run_id)

    assert reviewed is True
    assert [r.environments for r in gh.reviews] == [("relay-canary-5",)]
    assert len(posts(gh, "/pending_deployments")) == 1  # read back, never sent again


async def test_an_approval_someone_else_made_meanwhile_is_not_ours(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    run_id = await dispatch(gateway)
    gh.fault_next("POST", "/repos/*/actions/runs/*/pending_deployments", "server_error")
    gh.review(run_id, ["relay-canary-5"], "approved", actor="octocat")

    with pytest.raises(GitHubError):  # the bot's own read saw it waiting: it POSTs, gets 502
        await gateway.review(
            run_id=run_id, environments=["desktop-internal"], state="approved", comment=""
        )
    assert [r.actor for r in gh.reviews] == ["octocat"]


@pytest.mark.parametrize("fault", ["apply_then_502", "accept_then_drop"])
async def test_a_dispatch_github_applied_without_a_clear_answer_finds_its_one_run(
    gh: GitHubSimulator, gateway: PyGithubGateway, fault: str
) -> None:
    gh.fault_next("POST", DISPATCHES, fault)

    started = await start(gateway)

    [recorded] = gh.dispatches
    assert started.run_id == recorded.run_id
    assert len(posts(gh, "/dispatches")) == 1


async def unidentified_dispatch(gateway: PyGithubGateway) -> str:
    """What the bot says of a dispatch whose run it could not identify."""
    with pytest.raises(RunNotIdentified) as raised:
        await dispatch(gateway)
    return raised.value.message


async def test_a_dispatch_answered_502_without_a_run_is_not_identified_never_resent(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    gh.fault_next("POST", DISPATCHES, "server_error")
    said = await unidentified_dispatch(gateway)

    assert said.startswith(
        f"GitHub answered 502 (Server Error) when asked to dispatch {WORKFLOW} on main, so it "
        f"may have started a run, but no run of it appeared after {FIND_ATTEMPTS} looks."
    )
    assert posts(gh, "/dispatches") == [502]
    assert gh.runs == {}


async def test_a_dispatch_that_timed_out_is_found_later_by_the_search(
    gh: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    # GitHub answers nothing in time and carries the dispatch out only after the bot's looks
    # for its run (held, not `timeout`'s fixed delay: on a loaded machine the looks outlasted
    # it and found the run).
    late = gh.hold("POST", DISPATCHES)
    said = await unidentified_dispatch(gateway)
    assert "GitHub gave no answer (no answer in time)" in said

    late.set()  # GitHub carries it out, late
    await until(lambda: gh.dispatches)
    found = await gateway.find_dispatched_run(
        workflow_file=WORKFLOW, ref="main", dispatched_at=START
    )
    [recorded] = gh.dispatches
    assert found is not None
    assert found.run_id == recorded.run_id
