"""GitHub App mode against the sandbox's GitHub: the real PyGithub authenticates as the App's
installation (found from the repository), mints installation tokens and mints new ones before
they expire while a rollout's calls go on; bad App settings are one clear line each; the
sandbox answers JWTs and expired tokens as GitHub documents.

Installation tokens last 21 s here: PyGithub mints a new one 20 s before expiry, so every
second of the test needs a new token (a rollout outlives many).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from test_github_gateway import INPUTS, START, WORKFLOW, start

from bot.adapters.github.dispatch import DispatchSearch
from bot.adapters.github.gateway import PyGithubGateway
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import GitHubError
from bot.domain.rollout import CheckState, Phase
from bot.domain.run import JobStatus, RunRef, RunSnapshot
from bot.github_credentials import GitHubApp
from bot.logs import REDACTED, configure_logging
from bot.services.telemetry import UNTRACKED, Telemetry
from sandbox.clock import ManualClock
from sandbox.config import REPOSITORY
from sandbox.github import GitHubSimulator
from sandbox.github_app import (
    EXP_PAST,
    EXP_TOO_FAR,
    IAT_MESSAGE,
    INSTALLATION_ID,
    NOT_A_JWT,
    NOT_ACCESSIBLE,
    SandboxApp,
)
from sandbox.harness import Sandbox, fast_plan

SHORT_LIFETIME = timedelta(seconds=21)


@pytest.fixture
def app() -> SandboxApp:
    return SandboxApp(token_lifetime=SHORT_LIFETIME)


@pytest.fixture
async def gh(app: SandboxApp) -> AsyncIterator[GitHubSimulator]:
    async with GitHubSimulator(app=app, clock=ManualClock(START)) as sim:
        yield sim


def credentials(app: SandboxApp, **changes: object) -> GitHubApp:
    values: dict[str, object] = {"app_id": app.app_id, "private_key": SecretStr(app.private_key)}
    return GitHubApp(**(values | changes))  # type: ignore[arg-type]


@asynccontextmanager
async def gateway(
    gh: GitHubSimulator, app: GitHubApp, *, telemetry: Telemetry = UNTRACKED
) -> AsyncIterator[PyGithubGateway]:
    """The bot's gateway to `gh` as the App, its calls counted by `telemetry`, closed after."""
    transport = GitHubTransport(
        api_url=gh.api_url,
        app=app,
        repository=REPOSITORY,
        timeout=5,
        backoff=0.01,
        telemetry=telemetry,
    )
    github = PyGithubGateway(transport, search=DispatchSearch(attempts=2, delay=0.01))
    try:
        yield github
    finally:
        await github.close()


async def dispatch_refused(gh: GitHubSimulator, app: GitHubApp) -> str:
    """What the gateway says when GitHub refuses its dispatch (the test fails if it did not)."""
    async with gateway(gh, app) as github:
        with pytest.raises(GitHubError) as refused:
            await start(github)
    return refused.value.message


FIRST_STAGES = {"Relay rollout 5% canary (30m)", "Desktop/CLI ring deploy - internal"}


def waiting_jobs(snapshot: RunSnapshot) -> set[str]:
    """The run's jobs that wait at their environment, by display name."""
    return {job.name for job in snapshot.jobs.values() if job.status is JobStatus.WAITING}


def requests_to(gh: GitHubSimulator, path: str) -> list[int]:
    return [r.status for r in gh.requests if r.path == path]


