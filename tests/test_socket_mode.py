"""`rollout-bot socket` against the sandbox's Socket Mode: Slack's `disconnect` messages."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_app import app_of, ephemeral_answer, settings, socket_command  # noqa: F401

from bot.config import Settings
from sandbox.slack import SlackTestServer


async def test_a_refresh_requested_by_slack_loses_no_ack_and_the_bot_takes_the_next_envelope(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
) -> None:
    """Slack asks for a new connection every few hours (`disconnect`, `refresh_requested`): a
    command sent just before it is acknowledged and answered once, and the next one, over the
    new connection, too."""
    async with TestClient(TestServer(app_of(settings, socket_mode=True))):
        await slack.wait_for(lambda: slack.socket_connected)
        before, payload = socket_command(slack, "help")
        envelope = await slack.socket_send_envelope(type="slash_commands", payload=payload)
        await slack.socket_disconnect("refresh_requested")
        await slack.wait_for_socket_ack(envelope, timeout=10)
        await slack.wait_for_call("apps.connections.open", count=2, timeout=10)
        await slack.wait_for(lambda: slack.socket_connected, timeout=10)
        after, payload = socket_command(slack, "help")
        second = await slack.socket_send_envelope(type="slash_commands", payload=payload)
        await slack.wait_for_socket_ack(second, timeout=10)
        answers = [await ephemeral_answer(slack, url) for url in (before, after)]
    assert all("npm-token" in answer for answer in answers)
    assert [len(slack.responses(url)) for url in (before, after)] == [1, 1]


async def test_socket_mode_turned_off_in_the_apps_settings_is_told_in_one_error_line(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Slack's `disconnect` with `link_disabled`: no request reaches the bot any more, which
    says so and what to do, where the SDK said only that it reconnects."""
    async with TestClient(TestServer(app_of(settings, socket_mode=True))):
        await slack.wait_for(lambda: slack.socket_connected)
        with caplog.at_level(logging.INFO):
            await slack.socket_disconnect("link_disabled")
            await slack.wait_for_call("apps.connections.open", count=2, timeout=10)
    (told,) = [r for r in caplog.records if "link_disabled" in r.getMessage()]
    assert told.levelno == logging.ERROR
    assert "turned Socket Mode off" in told.getMessage()
    assert "app's settings" in told.getMessage()


async def test_a_command_slack_delivers_again_over_the_socket_acts_once(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
) -> None:
    """An envelope Slack sends again (not acknowledged in time, say across a reconnect) holds
    the same payload: the second delivery changes nothing and says the first did it."""
    async with TestClient(TestServer(app_of(settings, socket_mode=True))):
        await slack.wait_for(lambda: slack.socket_connected)
        url, payload = socket_command(slack, "freeze 2h INC-123 investigation")
        for _ in range(2):
            envelope = await slack.socket_send_envelope(type="slash_commands", payload=payload)
            await slack.wait_for_socket_ack(envelope, timeout=10)
            await slack.wait_for(lambda: len(slack.responses(url)) >= 1, timeout=10)
        await slack.wait_for(lambda: len(slack.responses(url)) == 2, timeout=10)
    first, second = (str(post.body["text"]) for post in slack.responses(url))
    assert "froze deploys until" in first
    assert second.startswith("Already done by") and "Nothing more was done." in second


@pytest.mark.parametrize(
    ("error", "status"), [("internal_error", 500), ("service_unavailable", 200)]
)
async def test_slack_in_trouble_at_start_is_no_refusal_of_the_app_token(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
    error: str,
    status: int,
) -> None:
    """Slack's own trouble when `socket` asks for its first URL (a 5xx, a documented 'try
    again' error) does not say the app-level token is refused, nor stop the bot (a sound token
    told to be replaced, a replica exiting 2 at every start during a Slack incident): the URL
    is asked for again and the bot serves."""
    slack.fail_next("apps.connections.open", error=error, status=status)
    async with TestClient(TestServer(app_of(settings, socket_mode=True))):
        await slack.wait_for_call("apps.connections.open", count=2, timeout=10)
        await slack.wait_for(lambda: slack.socket_connected, timeout=10)
    assert not [r for r in caplog.records if "refused SLACK_APP_TOKEN" in r.getMessage()]
