"""Where the NPM_TOKEN walkthrough looks for the secret: where GitHub reads it for the Release
workflow's publishing job. An environment's secret comes before the repository's, which comes
before the organization's; a refusal to show the environment's is "cannot check", never
"missing"; a job that may request an OIDC token may need no token at all (npm trusted
publishing). End to end (signed Slack requests, the real app, PyGithub against the GitHub
simulator), and the workflow file's reading on its own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from test_npm_token import assert_no_token_reached_slack, open_walkthrough, press, step

from bot.adapters.github.workflow_jobs import publish_job
from bot.adapters.slack.npm_views import NpmAction
from bot.domain.npm import (
    MAX_ENVIRONMENT,
    RELEASE_TIMER,
)
from bot.domain.npm_secrets import PublishJob
from sandbox.github_app import SandboxApp
from sandbox.harness import Sandbox
from storage.db import create_engine

RELEASE_FILE = ".github/workflows/release.yml"


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(workdir=tmp_path) as sandbox:
        yield sandbox
        assert_no_token_reached_slack(sandbox)


def days_ago(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days, hours=1)


def publish_in_npm_environment(box: Sandbox) -> None:
    """The Release workflow's `changesets` job gets `environment: npm` (file and runs)."""
    box.github.run_job_in_environment("release.yml", "changesets", "npm")


async def check_secret(box: Sandbox, until: str) -> tuple[str, object]:
    message = await open_walkthrough(box)
    shown = await press(box, message, NpmAction.CHECK_SECRET, number=3, until=until)
    return shown, message


# -- end to end -----------------------------------------------------------------------------------


async def test_the_environments_secret_is_the_one_the_job_reads(box: Sandbox) -> None:
    """The job runs in `npm`, whose NPM_TOKEN is 3 days old; the repository's, 300 days old,
    is shadowed. Before, step 3 judged the repository's (and asked to replace a token the job
    never reads)."""
    publish_in_npm_environment(box)
    box.github.environment_secrets["npm"] = {"NPM_TOKEN": days_ago(3)}
    box.github.secrets["NPM_TOKEN"] = days_ago(300)
    shown, message = await check_secret(box, ":white_check_mark: done")
    assert (
        "`NPM_TOKEN` is a secret of the environment `npm`, where job `changesets` runs, and the "
        "job reads this one"
    ) in shown
    assert "(3 days ago)" in shown and "older than" not in shown
    assert "takes the place of the repository's `NPM_TOKEN`, which the job does not read" in shown
    assert "*2. Add it as an environment secret*   :white_check_mark: done" in step(message, 2)
    # GitHub's run agrees: the job got the environment's token.
    box.github.create_foreign_run(workflow="release.yml", event="push", actor="octocat")
    shown = await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until="success")
    assert "passed without the NPM_TOKEN warning" in shown


async def test_an_environment_secret_alone_is_not_called_missing(box: Sandbox) -> None:
    publish_in_npm_environment(box)
    box.github.environment_secrets["npm"] = {"NPM_TOKEN": days_ago(85)}
    shown, message = await check_secret(box, ":warning: needs attention")
    assert "is a secret of the environment `npm`" in shown
    assert "older than 80 days" in shown and "not set" not in shown
    assert ":white_check_mark: done" in step(message, 2)


@pytest.mark.parametrize(
    ("level", "said"),
    [("repository", "`NPM_TOKEN` is set: created"), ("organization", "an organization secret")],
)
async def test_a_job_whose_environment_has_none_reads_the_next_level(
    box: Sandbox, level: str, said: str
) -> None:
    publish_in_npm_environment(box)
    box.github.environment_secrets["npm"] = {"OTHER": days_ago(1)}
    secrets = box.github.secrets if level == "repository" else box.github.organization_secrets
    secrets["NPM_TOKEN"] = days_ago(2)
    shown, _ = await check_secret(box, ":white_check_mark: done")
    assert (
        "The environment `npm`, where job `changesets` runs, has no `NPM_TOKEN` of its own, so "
        f"the job reads the {level}'s."
    ) in shown
    assert said in shown


