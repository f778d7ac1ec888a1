"""A repository admin starts a job past its protection rules on github.com ("Start all waiting
jobs") while the bot holds the App's request for it: GitHub deploys the stage without the App's
answer (the job starts, its deployment goes `in_progress`, the callback answers 422 from then
on). The thread says the stage was started by that bypass, not let through by the bot's gate,
and the held request is let go: nothing answers it later (a re-run's request at the same
environment is a request of its own), and no card offers it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbox_views import dispatched, holding
from test_protection_rules import answers, app_box, both_held

from bot.domain.rollout import Phase, StageState

pytestmark = pytest.mark.story

BYPASSED = (
    "*50%* (Hosted relay) was started on GitHub by a repository admin past its protection "
    "rules, not let through by the bot's gate"
)


async def test_an_admin_bypass_of_the_held_stage_is_told_and_its_request_let_go(
    tmp_path: Path, database_url: str
) -> None:
    async with app_box(tmp_path, database_url) as box:
        await dispatched(box)
        rollout = await both_held(box)
        run_id = rollout.run_id or 0
        assert rollout.track("relay").stage("canary").state is StageState.HOLDING

        box.github.engine.bypass(
            run_id, environments=["relay-rollout-50"], comment="hotfix", actor="octo-admin"
        )
        moved = await box.wait_until(
            lambda r: r.track("relay").stage("half").state is not StageState.PENDING
        )

        assert moved.track("relay").stage("canary").state is StageState.PASSED
        assert [line for line in box.thread() if "50%" in line and "GitHub" in line] == [
            line for line in box.thread() if BYPASSED in line
        ]
        assert any(BYPASSED in line for line in box.thread())
        rules = box.services.webhooks.rules
        (half,) = [r for r in await rules.for_run(run_id) if r.environment == "relay-rollout-50"]
        assert half.answer == "gone"  # let go: GitHub no longer waits for the App there
        # The rest of the rollout goes on through the rule; 50% is never answered.
        await both_held(box)  # relay after 50%, desktop after its internal ring
        assert "Promoted" in await box.command("promote")
        await box.wait_until(holding("desktop", "beta"))
        assert "Promoted" in await box.command("promote")
        ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)
        assert ended.run_id == run_id
        assert ("relay-rollout-50", "approved") not in answers(box, "relay")
        assert answers(box, "relay") == [
            ("relay-canary-5", "approved"),
            ("relay-rollout-100", "approved"),
        ]
        assert await rules.open_for_run(run_id) == []
