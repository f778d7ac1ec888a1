"""Requests Slack's documentation allows that the bot has no use for are acknowledged (200, or
the Socket Mode envelope's ack), never refused: Slack retries an event answered other than 2xx
and limits or disables the app's event subscriptions (the App Home's included) when more than
5% of deliveries in an hour are not answered 200 OK
(https://docs.slack.dev/reference/events/app_rate_limited/); an interaction answered 4xx shows
the person an error on the button or form.

Each request is signed and sent through the real app: over HTTP (`POST /slack/events`) and
over Socket Mode.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_app import app_of, client, settings  # noqa: F401 - fixtures
from test_bad_input import tracebacks

from bot.config import Settings
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER, SLACK_SIGNING_SECRET
from sandbox.signing import (
    SANDBOX_APP_ID,
    SANDBOX_TEAM_ID,
    block_actions_payload,
    event_callback_body,
    slack_signature_headers,
)
from sandbox.slack import SlackTestServer

TEAM = {"id": SANDBOX_TEAM_ID, "domain": "sandbox"}
USER = {"id": RELEASE_MANAGER, "username": "relmgr", "team_id": SANDBOX_TEAM_ID}

# Events Slack may deliver to the Request URL that the bot does not listen to (it subscribes to
# `app_home_opened` only), shaped as in Slack's event reference: some carry `user` or
# `channel` as an object, not an id.
EVENTS: dict[str, dict[str, Any]] = {
    "message.im": {
        "type": "message",
        "channel": "D0DIRECT01",
        "user": RELEASE_MANAGER,
        "text": "hello " * 1000,  # messages run to 40,000 characters
        "ts": "1700000000.000100",
        "channel_type": "im",
    },
    "team_join": {"type": "team_join", "user": {"id": "U0NEWCOMER", "name": "newcomer"}},
    "channel_created": {
        "type": "channel_created",
        "channel": {"id": "C0NEWCHAN1", "name": "fun", "created": 1700000000, "creator": "U1"},
    },
    "tokens_revoked": {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["U0ROLLBOT"]}},
    "app_uninstalled": {"type": "app_uninstalled"},
}

# Interactions of the types the bot never asks for (no shortcut, no notify_on_close, no
# external select in its manifest or views), and clicks and submissions of ids it does not
# know (a card or form of an older version), as in Slack's interaction payload reference.
INTERACTIONS: dict[str, dict[str, Any]] = {
    "view_closed": {
        "type": "view_closed",
        "team": TEAM,
        "user": USER,
        "api_app_id": SANDBOX_APP_ID,
        "view": {"id": "V0CLOSED01", "type": "modal", "callback_id": "figures"},
        "is_cleared": False,
    },
    "shortcut": {
        "type": "shortcut",
        "team": TEAM,
        "user": USER,
        "callback_id": "something_else",
        "trigger_id": "944799105734.773906753841.38b5894552bdd4a780554ee59d1f3638",
    },
    "message_action": {
        "type": "message_action",
        "team": TEAM,
        "user": USER,
        "callback_id": "something_else",
        "trigger_id": "944799105734.773906753841.38b5894552bdd4a780554ee59d1f3638",
        "channel": {"id": RELEASE_CHANNEL, "name": "releases"},
        "message": {"type": "message", "ts": "1700000000.000100", "text": "hi"},
        "response_url": "https://hooks.slack.com/app/T0SANDBOX/1/abc",
    },
    "block_suggestion": {
        "type": "block_suggestion",
        "team": TEAM,
        "user": USER,
        "action_id": "pick",
        "block_id": "b1",
        "value": "rel",
    },
    "an unknown form without inputs": {
        "type": "view_submission",
        "team": TEAM,
        "user": USER,
        "trigger_id": "944799105734.773906753841.38b5894552bdd4a780554ee59d1f3638",
        "view": {"id": "V0OLDFORM1", "type": "modal", "callback_id": "a_form_of_an_older_version"},
    },
}


def acted(server: SlackTestServer) -> list[str]:
    """The Web API calls the bot made, but Bolt's `auth.test` of its token (made once) and the
    opening of the socket."""
    return [c.method for c in server.calls if c.method not in _SETUP]


_SETUP = ("auth.test", "apps.connections.open")


async def post(
    app: TestClient[object, object], body: str, *, json_body: bool, **headers: str
) -> int:
    signed = slack_signature_headers(
        SLACK_SIGNING_SECRET,
        body,
        content_type="application/json" if json_body else "application/x-www-form-urlencoded",
    )
    response = await app.post("/slack/events", data=body, headers={**signed, **headers})
    return response.status


@pytest.mark.parametrize("name", list(EVENTS))
async def test_an_event_the_bot_does_not_use_is_answered_200_and_ignored(
    client: TestClient[object, object],  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    body = event_callback_body(event=EVENTS[name])
    assert await post(client, body, json_body=True) == 200
    retried = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"}
    assert await post(client, body, json_body=True, **retried) == 200
    assert acted(slack) == [] and tracebacks(caplog) == []


async def test_slacks_app_rate_limited_notice_is_answered_200(
    client: TestClient[object, object],  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`app_rate_limited` comes without a subscription and without an inner event."""
    body = json.dumps(
        {
            "token": "t",
            "type": "app_rate_limited",
            "team_id": SANDBOX_TEAM_ID,
            "minute_rate_limited": 1518467820,
            "api_app_id": SANDBOX_APP_ID,
        }
    )
    assert await post(client, body, json_body=True) == 200
    assert acted(slack) == [] and tracebacks(caplog) == []


