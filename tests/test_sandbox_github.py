"""The GitHub simulator, driven by the real PyGithub client: dispatch, runs, jobs, reviews.

PyGithub is synchronous and the simulator runs on the test's event loop, so every client call
goes through `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import requests
from github import Auth, Github, GithubException
from github.Repository import Repository
from github.WorkflowRun import WorkflowRun

from sandbox.clock import ManualClock
from sandbox.github import GitHubSimulator
from sandbox.github_actions import ActionsEngine
from sandbox.github_runs import Transition
from sandbox.workflows import deployment_strategy_workflow

T = TypeVar("T")
START = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
INPUTS = deployment_strategy_workflow().default_inputs()


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def client(gh: GitHubSimulator, token: str | None = None, **options: Any) -> Github:
    """PyGithub against the simulator, without its default pauses between requests."""
    return Github(
        base_url=gh.api_url,
        auth=Auth.Token(token or gh.token),
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
        **options,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def gh(clock: ManualClock) -> AsyncIterator[GitHubSimulator]:
    async with GitHubSimulator(clock=clock) as sim:
        yield sim


@pytest.fixture
async def repo(gh: GitHubSimulator) -> Repository:
    return await call(client(gh).get_repo, "scriptum/scriptum")


async def dispatch(repo: Repository, **inputs: str) -> WorkflowRun:
    workflow = await call(repo.get_workflow, "deployment-strategy.yml")
    started = await call(
        workflow.create_dispatch, "main", {**INPUTS, **inputs}, throw=True, return_run_details=True
    )
    assert isinstance(started, WorkflowRun)
    return await call(repo.get_workflow_run, started.id)


async def jobs(run: WorkflowRun) -> dict[str, tuple[str, str | None]]:
    listed = await call(lambda: list(run.jobs()))
    return {job.name: (job.status, job.conclusion) for job in listed}


async def review(
    repo: Repository, run: WorkflowRun, env_ids: list[int], state: str, comment: str = "ok"
) -> Any:
    body = {"environment_ids": env_ids, "state": state, "comment": comment}
    _, data = await call(
        repo._requester.requestJsonAndCheck, "POST", f"{run.url}/pending_deployments", input=body
    )
    return data


async def test_dispatch_returns_the_run_it_created(gh: GitHubSimulator, repo: Repository) -> None:
    run = await dispatch(repo, relay_image_tag="v1.4.2")

    assert run.event == "workflow_dispatch"
    assert run.head_branch == "main"
    assert run.actor.login == "release-bot"
    assert run.created_at == START
    assert run.name == "Deployment Strategy"
    assert run.url.startswith(gh.api_url) and run.html_url.startswith(gh.html_url)
    [recorded] = gh.dispatches
    assert recorded.run_id == run.id
    assert recorded.inputs["relay_image_tag"] == "v1.4.2"
    assert recorded.return_run_details is True


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {k: v for k, v in INPUTS.items() if k != "relay_image_tag"},
            "Required input 'relay_image_tag'",
        ),
        ({**INPUTS, "surprise": "1"}, 'Unexpected inputs provided: ["surprise"]'),
        ({**INPUTS, "feature_flags_ready": True}, "is not a string"),
    ],
)
async def test_dispatch_validates_inputs_like_github(
    gh: GitHubSimulator, repo: Repository, inputs: dict[str, Any], message: str
) -> None:
    workflow = await call(repo.get_workflow, "deployment-strategy.yml")

    with pytest.raises(GithubException) as raised:
        await call(workflow.create_dispatch, "main", inputs, throw=True)

    assert raised.value.status == 422
    assert message in raised.value.data["message"]
    assert gh.dispatches == [] and gh.runs == {}


async def test_dispatch_to_an_unknown_ref_is_refused(repo: Repository) -> None:
    workflow = await call(repo.get_workflow, "deployment-strategy.yml")
    with pytest.raises(GithubException) as raised:
        await call(workflow.create_dispatch, "no-such-branch", INPUTS, throw=True)
    assert raised.value.status == 422
    assert "No ref found for: no-such-branch" in raised.value.data["message"]


async def test_enterprise_rejects_return_run_details_and_accepts_a_plain_dispatch(
    clock: ManualClock,
) -> None:
    async with GitHubSimulator(clock=clock, enterprise=True) as gh:
        assert gh.api_url.endswith("/api/v3")
        repo = await call(client(gh).get_repo, "scriptum/scriptum")
        workflow = await call(repo.get_workflow, "deployment-strategy.yml")

        with pytest.raises(GithubException) as raised:
            await call(workflow.create_dispatch, "main", INPUTS, True, True)
        assert raised.value.status == 422
        assert '"return_run_details" is not a permitted key' in raised.value.data["message"]
        assert gh.runs == {}

        assert await call(workflow.create_dispatch, "main", INPUTS, throw=True) is True
        found = await call(
            lambda: list(
                workflow.get_runs(
                    event="workflow_dispatch",
                    branch="main",
                    actor="release-bot",
                    created=">=2026-11-29T02:00:00Z",
                )
            )
        )
        assert [run.id for run in found] == [gh.dispatches[0].run_id]


async def test_run_listing_filters_by_actor_branch_time_and_status(
    gh: GitHubSimulator, repo: Repository
) -> None:
    earlier = gh.create_foreign_run(actor="alice", created_at=START - timedelta(minutes=5))
    other_branch = gh.create_foreign_run(actor="release-bot", branch="hotfix")
    gh.refs.add("hotfix")
    mine = (await dispatch(repo)).id
    release = gh.create_foreign_run(actor="release-bot", workflow="release.yml", event="push")

    def ids(**filters: Any) -> list[int]:
        return [run.id for run in repo.get_workflow_runs(**filters)]

    assert await call(ids) == [release, mine, other_branch, earlier]
    assert await call(ids, actor="release-bot", branch="main", event="workflow_dispatch") == [mine]
    assert await call(ids, created=">=2026-11-29T02:00:00Z", actor="alice") == []
    assert await call(ids, created="2026-11-29T01:50:00Z..2026-11-29T01:59:59Z") == [earlier]
    assert await call(ids, created="<2026-11-29T02:00:00Z") == [earlier]
    assert await call(ids, status="failure") == [release]  # no NPM_TOKEN: publish fails
    assert await call(ids, status="waiting") == [mine, other_branch, earlier]
    workflow = await call(repo.get_workflow, "deployment-strategy.yml")
    assert await call(lambda: [r.id for r in workflow.get_runs(actor="alice")]) == [earlier]

    paged = client(gh, per_page=1)
    paged_repo = await call(paged.get_repo, "scriptum/scriptum")
    listed = await call(lambda: [run.id for run in paged_repo.get_workflow_runs()])
    assert listed == [release, mine, other_branch, earlier]
    assert await call(lambda: paged_repo.get_workflow_runs().totalCount) == 4


async def test_jobs_report_display_names_and_the_desktop_ring_runs_in_parallel(
    repo: Repository,
) -> None:
    run = await dispatch(repo)

    assert await jobs(run) == {
        "Relay preflight checks": ("completed", "success"),
        "Relay rollout 5% canary (30m)": ("waiting", None),
        "Relay rollout 50% (60m)": ("queued", None),
        "Relay rollout 100%": ("queued", None),
        "Relay auto-rollback": ("queued", None),
        "Desktop/CLI ring deploy - internal": ("waiting", None),
        "Desktop/CLI ring deploy - beta": ("queued", None),
        "Desktop/CLI ring deploy - GA": ("queued", None),
        "Desktop/CLI kill-switch": ("queued", None),
    }
    assert run.status == "waiting"
    preflight = (await call(lambda: list(run.jobs())))[0]
    assert [step.name for step in preflight.steps] == [
        "Set up job",
        "Check out repository",
        "Validate feature flags",
        "Check migrations are additive",
        "Complete job",
    ]
    assert all(step.conclusion == "success" for step in preflight.steps)
    assert preflight.html_url.endswith(f"/actions/runs/{run.id}/job/{preflight.id}")


async def test_approving_the_canary_runs_it_and_the_50_percent_job_then_waits(
    gh: GitHubSimulator, repo: Repository
) -> None:
    run = await dispatch(repo)
    _, pending = await call(
        repo._requester.requestJsonAndCheck, "GET", f"{run.url}/pending_deployments"
    )
    by_name = {item["environment"]["name"]: item["environment"]["id"] for item in pending}
    assert set(by_name) == {"relay-canary-5", "desktop-internal"}
    assert by_name["relay-canary-5"] == gh.environment_id("relay-canary-5")

    deployments = await review(repo, run, [by_name["relay-canary-5"]], "approved", "canary go")

    assert [d["environment"] for d in deployments] == ["relay-canary-5"]
    state = await jobs(run)
    assert state["Relay rollout 5% canary (30m)"] == ("completed", "success")
    assert state["Relay rollout 50% (60m)"] == ("waiting", None)
    assert state["Desktop/CLI ring deploy - internal"] == ("waiting", None)
    [recorded] = gh.reviews
    assert (recorded.environments, recorded.state, recorded.comment, recorded.actor) == (
        ("relay-canary-5",),
        "approved",
        "canary go",
        "release-bot",
    )


async def test_rejecting_a_stage_fails_it_skips_the_rest_and_the_rollback_waits(
    gh: GitHubSimulator, repo: Repository
) -> None:
    run = await dispatch(repo)
    await review(repo, run, [gh.environment_id("relay-canary-5")], "approved")

    assert await review(repo, run, [gh.environment_id("relay-rollout-50")], "rejected") == []

    state = await jobs(run)
    assert state["Relay rollout 50% (60m)"] == ("completed", "failure")
    assert state["Relay rollout 100%"] == ("completed", "skipped")
    assert state["Relay auto-rollback"] == ("waiting", None)
    await review(repo, run, [gh.environment_id("relay-rollback")], "approved")
    await review(repo, run, [gh.environment_id("desktop-internal")], "approved")
    await review(repo, run, [gh.environment_id("desktop-beta")], "approved")
    await review(repo, run, [gh.environment_id("desktop-ga")], "approved")

    state = await jobs(run)
    assert state["Relay auto-rollback"] == ("completed", "success")
    assert state["Desktop/CLI ring deploy - GA"] == ("completed", "success")
    assert state["Desktop/CLI kill-switch"] == ("completed", "skipped")
    await call(run.update)
    assert (run.status, run.conclusion) == ("completed", "failure")
    assert [(r.environments, r.state) for r in gh.reviews] == [
        (("relay-canary-5",), "approved"),
        (("relay-rollout-50",), "rejected"),
        (("relay-rollback",), "approved"),
        (("desktop-internal",), "approved"),
        (("desktop-beta",), "approved"),
        (("desktop-ga",), "approved"),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"environment_ids": ["relay-rollout-50"], "state": "approved", "comment": ""}, "integers"),
        ({"environment_ids": [5000001], "state": "maybe", "comment": ""}, "is not one of"),
        ({"environment_ids": [5000001], "state": "approved"}, '"comment" wasn\'t supplied'),
    ],
)
async def test_malformed_reviews_are_refused(
    repo: Repository, body: dict[str, Any], message: str
) -> None:
    run = await dispatch(repo)
    with pytest.raises(GithubException) as raised:
        await call(
            repo._requester.requestJsonAndCheck,
            "POST",
            f"{run.url}/pending_deployments",
            input=body,
        )
    assert raised.value.status == 422
    assert message in raised.value.data["message"]


async def test_reviewing_an_environment_that_is_not_waiting_is_refused(
    gh: GitHubSimulator, repo: Repository
) -> None:
    run = await dispatch(repo)

    for env in ("relay-rollout-50", "relay-rollback"):
        with pytest.raises(GithubException) as raised:
            await review(
                repo, run, [gh.environment_id(env), gh.environment_id("relay-canary-5")], "approved"
            )
        assert raised.value.status == 422
        assert raised.value.data["message"] == "No pending deployment requests to approve or reject"

    assert gh.reviews == []
    assert (await jobs(run))["Relay rollout 5% canary (30m)"] == ("waiting", None)


async def test_a_failed_job_has_its_log_behind_a_redirect(
    gh: GitHubSimulator, repo: Repository
) -> None:
    gh.fail_job("next", "Relay preflight checks", log="deploy exploded\nsecond line")
    run = await dispatch(repo)
    state = await jobs(run)
    assert state["Relay preflight checks"] == ("completed", "failure")
    assert state["Relay rollout 5% canary (30m)"] == ("completed", "skipped")
    assert state["Relay auto-rollback"] == ("waiting", None)

    preflight = await call(lambda: next(iter(run.jobs())))
    location = await call(preflight.logs_url)
    assert location.startswith(f"{gh.api_url}/")
    log = await fetch_text(location)

    assert "2026-11-29T02:00:00.0000000Z ##[group]Check migrations are additive" in log
    assert "2026-11-29T02:00:00.0000000Z deploy exploded\n" in log
    assert "second line" in log
    assert [s.conclusion for s in preflight.steps] == [
        "success",
        "success",
        "success",
        "failure",
        "success",
    ]


async def fetch_text(url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        return await response.text()


async def test_preflight_blocks_a_destructive_migration_at_the_ref(
    gh: GitHubSimulator, repo: Repository
) -> None:
    gh.files["main"]["crates/relay/src/db/migrations/0002_drop.sql"] = (
        "-- cleanup\nALTER TABLE documents DROP COLUMN title;\n"
    )
    run = await dispatch(repo)

    preflight = await call(lambda: next(iter(run.jobs())))
    assert preflight.conclusion == "failure"
    log = await fetch_text(await call(preflight.logs_url))
    assert "0002_drop.sql:2: ALTER TABLE documents DROP COLUMN title;" in log


async def test_preflight_reads_the_migrations_directory_not_below_it(
    gh: GitHubSimulator, repo: Repository
) -> None:
    """The workflow's glob is `migrations/*.sql`: a file in a folder below it is not read."""
    gh.files["main"]["crates/relay/src/db/migrations/archive/0001_old.sql"] = "DROP TABLE t;\n"
    run = await dispatch(repo)

    preflight = await call(lambda: next(iter(run.jobs())))
    assert preflight.conclusion == "success"


