"""Cards of a service the bot no longer releases: the services file changed (a service removed
or renamed) and the bot restarted, while the old cards are still in the channel. A click on one
is refused, saying why, and changes nothing. Each test's docstring says what went wrong before."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from figures import passing_sandbox
from sandbox_views import audit_results, open_home
from test_freeze_sandbox import typed_reason
from test_services import card_of
from test_unfollowed_runs import run_cards

from bot.adapters.slack.control_views import REASON_BLOCK
from bot.domain.rollout import Phase
from bot.services.access import FORM_OUTSIDE_RELEASE_CHANNELS
from sandbox.config import RELEASE_MANAGER, SandboxService
from sandbox.github_app import SandboxApp
from sandbox.harness import Sandbox
from sandbox.slack_records import ChannelMessage

RELAY = SandboxService(name="relay", repository="scriptum/scriptum")
BILLING = SandboxService(name="billing-api", repository="scriptum/billing-api")
RENAMED = SandboxService(name="billing", repository="scriptum/billing-api")


async def restarted_with(box: Sandbox, services: list[SandboxService]) -> None:
    """The operator edits the services file and restarts the bot."""
    await box.stop_bot()
    box.services_file = box._serve(services)
    await box.start_bot()


async def billing_run_on_github(box: Sandbox) -> tuple[int, ChannelMessage]:
    """A run started on github.com in billing-api's repository, every environment on the
    App's rule, and its card once posted."""
    billing = box.github.repository_named(BILLING.repository)
    assert billing is not None
    billing.protection_rule(set(billing.engine.protected))
    billing.push_tag("v2.0.0")
    run_id = billing.create_foreign_run(actor="octocat", branch="v2.0.0")
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    return run_id, run_cards(box)[0]


async def test_a_click_on_a_card_of_a_removed_or_renamed_service_says_so(tmp_path: Path) -> None:
    """The click went to the channel's first service, whose store does not see the other
    service's rows: "There is no rollout r-…", under a card that shows that rollout."""
    async with passing_sandbox(tmp_path, rollout_services=[RELAY, BILLING]) as box:
        assert "Preflight" in await box.command("start billing-api v2.0.0 --flags-ready")
        card = card_of(box, "billing-api v2.0.0")
        for services in ([RELAY], [RELAY, RENAMED]):
            await restarted_with(box, services)
            refused = await box.click("dispatch", message=card)
            assert refused is not None
            assert "There is no rollout" not in refused
            assert "`billing-api`, which this bot no longer releases" in refused
            assert "Nothing was changed" in refused
        (rollout,) = await box.rollouts()
        assert (rollout.service, rollout.phase) == ("billing-api", Phase.PREFLIGHT)
        billing = box.github.repository_named(BILLING.repository)
        assert billing is not None and billing.dispatches == []
        refusals = [
            e
            for e in await box.audit.list_for_actor(RELEASE_MANAGER)
            if e.action == "click:dispatch"
        ]
        assert [e.result for e in refusals] == ["service_not_configured"] * 2


async def test_adopt_on_the_run_card_of_a_removed_service_says_so(tmp_path: Path) -> None:
    """Adopt went to the channel's first service, which read the run's card (timers are
    shared) but not its requests: "Run … no longer waits for the bot's answer", while it
    does."""
    async with passing_sandbox(
        tmp_path, rollout_services=[RELAY, BILLING], github_app=SandboxApp()
    ) as box:
        run_id, run_card = await billing_run_on_github(box)
        await restarted_with(box, [RELAY])
        refused = await box.click("adopt_run", message=run_card)
        assert refused is not None
        assert f"Run {run_id} is of the service `billing-api`" in refused, refused
        assert "still waits on GitHub" in refused
        assert await box.rollouts() == []


async def test_the_app_home_of_the_one_service_left_shows_only_its_rollouts(
    tmp_path: Path,
) -> None:
    """With one service left in the file, the App Home drew every active rollout in the
    database: the removed service's too, shown to the remaining service's people as if it
    were theirs (its `/rollout status` does not show it)."""
    async with passing_sandbox(tmp_path, rollout_services=[RELAY, BILLING]) as box:
        assert "Preflight" in await box.command("start billing-api v2.0.0 --flags-ready")
        assert "Preflight" in await box.command("start relay v1.4.2 --flags-ready")
        await restarted_with(box, [RELAY])
        home = await open_home(box, RELEASE_MANAGER)
        assert "v1.4.2" in home
        assert "v2.0.0" not in home


async def test_a_form_of_a_removed_service_submitted_after_the_restart_says_so(
    tmp_path: Path,
) -> None:
    """An Override freeze… form opened on billing-api's card before the restart, submitted
    after it: the form turns into the reason, and nothing is dispatched."""
    async with passing_sandbox(tmp_path, rollout_services=[RELAY, BILLING]) as box:
        form = await override_form(box, "billing-api")
        await restarted_with(box, [RELAY])

        said = await box.submit_view(form, typed_reason("fix"))

        assert said["response_action"] == "update"
        assert "which this bot no longer releases" in json.dumps(said["view"])
        billing = box.github.repository_named(BILLING.repository)
        assert billing is not None and billing.dispatches == []


async def test_a_form_opened_in_a_channel_that_is_no_longer_a_release_channel_changes_nothing(
    tmp_path: Path,
) -> None:
    """The channel left the service's release channels between the form's opening and its
    submission (the services file changed, the bot restarted): the form says so next to its
    input. Before, a form's channel was taken as checked when the click opened it, and the
    override went through and dispatched."""
    async with passing_sandbox(tmp_path, rollout_services=[RELAY, BILLING]) as box:
        form = await override_form(box, "billing-api")
        moved = replace(BILLING, release_channels=("C0ELSEWHERE",))
        await restarted_with(box, [RELAY, moved])

        said = await box.submit_view(form, typed_reason("fix"))

        assert said == {
            "response_action": "errors",
            "errors": {REASON_BLOCK: FORM_OUTSIDE_RELEASE_CHANNELS},
        }
        billing = box.github.repository_named(BILLING.repository)
        assert billing is not None and billing.dispatches == []
        (rollout,) = await box.rollouts()
        assert rollout.phase is Phase.PREFLIGHT
        # Audited as a refused command is (there was no event of the form at all).
        refused = await audit_results(box, rollout.id, "form:override_freeze", 1)
        assert refused == ["refused"]


async def override_form(box: Sandbox, service: str) -> str:
    """`service`'s preflight, its Dispatch refused by a freeze, and the *Override freeze…* form
    opened on its card: the form's view id."""
    assert "Preflight" in await box.command(f"start {service} v2.0.0 --flags-ready")
    card = card_of(box, f"{service} v2.0.0")
    await box.command(f"freeze {service} 2h INC-123 investigation")
    assert "INC-123" in (await box.click("dispatch", message=card) or "")
    (answer,) = [e for e in box.slack.ephemerals(user=RELEASE_MANAGER) if "[Override" in e.rendered]
    (value,) = [
        str(element["value"])
        for block in answer.blocks
        if block.get("type") == "actions"
        for element in block["elements"]
    ]
    await box.click("override_freeze", value=value, message=card)
    opened = await box.slack.wait_for_call("views.open")
    return str(opened[-1].response["view"]["id"])
