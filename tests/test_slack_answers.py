"""What the bot says when Slack's Web API does not take what it posts, as Slack's documented
errors have it (https://docs.slack.dev/reference/methods/chat.postMessage: `not_in_channel`,
`channel_not_found`, `is_archived`; a 429 `ratelimited` with Retry-After). Signed requests
against the real app, the Slack double answering as Slack does.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from figures import passing_sandbox
from sandbox_views import dispatched, stage_state, value_of
from test_bad_input import box

from bot.domain.rollout import StageState
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox, fast_plan
from sandbox.signing import slash_command_body
from sandbox.slack_views import TRIGGER_LIFETIME

pytestmark = pytest.mark.story
__all__ = ["box"]  # the fixture this module's tests use (test_bad_input's)


@pytest.mark.parametrize("error", ["not_in_channel", "is_archived", "channel_not_found"])
async def test_a_start_whose_card_slack_refused_does_not_say_the_card_was_posted(
    box: Sandbox, error: str
) -> None:
    """The release channel is configured, but the bot was never invited (or the channel was
    archived): Slack refuses the card, and the starter is told so, not "posted"."""
    box.slack.fail_next("chat.postMessage", error=error)

    answer = await box.command("start v1.4.2 --flags-ready")

    assert box.slack.messages(RELEASE_CHANNEL) == []
    assert "posted" not in answer, answer
    assert "its card is not in this channel" in answer and "/invite" in answer, answer
    rollout = await box.wait_until(lambda r: r.tag == "v1.4.2")
    assert rollout.id in answer

    # Invited, the starter types the start again: the rollout's card is posted, once, and
    # the preflight goes on from it (no second rollout).
    again = await box.command("start v1.4.2")
    assert "already rolling out" in again, again
    (posted,) = box.slack.messages(RELEASE_CHANNEL)
    card = f"https://slack.com/archives/{RELEASE_CHANNEL}/p{posted.ts.replace('.', '')}"
    assert f"<{card}|{rollout.id}>" in again, again  # a link to the card it posted
    assert await box.click("dispatch", message=posted) is None
    dispatched = await box.wait_until(lambda r: r.run_id is not None)
    assert dispatched.id == rollout.id


async def test_a_start_whose_card_slack_took_says_it_was_posted(box: Sandbox) -> None:
    answer = await box.command("start v1.4.2")
    assert "Preflight of `v1.4.2` posted" in answer
    assert len(box.slack.messages(RELEASE_CHANNEL)) == 1


async def test_a_form_whose_trigger_id_slack_says_expired_is_answered_with_what_to_do(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack takes a trigger_id for 3 seconds after the click (views.open answers
    `expired_trigger_id` after that): the person is told to click again, not "Something went
    wrong" with an error logged as a bug."""
    plan = fast_plan(tmp_path / "figures.yml", window="1h")
    async with passing_sandbox(tmp_path, database_url=database_url, plan_yaml=plan) as box:
        await dispatched(box)
        await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.OBSERVING)
        value = await value_of(box, "extend_custom", "relay")
        url, body = box.click_body("extend_custom", value=value)  # the trigger_id issued now
        box.slack.trigger_clock = lambda: time.monotonic() + 2 * TRIGGER_LIFETIME  # then late
        assert await box.post_signed(body) == 200

        (opened,) = await box.slack.wait_for_call("views.open")
        assert opened.response["error"] == "expired_trigger_id"
        (answer,) = await box.slack.wait_for_response(url)
        shown = json.dumps(answer.body)
        assert "Something went wrong" not in shown, shown
        assert "again" in shown, shown
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_deleted_card_is_posted_again_and_its_thread_goes_on_under_it(
    box: Sandbox,
) -> None:
    """Someone deletes the rollout's card: chat.update answers `message_not_found` and every
    reply to its thread `thread_not_found`. The card is posted again and what the thread must
    say (the gate's verdict) is said under it, not dead-lettered."""
    await dispatched(box)
    first = await box.wait_until(
        lambda r: stage_state(r, "relay", "canary") is StageState.OBSERVING
    )
    assert first.message_ts is not None
    box.slack.delete_message(RELEASE_CHANNEL, first.message_ts)

    held = await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.HOLDING)
    await box.slack.wait_for(lambda: len(box.slack.messages(RELEASE_CHANNEL)) == 1, timeout=30)
    (card,) = box.slack.messages(RELEASE_CHANNEL)
    assert card.ts != first.message_ts
    await box.slack.wait_for(
        lambda: any("gate PASS" in reply.rendered for reply in card.replies), timeout=30
    )
    assert (await box.rollout()).message_ts == card.ts
    assert '"action_id": "rollback"' in json.dumps(card.blocks), "the new card has its buttons"
    assert held.id == first.id


async def test_an_answer_for_the_channel_whose_response_url_slack_refused_is_posted(
    box: Sandbox,
) -> None:
    """`/rollout freeze` is said in the channel, for everyone, through the command's
    response_url. When Slack refuses that URL (404 `expired_url`: it is good for 5 posts
    within 30 minutes) the freeze is still said in the channel, with chat.postMessage."""
    expired = f"{box.slack.base_url}/commands/{box.slack.team_id}/1/expired"
    body = slash_command_body(
        text="freeze 2h INC-123 investigation",
        user_id=RELEASE_MANAGER,
        channel_id=RELEASE_CHANNEL,
        response_url=expired,
    )
    assert await box.post_signed(body) == 200

    await box.slack.wait_for(lambda: bool(box.slack.messages(RELEASE_CHANNEL)), timeout=10)
    (said,) = box.slack.messages(RELEASE_CHANNEL)
    assert "INC-123 investigation" in said.rendered, said.rendered


async def test_an_answer_for_the_channel_that_slack_may_have_posted_is_not_posted_again(
    box: Sandbox,
) -> None:
    """A response_url answered 5xx may have posted the freeze all the same: said twice to
    everyone is worse than one answer lost, so it is not posted again with chat.postMessage."""
    box.slack.fail_next_response(502)

    await box.command("freeze 2h INC-123 investigation")

    assert await box.acks.idle(within=10)  # every answer was sent
    (said,) = box.slack.messages(RELEASE_CHANNEL)
    assert "INC-123 investigation" in said.rendered, said.rendered


@pytest.mark.parametrize("error", ["invalid_auth", "account_inactive", "token_revoked"])
async def test_a_card_refused_for_the_bots_credentials_is_posted_once_they_work_again(
    box: Sandbox, error: str
) -> None:
    """Slack refuses the bot's token for a while (a token being rotated, an IP allow-list
    being fixed): what the channel must be told waits and is retried, not dead-lettered at
    the first refusal."""
    box.slack.fail_next("chat.postMessage", error=error)

    await box.command("start v1.4.2 --flags-ready")

    await box.slack.wait_for(lambda: len(box.slack.messages(RELEASE_CHANNEL)) == 1, timeout=20)
    posted = await box.wait_until(lambda r: r.message_ts is not None)  # recorded after the post
    assert posted.message_ts == box.slack.messages(RELEASE_CHANNEL)[0].ts