async def test_release_workflow_depends_on_the_npm_token_secret(
    gh: GitHubSimulator, repo: Repository
) -> None:
    release = await call(repo.get_workflow, "release.yml")
    assert await call(release.create_dispatch, "main", {}, throw=True) is True
    gh.secrets["NPM_TOKEN"] = START
    assert await call(release.create_dispatch, "main", {}, throw=True) is True

    runs = await call(lambda: list(release.get_runs()))
    with_token, without_token = runs
    assert (with_token.conclusion, without_token.conclusion) == ("success", "failure")
    job = await call(lambda: next(iter(without_token.jobs())))
    assert job.name == "changesets"
    steps = {step.name: step.conclusion for step in job.steps}
    assert steps["Validate npm publish credentials"] == "success"
    assert steps["Version / publish packages"] == "failure"
    log = await fetch_text(await call(job.logs_url))
    assert "NPM_TOKEN secret not configured — skipping npm publish." in log
    assert "npm ERR! code ENEEDAUTH" in log
    clean = await fetch_text(await call(lambda: next(iter(with_token.jobs())).logs_url()))
    assert "NPM_TOKEN secret not configured" not in clean and "ENEEDAUTH" not in clean


async def test_a_forced_publish_error_overrides_the_secret(
    gh: GitHubSimulator, repo: Repository
) -> None:
    gh.secrets["NPM_TOKEN"] = START
    gh.fail_job("next", "changesets", step="Version / publish packages", log="npm ERR! code E401")
    run_id = gh.create_foreign_run(workflow="release.yml", event="push", actor="release-bot")

    run = await call(repo.get_workflow_run, run_id)
    job = await call(lambda: next(iter(run.jobs())))
    assert run.conclusion == "failure"
    assert "npm ERR! code E401" in await fetch_text(await call(job.logs_url))


