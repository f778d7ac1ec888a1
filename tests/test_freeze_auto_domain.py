"""The machine's side of a freeze and `promote: auto`: the freeze is an input of
`gate_evaluated` (the machine reads no clock, no storage), a PASS then holds as a `manual`
stage does, and nothing later promotes the held stage by itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_rollout_machine import (
    AUTO_PLAN,
    CANARY,
    HALF,
    PLAN,
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

from bot.domain.freeze import Freeze
from bot.domain.plan import RolloutPlan
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
