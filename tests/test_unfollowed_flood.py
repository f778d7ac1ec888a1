"""A flood of protection rule requests for runs no rollout follows (runs started on GitHub):
their follow-ups are coalesced like a rollout's webhook deliveries, one in flight, the others
waiting for its next turn, not one task each; none of them is lost (each run gets its card)."""

from __future__ import annotations

import pytest
from test_protection_rules import box
from test_unfollowed_runs import run_cards

from sandbox.config import REPOSITORY
from sandbox.harness import Sandbox

__all__ = ["box"]  # the fixture this module's tests use

pytestmark = pytest.mark.story

RUNS = 6


async def test_a_flood_of_requests_for_unfollowed_runs_holds_one_follow_up(box: Sandbox) -> None:
    webhooks = box.services.webhooks
    answered = box.github.hold("GET", f"/repos/{REPOSITORY}/actions/runs/*")
    try:
        for _ in range(RUNS):
            box.github.create_foreign_run(actor="octocat")
        await box.github.settle()
        kept = [d for d in box.github.app_hook.deliveries if d.result == "kept"]
        assert len(kept) >= RUNS, [d.result for d in box.github.app_hook.deliveries]
        assert len(webhooks._tasks) == 1, len(webhooks._tasks)
    finally:
        answered.set()
    await webhooks.settled()
    await box.slack.wait_for(lambda: len(run_cards(box)) == RUNS, timeout=30)
