"""The look for an earlier post that Slack stopped midway, resumed (`bot.adapters.slack.looks`):
the real slack_sdk client, as the outbox's (no retry handlers), against the sandbox Slack,
which pages short (two messages a page) as Slack may."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.looks import EarlierPosts
from bot.services.ports import DeliveryFailed
from sandbox.config import SLACK_BOT_TOKEN
from sandbox.slack import SlackTestServer
from sandbox.slack_variation import SlackVariation

FAILURES = "C0FAILURES"
EVENT = "rollout_bot_outbox"
KEY = 42


@dataclass(frozen=True)
class Paged:
    slack: SlackTestServer
    client: AsyncWebClient


@pytest.fixture
async def paged() -> AsyncIterator[Paged]:
    async with SlackTestServer(bot_token=SLACK_BOT_TOKEN) as slack:
        slack.variation = SlackVariation(
            spared=frozenset({"chat.postMessage", "conversations.history"})
        )
        yield Paged(slack, AsyncWebClient(token=SLACK_BOT_TOKEN, base_url=slack.api_url))


def _ours(payload: Mapping[str, Any]) -> bool:
    return payload.get("outbox_id") == KEY


async def _look(client: AsyncWebClient, posts: EarlierPosts, since: datetime) -> Any:
    """A look for the post of outbox message KEY in FAILURES, as the notifier's."""
    return await posts.find(
        client.conversations_history,
        _ours,
        event_type=EVENT,
        since=since,
        looking_for=KEY,
        newest_first=True,
        channel=FAILURES,
    )


async def _stopped(paged: Paged, posts: EarlierPosts, since: datetime, *, others: int) -> None:
    """`others` messages in FAILURES, then a look through them that Slack rate-limits on its
    second page."""
    for n in range(others):
        await paged.client.chat_postMessage(channel=FAILURES, text=f"other {n}")
    paged.slack.fail_next("conversations.history", error="ratelimited", status=429, after=1)
    with pytest.raises(DeliveryFailed):
        await _look(paged.client, posts, since)


async def test_a_resumed_look_through_a_channel_finds_what_was_posted_since_it_stopped(
    paged: Paged,
) -> None:
    """History is newest first: a post made after a look stopped (another replica's attempt,
    its answer lost) is above the page the look reached. Resumed from that page, the look
    missed it and the message was posted a second time."""
    client = paged.client
    since = datetime.now(UTC)
    replica_a = EarlierPosts()
    await _stopped(paged, replica_a, since, others=6)
    # Meanwhile replica b looks from page one, finds nothing, posts; its answer is lost.
    marker = {"event_type": EVENT, "event_payload": {"outbox_id": KEY}}
    await client.chat_postMessage(channel=FAILURES, text="the notice", metadata=marker)

    found = await _look(client, replica_a, since)

    assert found is not None and found["text"] == "the notice"


async def test_a_resumed_look_reads_on_from_the_page_it_reached(paged: Paged) -> None:
    slack, client = paged.slack, paged.client
    since = datetime.now(UTC)
    posts = EarlierPosts()
    await _stopped(paged, posts, since, others=6)
    looked = len(slack.calls_to("conversations.history"))

    assert await _look(client, posts, since) is None

    # Nothing new on top (one page), then the page refused and the last: not page one again.
    resumed = slack.calls_to("conversations.history")[looked:]
    assert [call.args.get("cursor") for call in resumed] == [None, "2", "4"]


async def test_a_resumed_look_whose_cursor_slack_refuses_begins_again_from_page_one(
    paged: Paged,
) -> None:
    """Slack answers `invalid_cursor` for a cursor "not valid or no longer valid": a look
    kept since took that for a look Slack refuses, found nothing, and the message an earlier
    attempt posted was posted a second time."""
    slack, client = paged.slack, paged.client
    since = datetime.now(UTC)
    marker = {"event_type": EVENT, "event_payload": {"outbox_id": KEY}}
    await client.chat_postMessage(channel=FAILURES, text="the notice", metadata=marker)
    posts = EarlierPosts()
    await _stopped(paged, posts, since, others=4)
    # Nothing new on top, then the kept cursor refused.
    slack.fail_next("conversations.history", error="invalid_cursor", after=1)

    found = await _look(client, posts, since)

    assert found is not None and found["text"] == "the notice"
