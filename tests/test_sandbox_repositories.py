"""The GitHub simulator serving several repositories on one API, driven by the real PyGithub
client: each repository's runs, environments and webhooks are its own, ids are global, an
unknown repository is GitHub's 404, and the App's installation answers per repository."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from github import Auth, Github, GithubException, GithubIntegration
from octokit_schemas import registry, schema_errors
from test_sandbox_github import START, call, client, dispatch

from sandbox.clock import ManualClock
from sandbox.config import RELEASE_MANAGER, SandboxService, numbered_services, write_services
from sandbox.github import GitHubSimulator
from sandbox.github_app import SUSPENDED, SandboxApp
from sandbox.github_json import DOCS_URL
from sandbox.harness import Sandbox
from sandbox.workflows import DEPLOYMENT_STRATEGY_WORKFLOW_ID

BILLING = "scriptum/billing-api"


@pytest.fixture
async def gh() -> AsyncIterator[GitHubSimulator]:
    async with GitHubSimulator(clock=ManualClock(START)) as sim:
        sim.add_repository(BILLING)
        yield sim


async def test_a_dispatch_in_one_repository_is_invisible_in_the_other(
    gh: GitHubSimulator,
) -> None:
    github = client(gh)
    relay = await call(github.get_repo, "scriptum/scriptum")
    billing_repo = await call(github.get_repo, BILLING)
    billing = gh.repositories[BILLING]

    in_relay = await dispatch(relay)
    in_billing = await dispatch(billing_repo)

    assert in_relay.id != in_billing.id  # run ids are global, as GitHub's
    assert (billing_repo.full_name, in_billing.repository.full_name) == (BILLING, BILLING)
    assert [d.run_id for d in gh.dispatches] == [in_relay.id]
    assert [d.run_id for d in billing.dispatches] == [in_billing.id]
    listed = await call(lambda: [run.id for run in billing_repo.get_workflow_runs()])
    assert listed == [in_billing.id]
    with pytest.raises(GithubException) as other:
        await call(billing_repo.get_workflow_run, in_relay.id)
    assert other.value.status == 404
    jobs = await call(lambda: list(in_billing.jobs()))
    relay_jobs = {job.id for run in gh.runs.values() for job in run.jobs}
    assert not relay_jobs & {job.id for job in jobs}
    workflow = await call(billing_repo.get_workflow, "deployment-strategy.yml")
    assert workflow.id != DEPLOYMENT_STRATEGY_WORKFLOW_ID  # workflow ids are global too
    environments = await call(lambda: {e.name: e.id for e in billing_repo.get_environments()})
    assert set(environments) == set(gh.engine.environments)
    assert not set(environments.values()) & set(gh.engine.environments.values())


async def test_a_review_in_one_repository_leaves_the_other_waiting(gh: GitHubSimulator) -> None:
    github = client(gh)
    billing = gh.repositories[BILLING]
    runs = [await dispatch(await call(github.get_repo, name)) for name in gh.repositories]
    relay_run, billing_run = (run.id for run in runs)
    assert "relay-canary-5" in gh.waiting_environments(relay_run)
    assert "relay-canary-5" in billing.waiting_environments(billing_run)

    billing.review(billing_run, ["relay-canary-5"], "approved")

    assert "relay-canary-5" in gh.waiting_environments(relay_run)
    assert "relay-canary-5" not in billing.waiting_environments(billing_run)
    assert [r.run_id for r in billing.reviews] == [billing_run] and gh.reviews == []


@pytest.mark.parametrize(
    "path",
    [
        "/repos/scriptum/unknown",
        "/repos/scriptum/unknown/actions/runs",
        "/repos/other-org/billing-api/actions/workflows/deployment-strategy.yml/dispatches",
        "/repos/scriptum/unknown/environments",
        "/repos/scriptum/unknown/hooks",
    ],
)
async def test_an_unknown_repository_is_not_found_as_on_github(
    gh: GitHubSimulator, path: str
) -> None:
    method = "POST" if path.endswith("/dispatches") else "GET"
    headers = {"Authorization": f"token {gh.token}"}
    answer = await call(
        requests.request, method, f"{gh.api_url}{path}", headers=headers, json={}, timeout=5
    )
    assert answer.status_code == 404
    assert answer.json() == {"message": "Not Found", "documentation_url": DOCS_URL, "status": "404"}
    assert all(not repo.runs for repo in gh.repositories.values())


async def test_a_repository_path_is_case_insensitive_and_adding_one_twice_is_refused(
    gh: GitHubSimulator,
) -> None:
    found = await call(client(gh).get_repo, "Scriptum/Billing-API")
    assert found.full_name == BILLING
    with pytest.raises(ValueError, match="already serves"):
        gh.add_repository("SCRIPTUM/billing-api")
    with pytest.raises(ValueError, match="owner/name"):
        gh.add_repository("billing-api")


async def test_webhooks_carry_the_repository_they_happened_in(gh: GitHubSimulator) -> None:
    everything: list[tuple[str, dict[str, Any]]] = []
    billing_only: list[tuple[str, dict[str, Any]]] = []
    gh.on_event(lambda name, payload: everything.append((name, payload)))
    gh.repositories[BILLING].on_event(lambda name, payload: billing_only.append((name, payload)))
    github = client(gh)

    await dispatch(await call(github.get_repo, "scriptum/scriptum"))
    await dispatch(await call(github.get_repo, BILLING))
    await gh.settle()

    names = {payload["repository"]["full_name"] for _, payload in everything}
    assert names == {"scriptum/scriptum", BILLING}
    assert billing_only and {p["repository"]["full_name"] for _, p in billing_only} == {BILLING}
    ids = {p["repository"]["full_name"]: p["repository"]["id"] for _, p in everything}
    assert ids["scriptum/scriptum"] != ids[BILLING]
    billing_run = next(p for n, p in billing_only if n == "workflow_run")
    assert billing_run["workflow_run"]["repository"]["full_name"] == BILLING
    assert billing_run["repository"]["owner"]["login"] == "scriptum"
    queued = next(p for n, p in billing_only if n == "workflow_job" and p["action"] == "queued")
    assert schema_errors(registry("workflow_job/queued"), "workflow_job$queued", queued) == []


async def test_each_repository_has_its_own_hooks_and_ids_stay_unique(
    gh: GitHubSimulator,
) -> None:
    billing = gh.repositories[BILLING]
    first = gh.add_hook("https://rollout.example.com/github/webhook")
    second = billing.add_hook("https://rollout.example.com/github/webhook")
    github = client(gh)

    listed = {
        name: await call(lambda name=name: [h.id for h in github.get_repo(name).get_hooks()])
        for name in gh.repositories
    }

    assert listed == {"scriptum/scriptum": [first.id], BILLING: [second.id]}
    assert first.id != second.id


# -- the GitHub App ---------------------------------------------------------------------------


def integration(gh: GitHubSimulator, app: SandboxApp) -> GithubIntegration:
    return GithubIntegration(
        auth=Auth.AppAuth(app.app_id, app.private_key), base_url=gh.api_url, retry=None
    )


async def installation_token(gh: GitHubSimulator, app: SandboxApp) -> str:
    access = await call(integration(gh, app).get_access_token, app.installation_id)
    return access.token


async def test_the_app_installed_on_every_repository_answers_for_each(
    gh_app: GitHubSimulator, app: SandboxApp
) -> None:
    apps = integration(gh_app, app)
    for name in gh_app.repositories:
        owner, repo = name.split("/")
        found = await call(apps.get_repo_installation, owner, repo)
        assert found.id == app.installation_id
    token = await installation_token(gh_app, app)
    with_token = Github(base_url=gh_app.api_url, auth=Auth.Token(token), retry=None)
    for name in gh_app.repositories:
        repo = await call(with_token.get_repo, name)
        assert (await call(repo.get_workflow, "deployment-strategy.yml")).name


async def test_an_app_given_one_repository_is_not_found_on_the_other(
    gh_app: GitHubSimulator, app: SandboxApp
) -> None:
    app.repositories = {"scriptum/scriptum"}
    apps = integration(gh_app, app)
    with pytest.raises(GithubException) as missing:
        await call(apps.get_repo_installation, "scriptum", "billing-api")
    assert missing.value.status == 404
    assert (await call(apps.get_repo_installation, "scriptum", "scriptum")).id
    token = await installation_token(gh_app, app)
    with_token = Github(base_url=gh_app.api_url, auth=Auth.Token(token), retry=None)
    assert (await call(with_token.get_repo, "scriptum/scriptum")).full_name
    with pytest.raises(GithubException) as hidden:
        await call(with_token.get_repo, BILLING)
    assert hidden.value.status == 404


async def test_each_account_has_an_installation_whose_tokens_reach_its_repositories_only(
    gh_app: GitHubSimulator, app: SandboxApp
) -> None:
    """GitHub: an App is installed per account, each installation with its own id and tokens;
    a token of one cannot see another account's repository (404, as for a private one)."""
    gh_app.add_repository("globex/ledger")
    apps = integration(gh_app, app)
    scriptum = await call(apps.get_repo_installation, "scriptum", "billing-api")
    globex = await call(apps.get_repo_installation, "globex", "ledger")
    assert scriptum.id == app.installation_id != globex.id
    assert (scriptum.account.login, globex.account.login) == ("scriptum", "globex")

    async def token_of(number: int) -> Github:
        access = await call(apps.get_access_token, number)
        return Github(base_url=gh_app.api_url, auth=Auth.Token(access.token), retry=None)

    async def status(github: Github, name: str) -> int:
        try:
            await call(github.get_repo, name)
        except GithubException as exc:
            return exc.status
        return 200

    of_scriptum, of_globex = await token_of(scriptum.id), await token_of(globex.id)
    assert [await status(of_scriptum, n) for n in (BILLING, "globex/ledger")] == [200, 404]
    assert [await status(of_globex, n) for n in (BILLING, "globex/ledger")] == [404, 200]

    app.uninstall("globex")  # GitHub: its mint and its lookup are 404, its tokens 401
    with pytest.raises(GithubException) as gone:
        await call(apps.get_access_token, globex.id)
    assert gone.value.status == 404
    with pytest.raises(GithubException) as unknown:
        await call(apps.get_repo_installation, "globex", "ledger")
    assert unknown.value.status == 404
    assert await status(of_globex, "globex/ledger") == 401
    assert await status(of_scriptum, BILLING) == 200


