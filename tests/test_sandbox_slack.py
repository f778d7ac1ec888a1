"""The local Slack answers the real slack_sdk / Bolt clients as Slack does, and records it all."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.adapters.slack.delivery import uploaded
from bot.adapters.slack.limits import FALLBACK_TEXT
from bot.adapters.slack.members import channel_members
from bot.services.ports import DeliveryFailed
from handlers.errors import LimitedRespond, ResponseUrlUses
from sandbox.render import render_blocks
from sandbox.signing import (
    block_actions_body,
    github_signature_headers,
    slack_signature_headers,
    slash_command_body,
    slash_command_payload,
    view_submission_body,
)
from sandbox.slack import SlackTestServer

BOT_TOKEN = "xoxb-sandbox-bot-token"
APP_TOKEN = "xapp-1-sandbox-app-token"
SIGNING_SECRET = "sandbox-signing-secret"
CHANNEL = "C0RELEASES"
TS_SHAPE = re.compile(r"^\d{10}\.\d{6}$")

CARD: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "Rollout v1.4.2"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Canary 5%* waiting"}},
    {
        "type": "actions",
        "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Promote"}, "value": "1"},
            {"type": "button", "text": {"type": "plain_text", "text": "Roll back"}},
        ],
    },
]
MODAL: dict[str, Any] = {
    "type": "modal",
    "callback_id": "manual_metrics",
    "private_metadata": '{"rollout_id": 7}',
    "title": {"type": "plain_text", "text": "Observed rates"},
    "submit": {"type": "plain_text", "text": "Submit"},
    "blocks": [
        {
            "type": "input",
            "block_id": "error_rate",
            "label": {"type": "plain_text", "text": "Error rate"},
            "element": {"type": "plain_text_input", "action_id": "value"},
        }
    ],
}


@pytest.fixture
async def slack() -> AsyncIterator[SlackTestServer]:
    async with SlackTestServer(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as server:
        yield server


@pytest.fixture
def client(slack: SlackTestServer) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)


async def api_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as raised:
        await call
    return raised.value


async def test_auth_test_identifies_the_bot_and_its_scopes(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    response = await client.auth_test()
    assert response["user_id"] == slack.bot_user_id
    assert response["bot_id"] == slack.bot_id
    assert response["team_id"] == slack.team_id
    assert "chat:write" in response.headers["X-OAuth-Scopes"]
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


async def test_tokens_are_checked_like_slack(slack: SlackTestServer) -> None:
    wrong = AsyncWebClient(token="xoxb-not-the-bot", base_url=slack.api_url)
    missing = AsyncWebClient(base_url=slack.api_url)
    app_level = AsyncWebClient(token=APP_TOKEN, base_url=slack.api_url)

    error = await api_error(wrong.chat_postMessage(channel=CHANNEL, text="hi"))
    assert (error.response.status_code, error.response["error"]) == (200, "invalid_auth")
    error = await api_error(missing.chat_postMessage(channel=CHANNEL, text="hi"))
    assert error.response["error"] == "not_authed"
    error = await api_error(app_level.chat_postMessage(channel=CHANNEL, text="hi"))
    assert error.response["error"] == "not_allowed_token_type"
    assert slack.messages(CHANNEL) == []
    assert [call.ok for call in slack.calls] == [False, False, False]


async def test_unknown_method(client: AsyncWebClient) -> None:
    error = await api_error(client.api_call("chat.shout", json={"channel": CHANNEL}))
    assert error.response["error"] == "unknown_method"


async def test_messages_threads_and_updates_are_what_the_channel_sees(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    parent = await client.chat_postMessage(channel=CHANNEL, text="Rollout v1.4.2", blocks=CARD)
    reply = await client.chat_postMessage(
        channel=CHANNEL, thread_ts=parent["ts"], text="Canary deployed"
    )
    nested = await client.chat_postMessage(channel=CHANNEL, thread_ts=reply["ts"], text="Window")

    assert parent["channel"] == CHANNEL and parent["message"]["blocks"] == CARD
    stamps = [parent["ts"], reply["ts"], nested["ts"]]
    assert all(TS_SHAPE.match(ts) for ts in stamps)
    assert stamps == sorted(set(stamps), key=float)

    updated_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Canary 5%* PASS"}}]
    update = await client.chat_update(
        channel=CHANNEL, ts=parent["ts"], text="Rollout v1.4.2", blocks=updated_blocks
    )
    assert update["ts"] == parent["ts"] and update["message"]["edited"]

    (card,) = slack.messages(CHANNEL)
    assert card.rendered == "*Canary 5%* PASS"
    assert [r.text for r in card.replies] == ["Canary deployed", "Window"]
    assert slack.message(CHANNEL, nested["ts"]).thread_ts == parent["ts"]

    # Updating only the text keeps the blocks, as Slack does.
    await client.chat_update(channel=CHANNEL, ts=parent["ts"], text="fallback only")
    assert slack.message(CHANNEL, parent["ts"]).blocks == updated_blocks


async def test_history_and_replies_page_like_slack_and_show_metadata_only_when_asked(
    client: AsyncWebClient,
) -> None:
    marker = {"event_type": "rollout_bot_card", "event_payload": {"rollout_id": "r-1"}}
    parent = await client.chat_postMessage(channel=CHANNEL, text="card", metadata=marker)
    for n in range(3):
        await client.chat_postMessage(channel=CHANNEL, thread_ts=parent["ts"], text=f"line {n}")
    await client.chat_postMessage(channel=CHANNEL, text="later")

    history = await client.conversations_history(channel=CHANNEL)
    assert [m["text"] for m in history["messages"]] == ["later", "card"]  # newest first
    assert "metadata" not in history["messages"][1]
    with_metadata = await client.conversations_history(
        channel=CHANNEL, include_all_metadata=True, oldest=str(float(parent["ts"]) - 1)
    )
    assert with_metadata["messages"][1]["metadata"] == marker
    first = await client.conversations_replies(channel=CHANNEL, ts=parent["ts"], limit=2)
    assert [m["text"] for m in first["messages"]] == ["card", "line 0"]  # the parent first
    assert first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    rest = await client.conversations_replies(channel=CHANNEL, ts=parent["ts"], cursor=cursor)
    assert [m["text"] for m in rest["messages"]] == ["line 1", "line 2"]
    assert rest["response_metadata"]["next_cursor"] == ""
    error = await api_error(client.conversations_replies(channel=CHANNEL, ts="1.000001"))
    assert error.response["error"] == "thread_not_found"
    error = await api_error(
        client.chat_postMessage(channel=CHANNEL, text="x", metadata={"event_type": 1})
    )
    assert error.response["error"] == "invalid_metadata_format"


async def test_an_answer_lost_after_the_post_leaves_the_message_posted(
    slack: SlackTestServer,
) -> None:
    no_retry = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url, retry_handlers=[])
    slack.lose_next_answer("chat.postMessage")

    with pytest.raises(aiohttp.ClientError):
        await no_retry.chat_postMessage(channel=CHANNEL, text="posted")

    assert [m.text for m in slack.messages(CHANNEL)] == ["posted"]


async def test_missing_arguments_get_slacks_error_codes(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    cases = [
        (client.api_call("chat.postMessage", json={"text": "hi"}), "channel_not_found"),
        (client.api_call("chat.postMessage", json={"channel": CHANNEL}), "no_text"),
        (
            client.chat_postMessage(channel=CHANNEL, text="x", thread_ts="1.000001"),
            "thread_not_found",
        ),
        (client.chat_update(channel=CHANNEL, ts="1.000001", text="x"), "message_not_found"),
        (client.chat_postEphemeral(channel=CHANNEL, user="", text="x"), "user_not_in_channel"),
        (client.views_open(trigger_id="", view=MODAL), "invalid_arguments"),
        (client.views_update(view_id="VNOPE", view=MODAL), "not_found"),
        (client.usergroups_users_list(usergroup="S404"), "no_such_subteam"),
    ]
    for call, code in cases:
        assert (await api_error(call)).response["error"] == code
    assert slack.messages(CHANNEL) == [] and slack.ephemerals() == []


async def test_form_encoded_arguments_are_accepted_and_json_fields_decoded(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    response = await client.api_call(
        "chat.postMessage",
        data={"channel": CHANNEL, "text": "Rollout", "blocks": json.dumps(CARD)},
    )
    assert response["ok"]
    assert slack.calls_to("chat.postMessage")[0].args["blocks"] == CARD
    assert "token" not in slack.calls[0].args
    assert "[Promote] [Roll back]" in slack.messages(CHANNEL)[0].rendered


async def test_ephemeral_messages_are_kept_per_user(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    response = await client.chat_postEphemeral(channel=CHANNEL, user="U1", text="Only you")
    assert TS_SHAPE.match(response["message_ts"])
    assert [e.rendered for e in slack.ephemerals(user="U1")] == ["Only you"]
    assert slack.ephemerals(user="U2") == []
    assert slack.messages(CHANNEL) == []


async def test_a_trigger_id_opens_one_modal_within_3_seconds_of_the_click(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    now = [100.0]
    slack.trigger_clock = lambda: now[0]
    fresh, late = slack.new_trigger_id(), slack.new_trigger_id()
    now[0] += 3.0  # Slack: a trigger_id is good for 3 seconds
    assert (await client.views_open(trigger_id=fresh, view=MODAL))["ok"]
    spent = await api_error(client.views_open(trigger_id=fresh, view=MODAL))
    assert spent.response["error"] == "exchanged_trigger_id"
    now[0] += 0.1
    expired = await api_error(client.views_open(trigger_id=late, view=MODAL))
    assert expired.response["error"] == "expired_trigger_id"
    assert len(slack.views) == 1


async def test_views_open_update_and_publish(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    opened = (await client.views_open(trigger_id="1.2.abc", view=MODAL))["view"]
    assert opened["id"].startswith("V") and opened["callback_id"] == "manual_metrics"
    assert slack.views[opened["id"]]["private_metadata"] == MODAL["private_metadata"]

    changed = {**MODAL, "title": {"type": "plain_text", "text": "Rates, again"}}
    updated = (await client.views_update(view_id=opened["id"], view=changed, hash=opened["hash"]))[
        "view"
    ]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    stale = await api_error(
        client.views_update(view_id=opened["id"], view=MODAL, hash=opened["hash"])
    )
    assert stale.response["error"] == "hash_conflict"
    assert slack.views[opened["id"]]["title"]["text"] == "Rates, again"

    home = {"type": "home", "blocks": CARD[:2]}
    first = (await client.views_publish(user_id="U1", view=home))["view"]
    again = (await client.views_publish(user_id="U1", view=home))["view"]
    assert first["id"] == again["id"] and slack.home_tabs["U1"]["type"] == "home"


async def test_usergroup_members(slack: SlackTestServer, client: AsyncWebClient) -> None:
    slack.usergroups["S123"] = ["U1", "U2"]
    response = await client.usergroups_users_list(usergroup="S123")
    assert response["users"] == ["U1", "U2"]


async def test_a_channels_members_come_in_pages_and_every_page_is_read(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    slack.channel_members[CHANNEL] = [f"U{n:04d}" for n in range(450)]
    with pytest.raises(SlackApiError, match="invalid_limit"):
        await client.conversations_members(channel=CHANNEL, limit=1000)
    first = await client.conversations_members(channel=CHANNEL, limit=200)
    assert len(first["members"]) == 200 and first["response_metadata"]["next_cursor"]

    everyone = await channel_members(client)(CHANNEL)

    assert everyone == slack.channel_members[CHANNEL]


async def test_a_file_upload_slack_does_not_take_is_a_failed_delivery(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    """slack_sdk raises SlackRequestError when a file's upload_url answers other than 200:
    the notifier says it as a failed delivery of the charts (logged once), not a bug."""
    slack.fail_next_upload()
    with pytest.raises(DeliveryFailed, match=r"did not take the upload: .*status: 500"):
        await uploaded(client.files_upload_v2(channel=CHANNEL, content=b"x", filename="a.png"))


async def test_an_answer_with_blocks_keeps_its_fallback_text_to_slacks_advice(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    """Beside blocks, an answer's text is the notification's fallback: a long report's text is
    cut to Slack's advice (its blocks carry the whole)."""
    url = slack.new_response_url(channel=CHANNEL, user="U1")
    respond = LimitedRespond(
        response_url=url, uses=ResponseUrlUses(), client=client, channel_id=CHANNEL, user_id="U1"
    )
    await respond(
        "x" * 50_000, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "y"}}]
    )
    (post,) = await slack.wait_for_response(url)
    assert len(post.body["text"]) == FALLBACK_TEXT