async def test_an_environment_not_created_yet_has_no_secret_of_its_own(box: Sandbox) -> None:
    """GitHub creates an environment when a job that names it first runs; until then its
    secret answers 404, the same as an environment without one: not "cannot check"."""
    box.github.files["main"][RELEASE_FILE] = (
        "name: Release\non: push\njobs:\n  changesets:\n    environment: npm-new\n"
        "    runs-on: ubuntu-latest\n"
    )
    assert "npm-new" not in box.github.engine.environments
    box.github.secrets["NPM_TOKEN"] = days_ago(2)
    shown, _ = await check_secret(box, ":white_check_mark: done")
    assert "`npm-new`, where job `changesets` runs, has no `NPM_TOKEN` of its own" in shown


async def test_no_secret_anywhere_asks_for_one_in_the_jobs_environment(box: Sandbox) -> None:
    publish_in_npm_environment(box)
    shown, message = await check_secret(box, ":x: failed")
    assert (
        "`NPM_TOKEN` is not set in the environment `npm`, where job `changesets` runs, nor in "
        "`scriptum/scriptum`, nor shared with it by its organization: add it to `npm` (step 2)"
    ) in shown
    added = step(message, 2)
    assert "*2. Add it as an environment secret*   :x: failed" in added
    assert f"<{box.github.html_url}/scriptum/scriptum/settings/environments|" in added
    assert "open `npm`" in added and "*Environment secrets*" in added


@pytest.mark.parametrize("repository_secret", [False, True])
async def test_no_permission_for_the_environments_secrets_says_it_could_not_check(
    box: Sandbox, repository_secret: bool
) -> None:
    """GitHub answers 403 to the environment's secret (a token without Environments: Read):
    the step cannot check, and says so; it never calls the secret missing, nor the
    repository's the one the job reads."""
    publish_in_npm_environment(box)
    box.github.environment_secrets["npm"] = {"NPM_TOKEN": days_ago(1)}
    box.github.environment_secrets_forbidden = True
    if repository_secret:
        box.github.secrets["NPM_TOKEN"] = days_ago(2)
    shown, message = await check_secret(box, ":no_entry: cannot check")
    assert "could not check the environment `npm`, where job `changesets` runs" in shown
    assert "Resource not accessible by integration" in shown and "Environments: Read" in shown
    assert "not set in the environment" not in shown
    if repository_secret:
        assert "If `npm` has its own `NPM_TOKEN`, the job reads that one instead" in shown
    else:
        assert "the job has a token only if `npm` has one" in shown
    assert ":x: failed" not in step(message, 2)


async def test_in_app_mode_the_manifests_permissions_check_the_environment(
    tmp_path: Path,
) -> None:
    """github-app.yml asks for Environments read: an App registered from it reads the npm
    job's environment's secret (before, it had Secrets read only and step 3 said cannot
    check)."""
    async with Sandbox(workdir=tmp_path, github_app=SandboxApp()) as app_box:
        publish_in_npm_environment(app_box)
        app_box.github.environment_secrets["npm"] = {"NPM_TOKEN": days_ago(1)}
        app_box.github.secrets["NPM_TOKEN"] = days_ago(2)
        shown, _ = await check_secret(app_box, ":white_check_mark: done")
        assert "is a secret of the environment `npm`, where job `changesets` runs" in shown
        assert_no_token_reached_slack(app_box)


async def test_in_app_mode_without_environments_read_the_environment_cannot_be_checked(
    tmp_path: Path,
) -> None:
    """The App's installation has Secrets read but not Environments read (registered from an
    older github-app.yml, or the new permission not yet accepted): GitHub answers the
    environment's secret 403, and step 3 says so."""
    app = SandboxApp()
    async with Sandbox(workdir=tmp_path, github_app=app) as app_box:
        app.permissions.pop("environments")
        publish_in_npm_environment(app_box)
        app_box.github.environment_secrets["npm"] = {"NPM_TOKEN": days_ago(1)}
        app_box.github.secrets["NPM_TOKEN"] = days_ago(2)
        shown, _ = await check_secret(app_box, ":no_entry: cannot check")
        assert "could not check the environment `npm`" in shown
        assert "a GitHub App Environments read, a classic token the repo scope" in shown
        assert_no_token_reached_slack(app_box)