async def test_the_apps_webhook_names_each_accounts_installation_and_hears_no_other(
    gh_app: GitHubSimulator, app: SandboxApp
) -> None:
    """GitHub sends the App's webhook the events of the accounts it is installed on, each
    naming that account's installation (a repository's own webhook names none); once removed,
    an account's events reach the App no more."""
    ledger = gh_app.add_repository("globex/ledger")
    to_app: list[dict[str, Any]] = []
    to_ledger: list[dict[str, Any]] = []
    gh_app.on_event(lambda _, payload: to_app.append(payload))
    ledger.on_event(lambda _, payload: to_ledger.append(payload))
    github = client(gh_app)

    await dispatch(await call(github.get_repo, "scriptum/scriptum"))
    await dispatch(await call(github.get_repo, "globex/ledger"))
    await gh_app.settle()

    named = {(p["repository"]["full_name"], p["installation"]["id"]) for p in to_app}
    globex = app.installations["globex"].id
    assert named == {("scriptum/scriptum", app.installation_id), ("globex/ledger", globex)}
    assert to_ledger and not any("installation" in p for p in to_ledger)
    app.uninstall("globex")
    to_app.clear()
    await dispatch(await call(github.get_repo, "globex/ledger"))
    await gh_app.settle()
    assert to_app == [] and len(to_ledger) > 1


