"""The GitHub App's installation tokens are narrowed: each is minted for the one repository
the bot serves and with only the permissions its calls need (a read-only token for the reads,
one that may write Actions for a dispatch, one that may write Deployments for a review),
within what the installation was granted; the sandbox's GitHub honours `repositories`,
`repository_ids` and `permissions` as GitHub does (REST: "Create an installation access token
for an app")."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import aiohttp
import jwt
import pytest
from test_github_app import FIRST_STAGES, credentials, gateway, requests_to
from test_github_gateway import start
from test_sandbox_repositories import BILLING, app, gh_app

from bot.domain.errors import GitHubError
from sandbox.config import REPOSITORY
from sandbox.github import GitHubSimulator
from sandbox.github_app import NOT_ACCESSIBLE, SandboxApp

OTHER = BILLING
__all__ = ["app", "gh_app"]  # the fixtures `gh` is built on


@pytest.fixture
def gh(gh_app: GitHubSimulator) -> GitHubSimulator:
    """The sandbox's GitHub with the App, serving another repository of the same account."""
    return gh_app


async def test_each_token_reaches_the_one_repository_with_what_its_calls_need(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """Tokens were minted with the installation's every permission (Actions and Deployments
    write, Secrets read) for every repository it was given: the token of any read, leaked
    from a log or a crash dump, could dispatch, approve deployments and read other
    repositories."""
    async with gateway(gh, credentials(app)) as github:
        started = await start(github)
        snapshot = await github.snapshot(started.run_id)
        assert {job for job in FIRST_STAGES if snapshot.job(job) is not None}
    assert app.issued
    served = gh.repository_named(REPOSITORY)
    assert served is not None
    assert all(token.repositories == {served.id} for token in app.issued)
    by_write = {
        frozenset(n for n, level in token.permissions.items() if level == "write")
        for token in app.issued
    }
    assert by_write == {frozenset(), frozenset({"actions"})}, app.issued
    reads = [t for t in app.issued if "write" not in t.permissions.values()]
    assert reads and all(t.permissions.get("actions") == "read" for t in reads)
    dispatching = [t for t in app.issued if t.permissions.get("actions") == "write"]
    assert dispatching and all(t.permissions["deployments"] == "read" for t in dispatching)


async def test_a_narrowed_token_asks_only_what_the_installation_was_granted(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """An installation without Secrets (the npm walkthrough's, which is optional) still gets
    its tokens: asking GitHub for a permission the installation lacks is refused (422), which
    would have failed every call."""
    app.first.permissions.pop("secrets")
    async with gateway(gh, credentials(app)) as github:
        await start(github)
    assert set(requests_to(gh, f"/app/installations/{app.installation_id}/access_tokens")) == {201}
    assert all("secrets" not in token.permissions for token in app.issued)


async def test_a_configured_installation_reads_its_permissions_by_its_id(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    async with gateway(gh, credentials(app, installation_id=app.installation_id)) as github:
        await start(github)
    assert requests_to(gh, f"/repos/{REPOSITORY}/installation") == []
    assert requests_to(gh, f"/app/installations/{app.installation_id}") == [200]
    assert len(gh.dispatches) == 1


async def test_the_sandbox_honours_a_tokens_repositories_and_permissions(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """GitHub's rules for a narrowed token: it reaches the repositories named (404 for another
    of the installation's), does what its permissions allow (403 else); a mint naming a
    repository the installation does not include, or asking a permission it lacks, is 422."""
    number = app.installation_id
    async with aiohttp.ClientSession() as http:

        async def mint(body: dict[str, object]) -> tuple[int, dict[str, object]]:
            jwt_headers = {"Authorization": f"Bearer {app_jwt(app)}"}
            url = f"{gh.api_url}/app/installations/{number}/access_tokens"
            async with http.post(url, json=body, headers=jwt_headers) as answer:
                return answer.status, await answer.json()

        async def status(token: str, method: str, path: str) -> int:
            headers = {"Authorization": f"token {token}"}
            async with http.request(method, f"{gh.api_url}{path}", headers=headers) as answer:
                return answer.status

        code, narrowed = await mint(
            {"repositories": [REPOSITORY.split("/")[1]], "permissions": {"actions": "read"}}
        )
        assert code == 201 and narrowed["repository_selection"] == "selected"
        token = str(narrowed["token"])
        assert await status(token, "GET", f"/repos/{REPOSITORY}/actions/runs") == 200
        assert await status(token, "GET", f"/repos/{OTHER}/actions/runs") == 404
        dispatch = f"/repos/{REPOSITORY}/actions/workflows/x.yml/dispatches"
        assert await status(token, "POST", dispatch) == 403

        other = gh.repository_named(OTHER)
        assert other is not None
        code, by_id = await mint({"repository_ids": [other.id]})
        assert code == 201
        assert await status(str(by_id["token"]), "GET", f"/repos/{REPOSITORY}/actions/runs") == 404

        assert (await mint({"repositories": ["nowhere"]}))[0] == 422
        assert (await mint({"permissions": {"administration": "write"}}))[0] == 422


async def test_the_reads_token_cannot_dispatch(gh: GitHubSimulator, app: SandboxApp) -> None:
    """What the bot's reads carry, leaked, cannot dispatch a workflow (403); its dispatch's
    token can."""
    async with gateway(gh, credentials(app)) as github:
        await start(github)
    path = f"/repos/{REPOSITORY}/actions/workflows/x.yml/dispatches"
    served = gh.repository_named(REPOSITORY)
    assert served is not None
    read = next(t for t in app.issued if "write" not in t.permissions.values())
    assert app.check_token(read.token, "POST", path, served.id) == (403, NOT_ACCESSIBLE)
    dispatching = next(t for t in app.issued if t.permissions.get("actions") == "write")
    assert app.check_token(dispatching.token, "POST", path, served.id) is None


def app_jwt(app: SandboxApp) -> str:
    """A JWT of the App, as the bot signs one."""
    now = int(time.time())
    return jwt.encode(
        {"iat": now - 30, "exp": now + 300, "iss": str(app.app_id)}, app.key, algorithm="RS256"
    )


async def test_a_configured_installation_of_another_account_is_named_as_the_fix(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """GITHUB_APP_INSTALLATION_ID set to the App's installation on another account: its token
    was minted, and every call answered 404 as if the repository did not exist. A token asked
    for the one repository is refused there (422), and the error says which setting to fix;
    nothing was sent."""
    other = app.install("elsewhere-org")
    async with gateway(gh, credentials(app, installation_id=other.id)) as github:
        with pytest.raises(GitHubError) as refused:
            await start(github)
    assert f"GITHUB_APP_INSTALLATION_ID must be the App's installation on {REPOSITORY}" in (
        refused.value.message
    ), refused.value.message
    assert gh.dispatches == []


@pytest.mark.parametrize("configured", [False, True])
async def test_a_repository_taken_out_of_the_installation_says_to_give_it_back(
    gh: GitHubSimulator, app: SandboxApp, configured: bool
) -> None:
    """The account's owner unticks the repository in the installation's repository access
    (GitHub's "Only select repositories") while the bot runs: GitHub refuses its next token
    (422). The bot said "GitHub refused it (422: …)" with no fix, or, with
    GITHUB_APP_INSTALLATION_ID set, that the setting must be the App's installation on the
    repository (it is). It now names the repository to give back to the installation; once
    given back, the next call goes."""
    number = app.installation_id if configured else None
    async with gateway(gh, credentials(app, installation_id=number)) as github:
        started = await start(github)
        app.repositories = {BILLING}  # scriptum/scriptum no longer among them
        for token in app.issued:
            app.revoke(token.token)
        with pytest.raises(GitHubError) as refused:
            await github.snapshot(started.run_id)
        app.repositories = None  # given back: every repository of the account
        assert (await github.snapshot(started.run_id)).run_id == started.run_id
    said = refused.value.message
    assert f"does not include {REPOSITORY}" in said, said
    assert "GITHUB_APP_INSTALLATION_ID must be" not in said, said


async def test_permissions_taken_away_since_they_were_read_are_read_again(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """An owner took Secrets away from the installation while the bot ran: a token of a kind
    not minted yet (a review's), asked with Secrets as read then, is refused (422); the bot
    reads the installation again and asks once more, without it, and the call goes. A token
    renewed (its predecessor revoked, or near its expiry) is asked as the installation is
    then: no refusal."""
    async with gateway(gh, credentials(app)) as github:
        started = await start(github)
        app.first.permissions.pop("secrets")
        await github.review(
            run_id=started.run_id, environments=["relay-canary-5"], state="approved", comment=""
        )
        for token in app.issued:
            app.revoke(token.token)
        await github.snapshot(started.run_id)
    minted = requests_to(gh, f"/app/installations/{app.installation_id}/access_tokens")
    assert minted.count(422) == 1 and minted[-1] == 201, minted
    assert "secrets" not in app.issued[-1].permissions
    assert "secrets" not in app.issued[-2].permissions


async def test_tokens_minted_after_a_rename_name_the_repository_by_its_id(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """A token is asked for the repository by its name until GitHub's answer gives its id,
    then by its id: after the repository is renamed, a token asked by its former name would be
    refused (422, no such repository) and every call with it."""
    async with gateway(gh, credentials(app)) as github:
        started = await start(github)
        gh.rename("scriptum/scriptum-renamed")
        for token in app.issued:
            app.revoke(token.token)
        snapshot = await github.snapshot(started.run_id)
    assert snapshot.run_id == started.run_id
    minted = [r for r in gh.requests if r.path.endswith("/access_tokens")]
    assert [r.status for r in minted][-1] == 201
    assert 422 not in [r.status for r in minted]


async def test_a_bot_started_after_a_rename_reaches_the_repository_by_its_former_name(
    gh: GitHubSimulator, app: SandboxApp, caplog: pytest.LogCaptureFixture
) -> None:
    """The repository renamed before the bot (re)started, its setting still the former name,
    which GitHub keeps redirecting: every token asked for it by that name was refused (422, no
    such repository), so nothing at all reached GitHub, where whole-installation tokens
    followed the redirect. Its id is read at the former name once (a token that may read
    metadata only), then every token names it by its id, and the log says to set the new name."""
    gh.rename("scriptum/scriptum-renamed")
    with caplog.at_level(logging.DEBUG):
        async with gateway(gh, credentials(app)) as github:
            started = await start(github)
            snapshot = await github.snapshot(started.run_id)
    assert snapshot.run_id == started.run_id and len(gh.dispatches) == 1
    served = gh.repository_named("scriptum/scriptum-renamed")
    assert served is not None
    narrowed = [t for t in app.issued if set(t.permissions) != {"metadata"}]
    assert narrowed and all(token.repositories == {served.id} for token in narrowed)
    assert "renamed or transferred to scriptum/scriptum-renamed" in caplog.text
    assert not any(t.token in caplog.text for t in app.issued)


async def test_a_permission_granted_while_the_bot_runs_is_in_its_next_tokens(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """The installation lacked Actions write (the dispatch refused, 403, the bot saying to
    grant it); its owner granted it. Each token was renewed with the permissions read when the
    bot started, so no dispatch could go until a restart, where a whole-installation token had
    it at its next renewal. A renewed token is asked with the installation's permissions as
    they are then."""
    app.first.permissions["actions"] = "read"
    app.token_lifetime = timedelta(seconds=10)  # every token due for renewal at its next call
    async with gateway(gh, credentials(app)) as github:
        with pytest.raises(GitHubError, match="Actions: Read and write"):
            await start(github)
        app.first.permissions["actions"] = "write"
        await start(github)
    assert len(gh.dispatches) == 1
    assert app.issued[-1].permissions["actions"] == "write"