async def test_a_job_that_may_publish_with_oidc_needs_no_token(box: Sandbox) -> None:
    """npm trusted publishing: the job requests an OIDC token (`id-token: write`) and npm
    trusts the workflow; no NPM_TOKEN is needed, so its absence is no failure."""
    box.github.files["main"][RELEASE_FILE] = (
        "name: Release\non: push\npermissions:\n  contents: write\n  id-token: write\n"
        "jobs:\n  changesets:\n    runs-on: ubuntu-latest\n    steps:\n      - run: true\n"
        "        env:\n          NPM_TOKEN: ${{ secrets.NPM_TOKEN }}\n"
    )
    shown, message = await check_secret(box, ":warning: needs attention")
    assert "`NPM_TOKEN` is not set in `scriptum/scriptum`" in shown
    assert "may request an OIDC token (`id-token: write`)" in shown
    assert "npm trusted publishing" in shown and "needs no `NPM_TOKEN` at all" in shown
    assert ":white_circle: to do" in step(message, 2)


OIDC_ONLY = (
    "name: Release\non: push\npermissions:\n  contents: read\n  id-token: write\n"
    "jobs:\n  changesets:\n    runs-on: ubuntu-latest\n    steps:\n"
    "      - uses: actions/setup-node@v4\n        with:\n          node-version: 24\n"
    "          registry-url: https://registry.npmjs.org\n"
    "      - run: npm publish --provenance --access public\n"
)


async def test_a_job_that_publishes_with_oidc_only_does_not_need_the_token(box: Sandbox) -> None:
    """npm trusted publishing and nothing else: `id-token: write`, and no step hands npm
    NPM_TOKEN (no NODE_AUTH_TOKEN). Before, step 3 said it was not set and to add it."""
    box.github.files["main"][RELEASE_FILE] = OIDC_ONLY
    shown, message = await check_secret(box, ":white_check_mark: done")
    assert "`NPM_TOKEN` is not needed" in shown
    assert "publishes with npm trusted publishing" in shown
    assert "not set" not in shown and "add it" not in shown.lower()
    assert ":x:" not in step(message, 1) + step(message, 2)
    assert "*2. Add it as a repository secret*   :white_check_mark: done" in step(message, 2)


async def test_an_unused_token_beside_oidc_only_publishing_is_said_unused(box: Sandbox) -> None:
    """The repository still has an old NPM_TOKEN, which the job never reads: no age warning
    about it, and the advice to delete it."""
    box.github.files["main"][RELEASE_FILE] = OIDC_ONLY
    box.github.secrets["NPM_TOKEN"] = days_ago(300)
    shown, _ = await check_secret(box, ":white_check_mark: done")
    assert "`NPM_TOKEN` is not needed" in shown
    assert "The repository's `NPM_TOKEN` is unused" in shown
    assert "older than" not in shown


async def test_oidc_only_publishing_needs_no_secrets_read(box: Sandbox) -> None:
    """GitHub refuses the secrets' metadata (no Secrets read): the job reads no NPM_TOKEN
    anyway, so step 3 still says it is not needed rather than cannot check."""
    box.github.files["main"][RELEASE_FILE] = OIDC_ONLY
    box.github.secrets_forbidden = True
    shown, _ = await check_secret(box, ":white_check_mark: done")
    assert "`NPM_TOKEN` is not needed" in shown


