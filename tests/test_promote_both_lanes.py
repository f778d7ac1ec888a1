"""`/rollout promote` with both lanes held, one of them on a hold the command cannot promote
(an INCONCLUSIVE ring, whose Promote button asks to confirm the override): the answer says
what it promoted and what it did not, whichever lane comes first. End to end: signed Slack
requests, PyGithub against the GitHub simulator, one-second windows (SQLite;
tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from figures import running_sandbox
from sandbox_views import dispatched, reviews, stage_state
from sqlalchemy.exc import OperationalError

from bot.domain.gate import Verdict
from bot.domain.rollout import StageState

pytestmark = pytest.mark.story

NO_RING_FIGURES = {"beta": {"crash_rate": "0.001"}}
"""Figures for the beta ring only: the internal ring's gate has no data, INCONCLUSIVE."""


async def test_a_promote_of_both_lanes_says_which_it_promoted_and_which_it_could_not(
    tmp_path: Path, database_url: str
) -> None:
    async with running_sandbox(tmp_path, database_url, desktop=NO_RING_FIGURES) as box:
        await dispatched(box)
        held = await box.wait_until(
            lambda r: (
                stage_state(r, "relay", "canary") is StageState.HOLDING
                and stage_state(r, "desktop", "internal") is StageState.HOLDING
            )
        )
        verdict = held.track("desktop").stage("internal").verdict
        assert verdict is not None and verdict.verdict is Verdict.INCONCLUSIVE

        answer = await box.command("promote")
        # The relay's hold was promoted: the answer says so, and names the ring it left held.
        assert "Promoted Hosted relay to 50%" in answer, answer
        assert "Desktop app and CLI" in answer and "INCONCLUSIVE" in answer
        assert "Promote button" in answer
        moved = await box.rollout()
        assert stage_state(moved, "relay", "canary") is StageState.PASSED
        assert stage_state(moved, "desktop", "internal") is StageState.HOLDING
        assert ("desktop-beta", "approved") not in reviews(box, "desktop")


async def test_a_lane_promoted_whose_next_step_failed_is_told_promoted_not_refused(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/rollout promote` with both lanes held: the relay's promotion saved, then a step after
    its save failed (a database blip): the answer says the relay was promoted and what is
    still owed, never "Not promoted" for it; the ring it could not promote, it names."""
    async with running_sandbox(tmp_path, database_url, desktop=NO_RING_FIGURES) as box:
        await dispatched(box)
        await box.wait_until(
            lambda r: (
                stage_state(r, "relay", "canary") is StageState.HOLDING
                and stage_state(r, "desktop", "internal") is StageState.HOLDING
            )
        )
        effects = box.services.rollouts.effects
        apply, carry_out = effects.apply, effects._carry_out

        async def lost_after_the_promotion(*args: Any, **kwargs: Any) -> Any:
            if any(event.action == "promote" for event in kwargs.get("audit", ())):
                monkeypatch.setattr(effects, "apply", apply)

                async def lost(*_: Any) -> None:
                    monkeypatch.setattr(effects, "_carry_out", carry_out)
                    raise OperationalError("INSERT INTO timers", {}, ConnectionResetError())

                monkeypatch.setattr(effects, "_carry_out", lost)
            return await apply(*args, **kwargs)

        monkeypatch.setattr(effects, "apply", lost_after_the_promotion)
        answer = await box.command("promote")

        assert "Promoted Hosted relay to 50%" in answer, answer
        assert "Not promoted: Hosted relay" not in answer, answer
        assert "next look" in answer and "INCONCLUSIVE" in answer, answer
        assert stage_state(await box.rollout(), "relay", "canary") is StageState.PASSED