async def test_more_blocks_than_slack_takes_are_refused(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    """Slack: at most 50 blocks a message, 100 a modal or Home tab."""
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "y"}}
    with pytest.raises(SlackApiError, match="invalid_blocks"):
        await client.chat_postMessage(channel=CHANNEL, text="t", blocks=[section] * 51)
    assert (await client.chat_postMessage(channel=CHANNEL, text="t", blocks=[section] * 50))["ok"]
    home = {"type": "home", "blocks": [section] * 101}
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        await client.views_publish(user_id="U1", view=home)
    url = slack.new_response_url(channel=CHANNEL, user="U1")
    async with aiohttp.ClientSession() as http:
        answer = await http.post(url, json={"text": "t", "blocks": [section] * 51})
        assert (answer.status, await answer.text()) == (400, "invalid_blocks")


async def test_files_upload_v2_lands_in_the_thread(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    parent = await client.chat_postMessage(channel=CHANNEL, text="Rollout v1.4.2")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
    response = await client.files_upload_v2(
        channel=CHANNEL,
        thread_ts=parent["ts"],
        content=png,
        filename="error-rate.png",
        title="Error rate",
        initial_comment="Gate chart",
    )
    file_id = response["file"]["id"]
    assert slack.files[file_id].data == png and slack.files[file_id].completed
    assert response["file"]["mimetype"] == "image/png" and response["file"]["size"] == len(png)
    assert [c.method for c in slack.calls[1:]] == [
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]
    (reply,) = slack.messages(CHANNEL)[0].replies
    assert reply.rendered == "Gate chart\n[file: Error rate]"


async def test_complete_without_upload_is_refused(client: AsyncWebClient) -> None:
    reserved = await client.files_getUploadURLExternal(filename="a.txt", length=3)
    error = await api_error(
        client.files_completeUploadExternal(files=[{"id": reserved["file_id"], "title": "a"}])
    )
    assert error.response["error"] == "file_not_found"


async def test_response_urls_post_ephemerally_in_channel_and_replace(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    card = await client.chat_postMessage(channel=CHANNEL, text="card", blocks=CARD)
    command_url = slack.new_response_url(channel=CHANNEL, user="U1")
    click_url = slack.new_response_url(
        channel=CHANNEL, user="U1", message_ts=card["ts"], kind="actions"
    )

    ephemeral = await AsyncWebhookClient(command_url).send(text="Only you see this")
    public = await AsyncWebhookClient(command_url).send(text="Everyone", response_type="in_channel")
    replaced = await AsyncWebhookClient(click_url).send(text="Promoted", replace_original=True)
    empty = await AsyncWebhookClient(command_url).send_dict({"response_type": "ephemeral"})
    unknown = await AsyncWebhookClient(slack.base_url + "/commands/T1/1/nope").send(text="x")

    assert [r.status_code for r in (ephemeral, public, replaced)] == [200, 200, 200]
    assert ephemeral.body == "ok"
    assert (empty.status_code, empty.body) == (400, "no_text")
    assert unknown.status_code == 404
    assert [e.rendered for e in slack.ephemerals(user="U1")] == ["Only you see this"]
    assert [m.rendered for m in slack.messages(CHANNEL)] == ["Promoted", "Everyone"]
    assert [r.body.get("text") for r in slack.responses(command_url)] == [
        "Only you see this",
        "Everyone",
        None,
    ]
    assert len(slack.all_responses) == 4


async def test_injected_failure_hits_the_next_call_only(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    slack.fail_next("chat.postMessage", error="ratelimited", status=429, retry_after=1)
    error = await api_error(client.chat_postMessage(channel=CHANNEL, text="hi"))
    assert (error.response.status_code, error.response["error"]) == (429, "ratelimited")
    assert error.response.headers["Retry-After"] == "1"
    assert (await client.chat_postMessage(channel=CHANNEL, text="hi"))["ok"]
    assert len(slack.messages(CHANNEL)) == 1


async def test_a_channel_the_bot_is_shut_out_of_refuses_its_posts_and_updates(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    card = await client.chat_postMessage(channel=CHANNEL, text="card")
    slack.shut_out[CHANNEL] = "is_archived"

    posted = await api_error(client.chat_postMessage(channel=CHANNEL, text="again"))
    updated = await api_error(client.chat_update(channel=CHANNEL, ts=card["ts"], text="new"))

    for error in (posted, updated):
        assert (error.response.status_code, error.response["error"]) == (200, "is_archived")
    assert [m.text for m in slack.messages(CHANNEL)] == ["card"]
    assert (await client.chat_postMessage(channel="C0ELSEWHERE", text="hi"))["ok"]


async def test_waiting_wakes_on_the_call_and_times_out_without_it(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    async def post_later() -> None:
        await asyncio.sleep(0.05)
        await client.chat_postMessage(channel=CHANNEL, text="late")

    task = asyncio.create_task(post_later())
    (call,) = await slack.wait_for_call("chat.postMessage", timeout=2)
    await task
    assert call.args["text"] == "late"

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"chat\.postMessage"):
        await slack.wait_for(lambda: len(slack.calls) > 1, timeout=0.1)
    assert time.monotonic() - started < 10  # its own timeout, not the default 30 s


def test_render_blocks_shows_what_a_reader_sees() -> None:
    blocks = [
        *CARD,
        {"type": "divider"},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": "*Error rate*\n0.4%"},
                {"type": "mrkdwn", "text": "*Limit*\n1%"},
            ],
            "accessory": {"type": "button", "text": {"type": "plain_text", "text": "Extend"}},
        },
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": "ends <!date^1700000000^{time}|12:00>"},
                {"type": "plain_text", "text": "by @ana"},
            ],
        },
    ]
    assert render_blocks(blocks) == "\n".join(
        [
            "# Rollout v1.4.2",
            "*Canary 5%* waiting",
            "[Promote] [Roll back]",
            "---",
            "[Extend]",
            "*Error rate*\n0.4%",
            "*Limit*\n1%",
            "ends <!date^1700000000^{time}|12:00> · by @ana",
        ]
    )


