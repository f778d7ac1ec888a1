"""Review of issue 12 (Adopt/Reject of runs the bot did not start): defects, each shown by a
test that fails on main. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_protection_rules import app_box
from test_unfollowed_runs import TAG, run_cards

from sandbox.harness import Sandbox


@pytest.fixture
async def box(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with app_box(tmp_path, database_url) as sandbox:
        yield sandbox


async def test_review12_defect_adopt_rolls_out_the_runs_ref_not_the_image_its_inputs_deploy(
    box: Sandbox,
) -> None:
    """A run dispatched on github.com on the tag `v2.0.0` deploys the image its inputs name
    (`relay_image_tag`), which GitHub does not show: the card offers to follow it "as a
    rollout of `v2.0.0`", and Adopt creates a rollout of `v2.0.0` (its preflight checks and
    contents of `v2.0.0`) while the run deploys `v1.9.0`. The same holds for the default
    inputs of `started_on_github` (`v0.0.0`)."""
    box.github.refs.add(TAG)
    inputs = box.github.engine.workflows[0].default_inputs() | {"relay_image_tag": "v1.9.0"}
    run_id = box.github.create_foreign_run(actor="octocat", branch=TAG, inputs=inputs)
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    (card,) = run_cards(box)
    assert f"as a rollout of `{TAG}`" in card.rendered

    said = await box.click("adopt_run", message=card)

    deployed = box.github.run(run_id).inputs["relay_image_tag"]
    if said is None:  # adopted (a refusal would be right: the bot cannot read the inputs)
        (rollout,) = await box.services.rollouts.active()
        assert rollout.run_id == run_id
        assert rollout.tag == deployed, (
            f"adopted as a rollout of {rollout.tag} while run {run_id} deploys {deployed}"
        )