async def test_on_enterprise_server_oidc_only_publishing_still_needs_the_token(
    tmp_path: Path,
) -> None:
    """npm trusted publishing trusts github.com's OIDC issuer only: on GitHub Enterprise Server
    the same job needs NPM_TOKEN. Before, steps 1-3 said it was not needed (done)."""
    async with Sandbox(workdir=tmp_path, enterprise=True) as ghes:
        ghes.github.files["main"][RELEASE_FILE] = OIDC_ONLY
        shown, message = await check_secret(ghes, ":x: failed")
        assert "not needed" not in shown
        assert "`NPM_TOKEN` is not set in `scriptum/scriptum`" in shown and "add it" in shown
        assert "does not take GitHub Enterprise Server's OIDC tokens" in shown
        assert ":x: failed" in step(message, 2)
        assert "Token-free alternative" not in step(message, 1)
        assert_no_token_reached_slack(ghes)


async def test_an_unreadable_workflow_file_still_checks_the_repository(box: Sandbox) -> None:
    """The repository's secret is shown, but not as done: the job may run in an environment
    whose own NPM_TOKEN (perhaps expired) it reads instead."""
    box.github.remove_workflow("release.yml")
    box.github.files["main"].pop(RELEASE_FILE, None)
    box.github.secrets["NPM_TOKEN"] = days_ago(2)
    shown, message = await check_secret(box, ":no_entry: cannot check")
    assert "`NPM_TOKEN` is set: created" in shown
    assert "could not tell which environment job `changesets` runs in" in shown
    assert ":white_check_mark: done" not in step(message, 2)


async def test_an_environment_named_by_an_expression_is_not_done(box: Sandbox) -> None:
    """The job certainly runs in an environment, known only when it runs: the repository's
    fresh secret is not what it reads if that environment has its own, as with a 403 on a
    known environment's (before, step 3 said done)."""
    box.github.files["main"][RELEASE_FILE] = (
        "name: Release\non: push\njobs:\n  changesets:\n"
        "    environment: ${{ inputs.target }}\n    runs-on: ubuntu-latest\n"
    )
    box.github.secrets["NPM_TOKEN"] = days_ago(2)
    shown, message = await check_secret(box, ":no_entry: cannot check")
    assert "names its environment with an expression" in shown
    assert ":white_check_mark: done" not in step(message, 1)


async def test_a_look_carries_no_empty_field_for_an_older_replica(box: Sandbox) -> None:
    """A Release look is a timer any replica may fire, an older one too during a rolling
    upgrade, and its models forbid fields they do not know: the look leaves out the empty
    ones (the checks' fields new in this version among them), as the buttons do."""
    box.github.secrets["NPM_TOKEN"] = days_ago(1)
    box.github.set_job_duration("changesets", timedelta(minutes=30))
    message = await open_walkthrough(box)
    await press(box, message, NpmAction.CHECK_SECRET, number=3, until=":white_check_mark: done")
    await box.click(str(NpmAction.RUN_RELEASE), message=message, wait=False)
    await box.slack.wait_for(lambda: "is in progress" in step(message, 5), timeout=30)
    engine = create_engine(box.database_url)
    try:
        async with engine.connect() as connection:
            payloads = list(
                await connection.scalars(
                    text("SELECT payload FROM timers WHERE kind = :kind"), {"kind": RELEASE_TIMER}
                )
            )
    finally:
        await engine.dispose()
    assert payloads
    for payload in payloads:
        held = json.loads(payload) if isinstance(payload, str) else payload
        assert "null" not in json.dumps(held), held
        assert "environment" not in json.dumps(held)


# -- the workflow file ----------------------------------------------------------------------------


