"""Requests Slack signed for this app from another workspace (the app installed in a second one,
or a person of another organisation in a Slack Connect channel): each is refused with why where
Slack shows it, changes nothing, and is one log line. Before, the bot never looked at the
team a request named: anyone of a second workspace could start, dispatch and promote."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from figures import passing_sandbox
from sandbox_views import open_home
from test_freeze_sandbox import typed_reason

from handlers.workspace import ELSEWHERE, Workspace, foreign
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER, SLACK_SIGNING_SECRET
from sandbox.harness import Sandbox
from sandbox.harness_slack import button
from sandbox.signing import (
    SANDBOX_TEAM_ID,
    block_actions_payload,
    event_callback_body,
    slack_signature_headers,
    slash_command_body,
    view_submission_payload,
)
from sandbox.slack_records import ChannelMessage

pytestmark = pytest.mark.story

ELSEWHERE_TEAM = "T0ELSEWHERE"
ORG = "E0SCRIPTUM"


async def _post(box: Sandbox, body: str, *, json_body: bool = False) -> dict[str, Any]:
    """POST a body signed as Slack signs it; Slack's answer to it (its JSON, if any)."""
    content_type = "application/json" if json_body else "application/x-www-form-urlencoded"
    headers = slack_signature_headers(SLACK_SIGNING_SECRET, body, content_type=content_type)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{box.url}/slack/events", data=body, headers=headers) as answer,
    ):
        assert answer.status == 200
        text = await answer.text()
    return json.loads(text) if text else {}


