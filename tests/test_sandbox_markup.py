"""The sandbox Slack's look at mrkdwn: what Slack would render badly (a `<tag>` it takes for a
link, an unescaped `&`) is recorded wherever the bot sends it, while Slack's answer stays what
Slack answers (it takes such a message); what Slack renders as meant passes."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.adapters.slack import mrkdwn
from sandbox import slack_markup
from sandbox.slack import SlackTestServer

BOT_TOKEN = "xoxb-sandbox-bot-token"
APP_TOKEN = "xapp-1-sandbox-app-token"
CHANNEL = "C0RELEASES"
BAD = "Start one with /rollout start <tag>"

GOOD_TEXTS = [
    "Rolling back `v1.4.2`: see its thread.",
    "<@U0RELMGR01> and <@U0ANN|ann> in <#C0RELEASES> or <#C0REL|releases>, <!here>",
    "<!subteam^S0REL|@release-managers> at <!date^1765000000^{time} ({date_short_pretty})|09:00>",
    "<https://github.com/scriptum/scriptum/actions/runs/7|run 7> <http://127.0.0.1:80/x?a=1&b=2>",
    "`/rollout start &lt;tag&gt;`: a &amp; b",
    "> a quote\n  > another, then *bold* _it_ ~no~",
    "",
]
BAD_TEXTS = [
    ("/rollout start <tag>", "'<tag>' is no Slack link"),
    ('--override-freeze "<reason>"', "'<reason>' is no Slack link"),
    ("ask <@ann>", "'<@ann>' is no Slack link"),
    ("at <!date^1765000000^{time}>", "a date needs its fallback"),
    ("<https://x.example|a & b>", "a bare '&' in its label"),
    ("crash 0.3% > 2x baseline", "a '<' or '>' outside"),
    ("errors < 1%", "a '<' or '>' outside"),
    ("a & b", "a bare '&'"),
    ("&quot;quoted&quot;", "a bare '&'"),
]


@pytest.mark.parametrize("text", GOOD_TEXTS)
def test_what_slack_renders_as_meant_passes(text: str) -> None:
    assert slack_markup.markup_problems(text) == []


@pytest.mark.parametrize(("text", "problem"), BAD_TEXTS)
def test_what_slack_renders_badly_is_named(text: str, problem: str) -> None:
    (found,) = slack_markup.markup_problems(text)
    assert problem in found


@pytest.mark.parametrize("conversation", ["C0RELEASES", "G0PRIVATE1", "D0DIRECT01"])
def test_every_conversation_an_answer_names_renders_well(conversation: str) -> None:
    """A direct message has no channel link (`<#D…>` is none): it is named in words."""
    assert slack_markup.markup_problems(f"this came from {mrkdwn.channel(conversation)}") == []


def test_mrkdwn_is_looked_at_where_slack_parses_it() -> None:
    """Message text, mrkdwn text objects of any block (sections, fields, context, a view's),
    not plain_text, not a text sent with `mrkdwn: false`."""
    message = {
        "text": "t",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "<plain>"}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "s"},
                "fields": [{"type": "mrkdwn", "text": "f"}],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}]},
        ],
    }
    assert list(slack_markup.mrkdwn_texts(message)) == ["t", "s", "f", "c"]
    assert list(slack_markup.mrkdwn_texts({"text": "<x>", "mrkdwn": False})) == []
    modal = {"view": {"type": "modal", "blocks": message["blocks"]}}
    assert list(slack_markup.mrkdwn_texts(modal)) == ["s", "f", "c"]


@pytest.fixture
async def slack() -> AsyncIterator[SlackTestServer]:
    async with SlackTestServer(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as server:
        yield server


def _card(text: str) -> list[dict[str, Any]]:
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]},
    ]


async def _send_everywhere(slack: SlackTestServer, text: str) -> None:
    """`text` as the bot sends it: a message and its card, an update, an ephemeral, a modal,
    an answer on a response_url, an acknowledgement over HTTP and one over Socket Mode."""
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
    posted = await client.chat_postMessage(channel=CHANNEL, text=text, blocks=_card(text))
    await client.chat_update(channel=CHANNEL, ts=posted["ts"], text=text, blocks=_card(text))
    await client.chat_postEphemeral(channel=CHANNEL, user="U0RELMGR01", text=text)
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "x"}, "blocks": _card(text)}
    await client.views_open(trigger_id=slack.new_trigger_id(), view=modal)
    url = slack.new_response_url(channel=CHANNEL, user="U0RELMGR01")
    await AsyncWebhookClient(url).send(text=text, response_type="ephemeral")
    slack.ack_received(json.dumps({"response_type": "ephemeral", "text": text}))
    opened = await AsyncWebClient(token=APP_TOKEN, base_url=slack.api_url).apps_connections_open(
        app_token=APP_TOKEN
    )
    async with aiohttp.ClientSession() as session, session.ws_connect(opened["url"]) as socket:
        await socket.receive()  # hello
        envelope = str(uuid.uuid4())
        await socket.send_str(json.dumps({"envelope_id": envelope, "payload": {"text": text}}))
        await slack.wait_for_socket_ack(envelope)


@pytest.mark.bad_markup
async def test_a_bad_message_is_taken_as_slack_takes_it_and_recorded_wherever_it_is_sent(
    slack: SlackTestServer,
) -> None:
    with slack_markup.watching() as seen:  # what fails a test (tests/conftest.py)
        await _send_everywhere(slack, BAD)

    assert all(call.ok for call in slack.calls)  # Slack refuses none: it renders them badly
    assert slack.messages(CHANNEL)[0].text == BAD
    where = [error.where for error in slack.markup_errors]
    assert where == [
        *["chat.postMessage"] * 3,  # the text, the section, the context
        *["chat.update"] * 3,
        "chat.postEphemeral",
        *["views.open"] * 2,
        "response_url",
        "ack",
        "socket ack",
    ]
    assert {(e.text, e.problem) for e in slack.markup_errors} == {
        (BAD, "'<tag>' is no Slack link, mention or date: send it escaped")
    }
    assert seen == slack.markup_errors
    assert "chat.postMessage: '<tag>' is no Slack link" in slack_markup.described(seen)


async def test_good_messages_sent_everywhere_record_nothing(slack: SlackTestServer) -> None:
    with slack_markup.watching() as seen:
        for text in GOOD_TEXTS[:-1]:
            await _send_everywhere(slack, text)
    assert slack.markup_errors == [] and seen == []
    assert len(slack.messages(CHANNEL)) == len(GOOD_TEXTS) - 1
