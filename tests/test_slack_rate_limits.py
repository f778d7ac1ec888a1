"""Slack's rate limits as the clients of everything but the outbox meet them (ephemeral
answers, modals, the npm walkthrough): the real slack_sdk client with the bot's retry
handlers (`web_api_retries`) against the sandbox Slack, the waits recorded, not slept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.calls import web_api_retries
from sandbox.config import SLACK_BOT_TOKEN
from sandbox.slack import SlackTestServer

CHANNEL = "C0RELEASES"
PERSON = "U0RELMGR01"


@dataclass(frozen=True)
class Limited:
    """The sandbox Slack, a client with the bot's retry handlers, the waits it asked for."""

    slack: SlackTestServer
    client: AsyncWebClient
    waits: list[float]


@pytest.fixture
async def limited() -> AsyncIterator[Limited]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with SlackTestServer(bot_token=SLACK_BOT_TOKEN) as slack:
        handlers = web_api_retries(sleep=sleep)
        client = AsyncWebClient(
            token=SLACK_BOT_TOKEN, base_url=slack.api_url, retry_handlers=handlers
        )
        yield Limited(slack, client, waits)


async def test_an_ephemeral_answer_slack_refuses_as_rate_limited_with_a_200_is_shown_after_a_wait(
    limited: Limited,
) -> None:
    slack, client, waits = limited.slack, limited.client, limited.waits
    # chat.postEphemeral's documented `rate_limited` ("Application has posted too many
    # messages") comes as HTTP 200: slack_sdk's 429 handler let it through as a failure.
    slack.fail_next("chat.postEphemeral", error="rate_limited")

    await client.chat_postEphemeral(channel=CHANNEL, user=PERSON, text="Promoted.")

    assert [e.text for e in slack.ephemerals(user=PERSON)] == ["Promoted."]
    assert waits == [1.0]  # no Retry-After with a 200: Slack's usual second


async def test_a_429_is_waited_out_for_its_retry_after(
    limited: Limited,
) -> None:
    slack, client, waits = limited.slack, limited.client, limited.waits
    slack.fail_next("chat.postMessage", error="ratelimited", status=429, retry_after=3)

    await client.chat_postMessage(channel=CHANNEL, text="Enter figures")

    assert [m.text for m in slack.messages(CHANNEL)] == ["Enter figures"]
    assert waits == [3.0]


async def test_a_429_whose_retry_after_is_a_date_is_waited_out_until_then(
    limited: Limited,
) -> None:
    """`Retry-After` may be an HTTP-date (RFC 9110 §10.2.3), read against the answer's own
    `Date`: it was taken for unreadable, and the call asked again after Slack's usual 1 s."""
    slack, client, waits = limited.slack, limited.client, limited.waits
    until = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    slack.fail_next("chat.postMessage", error="ratelimited", status=429, retry_after=until)

    await client.chat_postMessage(channel=CHANNEL, text="Enter figures")

    assert [m.text for m in slack.messages(CHANNEL)] == ["Enter figures"]
    (wait,) = waits
    assert 19.0 <= wait <= 20.0  # both dates in whole seconds, the answer within one


async def test_a_rate_limit_that_lasts_is_told_after_two_waits(
    limited: Limited,
) -> None:
    slack, client, waits = limited.slack, limited.client, limited.waits
    for _ in range(3):
        slack.fail_next("chat.postEphemeral", error="rate_limited")

    with pytest.raises(SlackApiError) as refused:
        await client.chat_postEphemeral(channel=CHANNEL, user=PERSON, text="Promoted.")

    assert refused.value.response["error"] == "rate_limited"
    assert waits == [1.0, 1.0]
    assert slack.ephemerals(user=PERSON) == []


async def test_a_retry_after_longer_than_a_call_may_take_is_not_waited_out(
    limited: Limited,
) -> None:
    slack, client, waits = limited.slack, limited.client, limited.waits
    slack.fail_next("chat.postMessage", error="ratelimited", status=429, retry_after=120)

    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel=CHANNEL, text="Enter figures")

    assert refused.value.response.status_code == 429
    assert waits == []


async def test_a_refusal_that_is_no_rate_limit_is_not_tried_again(
    limited: Limited,
) -> None:
    slack, client, waits = limited.slack, limited.client, limited.waits
    slack.fail_next("chat.postMessage", error="not_in_channel")

    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel=CHANNEL, text="Enter figures")

    assert waits == []
    assert len(slack.calls_to("chat.postMessage")) == 1