def _form(payload: Mapping[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "handlers.workspace"]


async def _frozen_preflight(box: Sandbox) -> tuple[ChannelMessage, str]:
    """A preflight whose Dispatch a freeze refused: its card, and the value of *Override
    freeze…*."""
    assert "Preflight" in await box.command("start v1.4.2 --flags-ready")
    await box.wait_for_button("dispatch")
    card = box.card_message()
    await box.command("freeze 2h INC-123 investigation")
    assert "INC-123" in (await box.click("dispatch", message=card) or "")
    (answer,) = [e for e in box.slack.ephemerals(user=RELEASE_MANAGER) if "[Override" in e.rendered]
    (value,) = [
        str(element["value"])
        for block in answer.blocks
        if block.get("type") == "actions"
        for element in block["elements"]
    ]
    return card, value


async def test_a_command_from_another_workspace_is_refused_and_starts_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with passing_sandbox(tmp_path) as box:
        url = box.slack.new_response_url(channel=RELEASE_CHANNEL, user=RELEASE_MANAGER)
        body = slash_command_body(
            text="start v1.4.2 --flags-ready",
            user_id=RELEASE_MANAGER,
            channel_id=RELEASE_CHANNEL,
            response_url=url,
            team_id=ELSEWHERE_TEAM,
        )
        answer = await _post(box, body)
        assert answer == {"response_type": "ephemeral", "text": ELSEWHERE}
        assert await box.rollouts() == []
        assert [c.method for c in box.slack.calls] == ["auth.test"]  # Bolt's, once
        (line,) = _refusals(caplog)
        assert "/rollout refused: it names team T0ELSEWHERE, not this bot's workspace" in line
        # The control: the same command from the bot's own workspace starts the rollout.
        assert "Preflight" in await box.command("start v1.4.2 --flags-ready")


@pytest.mark.parametrize(
    ("team", "user_team", "enterprise"),
    [
        (ELSEWHERE_TEAM, ELSEWHERE_TEAM, None),  # the app installed in a second workspace
        (SANDBOX_TEAM_ID, ELSEWHERE_TEAM, None),  # a person of another organisation
        (SANDBOX_TEAM_ID, SANDBOX_TEAM_ID, "E0ELSEWHERE"),  # another Enterprise Grid org
    ],
    ids=["team", "user's team", "enterprise"],
)
async def test_a_click_from_another_workspace_is_told_so_and_dispatches_nothing(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    team: str,
    user_team: str,
    enterprise: str | None,
) -> None:
    async with passing_sandbox(tmp_path) as box:
        assert "Preflight" in await box.command("start v1.4.2 --flags-ready")
        await box.wait_for_button("dispatch")
        card = box.card_message()
        url = box.slack.new_response_url(
            channel=RELEASE_CHANNEL, user=RELEASE_MANAGER, message_ts=card.ts, kind="actions"
        )
        payload = block_actions_payload(
            user_id=RELEASE_MANAGER,
            channel_id=RELEASE_CHANNEL,
            action_id="dispatch",
            value=_value(card.blocks),
            response_url=url,
            message_ts=card.ts,
            message=card.to_json(),
            team_id=team,
            trigger_id=box.slack.new_trigger_id(),
        )
        payload["user"]["team_id"] = user_team
        payload["enterprise"] = {"id": enterprise, "name": "Elsewhere"} if enterprise else None
        assert await _post(box, _form(payload)) == {}
        (told,) = box.slack.responses(url)
        assert told.body["text"] == ELSEWHERE and told.body["response_type"] == "ephemeral"
        assert box.github.dispatches == []
        (rollout,) = await box.rollouts()
        assert rollout.run_id is None
        assert len(_refusals(caplog)) == 1


async def test_on_enterprise_grid_a_person_whose_team_is_the_organisation_is_served(
    tmp_path: Path,
) -> None:
    """On Enterprise Grid Slack names the organisation (`E…`) as a person's `user.team_id`:
    that person is of the bot's workspace, and their click acts."""
    async with passing_sandbox(tmp_path) as box:
        box.slack.enterprise_id = ORG  # before the bot's first request: auth.test names it
        assert "Preflight" in await box.command("start v1.4.2 --flags-ready")
        await box.wait_for_button("dispatch")
        card = box.card_message()
        url = box.slack.new_response_url(
            channel=RELEASE_CHANNEL, user=RELEASE_MANAGER, message_ts=card.ts, kind="actions"
        )
        payload = block_actions_payload(
            user_id=RELEASE_MANAGER,
            channel_id=RELEASE_CHANNEL,
            action_id="dispatch",
            value=_value(card.blocks),
            response_url=url,
            message_ts=card.ts,
            message=card.to_json(),
            trigger_id=box.slack.new_trigger_id(),
        )
        payload["user"]["team_id"] = ORG
        payload["team"]["enterprise_id"] = ORG
        payload["enterprise"] = {"id": ORG, "name": "Scriptum"}
        await _post(box, _form(payload))
        await box.wait_until(lambda r: r.run_id is not None)


async def test_a_form_submitted_from_another_workspace_turns_into_the_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with passing_sandbox(tmp_path) as box:
        card, value = await _frozen_preflight(box)
        await box.click("override_freeze", value=value, message=card)
        (opened,) = await box.slack.wait_for_call("views.open")
        payload = view_submission_payload(
            user_id=RELEASE_MANAGER,
            view=box.slack.views[str(opened.response["view"]["id"])],
            values=typed_reason("ship it"),
            team_id=ELSEWHERE_TEAM,
        )
        said = await _post(box, _form(payload))
        assert said["response_action"] == "update"
        assert ELSEWHERE in json.dumps(said["view"])
        assert box.github.dispatches == []
        assert len(_refusals(caplog)) == 1


async def test_the_app_home_is_not_drawn_for_another_workspace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with passing_sandbox(tmp_path) as box:
        outsider = "U0OUTSIDER"
        body = event_callback_body(
            event={"type": "app_home_opened", "user": outsider, "tab": "home"},
            team_id=ELSEWHERE_TEAM,
        )
        assert await _post(box, body, json_body=True) == {}
        assert len(_refusals(caplog)) == 1
        await open_home(box, RELEASE_MANAGER)  # the bot's own people still see theirs
        assert outsider not in box.slack.home_tabs


@pytest.mark.parametrize(
    ("request_body", "refused"),
    [
        ({"team_id": "T0OWN"}, None),
        ({"team_id": "T0OWN", "enterprise_id": "E0ORG"}, None),
        ({"team": {"id": "T0OWN", "enterprise_id": "E0ORG"}, "user": {"team_id": "E0ORG"}}, None),
        ({"team": {"id": "T0OWN"}, "user": {"team_id": "T0OWN"}, "enterprise": None}, None),
        ({}, "no team"),
        ({"team": None, "user": {"team_id": "T0OWN"}}, "no team"),
        ({"team_id": "T0OTHER", "enterprise_id": "E0ORG"}, "team T0OTHER"),
        ({"team": {"id": "T0OWN"}, "user": {"team_id": "E0OTHER"}}, "user's team E0OTHER"),
        ({"team": {"id": "T0OWN"}, "enterprise": {"id": "E0OTHER"}}, "enterprise E0OTHER"),
        ({"team_id": "T0OWN", "enterprise_id": "E0OTHER"}, "enterprise E0OTHER"),
    ],
)
def test_what_names_another_workspace_on_enterprise_grid(
    request_body: dict[str, Any], refused: str | None
) -> None:
    assert foreign(request_body, Workspace("T0OWN", "E0ORG")) == refused


def test_outside_enterprise_grid_a_request_naming_an_organisation_is_foreign() -> None:
    assert foreign({"team_id": "T0OWN", "enterprise_id": "E0ORG"}, Workspace("T0OWN")) == (
        "enterprise E0ORG"
    )


def _value(blocks: list[dict[str, Any]]) -> str:
    found = button(blocks, "dispatch")
    assert found is not None
    return str(found["value"])