def workflow(job: str, top: str = "") -> str:
    return f"name: Release\non: workflow_dispatch\n{top}jobs:\n  changesets:\n{job}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (workflow("    runs-on: x\n"), PublishJob()),
        (workflow("    environment: npm\n"), PublishJob(environment="npm")),
        (
            workflow("    environment:\n      name: npm\n      url: https://npmjs.com\n"),
            PublishJob(environment="npm"),
        ),
        # The plan's npm.job is the job's display name, not always its key.
        (
            "jobs:\n  publish:\n    name: changesets\n    environment: release\n",
            PublishJob(environment="release"),
        ),
        # Job permissions replace the workflow's entirely.
        (
            workflow(
                "    permissions:\n      contents: read\n", "permissions:\n  id-token: write\n"
            ),
            PublishJob(),
        ),
        (
            workflow("    runs-on: ubuntu-latest\n    permissions: write-all\n"),
            PublishJob(oidc=True, oidc_only=True),
        ),
        (
            workflow("    runs-on: [macos-14]\n", "permissions:\n  id-token: write\n"),
            PublishJob(oidc=True, oidc_only=True),
        ),
        # npm trusted publishing takes no self-hosted runner: a job on one (or on a custom
        # label, a runner group) needs the token as before. Before, it was "not needed".
        (
            workflow("    runs-on: [self-hosted, linux]\n    permissions: write-all\n"),
            PublishJob(oidc=True),
        ),
        (
            workflow("    runs-on: {group: release-runners}\n    permissions: write-all\n"),
            PublishJob(oidc=True),
        ),
        (workflow("    runs-on: build-pool\n    permissions: write-all\n"), PublishJob(oidc=True)),
        # A job that hands npm NPM_TOKEN too (in a step's env, the job's or the workflow's).
        (
            workflow(
                "    permissions: write-all\n    steps:\n      - run: npm publish\n"
                "        env:\n          NODE_AUTH_TOKEN: ${{ secrets.NPM_TOKEN }}\n"
            ),
            PublishJob(oidc=True),
        ),
        (
            workflow(
                "    permissions: write-all\n",
                "env:\n  NODE_AUTH_TOKEN: ${{ secrets.NPM_TOKEN }}\n",
            ),
            PublishJob(oidc=True),
        ),
        # Every secret handed over at once: it may read NPM_TOKEN.
        (
            workflow("    permissions: write-all\n    env:\n      ALL: ${{ toJSON(secrets) }}\n"),
            PublishJob(oidc=True),
        ),
        # ... or every secret's value by the object filter, or the context as a whole: before,
        # only `secrets[` and `toJSON(secrets)` counted, and these were "not needed".
        (
            workflow("    permissions: write-all\n    env:\n      ALL: ${{ toJSON(secrets.*) }}\n"),
            PublishJob(oidc=True),
        ),
        (
            workflow(
                "    permissions: write-all\n    steps:\n      - run: ./publish\n"
                "        env:\n          ALL: ${{ join(secrets.*, ' ') }}\n"
            ),
            PublishJob(oidc=True),
        ),
        (
            workflow(
                "    permissions: write-all\n    env:\n      ALL: ${{ format('{0}', secrets) }}\n"
            ),
            PublishJob(oidc=True),
        ),
        # Another secret by its name, and `secrets` outside an expression, hand npm nothing.
        (
            workflow(
                "    runs-on: ubuntu-24.04\n    permissions: write-all\n    name: check secrets\n"
                "    env:\n      GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n"
            ),
            PublishJob(oidc=True, oidc_only=True),
        ),
    ],
)
def test_the_publishing_jobs_environment_and_oidc_are_read(text: str, expected: PublishJob) -> None:
    assert publish_job(text, "changesets") == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (workflow("    environment: ${{ inputs.target }}\n"), "with an expression"),
        (workflow("    uses: ./.github/workflows/publish.yml\n"), "reusable workflow"),
        ("jobs:\n  build:\n    runs-on: x\n", "has no job changesets"),
        ("jobs: [", "not valid YAML"),
        (workflow(f"    environment: {'e' * (MAX_ENVIRONMENT + 1)}\n"), "longer than 64"),
        # Within 64 characters, but each control character takes six in the button's JSON
        # (`\u0001`): 40 of them would push the walkthrough past Slack's 2000.
        (workflow('    environment: "' + "\\x01" * 40 + '"\n'), "longer than 64"),
    ],
)
def test_what_the_workflow_file_cannot_tell_is_said(text: str, why: str) -> None:
    job = publish_job(text, "changesets")
    assert job.environment is None and job.unknown is not None and why in job.unknown
