"""Acknowledge first in the running app: under a burst, a button that opens a form opens it
within the 3 seconds of its trigger_id, and on the way out the work already acknowledged
runs to its end before the Slack session and the database engine close."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from figures import passing_sandbox
from sandbox_views import dispatched, stage_state, value_of

from bot.domain.rollout import StageState
from sandbox.harness import Sandbox, fast_plan
from sandbox.slack_views import TRIGGER_LIFETIME

pytestmark = pytest.mark.story


async def test_a_form_opens_at_once_while_a_burst_is_being_acknowledged(
    tmp_path: Path, database_url: str
) -> None:
    plan = fast_plan(tmp_path / "figures.yml", window="1h")
    async with passing_sandbox(tmp_path, database_url=database_url, plan_yaml=plan) as box:
        await dispatched(box)
        await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.OBSERVING)
        value = await value_of(box, "extend_custom", "relay")
        acks = box.acks
        # The clicks' work waits 4 s at most for the burst's acks here, and the sandbox's
        # trigger_ids age so that their 3 s are those 4 s: a form opener that waited would call
        # views.open with an expired trigger_id; one that does not has 4 s to open its form.
        acks.patience = 4.0
        speed = TRIGGER_LIFETIME / acks.patience
        box.slack.trigger_clock = lambda: time.monotonic() * speed
        with acks.acknowledging():  # a request of the burst, not answered yet
            await box.click("extend_custom", value=value, wait=False)
            (opened,) = await box.slack.wait_for_call("views.open", timeout=10)
        assert opened.ok, opened.response


@pytest.mark.database_matters
async def test_work_acknowledged_before_a_stop_still_answers(
    tmp_path: Path, database_url: str
) -> None:
    async with Sandbox(workdir=tmp_path, database_url=database_url) as box:
        acks = box.acks
        with acks.acknowledging():  # the work waits (a second at most) behind a burst's ack
            url = await box.send_command("status")
            assert acks.work_under_way == 1
            await box.stop_bot()  # as on SIGTERM: stop serving, clean up
        (answer,) = box.slack.responses(url)
        assert answer.body.get("response_type") == "ephemeral"


async def test_an_answer_whose_connection_dropped_after_it_was_posted_is_not_posted_again(
    tmp_path: Path, database_url: str
) -> None:
    async with Sandbox(workdir=tmp_path, database_url=database_url) as box:
        box.slack.lose_next_answer("response_url")
        url = await box.send_command("status")
        # The person gets the answer once on the response_url (and, as the bot cannot tell
        # it arrived, once more with chat.postEphemeral), never twice on the response_url,
        # whose 5 uses `ResponseUrlUses` counts one by one.
        await box.slack.wait_for_call("chat.postEphemeral", timeout=10)
        assert len(box.slack.responses(url)) == 1
