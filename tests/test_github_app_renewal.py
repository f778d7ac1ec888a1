"""An installation token GitHub refuses (401 Bad credentials): the bot mints a new one at once
and sends the refused call once more with it, a read or a write alike (GitHub acts on nothing
it did not authenticate), counts the renewal, and still raises PyGithub's own
`BadCredentialsException` when no new token helps (docs/github-app.md). The real PyGithub,
as the App, against the sandbox's GitHub."""

from __future__ import annotations

import pytest
from github import BadCredentialsException
from test_github_app import (
    FIRST_STAGES,
    app,
    credentials,
    gateway,
    gh,
    tokens_revoked,
    waiting_jobs,
)
from test_github_gateway import INPUTS, start
from test_observability import parse, value

from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.transport import GitHubTransport
from bot.adapters.telemetry import PrometheusTelemetry
from bot.domain.errors import GitHubError
from bot.version import build
from sandbox import github_json as shapes
from sandbox.config import REPOSITORY
from sandbox.github import GitHubSimulator
from sandbox.github_app import SandboxApp

__all__ = ["app", "gh"]  # the fixtures this module's tests use

RENEWALS = "rollout_bot_github_token_renewals_total"
REQUESTS = "rollout_bot_github_requests_total"


def statuses(gh: GitHubSimulator, method: str, path: str, since: int) -> list[int]:
    return [r.status for r in gh.requests[since:] if r.method == method and r.path == path]


async def test_a_read_refused_401_is_sent_once_more_with_the_new_token_and_counted(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """The call that met the 401 failed though a new token was in hand: a poll lost, a
    person's click refused with "the bot has a new token for its next call"."""
    telemetry = PrometheusTelemetry(build())
    async with gateway(gh, credentials(app), telemetry=telemetry) as github:
        started = await tokens_revoked(github, app)
        since = len(gh.requests)
        snapshot = await github.snapshot(started.run_id)

    assert waiting_jobs(snapshot) == FIRST_STAGES
    run = f"/repos/{REPOSITORY}/actions/runs/{started.run_id}"
    assert statuses(gh, "GET", run, since) == [401, 304]  # its ETag still holds
    assert app.issued[-1].token not in app.revoked
    found = parse(telemetry.exposition(None)[0].decode())
    assert value(found, RENEWALS, service="default", result="renewed") == 1
    assert value(found, RENEWALS, service="default", result="not_renewed") is None
    # The call counts once, by how it ended: no 401 for the alert on refused credentials.
    assert value(found, REQUESTS, service="default", endpoint="read", status="401") is None


async def test_a_dispatch_refused_401_is_sent_again_once_and_starts_one_run(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """A POST GitHub refused with 401 did nothing: sent once more with the new token, it
    starts exactly one run, and the bot knows which."""
    dispatch = f"/repos/{REPOSITORY}/actions/workflows/deployment-strategy.yml/dispatches"
    async with gateway(gh, credentials(app)) as github:
        await tokens_revoked(github, app)
        await github.snapshot((await start(github)).run_id)  # a new token, in hand
        gh.fail_next("POST", dispatch, 401, shapes.error("Bad credentials", 401))
        since = len(gh.requests)
        again = await start(github)

    assert statuses(gh, "POST", dispatch, since) == [401, 200]
    assert len(gh.dispatches) == 3  # two starts before, and this one once
    assert gh.dispatches[-1].inputs == INPUTS and again.run_id != 0


async def test_a_second_401_with_the_new_token_is_not_sent_a_third_time(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    telemetry = PrometheusTelemetry(build())
    async with gateway(gh, credentials(app), telemetry=telemetry) as github:
        started = await tokens_revoked(github, app)
        run = f"/repos/{REPOSITORY}/actions/runs/{started.run_id}"
        # The revoked token's 401, then GitHub's 401 to the new one too.
        gh.fail_next("GET", run, 401, shapes.error("Bad credentials", 401))
        since = len(gh.requests)
        with pytest.raises(GitHubError) as refused:
            await github.snapshot(started.run_id)
        snapshot = await github.snapshot(started.run_id)  # the next call goes on

    assert statuses(gh, "GET", run, since) == [401, 401, 304]
    assert refused.value.message == (
        "GitHub refused the App's installation token (401 Bad credentials) when asked to read "
        f"run {started.run_id}, and refused the new one the bot minted at once too; the bot "
        "mints another for its next call."
    )
    assert waiting_jobs(snapshot) == FIRST_STAGES
    found = parse(telemetry.exposition(None)[0].decode())
    assert value(found, REQUESTS, service="default", endpoint="read", status="401") == 1


async def test_a_token_refused_is_still_pygithubs_bad_credentials_exception(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """`TokenRefused` replaced the `BadCredentialsException` PyGithub raised for a 401: code
    that catches PyGithub's class (a write's caller gets the exception as raised) still does."""
    owner = REPOSITORY.split("/")[0]
    telemetry = PrometheusTelemetry(build())
    transport = GitHubTransport(
        api_url=gh.api_url, app=credentials(app), repository=REPOSITORY, telemetry=telemetry
    )
    github = PyGithubGateway(transport)
    try:
        started = await tokens_revoked(github, app)
        app.uninstall(owner)  # no new token either
        with pytest.raises(BadCredentialsException) as refused:
            await transport.run(
                lambda: transport.get_json(transport.runs_path(started.run_id)),
                endpoint="read",
                operation=f"read run {started.run_id}",
            )
    finally:
        await github.close()
    assert refused.value.status == 401
    found = parse(telemetry.exposition(None)[0].decode())
    assert value(found, RENEWALS, service="default", result="not_renewed") == 1