def test_slack_signature_is_what_slack_sdk_verifies() -> None:
    body = slash_command_body(
        text="help", user_id="U1", channel_id=CHANNEL, response_url="http://127.0.0.1/x"
    )
    headers = slack_signature_headers(SIGNING_SECRET, body)
    verifier = SignatureVerifier(SIGNING_SECRET)
    assert verifier.is_valid_request(body, headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + "&text=x", headers)
    stale = slack_signature_headers(SIGNING_SECRET, body, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid_request(body, stale)


def test_github_signature_matches_githubs_documented_example() -> None:
    headers = github_signature_headers(
        "It's a Secret to Everybody", b"Hello, World!", event="ping", delivery="d-1"
    )
    assert headers["X-Hub-Signature-256"] == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    assert headers["X-GitHub-Event"] == "ping" and headers["X-GitHub-Delivery"] == "d-1"
    generated = github_signature_headers("s", b"{}", event="workflow_run")["X-GitHub-Delivery"]
    assert re.fullmatch(r"[0-9a-f-]{36}", generated)


async def test_request_bodies_parse_in_bolt_like_slacks(slack: SlackTestServer) -> None:
    """Signed bodies from the builders go through Bolt's verification and parsing unchanged."""
    app = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url),
        signing_secret=SIGNING_SECRET,
    )
    seen: dict[str, Any] = {}

    @app.command("/rollout")
    async def command(ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        seen["command"] = command
        await respond(text=f"you said {command['text']}")

    @app.action("promote")
    async def promote(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        seen["action"] = body

    @app.view("manual_metrics")
    async def submitted(ack: Any, view: dict[str, Any]) -> None:
        await ack()
        seen["view"] = view

    async def dispatch(body: str) -> int:
        headers: dict[str, str | Sequence[str]] = {**slack_signature_headers(SIGNING_SECRET, body)}
        request = AsyncBoltRequest(body=body, headers=headers)
        return (await app.async_dispatch(request)).status

    command_url = slack.new_response_url(channel=CHANNEL, user="U1")
    assert (
        await dispatch(
            slash_command_body(
                text="start v1.4.2", user_id="U1", channel_id=CHANNEL, response_url=command_url
            )
        )
        == 200
    )
    await slack.wait_for_response(command_url)
    assert seen["command"]["text"] == "start v1.4.2" and seen["command"]["user_id"] == "U1"
    assert [e.rendered for e in slack.ephemerals(user="U1")] == ["you said start v1.4.2"]

    card = await app.client.chat_postMessage(channel=CHANNEL, text="card", blocks=CARD)
    click = block_actions_body(
        user_id="U2",
        channel_id=CHANNEL,
        action_id="promote",
        value='{"rollout_id": 7}',
        message_ts=card["ts"],
        message=slack.message(CHANNEL, card["ts"]).to_json(),
        response_url=slack.new_response_url(kind="actions"),
    )
    assert await dispatch(click) == 200
    await slack.wait_for(lambda: "action" in seen)
    assert seen["action"]["actions"][0]["value"] == '{"rollout_id": 7}'
    assert seen["action"]["message"]["blocks"] == CARD

    opened = (await app.client.views_open(trigger_id="1.2.abc", view=MODAL))["view"]
    values = {"error_rate": {"value": {"type": "plain_text_input", "value": "0.004"}}}
    assert await dispatch(view_submission_body(user_id="U2", view=opened, values=values)) == 200
    assert seen["view"]["state"]["values"] == values
    assert seen["view"]["private_metadata"] == MODAL["private_metadata"]


async def test_socket_mode_round_trip_with_bolt(slack: SlackTestServer) -> None:
    app = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url),
        signing_secret=SIGNING_SECRET,
    )

    @app.command("/rollout")
    async def command(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        await ack(text=f"working on {command['text']}")
        await client.chat_postMessage(channel=command["channel_id"], text="Rollout started")

    handler = AsyncSocketModeHandler(app, APP_TOKEN)
    received: list[str] = []

    async def record(_client: Any, message: dict[str, Any], _raw: str | None) -> None:
        received.append(message.get("type", ""))

    handler.client.message_listeners.append(record)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    try:
        payload = slash_command_payload(
            text="start v1.4.2",
            user_id="U1",
            channel_id=CHANNEL,
            response_url=slack.new_response_url(channel=CHANNEL, user="U1"),
        )
        envelope_id = await slack.socket_send_envelope(type="slash_commands", payload=payload)
        ack = await slack.wait_for_socket_ack(envelope_id)
        await slack.wait_for_call("chat.postMessage")
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]

    assert received[0] == "hello"
    assert ack == {"envelope_id": envelope_id, "payload": {"text": "working on start v1.4.2"}}
    assert slack.calls_to("apps.connections.open")[0].ok
    assert [m.text for m in slack.messages(CHANNEL)] == ["Rollout started"]
    await slack.wait_for(lambda: not slack.socket_connected)


async def test_socket_mode_needs_the_app_token(slack: SlackTestServer) -> None:
    bot = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
    error = await api_error(bot.apps_connections_open(app_token=BOT_TOKEN))
    assert error.response["error"] == "not_allowed_token_type"
    url = (await bot.apps_connections_open(app_token=APP_TOKEN))["url"]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(url.replace("ticket=", "ticket=forged"))
        async with session.ws_connect(url) as ws:
            assert (await ws.receive_json())["type"] == "hello"
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(url)  # a ticket is good for one connection


async def test_users_info_answers_a_persons_time_zone_as_slack_documents(
    slack: SlackTestServer, client: AsyncWebClient
) -> None:
    slack.time_zones["U0ANN"] = "Europe/Berlin"
    user = (await client.users_info(user="U0ANN"))["user"]
    assert user["id"] == "U0ANN" and user["tz"] == "Europe/Berlin"
    assert user["tz_offset"] in (3600, 7200) and user["tz_label"] in ("CET", "CEST")
    assert (await client.users_info(user="U0BOB"))["user"]["tz"] == "UTC"
    assert (await api_error(client.users_info(user="B0BOT"))).response["error"] == (
        "user_not_found"
    )
