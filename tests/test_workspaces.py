"""Requests Slack signed for this app from another workspace (the app installed in a second one,
or a person of another organisation in a Slack Connect channel): each is refused with why where
Slack shows it, changes nothing, and is one log line. Before, the bot never looked at the
team a request named: anyone of a second workspace could start, dispatch and promote."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from figures import passing_sandbox
from sandbox_views import command_body, open_home
from slack_bolt.async_app import AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient
from test_freeze_sandbox import typed_reason
from test_services_removed import BILLING, RELAY, override_form

from handlers.ack_first import CONTEXT_KEY, AckFirst
from handlers.refusals import RefusalLog
from handlers.workspace import ELSEWHERE, TELLING_AT_ONCE, Telling, Workspace, foreign
from sandbox.clock import ManualClock
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET
from sandbox.harness import Sandbox
from sandbox.harness_slack import button
from sandbox.signing import (
    SANDBOX_TEAM_ID,
    block_actions_payload,
    event_callback_body,
    slack_signature_headers,
    view_submission_payload,
)
from sandbox.slack import SlackTestServer

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


async def _dispatch_click(
    box: Sandbox, *, team: str, user_team: str, enterprise: str | None
) -> str:
    """A preflight, and a click on its Dispatch whose payload names `team` (`team.id`, and
    `team.enterprise_id` when `enterprise`), `user_team` (`user.team_id`) and `enterprise`
    (`enterprise.id`), answered with no body as Slack expects; the click's response_url."""
    payload, url = await _click_on_dispatch(
        box, team=team, user_team=user_team, enterprise=enterprise
    )
    assert await _post(box, _form(payload)) == {}
    return url


async def _click_on_dispatch(
    box: Sandbox, *, team: str, user_team: str, enterprise: str | None
) -> tuple[dict[str, Any], str]:
    """A preflight, and the payload of a click on its Dispatch (`_dispatch_click`), not sent;
    its response_url."""
    assert "Preflight" in await box.command("start v1.4.2 --flags-ready")
    await box.wait_for_button("dispatch")
    card = box.card_message()
    found = button(card.blocks, "dispatch")
    assert found is not None
    url = box.slack.new_response_url(
        channel=RELEASE_CHANNEL, user=RELEASE_MANAGER, message_ts=card.ts, kind="actions"
    )
    payload = block_actions_payload(
        user_id=RELEASE_MANAGER,
        channel_id=RELEASE_CHANNEL,
        action_id="dispatch",
        value=str(found["value"]),
        response_url=url,
        message_ts=card.ts,
        message=card.to_json(),
        team_id=team,
        trigger_id=box.slack.new_trigger_id(),
    )
    payload["user"]["team_id"] = user_team
    if enterprise is not None:
        payload["team"]["enterprise_id"] = enterprise
        payload["enterprise"] = {"id": enterprise, "name": "Scriptum"}
    return payload, url


async def test_a_command_from_another_workspace_is_refused_and_starts_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with passing_sandbox(tmp_path) as box:
        _, body = command_body(box.slack, "start v1.4.2 --flags-ready", team_id=ELSEWHERE_TEAM)
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
        url = await _dispatch_click(box, team=team, user_team=user_team, enterprise=enterprise)
        (told,) = box.slack.responses(url)
        assert told.body["text"] == ELSEWHERE and told.body["response_type"] == "ephemeral"
        assert box.github.dispatches == []
        (rollout,) = await box.rollouts()
        assert rollout.run_id is None
        assert len(_refusals(caplog)) == 1


