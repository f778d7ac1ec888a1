"""Cards carry what they were drawn for (the hold a Promote confirms), authorisation happens
once (in the controls), and the App Home shows rollouts only to the people `/rollout status`
answers. Pure rules first, then signed requests against the real app and the simulators.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from figures import HALF_OK, RELAY_OK, RINGS_OK
from sandbox_views import audit_results, dispatched, open_home, value_of
from test_controls import (
    held_at,
    held_without_canary_figures,
    plan_with,
    sandbox_for,
    stage_state,
)

from bot.adapters.slack.actions import ButtonValue
from bot.domain.controls import CardRef, Control, Hold, card_applies, hold_of
from bot.domain.gate import GateKind, GateVerdict, Verdict
from bot.domain.rollout import Rollout, StageState
from handlers.home import NOT_SHOWN
from sandbox.config import BYSTANDER, RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox, write_figures

pytestmark = pytest.mark.story


def _verdict(verdict: Verdict) -> GateVerdict:
    return GateVerdict(
        gate=GateKind.RELAY,
        verdict=verdict,
        reason=None,
        current_crash=Decimal("0.001"),
        baseline_crash=Decimal("0.001"),
        crash_multiplier=Decimal(2),
        crash_limit=Decimal("0.002"),
    )


def held_on(verdict: Verdict) -> Rollout:
    """A running rollout whose relay canary holds on `verdict`."""
    rollout = held_at(plan_with(), "canary")
    relay = rollout.track("relay")
    canary = replace(relay.stage("canary"), verdict=_verdict(verdict))
    return replace(rollout.with_track(relay.with_stage(canary)), version=7)


@pytest.mark.parametrize(
    ("shown", "now", "applies"),
    [
        (Hold.PASS, Verdict.PASS, True),
        (Hold.INCONCLUSIVE, Verdict.INCONCLUSIVE, True),
        (Hold.PASS, Verdict.INCONCLUSIVE, False),  # re-evaluated since: the override's dialog
        (Hold.INCONCLUSIVE, Verdict.PASS, False),
        (None, Verdict.INCONCLUSIVE, True),  # a command: the machine refuses without override
    ],
)
def test_a_promote_applies_only_to_the_hold_its_card_was_drawn_for(
    shown: Hold | None, now: Verdict, applies: bool
) -> None:
    rollout = held_on(now)
    card = CardRef(rollout.id, "relay", "canary", rollout.version, shown)
    assert card_applies(Control.PROMOTE, rollout, plan_with(), card) is applies


def test_the_hold_of_a_stage_is_inconclusive_only_on_an_inconclusive_verdict() -> None:
    assert (
        hold_of(held_on(Verdict.INCONCLUSIVE).track("relay").stage("canary")) is Hold.INCONCLUSIVE
    )
    assert hold_of(held_on(Verdict.PASS).track("relay").stage("canary")) is Hold.PASS


@pytest.fixture
async def box(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with sandbox_for(tmp_path, database_url) as sandbox:
        write_figures(sandbox.figures, "desktop", RINGS_OK)
        yield sandbox


async def test_a_pass_card_clicked_after_reevaluate_found_inconclusive_changes_nothing(
    box: Sandbox,
) -> None:
    write_figures(box.figures, "relay", RELAY_OK)
    await dispatched(box)
    await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.HOLDING)
    pass_card = await value_of(box, "promote", "relay")
    assert ButtonValue.decode(pass_card).hold is Hold.PASS

    # Re-evaluate with no canary figures: INCONCLUSIVE, one extension, then a hold on it.
    write_figures(box.figures, "relay", {"half": HALF_OK})
    await box.click("reevaluate", value=await value_of(box, "reevaluate", "relay"))
    held = await box.wait_until(
        lambda r: (
            stage_state(r, "relay", "canary") is StageState.HOLDING
            and (verdict := r.track("relay").stage("canary").verdict) is not None
            and verdict.verdict is Verdict.INCONCLUSIVE
        )
    )
    reviews = len(box.github.reviews)

    answer = await box.click("promote", value=pass_card)

    assert answer is not None and "This card is out of date" in answer
    assert "5% canary" in answer  # where the rollout stands now
    assert len(box.github.reviews) == reviews
    assert stage_state(await box.rollout(), "relay", "half") is StageState.PENDING
    assert await audit_results(box, held.id, "click:promote", 1) == ["stale"]

    # The card drawn for the INCONCLUSIVE hold (its button asks to confirm) promotes.
    inconclusive_card = await value_of(box, "promote", "relay")
    assert ButtonValue.decode(inconclusive_card).hold is Hold.INCONCLUSIVE
    assert await box.click("promote", value=inconclusive_card) is None
    await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.PASSED)
    assert any("relay-rollout-50" in r.environments for r in box.github.reviews)


async def test_the_promote_command_does_not_override_an_inconclusive_hold(box: Sandbox) -> None:
    await held_without_canary_figures(box)
    answer = await box.command("promote")
    assert "INCONCLUSIVE" in answer and "Promote button" in answer
    assert not any("relay-rollout-50" in r.environments for r in box.github.reviews)


async def test_the_rollout_service_acts_for_whoever_the_controls_admitted(box: Sandbox) -> None:
    """Authorisation happens once, in the controls: the service itself (used by the demo and
    by the controls) does not ask again, so it does not refuse or audit a second time."""
    write_figures(box.figures, "relay", RELAY_OK)
    started = await box.services.rollouts.start(
        tag="v1.4.2", flags_ready=True, channel_id=RELEASE_CHANNEL, actor=BYSTANDER
    )
    await box.services.rollouts.cancel(rollout_id=started.id, actor=BYSTANDER)
    events = await box.audit.list_for_rollout(started.id)
    assert [(e.action, e.result) for e in events] == [("start", "ok"), ("cancel", "ok")]


async def test_the_app_home_shows_rollouts_only_to_approvers_and_release_channel_members(
    box: Sandbox,
) -> None:
    write_figures(box.figures, "relay", RELAY_OK)
    member = "U0MEMBER01"
    box.slack.channel_members[RELEASE_CHANNEL] = [RELEASE_MANAGER, member]
    await box.command("start v1.4.2 --flags-ready")

    for user in (RELEASE_MANAGER, member):
        shown = await open_home(box, user)
        assert "v1.4.2" in shown and NOT_SHOWN not in shown, user
    outsider = await open_home(box, BYSTANDER)
    assert "v1.4.2" not in outsider
    assert "members of the release channels" in outsider and "npm-token" in outsider
