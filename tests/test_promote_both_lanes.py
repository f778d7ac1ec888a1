"""`/rollout promote` with both lanes held, one of them on a hold the command cannot promote
(an INCONCLUSIVE ring, whose Promote button asks to confirm the override): the answer says
what it promoted and what it did not, whichever lane comes first. End to end: signed Slack
requests, PyGithub against the GitHub simulator, one-second windows (SQLite;
tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from figures import running_sandbox
from sandbox_views import dispatched, reviews, stage_state

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