async def test_secret_metadata_and_missing_permission(
    gh: GitHubSimulator, repo: Repository
) -> None:
    updated = START - timedelta(days=85)
    gh.secrets["NPM_TOKEN"] = updated

    secret = await call(repo.get_secret, "NPM_TOKEN")
    assert await call(lambda: secret.updated_at) == updated
    with pytest.raises(GithubException) as missing:
        await call(lambda: repo.get_secret("OTHER").updated_at)
    assert missing.value.status == 404

    gh.secrets_forbidden = True
    with pytest.raises(GithubException) as forbidden:
        await call(lambda: repo.get_secret("NPM_TOKEN").updated_at)
    assert forbidden.value.status == 403
    assert forbidden.value.data["message"] == "Resource not accessible by integration"


async def test_contents_lists_directories_and_returns_files_at_a_ref(
    gh: GitHubSimulator, repo: Repository
) -> None:
    gh.files["v1.4.2"] = {"crates/relay/src/db/migrations/0003_add.sql": "ALTER TABLE t ADD x;\n"}

    listing = await call(repo.get_contents, "crates/relay/src/db/migrations")
    assert isinstance(listing, list)
    assert [(e.type, e.name) for e in listing] == [("file", "0001_init.sql")]
    top = await call(repo.get_contents, "crates")
    assert isinstance(top, list) and [(e.type, e.name) for e in top] == [("dir", "relay")]
    tagged = await call(repo.get_contents, "crates/relay/src/db/migrations/0003_add.sql", "v1.4.2")
    assert not isinstance(tagged, list)
    assert tagged.decoded_content == b"ALTER TABLE t ADD x;\n"
    assert tagged.url.startswith(gh.api_url)
    with pytest.raises(GithubException) as missing:
        await call(repo.get_contents, "crates/relay/src/db/migrations/0001_init.sql", "v1.4.2")
    assert missing.value.status == 404


