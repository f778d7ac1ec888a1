"""The machine's side of a freeze and `promote: auto`: the freeze is an input of
`gate_evaluated` (the machine reads no clock, no storage), a PASS then holds as a `manual`
stage does, and nothing later promotes the held stage by itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from test_rollout_machine import (
    AUTO_PLAN,
    CANARY,
    HALF,
    PLAN,
    PLAN_TEXT,
    PREFLIGHT,
    Says,
    at,
    canary_observing,
    effects,
    evaluate,
    job,
    relay_verdict,
    snapshot,
    states,
    waiting,
)

from bot.adapters.slack.messages import two_person_text
from bot.domain.controls import CardRef, Control
from bot.domain.freeze import Freeze
from bot.domain.permissions import Asker, Refusal, Refused, refusal
from bot.domain.plan import RolloutPlan, TwoPersonAction
from bot.domain.rollout import (
    Decision,
    StageState,
    gate_evaluated,
    held_by_freeze,
    held_by_freezes,
    promote,
    reconcile,
)
from bot.domain.rollout.events import GatePassed
from bot.plan_file import parse_plan

FREEZE = Freeze(reason="friday change freeze", until=at(600), actor="U9", key="freeze:U9:x")
HELD = [StageState.HOLDING, StageState.PENDING, StageState.PENDING]
PROMOTED = [StageState.PASSED, StageState.APPROVING, StageState.PENDING]


def canary_passed(plan: RolloutPlan, frozen: Freeze | None) -> Decision:
    """The canary's gate PASSes at T0+36m, with `frozen` holding the lane (or nothing)."""
    rollout = evaluate(canary_observing(plan), "relay", "canary")
    return gate_evaluated(
        rollout,
        plan,
        track="relay",
        stage="canary",
        verdict=relay_verdict(),
        now=at(36),
        frozen=frozen,
    )


@pytest.mark.parametrize(
    ("plan", "frozen", "relay", "auto"),
    [
        (AUTO_PLAN, None, PROMOTED, True),
        (AUTO_PLAN, FREEZE, HELD, False),
        (PLAN, None, HELD, False),
        (PLAN, FREEZE, HELD, False),
    ],
    ids=["auto", "auto-frozen", "manual", "manual-frozen"],
)
def test_a_freeze_holds_an_auto_stage_as_a_manual_one_holds(
    plan: RolloutPlan, frozen: Freeze | None, relay: list[StageState], auto: bool
) -> None:
    decision = canary_passed(plan, frozen)
    assert states(decision.rollout, "relay") == relay
    (announce,) = effects(decision)
    told = announce.event  # type: ignore[attr-defined]
    assert isinstance(told, GatePassed)
    assert (told.auto, told.frozen) == (auto, frozen if plan is AUTO_PLAN else None)
    canary = decision.rollout.track("relay").stage("canary")
    assert held_by_freeze(canary, plan.track("relay")) is (plan is AUTO_PLAN and frozen is not None)


def test_an_auto_stage_held_by_a_freeze_says_why_and_stays_held_until_a_person_promotes() -> None:
    decision = canary_passed(AUTO_PLAN, FREEZE)
    assert effects(decision) == [
        Says(
            "5% canary gate PASS",
            "Held, not promoted to *50%* automatically: Deploys are frozen by <@U9> until",
            "friday change freeze",
            "click Promote to go on anyway",
        )
    ]
    assert held_by_freezes(decision.rollout, AUTO_PLAN) == ("5% canary → 50%",)

    # Long after the freeze ended, GitHub waits for 50%: the bot approves nothing by itself.
    half_waits = snapshot(
        job(PREFLIGHT),
        job(CANARY, completed_at=at(5)),
        waiting(HALF),
        waiting_on={"relay-rollout-50"},
    )
    later = reconcile(decision.rollout, AUTO_PLAN, half_waits, at(600) + timedelta(hours=1))
    assert states(later.rollout, "relay") == HELD

    # A person's Promote goes on (it is never judged by the lane).
    promoted = promote(later.rollout, AUTO_PLAN, track="relay", actor="U2")
    assert states(promoted.rollout, "relay")[:2] == [StageState.PASSED, StageState.APPROVING]
    assert held_by_freezes(promoted.rollout, AUTO_PLAN) == ()


@pytest.mark.parametrize("control", [Control.PROMOTE, Control.REEVALUATE])
def test_the_starter_cannot_alone_promote_a_stage_a_freeze_held_by_re_evaluating_it(
    control: Control,
) -> None:
    """Once the freeze ends, a Re-evaluate of the held stage PASSes and promotes it (the plan
    says `promote: auto`): that click is the promotion, so the two-person rule binds it as it
    binds the Promote the thread asks for."""
    raw = yaml.safe_load(PLAN_TEXT.replace("promote: manual", "promote: auto"))
    raw["two_person"] = [TwoPersonAction.PROMOTE.value]
    raw["tracks"]["relay"]["metrics"] = {"source": "static", "baseline_crash_rate": "0.001"}
    raw["tracks"]["relay"]["metrics"]["file"] = "figures.yml"  # read by a Re-evaluate only
    plan = parse_plan(yaml.safe_dump(raw), "two-person auto")
    held = canary_passed(plan, FREEZE).rollout
    card = CardRef(held.id, "relay", "canary", held.version)

    def asked(actor: str) -> Refusal | None:
        asker = Asker(actor=actor, channel_id="C1", approver=True)
        return refusal(control, asker, release_channels=("C1",), rollout=held, plan=plan, card=card)

    refused = asked(held.started_by)
    assert refused is not None and refused.why is Refused.TWO_PERSON
    assert refused.two_person is not None and refused.two_person.stage == "50%"
    if control is Control.REEVALUATE:
        assert "re-evaluate the gate whose PASS promotes Hosted relay to *50%*" in two_person_text(
            refused.two_person
        )
    assert asked("U_SECOND") is None
