"""`rollout-bot socket` against the sandbox's Socket Mode: Slack's `disconnect` messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_app import app_of, ephemeral_answer, settings, socket_command  # noqa: F401
from test_rerun_unconfirmed import until

from bot.adapters.slack import socket_mode
from bot.adapters.slack.socket_mode import SOCKET_DOWN_GRACE
from bot.bootstrap import create_app
from bot.config import Settings
from handlers.app_keys import READINESS
from sandbox.clock import ManualClock
from sandbox.harness import CHARTS
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


@asynccontextmanager
async def revoked_while_running(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
    clock: ManualClock,
    *,
    asked: int,
) -> AsyncIterator[TestClient[object, object]]:
    """`socket` on `clock`, its app-level token revoked while it runs, once the SDK has asked
    `apps.connections.open` `asked` times in all (the first at start)."""
    app = create_app(settings, socket_mode=True, clock=clock, charts=CHARTS)
    async with TestClient(TestServer(app)) as client:
        await slack.wait_for(lambda: slack.socket_connected)
        await slack.socket_revoke_app_token()
        await slack.wait_for_call("apps.connections.open", count=asked, timeout=15)
        yield client


async def test_a_revoked_app_token_makes_the_replica_unready_and_is_told_once(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The app-level token revoked while `socket` runs: Slack closes the link and refuses
    every new one, the SDK asks again for ever. Past a grace the replica is not ready, says
    why in `/readyz`, and says it once in the log, however often it is asked."""
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    async with revoked_while_running(settings, slack, clock, asked=2) as client:
        early = await (await client.get("/readyz")).json()  # within the grace: a refresh's
        assert "Socket Mode" not in early.get("reason", "")
        clock.advance(SOCKET_DOWN_GRACE + timedelta(seconds=1))
        with caplog.at_level(logging.INFO):
            answers = [await client.get("/readyz") for _ in range(3)]
        bodies = [await answer.json() for answer in answers]
    assert [answer.status for answer in answers] == [503] * 3
    assert "Socket Mode connection has been down for 31 s" in bodies[0]["reason"]
    told = [r for r in caplog.records if "Socket Mode connection has been down" in r.getMessage()]
    assert [r.levelno for r in told] == [logging.ERROR]


async def test_draining_closes_the_socket_first_so_slack_sends_to_another_replica(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
) -> None:
    """On SIGTERM the socket closes before the scheduler's drain: an envelope Slack sends
    then goes to another connection, not to a replica that is going away (and would take it
    during up to SHUTDOWN_GRACE_SECONDS of its drain)."""
    app = app_of(settings, socket_mode=True)
    async with TestClient(TestServer(app)):
        await slack.wait_for(lambda: slack.socket_connected)
        await app[READINESS].drain()
        connected_while_draining = slack.socket_connected
        opened = len([c for c in slack.calls if c.method == "apps.connections.open"])
    assert not connected_while_draining
    assert opened == 1  # and no new connection asked for