async def test_bad_or_missing_credentials_get_401(gh: GitHubSimulator) -> None:
    with pytest.raises(GithubException) as bad:
        await call(lambda: client(gh, "ghp_wrong").get_user().login)
    assert bad.value.status == 401
    assert bad.value.data["message"] == "Bad credentials"
    anonymous = Github(base_url=gh.api_url, retry=None, seconds_between_requests=None)
    with pytest.raises(GithubException) as missing:
        await call(anonymous.get_repo, "scriptum/scriptum")
    assert missing.value.status == 401
    assert await call(lambda: client(gh).get_user().login) == "release-bot"
    assert all("ghp_" not in repr(request) for request in gh.requests)


async def test_conditional_requests_answer_304_until_the_run_changes(
    gh: GitHubSimulator, clock: ManualClock, repo: Repository
) -> None:
    run = await dispatch(repo)
    before = gh.rate_limit_remaining

    assert await call(run.update) is False
    assert gh.requests[-1].status == 304
    assert gh.rate_limit_remaining == before

    clock.advance(timedelta(minutes=1))
    await review(repo, run, [gh.environment_id("relay-canary-5")], "approved")
    assert await call(run.update) is True


async def test_forced_errors_hit_only_the_next_matching_requests(
    gh: GitHubSimulator, repo: Repository
) -> None:
    run = await dispatch(repo)
    gh.fail_next("GET", "/repos/*/actions/runs/*/jobs", 500)
    gh.fail_next("GET", "/repos/*/actions/runs/*", 403)

    with pytest.raises(GithubException) as server_error:
        await jobs(run)
    assert server_error.value.status == 500
    with pytest.raises(GithubException) as limited:
        await call(repo.get_workflow_run, run.id)
    assert limited.value.status == 403
    assert "rate limit" in limited.value.data["message"]
    assert (await jobs(run))["Relay preflight checks"] == ("completed", "success")