async def test_a_suspended_installation_is_answered_but_its_tokens_and_events_are_blocked(
    gh_app: GitHubSimulator, app: SandboxApp
) -> None:
    """GitHub's "Suspend an app installation": the App's "access to the GitHub API or webhook
    events is blocked for that account". The installation is still answered (`suspended_at`,
    `suspended_by`), its mint and the tokens it had get 403 "This installation has been
    suspended", and no event of the account reaches the App; unsuspended, all work again."""
    to_app: list[dict[str, Any]] = []
    gh_app.on_event(lambda _, payload: to_app.append(payload))
    apps = integration(gh_app, app)
    with_token = client(gh_app, await installation_token(gh_app, app))
    repository = await call(client(gh_app).get_repo, "scriptum/scriptum")  # a person's token

    app.suspend("scriptum", by="octo-admin")
    found = await call(apps.get_repo_installation, "scriptum", "scriptum")
    assert found.suspended_at is not None and found.suspended_by.login == "octo-admin"
    for refused in (
        lambda: apps.get_access_token(app.installation_id),
        lambda: with_token.get_repo("scriptum/scriptum").get_workflow_runs().totalCount,
    ):
        with pytest.raises(GithubException) as blocked:
            await call(refused)
        assert (blocked.value.status, blocked.value.data["message"]) == (403, SUSPENDED)
    await dispatch(repository)
    await gh_app.settle()
    assert to_app == []

    app.unsuspend("scriptum")
    assert (await call(apps.get_repo_installation, "scriptum", "scriptum")).suspended_at is None
    assert (await call(apps.get_access_token, app.installation_id)).token
    await dispatch(repository)
    await gh_app.settle()
    assert to_app