async def test_a_rollouts_calls_run_as_the_apps_installation_through_several_tokens(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    async with gateway(gh, credentials(app)) as github:
        started = await start(github)
        seen = []
        for _ in range(3):  # a rollout polls its run while its tokens come and go
            await asyncio.sleep(1.1)  # PyGithub refreshes by the wall clock
            seen.append(await github.snapshot(started.run_id))

    [dispatch] = gh.dispatches
    assert dispatch.actor == "rollout-bot[bot]" and dispatch.inputs == INPUTS
    # Both first stages wait for their reviewers (which an App never is: not its to review).
    assert all(waiting_jobs(s) == FIRST_STAGES for s in seen)
    assert all(s.waiting == frozenset() for s in seen)
    # The installation was found from the repository once, with the App's JWT.
    assert requests_to(gh, f"/repos/{REPOSITORY}/installation") == [200]
    minted = requests_to(gh, f"/app/installations/{app.installation_id}/access_tokens")
    assert len(minted) >= 3 and set(minted) == {201}
    assert all(len(token.token) > 40 for token in app.issued)
    assert not [r for r in gh.requests if r.status == 401], "no call met an expired token"


async def test_a_configured_installation_is_not_looked_up(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    async with gateway(gh, credentials(app, installation_id=app.installation_id)) as github:
        await github.snapshot((await start(github)).run_id)
    assert requests_to(gh, f"/repos/{REPOSITORY}/installation") == []


async def test_on_github_enterprise_the_app_calls_go_to_the_same_api_base(app: SandboxApp) -> None:
    app.token_lifetime = timedelta(hours=1)  # one token, however slow the machine
    async with GitHubSimulator(app=app, clock=ManualClock(START), enterprise=True) as ghes:
        assert ghes.api_url.endswith("/api/v3")
        async with gateway(ghes, credentials(app)) as github:
            await start(github)
        [dispatch] = ghes.dispatches
    assert dispatch.actor == "rollout-bot[bot]"
    assert requests_to(ghes, f"/repos/{REPOSITORY}/installation") == [200]
    # One token for the reads, one for the dispatch (it may write Actions): each narrowed.
    minted = requests_to(ghes, f"/app/installations/{app.installation_id}/access_tokens")
    assert minted == [201, 201]


async def test_a_wrong_app_id_is_githubs_401_in_one_line_with_the_fix(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    text = await dispatch_refused(gh, credentials(app, app_id=app.app_id + 1))
    assert "\n" not in text
    assert f"GitHub rejected the App's credentials (401 {NOT_A_JWT})" in text
    assert f"check that GITHUB_APP_ID is the App's id ({app.app_id + 1} now)" in text
    assert gh.dispatches == []


async def test_an_installation_without_a_permission_is_refused_403_naming_the_permission(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    app.permissions["actions"] = "read"
    text = await dispatch_refused(gh, credentials(app))
    assert f"(403: {NOT_ACCESSIBLE})" in text
    assert "the GitHub App needs the permission Actions: Read and write" in text
    assert gh.dispatches == []


async def test_an_app_not_installed_on_the_repository_says_to_install_it(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    app.installed = False
    async with gateway(gh, credentials(app)) as github:
        with pytest.raises(GitHubError) as refused:
            await github.snapshot(1)
    assert refused.value.message == (
        "Could not get an installation token for the GitHub App, so nothing was sent to read "
        f"run 1: the App is not installed on {REPOSITORY} (404): install it on scriptum with "
        "this repository (the App's page → Install App); the bot finds the installation on its "
        "next call."
    )


async def test_the_key_and_tokens_appear_in_no_log_line_or_message(
    gh: GitHubSimulator,
    app: SandboxApp,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key_lines = app.private_key.splitlines()[1:-1]
    configure_logging(level="DEBUG", fmt="text", secrets=key_lines)
    # PyGithub logs each request and its whole answer at DEBUG on `github`, the answer that
    # carries a minted installation token too: raised to DEBUG, its lines are still scrubbed.
    caplog.set_level(logging.DEBUG, logger="github")
    messages = []
    for changes in ({}, {"app_id": 1}):
        async with gateway(gh, credentials(app, **changes)) as github:
            try:
                await start(github)
            except GitHubError as error:
                messages.append(error.message)
    assert len(messages) == 1 and app.issued
    logged = capsys.readouterr().err
    minted = [line for line in logged.splitlines() if "/access_tokens {" in line]
    assert minted and all(f'"token": "{REDACTED}"' in line for line in minted), minted
    text = logged + "\n".join(messages)
    for secret in [t.token for t in app.issued] + key_lines:
        assert secret not in text
    assert "ghs_" not in text


async def test_an_error_page_echoing_the_request_shows_no_installation_token(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """A proxy's error page may print the request it got, Authorization header included:
    what the bot says of it masks the App's installation token as it masks a token's."""
    async with gateway(gh, credentials(app)) as github:
        started = await start(github)
        page = "<html>502 Bad Gateway for a request with Authorization: {authorization}</html>"
        gh.fail_next_with_text("GET", f"/repos/*/actions/runs/{started.run_id}", 502, page, times=5)
        with pytest.raises(GitHubError) as refused:
            await github.snapshot(started.run_id)

    assert "502" in refused.value.message and app.issued
    assert not [t.token for t in app.issued if t.token in refused.value.message]
    assert "token ***" in refused.value.message


async def test_an_error_page_echoing_the_mint_shows_no_jwt(
    gh: GitHubSimulator, app: SandboxApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """The mint goes with the App's JWT (a credential for ten minutes): a proxy's error page
    that prints the request shows it masked, in what the bot says and in its log lines."""
    configure_logging(level="DEBUG", fmt="text", secrets=[])
    page = "<html>502 Bad Gateway for a request with Authorization: {authorization}</html>"
    gh.fail_next_with_text("POST", "/app/installations/*/access_tokens", 502, page)

    text = await dispatch_refused(gh, credentials(app))

    assert "502" in text and "Bearer ***" in text, text
    assert "eyJ" not in text + capsys.readouterr().err


@pytest.mark.parametrize(
    ("status", "installation_id", "said"),
    [
        pytest.param(
            502, None, "GitHub answered 502 (Server Error); try again.", id="502 on the mint"
        ),
        pytest.param(
            404,
            INSTALLATION_ID + 1,
            f"GitHub has no installation {INSTALLATION_ID + 1} of the App (404): set "
            f"GITHUB_APP_INSTALLATION_ID to the App's installation on {REPOSITORY}, or unset it",
            id="wrong installation id",
        ),
    ],
)
async def test_a_failed_mint_is_its_own_error_and_no_dispatch_is_sent_or_looked_for(
    gh: GitHubSimulator, app: SandboxApp, status: int, installation_id: int | None, said: str
) -> None:
    if status != 404:
        gh.fail_next("POST", "/app/installations/*/access_tokens", status)
    text = await dispatch_refused(gh, credentials(app, installation_id=installation_id))
    assert text.startswith(
        "Could not get an installation token for the GitHub App, so nothing was sent to "
        f"dispatch {WORKFLOW} on main: {said}"
    ), text
    assert "Actions" not in text  # no dispatch hint: the dispatch was never refused
    assert gh.dispatches == []
    assert not [r for r in gh.requests if r.path.endswith("/runs")], "no run was looked for"


async def tokens_revoked(github: PyGithubGateway, app: SandboxApp) -> RunRef:
    """A run started, then every installation token minted so far revoked. Tokens last an hour
    from the start: PyGithub mints another 20 s before a token's end, so a token of the
    fixture's 21 s could be replaced by a fresh one between the revocation and the next call
    (whether it was depended on how fast the machine ran the start: flaky)."""
    app.token_lifetime = timedelta(hours=1)
    started = await start(github)
    await github.snapshot(started.run_id)
    for token in app.issued:
        app.revoke(token.token)
    return started


async def test_a_revoked_installation_token_is_replaced_and_the_call_goes_on(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """GitHub's 401 to a token revoked (or expired by its clock) is not the call's end: a new
    token is minted at once and the call sent once more with it
    (tests/test_github_app_renewal.py has the write, the second 401 and the count)."""
    async with gateway(gh, credentials(app)) as github:
        started = await tokens_revoked(github, app)
        snapshot = await github.snapshot(started.run_id)
    assert waiting_jobs(snapshot) == FIRST_STAGES
    assert app.issued[-1].token not in app.revoked
    assert [r.status for r in gh.requests if r.status == 401] == [401]


async def test_the_first_call_after_an_uninstall_says_the_app_is_not_installed(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """GitHub answers 401 Bad credentials to the tokens of an App uninstalled, as to a token
    revoked or expired: the first call after the uninstall said "revoked, or expired by
    GitHub's clock" (check the clock), and only the next one named the missing installation.
    The new token minted at once after the 401 gets a 404, and the first call says so."""
    owner = REPOSITORY.split("/")[0]
    async with gateway(gh, credentials(app)) as github:
        app.token_lifetime = timedelta(hours=1)  # the token in hand stays the one refused
        started = await start(github)
        await github.snapshot(started.run_id)
        app.uninstall(owner)
        with pytest.raises(GitHubError) as first:
            await github.snapshot(started.run_id)
        with pytest.raises(GitHubError) as next_one:
            await github.snapshot(started.run_id)

    said = first.value.message
    assert said.startswith(
        f"GitHub refused the App's installation token (401 Bad credentials) when asked to read "
        f"run {started.run_id}, and gave no new one: the App is not installed on {REPOSITORY} "
        f"(404): install it on {owner} with this repository"
    ), said
    assert "revoked" not in said and "clock" not in said
    assert f"the App is not installed on {REPOSITORY} (404)" in next_one.value.message


async def test_a_suspended_installation_is_named_as_such_not_as_a_permission_to_grant(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """GitHub refuses a suspended installation's token mint and the tokens it had with 403
    "This installation has been suspended". The bot told the call's 403 as a permission to
    grant ("the GitHub App needs the permission Actions: Read and Contents: Read"), and the
    mint's as "GitHub refused it": neither says to lift the suspension. Its calls go on once
    it is lifted."""
    owner = REPOSITORY.split("/")[0]
    app.token_lifetime = timedelta(hours=1)  # the token in hand is the one refused
    async with gateway(gh, credentials(app)) as github:
        started = await start(github)
        await github.snapshot(started.run_id)
        app.suspend(owner)
        with pytest.raises(GitHubError) as with_its_token:
            await github.snapshot(started.run_id)
        async with gateway(gh, credentials(app)) as restarted:  # a new token is asked for
            with pytest.raises(GitHubError) as minted:
                await restarted.snapshot(started.run_id)
        app.unsuspend(owner)
        assert waiting_jobs(await github.snapshot(started.run_id)) == FIRST_STAGES

    said = with_its_token.value.message
    assert said.startswith(
        f"GitHub refused to read run {started.run_id} (403: This installation has been "
        "suspended): whoever suspended it lifts the suspension (the account's Settings → GitHub "
        "Apps → the App → Configure → Unsuspend; or, when the App's owner suspended it, the "
        "App's settings → Advanced → Unsuspend)"
    ), said
    assert "permission" not in said
    assert minted.value.message.startswith(
        "Could not get an installation token for the GitHub App, so nothing was sent to read "
        f"run {started.run_id}: the App's installation on {owner} is suspended (403 This "
        "installation has been suspended): whoever suspended it lifts the suspension"
    ), minted.value.message


async def test_an_app_installed_again_under_a_new_id_is_found_again_and_its_calls_go_on(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    """Uninstalled and installed again: GitHub revokes the old installation's tokens and
    answers 404 to a token for it ("Create an installation access token for an app"); the
    installation found from the repository is looked up again, not asked for tokens forever."""
    async with gateway(gh, credentials(app)) as github:
        started = await tokens_revoked(github, app)
        old = app.installation_id
        app.installation_id = old + 1
        snapshot = await github.snapshot(started.run_id)  # its 401, and then the new token

    assert waiting_jobs(snapshot) == FIRST_STAGES
    assert requests_to(gh, f"/repos/{REPOSITORY}/installation") == [200, 200]
    # The old installation read again before its token is renewed: gone (404).
    assert requests_to(gh, f"/app/installations/{old}")[-1] == 404
    assert requests_to(gh, f"/app/installations/{old + 1}/access_tokens") == [201]


async def test_in_app_mode_the_preflight_says_the_image_cannot_be_checked_and_dispatch_goes_on(
    tmp_path: Path,
) -> None:
    async with Sandbox(
        workdir=tmp_path,
        plan_yaml=fast_plan(tmp_path / "figures.yml", check_image=True),
        github_app=SandboxApp(),
    ) as box:
        box.github.images["relay"] = {"v1.4.2"}
        assert "Preflight" in await box.command("start v1.4.2 --flags-ready")
        image = (await box.rollout()).preflight.image
        assert image.state is CheckState.SKIPPED
        assert image.detail.startswith(
            "not checked: GitHub's packages API does not take a GitHub App's token"
        )
        assert "make sure `relay:v1.4.2` is published" in image.detail
        await box.click("dispatch")
        await box.wait_until(lambda r: r.phase is Phase.RUNNING)
        assert not [r for r in box.github.requests if "/packages/" in r.path]


# -- the sandbox answers as GitHub documents -------------------------------------------------------


def signed(app: SandboxApp, *, iat: float, exp: float, **changes: object) -> str:
    claims = {"iat": int(iat), "exp": int(exp), "iss": str(app.app_id)} | changes
    return jwt.encode(claims, app.key, algorithm="RS256")


async def get(gh: GitHubSimulator, path: str, authorization: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(gh.api_url + path, headers={"Authorization": authorization}) as answer,
    ):
        return answer.status, (await answer.json())["message" if answer.status >= 400 else "id"]


@pytest.mark.parametrize(
    ("make", "status", "message"),
    [
        pytest.param(lambda a, now: signed(a, iat=now - 60, exp=now + 540), 200, None, id="good"),
        pytest.param(
            lambda a, now: signed(a, iat=now - 60, exp=now + 660), 401, EXP_TOO_FAR, id="exp 11 min"
        ),
        pytest.param(
            lambda a, now: signed(a, iat=now - 700, exp=now - 100), 401, EXP_PAST, id="expired"
        ),
        pytest.param(
            lambda a, now: signed(a, iat=now + 300, exp=now + 500), 401, IAT_MESSAGE, id="iat ahead"
        ),
        pytest.param(
            lambda a, now: signed(a, iat=now - 60, exp=now + 300, iss="42"),
            401,
            NOT_A_JWT,
            id="another App id",
        ),
        pytest.param(
            lambda a, now: jwt.encode(
                {"iat": int(now), "exp": int(now) + 300, "iss": str(a.app_id)},
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
                algorithm="RS256",
            ),
            401,
            NOT_A_JWT,
            id="another key",
        ),
        pytest.param(lambda a, now: "not.a.jwt", 401, NOT_A_JWT, id="garbage"),
    ],
)
async def test_a_jwt_is_checked_as_github_does(
    gh: GitHubSimulator, app: SandboxApp, make: object, status: int, message: str | None
) -> None:
    token = make(app, time.time())  # type: ignore[operator]
    answer = await get(gh, "/app", f"Bearer {token}")
    assert answer == (status, message if message is not None else app.app_id)


async def test_an_installation_token_works_until_it_expires_then_is_bad_credentials(
    gh: GitHubSimulator, app: SandboxApp
) -> None:
    now = time.time()
    jwt_header = f"Bearer {signed(app, iat=now - 60, exp=now + 300)}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gh.api_url}/app/installations/{app.installation_id}/access_tokens",
            headers={"Authorization": jwt_header},
            json={},
        ) as answer,
    ):
        assert answer.status == 201
        minted = await answer.json()
    assert len(minted["token"]) > 40 and minted["permissions"] == app.permissions
    assert minted["expires_at"].endswith("Z")
    header = f"token {minted['token']}"
    assert await get(gh, f"/repos/{REPOSITORY}", header) == (200, (await repo_id(gh, header)))
    assert await get(gh, "/app", header) == (401, NOT_A_JWT)
    assert await get(gh, "/user", header) == (403, NOT_ACCESSIBLE)
    # GitHub's packages API takes only a classic personal access token: 404, as if no package.
    owner = REPOSITORY.split("/")[0]
    for path in (
        f"/orgs/{owner}/packages/container/relay/versions",
        f"/users/{owner}/packages/container/relay/versions",
    ):
        assert await get(gh, path, header) == (404, "Not Found")
    # Only the repository's own installation path takes a JWT (`*` is one path segment).
    assert (await get(gh, f"/repos/{REPOSITORY}/environments/installation", header))[0] == 404
    app.advance(SHORT_LIFETIME.total_seconds())
    assert await get(gh, f"/repos/{REPOSITORY}", header) == (401, "Bad credentials")


async def repo_id(gh: GitHubSimulator, header: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{gh.api_url}/repos/{REPOSITORY}", headers={"Authorization": header}) as a,
    ):
        return int((await a.json())["id"])