async def test_cancel_stops_the_run_and_a_completed_run_cannot_be_cancelled(
    gh: GitHubSimulator, repo: Repository
) -> None:
    run = await dispatch(repo)

    assert await call(run.cancel) is True
    await call(run.update)
    assert (run.status, run.conclusion) == ("completed", "cancelled")
    assert (await jobs(run))["Relay rollout 5% canary (30m)"] == ("completed", "cancelled")
    assert gh.waiting_environments(run.id) == []
    assert await call(run.cancel) is False
    assert gh.requests[-1].status == 409


async def test_a_re_run_is_the_next_attempt_of_the_same_run_with_the_earlier_reviews(
    gh: GitHubSimulator, repo: Repository
) -> None:
    run = await dispatch(repo)
    canary = gh.environment_id("relay-canary-5")
    await review(repo, run, [canary], "approved", "canary go")
    first = await call(lambda: [job.id for job in run.jobs()])
    assert await call(run.rerun) is False  # still running: GitHub refuses (403)
    assert gh.requests[-1].status == 403
    await call(run.cancel)

    assert await call(run.rerun) is True  # 201 Created
    again = await call(repo.get_workflow_run, run.id)

    assert (again.run_attempt, again.status, again.conclusion) == (2, "waiting", None)
    assert again.previous_attempt_url == f"{run.url}/attempts/1"
    state = await jobs(again)
    assert state["Relay rollout 5% canary (30m)"] == ("waiting", None)
    assert not set(first) & set(await call(lambda: [job.id for job in again.jobs()]))
    _, history = await call(repo._requester.requestJsonAndCheck, "GET", f"{run.url}/approvals")
    assert [(h["state"], h["comment"]) for h in history] == [("approved", "canary go")]