async def test_a_request_records_its_tokens_installation_faulted_or_refused(
    gh_app: GitHubSimulator, app: SandboxApp
) -> None:
    """Which installation's token a call carried is read before the answer is decided: a call
    answered by an injected fault or refused as expired records it too (never the token)."""
    token = await installation_token(gh_app, app)
    with_token = client(gh_app, token)
    gh_app.fault_next("GET", "/repos/scriptum/scriptum", "server_error")
    with pytest.raises(GithubException):
        await call(with_token.get_repo, "scriptum/scriptum")
    assert (await call(with_token.get_repo, "scriptum/scriptum")).full_name
    app.advance(2 * 3600)  # the token expired
    with pytest.raises(GithubException) as expired:
        await call(with_token.get_repo, "scriptum/scriptum")
    assert expired.value.status == 401

    recorded = [
        (r.status, r.fault, r.installation)
        for r in gh_app.requests
        if r.path == "/repos/scriptum/scriptum"
    ]
    number = app.installation_id
    assert recorded == [(502, "server_error", number), (200, None, number), (401, None, number)]
    assert token not in repr(gh_app.requests)


async def test_the_app_rule_of_one_repository_is_not_listed_on_the_other(
    gh_app: GitHubSimulator,
) -> None:
    billing = gh_app.repositories[BILLING]
    billing.protection_rule(["relay-canary-5"])
    headers = {"Authorization": f"token {gh_app.token}"}

    async def rules(name: str) -> int:
        url = f"{gh_app.api_url}/repos/{name}/environments/relay-canary-5"
        answer = await call(
            requests.get, f"{url}/deployment_protection_rules", headers=headers, timeout=5
        )
        assert answer.status_code == 200
        return int(answer.json()["total_count"])

    assert (await rules(BILLING), await rules("scriptum/scriptum")) == (1, 0)
    run_id = billing.create_foreign_run()
    assert "relay-canary-5" in billing.waiting_environments(run_id)
    assert "rule" in billing.run(run_id).job("relay-canary-5").gates


@pytest.fixture
def app() -> SandboxApp:
    return SandboxApp()


@pytest.fixture
async def gh_app(app: SandboxApp) -> AsyncIterator[GitHubSimulator]:
    async with GitHubSimulator(app=app, clock=ManualClock(START)) as sim:
        sim.add_repository(BILLING)
        yield sim


# -- the ROLLOUT_SERVICES file ----------------------------------------------------------------


def test_the_services_file_has_the_shape_the_bot_reads(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    plans.mkdir()
    relay = SandboxService(
        name="relay",
        repository="scriptum/scriptum",
        plan=plans / "relay.yml",
        release_channels=("C0RELEASE",),
        approvers=("U0ALICE", "S0RELEASERS"),
        failure_channel="C0ANNOUNCE",
    )
    services = [relay, *numbered_services(2)]

    written = write_services(tmp_path / "services.yml", services)

    assert yaml.safe_load(written.read_text(encoding="utf-8")) == {
        "services": {
            "relay": {
                "repository": "scriptum/scriptum",
                "plan": "plans/relay.yml",
                "release_channels": ["C0RELEASE"],
                "approvers": ["U0ALICE", "S0RELEASERS"],
                "failure_channel": "C0ANNOUNCE",
            },
            "svc-001": {
                "repository": "scriptum/svc-001",
                "release_channels": ["C0SVC001"],
                "approvers": [RELEASE_MANAGER],
            },
            "svc-002": {
                "repository": "scriptum/svc-002",
                "release_channels": ["C0SVC002"],
                "approvers": [RELEASE_MANAGER],
            },
        }
    }


def test_a_sandbox_of_several_services_serves_their_repositories(tmp_path: Path) -> None:
    own_plan = tmp_path / "billing-plan.yml"
    services = [
        SandboxService(name="relay", repository="scriptum/scriptum"),
        SandboxService(name="billing-api", repository=BILLING, plan=own_plan),
    ]

    box = Sandbox(workdir=tmp_path, rollout_services=services)

    assert set(box.github.repositories) == {"scriptum/scriptum", BILLING}
    written = yaml.safe_load(Path(box.environment()["ROLLOUT_SERVICES"]).read_text("utf-8"))
    plans = {name: entry["plan"] for name, entry in written["services"].items()}
    assert plans == {"relay": "plan.yml", "billing-api": "billing-plan.yml"}
    single = tmp_path / "single"
    single.mkdir()
    assert "ROLLOUT_SERVICES" not in Sandbox(workdir=single).environment()