async def test_an_eleventh_connection_slack_refuses_is_told_once_naming_the_limit(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Slack keeps 10 Socket Mode connections per app: the 11th replica is told
    `too_many_websockets` at each try, and says so in one ERROR line, not one a try."""
    slack.socket_limit = 0
    with caplog.at_level(logging.INFO):
        async with TestClient(TestServer(app_of(settings, socket_mode=True))):
            await slack.wait_for_call("apps.connections.open", count=4, timeout=10)
    told = [r for r in caplog.records if "too_many_websockets" in r.getMessage()]
    assert [r.levelno for r in told] == [logging.ERROR]
    assert "10 connections" in told[0].getMessage()


async def test_a_handshake_slack_refuses_is_tried_again_with_a_new_url(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
) -> None:
    """A ticket is spent once presented: after a handshake Slack's link host refuses (a 408),
    the SDK presented the same URL again every 5 seconds for ever, and a `socket` starting then
    never served. The next try asks `apps.connections.open` for a new URL."""
    slack.handshakes_refused = 1
    async with asyncio.timeout(20), TestClient(TestServer(app_of(settings, socket_mode=True))):
        await slack.wait_for(lambda: slack.socket_connected, timeout=15)
    assert len([c for c in slack.calls if c.method == "apps.connections.open"]) == 2


async def test_the_grace_of_a_link_down_runs_from_when_it_went_down_not_from_the_first_look(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
) -> None:
    """A `socket` replica no load balancer asks (Slack's requests come over the socket): its
    link down for longer than the grace is not ready at the first `/readyz` or scrape after,
    not a grace later (the first look started the grace, and the alert waited a scrape)."""
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    # The SDK asked again, and again 5 s later: the link has been down a while, unasked.
    async with revoked_while_running(settings, slack, clock, asked=3) as client:
        clock.advance(SOCKET_DOWN_GRACE + timedelta(seconds=1))
        answer = await client.get("/readyz")
        body = await answer.json()
    assert answer.status == 503, body
    assert "Socket Mode connection has been down" in body["reason"]


async def test_a_command_slack_sent_just_before_sigterm_is_acknowledged_and_acted_on(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGTERM as a command comes over the socket (Slack sent it, the drain begins before the
    SDK has answered it): it is acknowledged and acted on before the socket closes. The socket
    closed at once, the envelope waiting in the SDK was dropped: Slack never redelivers a
    command or a click, and the person was shown an error for a command never seen."""
    app = app_of(settings, socket_mode=True)
    async with TestClient(TestServer(app)):
        await slack.wait_for(lambda: slack.socket_connected)
        url, payload = socket_command(slack, "freeze 2h INC-123 investigation")
        envelope = await slack.socket_send_envelope(type="slash_commands", payload=payload)
        with caplog.at_level(logging.WARNING):
            await app[READINESS].drain()  # SIGTERM, the command on its way in
        closed = not slack.socket_connected
        await slack.wait_for_socket_ack(envelope, timeout=1)  # its ack came before the close
        await slack.wait_for(lambda: len(slack.responses(url)) >= 1, timeout=10)
    assert closed
    # Closed once Slack answered the drain's ping and the command was answered, not at the
    # end of the drain's bound (which would have answered it all the same).
    assert not [r for r in caplog.records if "Socket Mode connection" in r.getMessage()]
    (answer,) = slack.responses(url)
    assert "froze deploys until" in str(answer.body["text"])


async def test_a_connection_slack_refuses_as_one_too_many_is_no_link_up(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
) -> None:
    """An 11th `socket` replica: each connection it opens is refused (`too_many_websockets`)
    a moment after its handshake. A look at the link in that moment saw it up, started its
    grace again, and the replica, which takes no Slack request, stayed ready for ever. A
    connection Slack never said `hello` on is no link up."""
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    slack.socket_limit = 0
    slack.refusals_held = asyncio.Event()
    app = create_app(settings, socket_mode=True, clock=clock, charts=CHARTS)
    async with TestClient(TestServer(app)) as client:
        await client.get("/readyz")
        clock.advance(SOCKET_DOWN_GRACE + timedelta(seconds=1))
        answer = await client.get("/readyz")
        body = await answer.json()
        slack.refusals_held.set()
    assert answer.status == 503, body
    assert "Socket Mode connection has been down for 31 s" in body["reason"]


async def test_a_revoked_app_token_is_the_sdks_error_line_once_not_one_every_five_seconds(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SDK asks Slack for a new link every 5 s for ever while the app-level token is
    refused, an ERROR line (and a traceback) each time: the same line is said once while the
    link stays down (the bot's own line says when the replica turns unready)."""
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    with caplog.at_level(logging.INFO):
        async with revoked_while_running(settings, slack, clock, asked=3):
            pass
    refused = [r for r in caplog.records if "token_revoked" in r.getMessage()]
    assert refused, "the SDK's line naming Slack's answer is said"
    assert len({r.getMessage() for r in refused}) == len(refused), [
        r.getMessage()[:80] for r in refused
    ]


async def test_a_drain_whose_ping_slack_never_answers_says_so(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM while Slack is out of reach, the connection still looking open: the drain's ping
    goes unanswered and it closes after its bound. It said "0 envelopes not answered: Slack
    shows the person an error for a command or a click among them", which is untrue either
    way: what Slack sent meanwhile is not known. It says Slack did not answer."""
    monkeypatch.setattr(socket_mode, "ANSWERED_WITHIN_S", 0.3)  # Slack's 3 s, not waited here
    slack.pings_answered = False
    app = app_of(settings, socket_mode=True)
    async with TestClient(TestServer(app)):
        await slack.wait_for(lambda: slack.socket_connected)
        with caplog.at_level(logging.WARNING):
            await app[READINESS].drain()
    (told,) = [r for r in caplog.records if "Socket Mode connection" in r.getMessage()]
    assert "Slack did not answer a ping within 0.3 s" in told.getMessage()
    assert "among them" not in told.getMessage()


async def test_an_sdk_error_line_said_again_while_the_link_stays_up_is_said_again(
    settings: Settings,  # noqa: F811
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Slack's routine refresh (`refresh_requested`) asks for a new connection: when Slack
    fails that ask (`apps.connections.open` answers 500), the SDK says so in an ERROR line and
    keeps the connection it has, still up. The next refresh failing so, hours later, was not
    said: the SDK's lines were said once until a `hello`, the link down or up. A repeat is
    dropped only while the link is down (the SDK trying again every 5 s)."""

    def failed() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "apps.connections.open" in r.getMessage()]

    async with TestClient(TestServer(app_of(settings, socket_mode=True))):
        await slack.wait_for(lambda: slack.socket_connected)
        with caplog.at_level(logging.ERROR):
            for refresh in (1, 2):
                slack.fail_next("apps.connections.open", error="internal_error", status=500)
                await slack.socket_disconnect("refresh_requested")
                # Two lines each: the URL not retrieved, the message listeners failed.
                await until(lambda: len(failed()) >= 2 * refresh)  # noqa: B023
        assert slack.socket_connected
    first, second = failed()[:2], failed()[2:]
    assert [r.getMessage() for r in first] == [r.getMessage() for r in second]