async def test_job_durations_follow_the_clock(
    gh: GitHubSimulator, clock: ManualClock, repo: Repository
) -> None:
    gh.set_job_duration("relay-canary-5", timedelta(minutes=10))
    run = await dispatch(repo)
    clock.advance(timedelta(minutes=1))
    await review(repo, run, [gh.environment_id("relay-canary-5")], "approved")
    assert (await jobs(run))["Relay rollout 5% canary (30m)"] == ("in_progress", None)

    clock.advance(timedelta(hours=2))
    await gh.settle()

    canary = await call(
        lambda: next(j for j in run.jobs() if j.name.startswith("Relay rollout 5%"))
    )
    assert (canary.status, canary.conclusion) == ("completed", "success")
    assert canary.started_at == START + timedelta(minutes=1)
    assert canary.completed_at == START + timedelta(minutes=11)
    assert gh.waiting_environments(run.id) == ["relay-rollout-50", "desktop-internal"]


async def test_state_changes_are_emitted_as_webhook_events(
    gh: GitHubSimulator, repo: Repository
) -> None:
    events: list[tuple[str, str, str]] = []

    async def record(name: str, payload: dict[str, Any]) -> None:
        subject = payload.get("workflow_job") or payload.get("workflow_run") or {}
        events.append((name, payload["action"], subject.get("name", "")))

    gh.on_event(record)
    run = await dispatch(repo)
    await review(repo, run, [gh.environment_id("relay-canary-5")], "rejected")
    await gh.settle()

    assert ("workflow_run", "requested", "Deployment Strategy") in events
    assert ("workflow_job", "completed", "Relay preflight checks") in events
    assert ("workflow_job", "waiting", "Relay rollout 5% canary (30m)") in events
    assert ("deployment_review", "requested", "Deployment Strategy") in events
    rejected = events.index(("deployment_review", "rejected", "Deployment Strategy"))
    rollback_waits = events.index(("workflow_job", "waiting", "Relay auto-rollback"))
    assert rejected < rollback_waits


async def test_environments_have_stable_ids_and_review_rules(gh: GitHubSimulator) -> None:
    github = client(gh)
    _, data = await call(
        github.requester.requestJsonAndCheck, "GET", "/repos/scriptum/scriptum/environments"
    )
    names = {env["name"]: env for env in data["environments"]}

    assert set(names) >= {"relay-canary-5", "relay-rollback", "desktop-kill-switch"}
    assert names["relay-canary-5"]["id"] == gh.environment_id("relay-canary-5")
    assert names["relay-canary-5"]["protection_rules"][0]["type"] == "required_reviewers"


@pytest.mark.parametrize(
    ("inputs", "failed_job", "message"),
    [
        ({"feature_flags_ready": "false"}, "Relay preflight checks", "Feature flags are not"),
        ({"relay_canary_error_rate": "0.02"}, "Relay rollout 5% canary (30m)", "ROLLBACK: error"),
        ({"relay_canary_crash_rate": "0.0021"}, "Relay rollout 5% canary (30m)", "ROLLBACK: crash"),
    ],
)
async def test_the_workflow_runs_its_own_checks_on_the_dispatch_inputs(
    gh: GitHubSimulator, repo: Repository, inputs: dict[str, str], failed_job: str, message: str
) -> None:
    run = await dispatch(repo, **inputs)
    if gh.waiting_environments(run.id)[0] == "relay-canary-5":
        await review(repo, run, [gh.environment_id("relay-canary-5")], "approved")

    failed = await call(lambda: next(j for j in run.jobs() if j.name == failed_job))
    assert failed.conclusion == "failure"
    assert message in await fetch_text(await call(failed.logs_url))
    assert gh.waiting_environments(run.id) == ["relay-rollback", "desktop-internal"]


