"""Three services in two channels, end to end: `relay` and `billing-api` share the release
channel, `search` has a channel of its own. Each command, click and webhook reaches its own
service only; an approver of one service is refused on another's card."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from figures import passing_sandbox
from test_observability import Scraper

from bot.domain.rollout import Phase
from sandbox.config import (
    GITHUB_WEBHOOK_SECRET,
    RELEASE_CHANNEL,
    RELEASE_MANAGER,
    SandboxService,
)
from sandbox.harness import Sandbox
from sandbox.harness_slack import ChannelMessage
from sandbox.signing import github_signature_headers

SEARCH_CHANNEL = "C0SEARCH01"
BILLING_APPROVER = "U0BILLING1"
SERVICES = [
    SandboxService(name="relay", repository="scriptum/scriptum"),
    SandboxService(
        name="billing-api",
        repository="scriptum/billing-api",
        approvers=(BILLING_APPROVER, RELEASE_MANAGER),
    ),
    SandboxService(name="search", repository="scriptum/search", release_channels=(SEARCH_CHANNEL,)),
]


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with passing_sandbox(tmp_path, rollout_services=SERVICES) as sandbox:
        yield sandbox


def card_of(box: Sandbox, title: str, channel: str = RELEASE_CHANNEL) -> ChannelMessage:
    """The card in `channel` whose title names `title` (`billing-api v2.0.0`)."""
    (card,) = [m for m in box.slack.messages(channel) if f": {title}\n" in m.rendered]
    return card


async def rollouts_by_service(box: Sandbox) -> dict[str, tuple[str, Phase]]:
    return {r.service: (r.tag, r.phase) for r in await box.rollouts()}


async def test_a_channel_of_two_services_asks_which_and_each_starts_its_own(box: Sandbox) -> None:
    asked = await box.command("start v1.4.2 --flags-ready")
    assert "several services" in asked
    assert "`relay`" in asked and "`billing-api`" in asked and "`search`" not in asked

    assert "Preflight" in await box.command("start relay v1.4.2 --flags-ready")
    assert "Preflight" in await box.command("start billing-api v2.0.0 --flags-ready")
    stored = {r.service: r for r in await box.rollouts()}
    assert sorted(stored) == ["billing-api", "relay"]
    assert stored["relay"].tag == "v1.4.2" and stored["billing-api"].tag == "v2.0.0"

    await box.click("dispatch", message=card_of(box, "billing-api v2.0.0"))
    billing = box.github.repository_named("scriptum/billing-api")
    assert billing is not None
    await box.slack.wait_for(lambda: len(billing.dispatches) == 1, timeout=30)
    assert billing.dispatches[0].inputs["relay_image_tag"] == "v2.0.0"
    assert box.github.dispatches == []  # relay's repository: nothing dispatched
    assert (await rollouts_by_service(box))["relay"] == ("v1.4.2", Phase.PREFLIGHT)


async def test_an_approver_of_one_service_is_refused_on_another_services_card(
    box: Sandbox,
) -> None:
    assert "Preflight" in await box.command("start relay v1.4.2 --flags-ready")
    refused = await box.click(
        "dispatch", user=BILLING_APPROVER, message=card_of(box, "relay v1.4.2")
    )
    assert refused is not None and "approver" in refused
    assert box.github.dispatches == []
    assert (await rollouts_by_service(box))["relay"] == ("v1.4.2", Phase.PREFLIGHT)
    # ...and may start their own service's release.
    started = await box.command("start billing-api v2.0.0 --flags-ready", user=BILLING_APPROVER)
    assert "Preflight" in started


async def test_a_channel_of_one_service_needs_no_name_and_refuses_anothers(box: Sandbox) -> None:
    assert "Preflight" in await box.command("start v3.0.0 --flags-ready", channel=SEARCH_CHANNEL)
    assert (await rollouts_by_service(box)) == {"search": ("v3.0.0", Phase.PREFLIGHT)}
    refused = await box.command("start relay v1.4.2", channel=SEARCH_CHANNEL)
    assert "only works in" in refused and RELEASE_CHANNEL in refused
    assert sorted(await rollouts_by_service(box)) == ["search"]


async def test_status_shows_each_service_of_the_channel_and_a_freeze_holds_one(
    box: Sandbox,
) -> None:
    assert "Preflight" in await box.command("start relay v1.4.2 --flags-ready")
    status = await box.command("status")
    assert "Active rollouts of relay" in status
    assert "No active rollouts of billing-api" in status
    assert "search" not in status

    await box.command("freeze billing-api 2h payments quarter end")
    frozen = await box.command("start billing-api v2.0.0")
    assert "frozen" in frozen.lower()
    assert "Preflight" in await box.command("start v3.0.0", channel=SEARCH_CHANNEL)


async def test_webhooks_go_to_the_service_of_their_repository_by_name_or_by_id(
    box: Sandbox,
) -> None:
    """After a rename or transfer GitHub names the repository anew; its id stays. The id of
    billing-api's repository is known from its dispatch: a delivery under its new name goes to
    billing-api; an id no service's repository has is another repository's."""
    assert "Preflight" in await box.command("start billing-api v2.0.0 --flags-ready")
    await box.click("dispatch", message=card_of(box, "billing-api v2.0.0"))
    rollout = await box.wait_until(lambda r: r.run_id is not None)
    assert rollout.service == "billing-api"

    async def deliver(repository: str, run_id: int, repository_id: int = 1) -> dict[str, object]:
        payload = {
            "action": "in_progress",
            "repository": {"full_name": repository, "id": repository_id},
            "workflow_run": {"id": run_id, "conclusion": None},
        }
        body = json.dumps(payload).encode()
        headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, body, event="workflow_run")
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{box.url}/github/webhook", data=body, headers=headers) as response,
        ):
            assert response.status == 202
            answer: dict[str, object] = await response.json()
            return answer

    assert rollout.run_id is not None
    assert (await deliver("scriptum/billing-api", rollout.run_id))["result"] == "followed"
    # The same run id under relay's repository, or a repository of no service: ignored.
    assert (await deliver("scriptum/scriptum", rollout.run_id))["result"] == "ignored"
    assert (await deliver("scriptum/unknown", rollout.run_id))["result"] == "ignored"
    billing = box.github.repositories["scriptum/billing-api"]
    billing.rename("scriptum/billing")
    assert (await deliver("scriptum/billing", rollout.run_id, billing.id))["result"] == "followed"
    relay = box.github.repositories["scriptum/scriptum"].id  # never read: not known
    assert (await deliver("scriptum/relay-new", rollout.run_id, relay))["result"] == "ignored"


async def test_metrics_say_which_services_rollouts_are_active(box: Sandbox) -> None:
    """`rollout_bot_rollouts_active` by service: every configured service has its series (0
    when it has no rollout), so a dashboard or an alert can tell which service is releasing."""
    assert "Preflight" in await box.command("start billing-api v2.0.0 --flags-ready")
    async with aiohttp.ClientSession() as http:
        found = await Scraper(box, http, None).samples()
    active = {
        (labels["service"], labels["state"]): figure
        for (name, pairs), figure in found.items()
        if name == "rollout_bot_rollouts_active"
        for labels in [dict(pairs)]
    }
    assert active[("billing-api", "preflight")] == 1
    assert active[("relay", "preflight")] == 0
    assert {service for service, _ in active} == {"relay", "billing-api", "search"}


async def test_a_report_names_the_service_it_sums_up(box: Sandbox) -> None:
    """Pasted into a monthly report, the answer says whose rollouts it counted."""
    billing = await box.command("report billing-api 7d")
    assert "Rollouts of billing-api in 7d" in billing and "no rollout ended" in billing
    assert "Rollouts of search in 2026-11" in await box.command(
        "report 2026-11", channel=SEARCH_CHANNEL
    )