@pytest.mark.parametrize("name", list(INTERACTIONS))
async def test_an_interaction_the_bot_does_not_use_is_acknowledged(
    client: TestClient[object, object],  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    body = "payload=" + quote(json.dumps(INTERACTIONS[name]), safe="")
    assert await post(client, body, json_body=False) == 200
    assert acted(slack) == [] and tracebacks(caplog) == []


async def test_a_button_of_an_older_card_is_answered_with_what_to_do(
    client: TestClient[object, object],  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A card drawn by an earlier version carries a button this one does not have: the
    click is acknowledged, nothing changes, and the person is told to take a fresh card."""
    url = slack.new_response_url(channel=RELEASE_CHANNEL, user=RELEASE_MANAGER)
    payload = block_actions_payload(
        user_id=RELEASE_MANAGER,
        channel_id=RELEASE_CHANNEL,
        action_id="a_button_of_an_older_version",
        value="",
        response_url=url,
        message_ts="1700000000.000100",
    )
    assert await post(client, "payload=" + quote(json.dumps(payload)), json_body=False) == 200
    (said,) = await slack.wait_for_response(url, timeout=10)
    assert said.body["response_type"] == "ephemeral" and "fresh card" in said.body["text"]
    assert acted(slack) == [] and tracebacks(caplog) == []


async def test_a_form_of_an_older_version_stays_open_and_says_why(
    client: TestClient[object, object],  # noqa: F811
    slack: SlackTestServer,
) -> None:
    """Answered 200 with nothing, Slack would close the form as if it had been taken."""
    payload = dict(INTERACTIONS["an unknown form without inputs"])
    payload["view"] = {
        **payload["view"],
        "state": {
            "values": {"reason_block": {"reason": {"type": "plain_text_input", "value": "x"}}}
        },
    }
    signed = slack_signature_headers(
        SLACK_SIGNING_SECRET, body := "payload=" + quote(json.dumps(payload))
    )
    response = await client.post("/slack/events", data=body, headers=signed)

    assert response.status == 200
    answer = await response.json()
    assert answer["response_action"] == "errors"
    assert "fresh card" in answer["errors"]["reason_block"]
    assert acted(slack) == []


STALE_BUTTON = {
    key: value
    for key, value in block_actions_payload(
        user_id=RELEASE_MANAGER,
        channel_id=RELEASE_CHANNEL,
        action_id="a_button_of_an_older_version",
        value="",
        response_url="",
        message_ts="1700000000.000100",
    ).items()
    if key != "response_url"  # a button of the App Home has none
}
SOCKET_ENVELOPES = [
    *(("events_api", event_callback_body(event=event)) for event in EVENTS.values()),
    *(("interactive", json.dumps(payload)) for payload in [*INTERACTIONS.values(), STALE_BUTTON]),
]


async def test_over_socket_mode_every_request_the_bot_does_not_use_is_acknowledged(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unacknowledged, Slack delivers an envelope again and shows the person an error."""
    async with TestClient(TestServer(app_of(settings, socket_mode=True))):
        await slack.wait_for(lambda: slack.socket_connected)
        for kind, payload in SOCKET_ENVELOPES:
            envelope = await slack.socket_send_envelope(type=kind, payload=json.loads(payload))
            await slack.wait_for_socket_ack(envelope, timeout=5)
    assert acted(slack) == [] and tracebacks(caplog) == []