async def test_a_crash_rate_at_exactly_twice_the_baseline_passes_the_workflow_gate(
    gh: GitHubSimulator, repo: Repository
) -> None:
    run = await dispatch(repo, relay_canary_crash_rate="0.002")
    await review(repo, run, [gh.environment_id("relay-canary-5")], "approved")
    assert (await jobs(run))["Relay rollout 5% canary (30m)"] == ("completed", "success")


# -- injected faults ----------------------------------------------------------------------------


async def test_a_secondary_rate_limit_says_so_as_github_does(
    gh: GitHubSimulator, repo: Repository
) -> None:
    gh.fault_next("GET", "/repos/*/actions/runs", "secondary_rate_limit")

    with pytest.raises(GithubException) as limited:
        await call(lambda: list(repo.get_workflow_runs()))

    assert limited.value.status in (403, 429)
    assert limited.value.headers is not None
    assert limited.value.headers["retry-after"] == str(gh.retry_after)
    assert limited.value.data["message"].startswith("You have exceeded a secondary rate limit.")


async def test_apply_then_502_carries_the_write_out_and_answers_502(
    gh: GitHubSimulator, repo: Repository
) -> None:
    gh.fault_next("POST", "/repos/*/actions/workflows/*/dispatches", "apply_then_502")

    with pytest.raises(GithubException) as failed:
        await dispatch(repo)

    assert failed.value.status == 502
    assert len(gh.dispatches) == 1
    assert len(gh.runs) == 1


async def test_accept_then_drop_carries_the_write_out_and_closes_the_connection(
    gh: GitHubSimulator, repo: Repository
) -> None:
    gh.fault_next("POST", "/repos/*/actions/workflows/*/dispatches", "accept_then_drop")

    with pytest.raises(requests.exceptions.ConnectionError):
        await dispatch(repo)

    assert len(gh.dispatches) == 1
    [recorded] = [r for r in gh.requests if r.method == "POST"]
    assert recorded.fault == "accept_then_drop"


async def test_random_faults_are_seeded_counted_and_turned_off_by_rate_zero(
    clock: ManualClock,
) -> None:
    async def faults_of_a_run(seed: int) -> list[str | None]:
        async with GitHubSimulator(clock=clock) as sim:
            repo = await call(client(sim).get_repo, "scriptum/scriptum")
            sim.inject_faults(rate=0.5, seed=seed, kinds=["server_error", "secondary_rate_limit"])
            for _ in range(20):
                with contextlib.suppress(GithubException):
                    await call(lambda: list(repo.get_workflow_runs()))
            counted = sum(sim.faults_injected.values())
            sim.inject_faults(rate=0, seed=seed)
            await call(lambda: list(repo.get_workflow_runs()))
            faults = [r.fault for r in sim.requests]
            assert (
                counted == sum(f is not None for f in faults) == sum(sim.faults_injected.values())
            )
            assert faults[-1] is None
            return faults

    first = await faults_of_a_run(7)
    assert first == await faults_of_a_run(7)
    assert 3 <= sum(f is not None for f in first) <= 17
    assert {f for f in first if f} <= {"server_error", "secondary_rate_limit"}


def test_fault_settings_are_checked() -> None:
    sim = GitHubSimulator()
    with pytest.raises(ValueError, match="rate"):
        sim.inject_faults(rate=1.5, seed=1)
    with pytest.raises(ValueError, match="not a valid FaultKind"):
        sim.inject_faults(rate=0.1, seed=1, kinds=["meteor"])


def test_a_run_whose_move_raised_is_moved_again_at_the_next_process() -> None:
    # The Actions engine moves only the runs something touched: one whose move was cut short
    # by an exception (a listener's bug) must not be forgotten.
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    engine = ActionsEngine(
        workflows=[deployment_strategy_workflow()],
        protected_environments=None,
        clock=clock,
        secrets={},
        files={},
    )
    failures = [RuntimeError("a listener's bug")]

    def listener(transition: Transition) -> None:
        if failures and transition.job is not None:
            raise failures.pop()

    engine.listeners.append(listener)
    spec = engine.workflows[0]
    run = engine.start_run(
        spec, event="workflow_dispatch", branch="main", actor="bot", inputs=spec.default_inputs()
    )
    with pytest.raises(RuntimeError):
        engine.process()
    assert engine.process()
    assert run.status == "waiting"