async def test_a_click_from_another_workspace_is_answered_while_its_response_url_post_waits(
    tmp_path: Path,
) -> None:
    """Slack wants a click answered within 3 seconds; a response_url may take longer. The
    refusal is told on the response_url after Slack has its answer: here the sandbox Slack
    holds that post unanswered, and the click is answered all the same. Before, the answer
    waited for the post."""
    async with passing_sandbox(tmp_path) as box:
        payload, url = await _click_on_dispatch(
            box, team=ELSEWHERE_TEAM, user_team=ELSEWHERE_TEAM, enterprise=None
        )
        released = box.slack.hold_responses()
        async with asyncio.timeout(10):  # the bug: no answer while the post is held
            assert await _post(box, _form(payload)) == {}
        await box.slack.wait_for(lambda: box.slack.responses_held == 1, timeout=10)
        assert box.slack.responses(url) == []  # answered; the refusal still on its way
        released.set()
        (told,) = await box.slack.wait_for_response(url)
        assert told.body["text"] == ELSEWHERE and told.body["response_type"] == "ephemeral"
        assert box.github.dispatches == []


async def test_a_flood_of_clicks_from_another_workspace_keeps_few_posts_open(
    tmp_path: Path,
) -> None:
    """Each click is answered at once; the refusals on their way to response_urls are
    `TELLING_AT_ONCE` at most, so a flood holds no more posts open than that (the clicks
    beyond are answered and not told why)."""
    async with passing_sandbox(tmp_path) as box:
        payload, _ = await _click_on_dispatch(
            box, team=ELSEWHERE_TEAM, user_team=ELSEWHERE_TEAM, enterprise=None
        )
        released = box.slack.hold_responses()
        urls = [box.slack.new_response_url(kind="actions") for _ in range(TELLING_AT_ONCE + 3)]
        for url in urls:
            payload["response_url"] = url
            async with asyncio.timeout(10):
                assert await _post(box, _form(payload)) == {}
        await box.slack.wait_for(lambda: box.slack.responses_held == TELLING_AT_ONCE, timeout=10)
        released.set()

        def told() -> list[str]:
            return [url for url in urls if box.slack.responses(url)]

        await box.slack.wait_for(lambda: len(told()) == TELLING_AT_ONCE, timeout=10)
        assert told() == urls[:TELLING_AT_ONCE]  # no post was made for the rest


async def test_a_refusal_post_slack_never_answers_ends_within_its_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The post of a refusal is bounded (`within`); past it, one line names the failure, not
    the response_url (the right to post in the channel). The shutdown's drain waits for it."""
    async with SlackTestServer(bot_token=SLACK_BOT_TOKEN) as slack:
        slack.hold_responses()  # never released
        acks = AckFirst()
        url = slack.new_response_url(kind="actions")
        context = AsyncBoltContext(
            response_url=url,
            client=AsyncWebClient(token=SLACK_BOT_TOKEN, base_url=slack.api_url),
        )
        context[CONTEXT_KEY] = acks
        Telling(RefusalLog(clock=ManualClock(datetime.now(UTC))), within=0.1).tell(context)
        assert acks.work_under_way == 1  # counted from the click's answer on
        assert await acks.idle(within=10)
        assert "a refusal was not told: TimeoutError" in caplog.messages
        assert url not in caplog.text and url.rsplit("/", 1)[1] not in caplog.text


async def test_on_enterprise_grid_a_person_whose_team_is_the_organisation_is_served(
    tmp_path: Path,
) -> None:
    """On Enterprise Grid Slack names the organisation (`E…`) as a person's `user.team_id`:
    that person is of the bot's workspace, and their click acts."""
    async with passing_sandbox(tmp_path) as box:
        box.slack.enterprise_id = ORG  # before the bot's first request: auth.test names it
        await _dispatch_click(box, team=SANDBOX_TEAM_ID, user_team=ORG, enterprise=ORG)
        await box.wait_until(lambda r: r.run_id is not None)


async def test_a_form_submitted_from_another_workspace_turns_into_the_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with passing_sandbox(tmp_path, rollout_services=[RELAY, BILLING]) as box:
        form = await override_form(box, BILLING.name)
        payload = view_submission_payload(
            user_id=RELEASE_MANAGER,
            view=box.slack.views[form],
            values=typed_reason("ship it"),
            team_id=ELSEWHERE_TEAM,
        )
        said = await _post(box, _form(payload))
        assert said["response_action"] == "update"
        assert ELSEWHERE in json.dumps(said["view"])
        billing = box.github.repository_named(BILLING.repository)
        assert billing is not None and billing.dispatches == []
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
