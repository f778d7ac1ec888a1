"""A protection rule request names the App installation it comes from; the bot keeps it only
when that is the App's installation on the service's repository, as GitHub says
(docs/protection-rules.md, docs/security.md). A replica that has not looked its installation up
yet asks GitHub before it keeps anything; one whose installation was replaced (the App
uninstalled and installed again) asks again, once, before it ignores the new id; and it asks
at most once a minute, whatever the requests name. The real PyGithub, as the App, against the
sandbox's GitHub; end to end through the bot's `/github/webhook` for the request itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_github_app import app, credentials, gh, requests_to
from test_github_gateway import START, start
from test_protection_rules import app_box

from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.installation_check import InstallationCheck
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import GitHubError
from bot.github_credentials import GitHubApp
from sandbox.clock import ManualClock
from sandbox.config import REPOSITORY
from sandbox.github import GitHubSimulator
from sandbox.github_app import SandboxApp
from sandbox.harness import Sandbox

__all__ = ["app", "gh"]  # the fixtures this module's tests use

LOOKUP = f"/repos/{REPOSITORY}/installation"
OTHER = 42


@asynccontextmanager
async def checked(
    gh: GitHubSimulator, app: GitHubApp
) -> AsyncIterator[tuple[InstallationCheck, PyGithubGateway, ManualClock]]:
    """The installation check of a transport to `gh` as the App that has made no call yet,
    the gateway on the same transport, and the check's clock."""
    transport = GitHubTransport(
        api_url=gh.api_url, app=app, repository=REPOSITORY, timeout=5, retries=0, backoff=0.01
    )
    clock = ManualClock(START)
    github = PyGithubGateway(transport)
    try:
        yield InstallationCheck(transport=transport, clock=clock), github, clock
    finally:
        await github.close()


async def test_before_any_call_an_installation_is_checked_with_github(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    async with checked(gh, credentials(app)) as (check, _, _):
        assert not await check.is_ours(OTHER)
        assert await check.is_ours(app.installation_id)  # known now: not asked again
    assert requests_to(gh, LOOKUP) == [200]


async def test_an_installation_replaced_is_looked_up_again_once_and_its_calls_go_on(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    owner = REPOSITORY.split("/")[0]
    async with checked(gh, credentials(app)) as (check, github, clock):
        started = await start(github)  # the installation found by the first call
        old = app.uninstall(owner).id
        again = app.install(owner).id
        assert again != old and requests_to(gh, LOOKUP) == [200]

        assert await check.is_ours(again)
        assert not await check.is_ours(OTHER)  # within the minute: not asked again
        clock.advance(timedelta(seconds=61))
        assert not await check.is_ours(OTHER)
        await github.snapshot(started.run_id)

    assert requests_to(gh, LOOKUP) == [200, 200, 200]
    # The calls after go with the new installation's token, without meeting a 401 first.
    assert set(requests_to(gh, f"/app/installations/{again}/access_tokens")) == {201}
    assert not [r for r in gh.requests if r.status == 401]


async def test_a_lookup_github_does_not_answer_is_an_error_and_not_repeated_at_once(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    gh.fail_next("GET", LOOKUP, 502)
    async with checked(gh, credentials(app)) as (check, _, clock):
        with pytest.raises(GitHubError, match="502"):
            await check.is_ours(app.installation_id)
        with pytest.raises(GitHubError, match="did not tell it"):
            await check.is_ours(app.installation_id)
        clock.advance(timedelta(seconds=61))
        assert await check.is_ours(app.installation_id)
    assert requests_to(gh, LOOKUP) == [502, 200]


async def test_within_the_minute_after_a_failed_lookup_a_new_id_is_unknown_not_refused(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """The id in hand is not GitHub's word once the lookup that would have replaced it failed:
    a request naming the new installation is left unconfirmed (held), never refused."""
    owner = REPOSITORY.split("/")[0]
    async with checked(gh, credentials(app)) as (check, github, clock):
        await start(github)  # the installation found by the first call
        app.uninstall(owner)
        again = app.install(owner).id
        gh.fail_next("GET", LOOKUP, 502)
        with pytest.raises(GitHubError, match="502"):
            await check.is_ours(again)
        with pytest.raises(GitHubError, match="did not tell it"):
            await check.is_ours(again)
        clock.advance(timedelta(seconds=61))
        assert await check.is_ours(again)


async def test_a_configured_installation_is_the_only_one_and_nothing_is_asked(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    async with checked(gh, credentials(app, installation_id=app.installation_id)) as (check, _, _):
        assert not await check.is_ours(OTHER)
        assert await check.is_ours(app.installation_id)
    assert requests_to(gh, LOOKUP) == []


def request_naming(box: Sandbox, installation: int, *, run_id: int = 9001000777) -> Any:
    """A `deployment_protection_rule` request of the bot's repository, as GitHub shapes it, for
    a run no rollout follows, from `installation`."""
    return {
        "action": "requested",
        "environment": "relay-canary-5",
        "event": "workflow_dispatch",
        "deployment_callback_url": (
            f"{box.github.api_url}/repos/{REPOSITORY}/actions/runs/{run_id}"
            "/deployment_protection_rule"
        ),
        "deployment": {"id": run_id + 1},
        "repository": {"full_name": REPOSITORY, "id": 1},
        "sender": {"login": "someone"},
        "installation": {"id": installation},
    }


async def test_a_replica_that_has_not_looked_up_its_installation_keeps_no_other_ones_request(
    tmp_path: Path, database_url: str
) -> None:
    """Such a replica took a signed rule request for its repository whatever installation it
    named (docs/security.md): now it asks GitHub first, and keeps its own installation's."""
    async with app_box(tmp_path, database_url) as box:
        assert box.github.app is not None
        assert requests_to(box.github, LOOKUP) == []  # nothing looked up yet

        other = await box.github.app_hook.send(
            "deployment_protection_rule", request_naming(box, OTHER)
        )
        ours = await box.github.app_hook.send(
            "deployment_protection_rule", request_naming(box, box.github.app.installation_id)
        )
        await box.services.webhooks.settled()

        assert (other.status_code, other.result) == (202, "ignored")
        assert (ours.status_code, ours.result) == (202, "kept")
        kept = await box.services.webhooks.rules.for_run(9001000777)
        assert [r.deployment_id for r in kept] == [9001000778]
        assert requests_to(box.github, LOOKUP)[:1] == [200]
