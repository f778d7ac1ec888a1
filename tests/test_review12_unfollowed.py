"""Review of issue 12 (Adopt/Reject of runs the bot did not start): defects, each shown by a
test that fails on main. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from test_protection_rules import app_box
from test_unfollowed_runs import TAG, run_cards, started_on_github

from sandbox.harness import Sandbox
from sandbox.idle import bots_database
from storage.protection_rules import ProtectionRuleStore


@pytest.fixture
async def box(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with app_box(tmp_path, database_url) as sandbox:
        yield sandbox


async def test_review12_defect_card_offers_answers_refused_after_a_default_that_answered_nothing(
    box: Sandbox,
) -> None:
    """The default found nothing waiting and answered nothing, but it took the run's one answer
    (`answer_run:run-<id>`) and left the card as it was: the card still says the default will
    answer and offers Adopt and Reject, and each is refused "Already done by the bot's schedule"
    while the run waits at its next stage with nobody told."""
    run_id, _ = await started_on_github(box)
    rules = ProtectionRuleStore(bots_database(box).sessions)
    for request in await rules.open_for_run(run_id):
        await rules.close(
            run_id=run_id, environment=request.environment, answer="gone", at=box.clock()
        )
    await box.pass_time(timedelta(seconds=1805))
    box.github.engine.review_rule(
        run_id, environment="relay-canary-5", state="approved", comment="", actor="octocat"
    )
    await box.github.settle()
    await box.services.webhooks.settled()
    await box.pass_time(timedelta(seconds=1))
    assert "relay-rollout-50" in [r.environment for r in await rules.open_for_run(run_id)]

    (card,) = run_cards(box)
    said = await box.click("reject_run", message=card)

    assert said is None, f"the card offers Reject, and Reject was refused: {said!r}"


async def test_review12_defect_a_card_github_failed_to_tell_twice_is_never_posted(
    box: Sandbox,
) -> None:
    """`UnfollowedRuns.sweep` marks a run swept before `kept` succeeds: when GitHub fails to
    tell the run on the sweep too (its two requests' webhooks failed first), no later poll of
    this process tries again, and the run waits with no card and no default."""
    box.github.refs.add(TAG)
    run_id = box.github.create_foreign_run(actor="octocat", branch=TAG)
    box.github.fail_next("GET", f"/repos/*/actions/runs/{run_id}", 404, times=3)
    await box.github.settle()
    await box.services.webhooks.settled()
    for _ in range(5):
        await box.pass_time(timedelta(seconds=60))

    reads = [
        r.status
        for r in box.github.requests
        if r.method == "GET" and r.path.endswith(f"/actions/runs/{run_id}")
    ]
    assert reads[:3] == [404, 404, 404]  # the webhooks' two reads and the first sweep's
    assert run_cards(box), "no card, and no default answer scheduled, after five polls"


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
