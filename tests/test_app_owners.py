"""One bot, as one GitHub App, releasing services of two organisations: the App has one
installation per account (docs/github-app.md), each with its own tokens, which reach that
account's repositories only (the sandbox GitHub answers 404 to another's, as GitHub does). Each
call goes out with its owner's installation, a protection rule request from one organisation
is answered with that organisation's, and an installation removed stops its service alone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from figures import passing_sandbox
from test_observability import Scraper, value
from test_services import card_of

from bot.domain.rollout import Phase, Rollout, TrackState, holding_tracks
from sandbox.config import RELEASE_CHANNEL, SandboxService
from sandbox.github_app import SandboxApp
from sandbox.github_repository import SimRepository
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story

LEDGER_CHANNEL = "C0LEDGER01"
RELAY = SandboxService(name="relay", repository="scriptum/scriptum")
LEDGER = SandboxService(
    name="ledger", repository="globex/ledger", release_channels=(LEDGER_CHANNEL,)
)
GITHUB_REQUESTS = "rollout_bot_github_requests_total"
CHANNELS = {RELAY.name: RELEASE_CHANNEL, LEDGER.name: LEDGER_CHANNEL}


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Sandbox]:
    """The bot as the App installed on `scriptum` and on `globex`, every environment of both
    repositories on the App's rule."""
    async with passing_sandbox(
        tmp_path, rollout_services=[RELAY, LEDGER], github_app=SandboxApp()
    ) as sandbox:
        for repository in (RELAY.repository, LEDGER.repository):
            handle = repository_of(sandbox, repository)
            handle.protection_rule(set(handle.engine.protected))
        yield sandbox


def repository_of(box: Sandbox, name: str) -> SimRepository:
    handle = box.github.repository_named(name)
    assert handle is not None
    return handle


def app_of(box: Sandbox) -> SandboxApp:
    assert box.github.app is not None
    return box.github.app


def installation_of(box: Sandbox, account: str) -> int:
    return app_of(box).installations[account].id


async def dispatched(box: Sandbox, service: SandboxService, tag: str) -> Rollout:
    """`/rollout start <tag>` in the service's channel, then Dispatch on its card."""
    channel = CHANNELS[service.name]
    assert "Preflight" in await box.command(f"start {tag} --flags-ready", channel=channel)
    await box.slack.wait_for(lambda: bool(box.slack.messages(channel)), timeout=30)
    await box.click(
        "dispatch", channel=channel, message=card_of(box, f"{service.name} {tag}", channel)
    )
    return await box.wait_until(lambda r: r.phase is Phase.RUNNING, service=service.name)


async def released(box: Sandbox, service: SandboxService) -> Rollout:
    """Promote each held gate of the service's rollout, by command in its channel, to the end."""
    while True:
        rollout = await box.wait_until(
            lambda r: r.phase is Phase.ENDED or bool(holding_tracks(r)), service=service.name
        )
        if rollout.phase is Phase.ENDED:
            return rollout
        await box.command("promote", channel=CHANNELS[service.name])


def installations_used(box: Sandbox, repository: str) -> set[int | None]:
    """The installations whose tokens the bot sent to `repository`'s paths (but the lookup
    of its installation, which goes with the App's JWT)."""
    prefix, lookup = f"/repos/{repository}/", f"/repos/{repository}/installation"
    return {
        r.installation
        for r in box.github.requests
        if r.path.startswith(prefix) and r.path != lookup
    }


async def test_two_services_of_two_organisations_are_released_each_with_its_installation(
    box: Sandbox,
) -> None:
    scriptum, globex = installation_of(box, "scriptum"), installation_of(box, "globex")
    assert scriptum != globex
    await dispatched(box, RELAY, "v1.4.2")
    await dispatched(box, LEDGER, "v2.0.0")
    for service in (RELAY, LEDGER):
        ended = await released(box, service)
        assert {t.name: t.state for t in ended.tracks} == {
            "relay": TrackState.COMPLETED,
            "desktop": TrackState.COMPLETED,
        }, service.name

    assert installations_used(box, RELAY.repository) == {scriptum}
    assert installations_used(box, LEDGER.repository) == {globex}
    for service in (RELAY, LEDGER):
        answered = repository_of(box, service.repository).engine.rule_reviews
        assert {r.state for r in answered} == {"approved"} and len(answered) == 6, service.name
    # Each organisation's requests came from its own installation, and each was taken in.
    delivered = [json.loads(d.body) for d in box.github.app_hook.deliveries]
    assert {(p["repository"]["full_name"], p["installation"]["id"]) for p in delivered} == {
        (RELAY.repository, scriptum),
        (LEDGER.repository, globex),
    }
    assert {d.result for d in box.github.app_hook.deliveries} <= {"followed", "kept", "duplicate"}


async def test_an_installation_removed_is_named_for_its_service_while_the_other_goes_on(
    box: Sandbox,
) -> None:
    """The lookup that found no installation (404) raised past the transport: a click was told
    "The GitHub App … is not installed on …" without a word of what was not done, and no
    `app_token` 404 was counted, so the alert on the App not being installed never fired."""
    await dispatched(box, RELAY, "v1.4.2")
    await dispatched(box, LEDGER, "v2.0.0")
    for service in (RELAY, LEDGER):
        await box.wait_until(lambda r: bool(holding_tracks(r)), service=service.name)
    globex = installation_of(box, "globex")
    app_of(box).uninstall("globex")  # GitHub: 404 for its mint, 401 for its tokens

    answered = await box.command("promote", channel=LEDGER_CHANNEL)
    assert "so nothing was sent to" in answered, answered
    assert (
        f"the App is not installed on {LEDGER.repository} (404): install it on globex with this "
        "repository (the App's page → Install App)"
    ) in answered
    ended = await released(box, RELAY)
    assert ended.track("relay").state is TrackState.COMPLETED
    ledger = await box.rollout(LEDGER.name)
    assert ledger.phase is Phase.RUNNING  # held where it was, for the App installed again
    assert holding_tracks(ledger)
    async with aiohttp.ClientSession() as http:
        found = await Scraper(box, http, None).samples()
    # The operator sees which service's repository lost its installation.
    assert value(found, GITHUB_REQUESTS, service=LEDGER.name, endpoint="app_token", status="404")
    assert (
        value(found, GITHUB_REQUESTS, service=RELAY.name, endpoint="app_token", status="404")
        is None
    )

    again = app_of(box).install("globex").id  # installed again: GitHub gives a new id
    assert again != installation_of(box, "scriptum")
    assert "Promoted" in await box.command("promote", channel=LEDGER_CHANNEL)
    ended = await released(box, LEDGER)
    assert ended.track("relay").state is TrackState.COMPLETED
    assert installations_used(box, LEDGER.repository) - {globex} == {again}
