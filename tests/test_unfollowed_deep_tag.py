"""A run on a release tag the bot cannot follow to its commit (a tag of a tag more than the
adapter's few tag objects deep): before, its card never came, each poll only logging that the
tag was not read, and nobody in Slack knew the run waited. Its card now comes, once, saying the
tag could not be read and how to point it at its commit; it offers Reject only, and the default
rejects it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from test_protection_rules import app_box, box
from test_unfollowed_runs import TAG, first_stages, run_cards

from bot.adapters.slack.actions import RunValue
from sandbox.config import RELEASE_CHANNEL
from sandbox.harness import Sandbox
from sandbox.harness_slack import button

__all__ = ["box"]  # the fixture this module's tests use

pytestmark = pytest.mark.story

UNREAD = f"`{TAG}` is a release tag whose commit the bot could not read"
FIX = f"git tag -f -a {TAG} {TAG}^{{commit}}"


async def test_a_run_on_a_tag_too_deep_gets_one_card_saying_so(box: Sandbox) -> None:
    box.github.push_tag(TAG, annotated=True, levels=5)
    run_id = box.github.create_foreign_run(actor="octocat", branch=TAG)

    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)

    (card,) = run_cards(box)
    assert UNREAD in card.rendered and FIX in card.rendered, card.rendered
    assert ", the default rejects it." in card.rendered, card.rendered
    assert button(card.blocks, "adopt_run") is None
    refused = await box.click("adopt_run", message=card, value=RunValue(run_id=run_id).encode())
    assert refused is not None and "which is a release tag whose commit the bot could" in refused
    for _ in range(2):  # the polls after it post nothing more
        await box.pass_time(timedelta(seconds=60))
    await box.github.settle()
    assert len(run_cards(box)) == 1
    said = [m for m in box.slack.messages(RELEASE_CHANNEL) for m in (m, *m.replies)]
    assert [m.ts for m in said if UNREAD in m.rendered] == [card.ts]


async def test_an_approve_default_rejects_a_run_on_a_tag_too_deep(
    tmp_path: Path, database_url: str
) -> None:
    env = {"UNFOLLOWED_RUN_DEFAULT": "approve"}
    async with app_box(tmp_path, database_url, extra_env=env) as box:
        box.github.push_tag(TAG, annotated=True, levels=5)
        box.github.create_foreign_run(actor="octocat", branch=TAG)
        await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)

        await box.pass_time(timedelta(seconds=1805))

        await box.slack.wait_for(lambda: "by default" in run_cards(box)[0].rendered, timeout=30)
        assert first_stages(box) and all(state == "rejected" for _, state in first_stages(box))
        assert "could not read" in box.github.engine.rule_reviews[0].comment
