"""The HTTP surface of the app: signed Slack requests, the webhook receiver and /healthz."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import multiprocessing
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sandbox_views import command_body
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from test_chart_worker import running

from bot.adapters.slack.bolt_app import bolt_app
from bot.bootstrap import create_app
from bot.config import ConfigError, Settings, load_settings
from bot.services.scheduler import TIMER_WORKERS
from handlers import github_webhook
from handlers.app_keys import READINESS, SERVICES
from handlers.workspace import ELSEWHERE
from sandbox.config import (
    GITHUB_WEBHOOK_SECRET,
    OTHER_CHANNEL,
    RELEASE_CHANNEL,
    RELEASE_MANAGER,
    SLACK_SIGNING_SECRET,
    bot_environment,
)
from sandbox.harness import CHARTS
from sandbox.signing import (
    event_callback_body,
    github_signature_headers,
    slack_signature_headers,
    slash_command_payload,
)
from sandbox.slack import SlackTestServer
from storage.db import Database, create_engine
from storage.migrate import upgrade

SUBCOMMANDS = ("start", "status", "promote", "rollback", "kill", "history", "npm-token", "help")


@pytest.fixture
def settings(
    monkeypatch: pytest.MonkeyPatch, sqlite_database_url: str, slack: SlackTestServer
) -> Settings:
    env = bot_environment(
        slack_api_url=slack.api_url,
        github_api_url="http://127.0.0.1:9/",
        database_url=sqlite_database_url,
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(Settings, env_file=None)


def app_of(settings: Settings, *, socket_mode: bool = False) -> web.Application:
    """The app, on the session's chart worker: an app's own starts a process as it starts
    (more than a second of CPU), and only the test of that start needs one."""
    return create_app(settings, socket_mode=socket_mode, charts=CHARTS)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[object, object]]:
    async with TestClient(TestServer(app_of(settings))) as test_client:
        yield test_client


async def test_the_app_starts_its_chart_worker_as_it_starts_and_ends_it_as_it_closes(
    settings: Settings,
) -> None:
    before = set(multiprocessing.active_children())
    async with TestClient(TestServer(create_app(settings))):
        # Spawned with the app, before any chart: no chart waits for its start.
        (worker,) = set(multiprocessing.active_children()) - before
    while running(worker.pid):  # noqa: ASYNC110 - ended (killed while it starts)
        await asyncio.sleep(0.01)


async def post_command(
    client: TestClient[object, object],
    slack: SlackTestServer,
    text: str,
    *,
    channel: str = RELEASE_CHANNEL,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Send `/rollout <text>` as Slack would; returns the HTTP status and the response_url."""
    url, body = command_body(slack, text, channel=channel)
    signed = headers if headers is not None else slack_signature_headers(SLACK_SIGNING_SECRET, body)
    response = await client.post("/slack/events", data=body, headers=signed)
    return response.status, url


async def ephemeral_answer(slack: SlackTestServer, url: str) -> str:
    (post,) = await slack.wait_for_response(url)
    assert post.body["response_type"] == "ephemeral"
    return json.dumps(post.body["blocks"])


async def test_help_lists_every_subcommand(
    client: TestClient[object, object], slack: SlackTestServer
) -> None:
    status, url = await post_command(client, slack, "help")
    assert status == 200
    answer = await ephemeral_answer(slack, url)
    for subcommand in SUBCOMMANDS:
        assert f"`{subcommand}" in answer or f"/rollout {subcommand}" in answer, subcommand
    # A usage's placeholders read as typed: escaped, not a link Slack would break or drop.
    (post,) = slack.responses(url)
    for shown in (answer, post.body["text"]):
        assert "/rollout start &lt;tag&gt; [--flags-ready]" in shown and "<tag>" not in shown
        assert "/rollout link &lt;run id or URL&gt;" in shown


async def test_help_works_outside_release_channels(
    client: TestClient[object, object], slack: SlackTestServer
) -> None:
    _, url = await post_command(client, slack, "", channel=OTHER_CHANNEL)
    assert "npm-token" in await ephemeral_answer(slack, url)


async def test_unknown_subcommand_is_refused_with_the_help(
    client: TestClient[object, object], slack: SlackTestServer
) -> None:
    _, url = await post_command(client, slack, "deploy v1.4.2")
    answer = await ephemeral_answer(slack, url)
    assert "deploy" in answer.split("npm-token")[0]  # the error names it, before the help
    assert "npm-token" in answer


async def test_other_subcommands_only_in_release_channels(
    client: TestClient[object, object], slack: SlackTestServer
) -> None:
    _, url = await post_command(client, slack, "status", channel=OTHER_CHANNEL)
    answer = await ephemeral_answer(slack, url)
    assert f"<#{RELEASE_CHANNEL}>" in answer
    assert slack.calls_to("chat.postMessage") == []


def _signed(
    body: str, *, timestamp: int | None = None, secret: str = SLACK_SIGNING_SECRET
) -> dict[str, str]:
    return slack_signature_headers(secret, body, timestamp=timestamp)


@pytest.mark.parametrize(
    "tamper",
    [
        "wrong secret",
        "stale",
        "future",
        "no signature",
        "no timestamp",
        "non-numeric timestamp",
        "signed timestamp with sign",
        "underscored timestamp",
        "empty timestamp",
        "body changed",
    ],
)
async def test_unsigned_or_forged_slack_requests_are_refused(
    client: TestClient[object, object], slack: SlackTestServer, tamper: str
) -> None:
    _, body = command_body(slack, "help")
    now = int(time.time())
    headers = _signed(body)
    if tamper == "wrong secret":
        headers = _signed(body, secret="not-the-secret")
    elif tamper == "stale":
        headers = _signed(body, timestamp=now - 6 * 60)
    elif tamper == "future":
        headers = _signed(body, timestamp=now + 6 * 60)
    elif tamper == "no signature":
        del headers["X-Slack-Signature"]
    elif tamper == "no timestamp":
        del headers["X-Slack-Request-Timestamp"]
    elif tamper == "non-numeric timestamp":
        headers["X-Slack-Request-Timestamp"] = "abc"
    elif tamper == "signed timestamp with sign":
        headers["X-Slack-Request-Timestamp"] = f"+{now}"
    elif tamper == "underscored timestamp":
        headers["X-Slack-Request-Timestamp"] = f"{str(now)[:5]}_{str(now)[5:]}"
    elif tamper == "empty timestamp":
        headers["X-Slack-Request-Timestamp"] = ""
    elif tamper == "body changed":
        body = body.replace("help", "status")
    response = await client.post("/slack/events", data=body, headers=headers)
    assert response.status in (400, 401)
    assert slack.calls == []
    assert slack.all_responses == []


class _Trickle:
    """A request body sent one piece, then held back until `release`: what the server answers
    before the rest comes, it answered without reading the body. `sent` counts the pieces."""

    def __init__(self, body: bytes, *, pieces: int = 2) -> None:
        size = -(-len(body) // pieces)
        self._pieces = [body[i : i + size] for i in range(0, len(body), size)]
        self.sent = 0
        self.release = asyncio.Event()

    async def __call__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            if self.sent:
                await self.release.wait()
            self.sent += 1
            yield piece


_OVER_A_MEGABYTE = {
    "announced": b"Content-Length: 20000000\r\n\r\ntext=" + b"a" * 1000,
    "chunked": b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (1100 * 1024)
    + b"a" * (1100 * 1024)
    + b"\r\n",
}


@pytest.mark.parametrize("length", list(_OVER_A_MEGABYTE))
async def test_a_body_larger_than_slack_sends_is_refused_before_it_is_read(
    client: TestClient[object, object], slack: SlackTestServer, length: str
) -> None:
    """Slack's requests are a few kilobytes. A request with a signature that announces more
    than a megabyte, or sends more in chunks, is answered at once, read no further: an
    unauthenticated sender cannot make the bot take in the 25 MB the webhook's limit allows
    (the rest of the body is never sent here, so a bot that waited to read it all would not
    answer). One without a signature is not read at all (the test below)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /slack/events HTTP/1.1\r\nHost: bot\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"X-Slack-Request-Timestamp: %d\r\nX-Slack-Signature: v0=%b\r\n"
        % (int(time.time()), b"0" * 64)
        + _OVER_A_MEGABYTE[length]
    )
    await writer.drain()
    try:
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    finally:
        writer.close()
    assert status_line.split()[1] == b"413"
    assert slack.calls == []


@pytest.mark.parametrize("missing", ["X-Slack-Signature", "X-Slack-Request-Timestamp"])
async def test_a_slack_request_without_a_signature_is_refused_before_its_body_is_read(
    client: TestClient[object, object], slack: SlackTestServer, missing: str
) -> None:
    """Without Slack's signature headers the request is answered 401 while its sender still
    holds back all but the first piece of the body (before, the bot read up to a megabyte
    first), and the connection closes."""
    _, body = command_body(slack, "help " + "x" * 64 * 1024)
    headers = slack_signature_headers(SLACK_SIGNING_SECRET, body)
    del headers[missing]
    headers["Content-Length"] = str(len(body))
    trickle = _Trickle(body.encode())
    async with asyncio.timeout(10):  # the bug: no answer until the whole body came
        response = await client.post("/slack/events", data=trickle(), headers=headers)
    assert response.status == 401
    assert trickle.sent == 1
    assert response.headers["Connection"] == "close"
    trickle.release.set()
    assert slack.calls == []


async def _raw(client: TestClient[object, object], request: bytes) -> bytes:
    """The status line the app answers `request` (bytes as sent, headers not UTF-8 included)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readline(), timeout=5)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "signature",
    [b"v0=\xe9" + b"0" * 63, b"v0=" + b"0" * 64 + b"\xff", "v0=\u00e9".encode() + b"0" * 63],
)
async def test_a_slack_signature_that_is_not_ascii_is_refused_not_a_server_error(
    client: TestClient[object, object],
    slack: SlackTestServer,
    caplog: pytest.LogCaptureFixture,
    signature: bytes,
) -> None:
    """slack_sdk's verifier compares the signature as a string, and raises on one that is not
    ASCII: anyone could make the bot answer 500 and log a traceback for each request (past
    the one line a minute of refusals). Not shaped as Slack's (`v0=` and 64 hex digits), it is
    no signature: 401, from the headers."""
    _, body = command_body(slack, "help")
    status_line = await _raw(
        client,
        b"POST /slack/events HTTP/1.1\r\nHost: bot\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"X-Slack-Request-Timestamp: %d\r\nX-Slack-Signature: %b\r\nContent-Length: %d\r\n\r\n"
        % (int(time.time()), signature, len(body.encode()))
        + body.encode(),
    )
    assert status_line.split()[1] == b"401"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert slack.calls == []


async def test_a_metrics_bearer_token_that_is_not_utf8_is_refused_not_a_server_error(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The bearer token was encoded to be compared: one sent as bytes that are not UTF-8
    (kept by aiohttp as surrogates) raised, a 500 and a traceback for each scrape."""
    token = settings.model_copy(update={"metrics_token": SecretStr("the-metrics-token")})
    async with TestClient(TestServer(app_of(token))) as scraped:
        for sent in (b"\xff\xfe", b"the-metrics-token\xff"):
            status_line = await _raw(
                scraped,
                b"GET /metrics HTTP/1.1\r\nHost: bot\r\nAuthorization: Bearer %b\r\n\r\n" % sent,
            )
            assert status_line.split()[1] == b"401"
        answer = await scraped.get(
            "/metrics", headers={"Authorization": "Bearer the-metrics-token"}
        )
        assert answer.status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_valid_request_is_not_refused_by_the_timestamp_guard(
    client: TestClient[object, object], slack: SlackTestServer
) -> None:
    """The control for the test above: the same request, correctly signed, is answered."""
    status, url = await post_command(client, slack, "help")
    assert status == 200
    await slack.wait_for_response(url)


def _webhook(payload: object, *, event: str = "ping") -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, github_signature_headers(GITHUB_WEBHOOK_SECRET, body, event=event)


async def test_webhook_answers_a_signed_ping(client: TestClient[object, object]) -> None:
    body, headers = _webhook({"zen": "Keep it logically awesome.", "hook_id": 1})
    response = await client.post("/github/webhook", data=body, headers=headers)
    assert response.status == 200
    assert (await response.json())["event"] == "ping"


async def test_webhook_reads_a_form_encoded_delivery(client: TestClient[object, object]) -> None:
    """A repository hook may send `application/x-www-form-urlencoded`: `payload=<JSON>`,
    signed as sent."""
    ping = json.dumps({"zen": "Design for failure.", "hook_id": 7})
    for body, status in ((urlencode({"payload": ping}), 200), (f"payload={ping}&x=1", 400)):
        headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, body.encode(), event="ping")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        response = await client.post("/github/webhook", data=body.encode(), headers=headers)
        assert response.status == status
    assert (await response.json()) == {
        "error": "body is not JSON (nor a form of one JSON `payload` field)"
    }


@pytest.mark.parametrize("forgery", ["wrong secret", "missing", "not sha256", "body changed"])
async def test_webhook_refuses_forged_or_unsigned_deliveries(
    client: TestClient[object, object], forgery: str
) -> None:
    body, headers = _webhook({"zen": "x"})
    if forgery == "wrong secret":
        headers = github_signature_headers("another-secret", body, event="ping")
    elif forgery == "missing":
        del headers["X-Hub-Signature-256"]
    elif forgery == "not sha256":
        headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"].replace("sha256", "sha1")
    elif forgery == "body changed":
        body = body.replace(b"x", b"y")
    response = await client.post("/github/webhook", data=body, headers=headers)
    assert response.status == 401


@pytest.mark.parametrize(
    "forgery", ["missing", "not sha256", "not hex", "sha1", "no secret configured"]
)
async def test_a_webhook_without_a_signature_is_refused_before_its_body_is_read(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, forgery: str
) -> None:
    """A delivery that cannot be signed (no `X-Hub-Signature-256`, one not shaped as GitHub's
    `sha256=<64 hex>`, or no GITHUB_WEBHOOK_SECRET to check it with) is answered 401 while
    its sender still holds back all but the first piece of the body: the bot did not wait to
    read it. Before, it read up to 25 MB first. Then the connection closes."""
    body = json.dumps({"zen": "x", "padding": "p" * 256 * 1024}).encode()
    headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, body, event="ping")
    headers["Content-Length"] = str(len(body))
    signature = headers.pop("X-Hub-Signature-256")
    if forgery == "not sha256":
        headers["X-Hub-Signature-256"] = "sha512=" + signature.removeprefix("sha256=")
    elif forgery == "not hex":
        headers["X-Hub-Signature-256"] = "sha256=" + "z" * 64
    elif forgery == "sha1":
        headers["X-Hub-Signature"] = "sha1=" + "0" * 40
    elif forgery == "no secret configured":
        headers["X-Hub-Signature-256"] = signature
        monkeypatch.delenv("GITHUB_WEBHOOK_SECRET")
        settings = load_settings(Settings, env_file=None)
    trickle = _Trickle(body)
    async with TestClient(TestServer(app_of(settings))) as bot:
        async with asyncio.timeout(10):  # the bug: no answer until the whole body came
            response = await bot.post("/github/webhook", data=trickle(), headers=headers)
        assert response.status == 401
        assert trickle.sent == 1  # the rest was never sent
        assert response.headers["Connection"] == "close"
        assert (await response.json()) == {"error": "invalid signature"}
        trickle.release.set()


@pytest.mark.parametrize("framing", ["announced", "chunked"])
async def test_a_signed_delivery_sent_in_pieces_is_read_whole_and_taken(
    client: TestClient[object, object], framing: str
) -> None:
    """The control of the test above: the same trickled body, signed, is read to its end and
    answered (in pieces with its length, or chunked without one)."""
    body = json.dumps({"zen": "x", "hook_id": 3, "padding": "p" * 256 * 1024}).encode()
    headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, body, event="ping")
    if framing == "announced":
        headers["Content-Length"] = str(len(body))
    trickle = _Trickle(body)
    trickle.release.set()
    response = await client.post("/github/webhook", data=trickle(), headers=headers)
    assert response.status == 200
    assert (await response.json())["event"] == "ping"
    assert trickle.sent == 2


async def test_a_webhook_announcing_more_than_githubs_limit_is_refused_before_any_of_it_is_read(
    client: TestClient[object, object],
) -> None:
    """A `Content-Length` over GitHub's 25 MB is answered 413 before one byte of the body is
    read (here none is ever sent), and the connection is closed after it (`Connection:
    close`): before, the bot read 25 MB of it first."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /github/webhook HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
        b"X-GitHub-Event: workflow_run\r\nX-Hub-Signature-256: sha256="
        + b"0" * 64
        + b"\r\nContent-Length: %d\r\n\r\n" % (github_webhook.MAX_BODY + 1)
    )
    await writer.drain()
    try:
        async with asyncio.timeout(10):  # the bug: no answer until 25 MB came
            answer = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    assert answer.split()[1] == b"413"
    assert b"\r\nConnection: close\r\n" in answer


@pytest.mark.parametrize("framing", ["announced", "chunked"])
async def test_a_webhook_body_over_githubs_limit_is_refused_unread_beyond_it(
    client: TestClient[object, object], framing: str
) -> None:
    """GitHub sends at most 25 MB, and the app's `client_max_size` is that
    (`github_webhook.MAX_BODY`): aiohttp's `request.read()` stops one chunk past it and
    answers 413, before the signature is looked at. A sender without the secret makes the
    bot read no more than that: the rest of the announced body is never sent here, so a bot
    that waited to read it all would not answer."""
    limit = github_webhook.MAX_BODY
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /github/webhook HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
        b"X-GitHub-Event: workflow_run\r\nX-Hub-Signature-256: sha256="
        + b"0" * 64
        + b"\r\n"
        + (
            b"Content-Length: %d\r\n\r\n" % (2 * limit)
            if framing == "announced"
            else b"Transfer-Encoding: chunked\r\n\r\n"
        )
    )
    piece = b"a" * (1024 * 1024)
    try:
        for _ in range(limit // len(piece) + 2):  # past the limit, far short of the body
            writer.write(piece if framing == "announced" else b"%x\r\n%b\r\n" % (len(piece), piece))
            await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    finally:
        writer.close()
    assert status_line.split()[1] == b"413"


async def test_webhook_rejects_malformed_json(client: TestClient[object, object]) -> None:
    body = b"{not json"
    headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, body, event="workflow_run")
    response = await client.post("/github/webhook", data=body, headers=headers)
    assert response.status == 400


async def test_webhook_without_a_configured_secret_refuses_everything(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET")
    unsecured = load_settings(Settings, env_file=None)
    body, headers = _webhook({"zen": "x"})
    async with TestClient(TestServer(app_of(unsecured))) as test_client:
        response = await test_client.post("/github/webhook", data=body, headers=headers)
    assert response.status == 401


async def test_a_slack_api_url_without_its_last_slash_still_reaches_the_api(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, slack: SlackTestServer
) -> None:
    """slack_sdk joins a method's name to the base URL: `.../api` alone would call
    `.../auth.test`. SLACK_API_URL is taken as the folder it names."""
    monkeypatch.setenv("SLACK_API_URL", slack.api_url.rstrip("/"))
    trimmed = load_settings(Settings, env_file=None)
    assert str(trimmed.slack_api_url) == slack.api_url
    client = AsyncWebClient(
        token=trimmed.slack_bot_token.get_secret_value(), base_url=str(trimmed.slack_api_url)
    )
    assert (await client.auth_test())["ok"] is True


@pytest.mark.parametrize("blank", ["", "  "])
@pytest.mark.parametrize("name", ["SLACK_SIGNING_SECRET", "GITHUB_WEBHOOK_SECRET"])
async def test_a_blank_signing_secret_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    slack: SlackTestServer,
    name: str,
    blank: str,
) -> None:
    """An HMAC keyed with an empty secret is one anyone can compute: a bot that took a blank
    webhook secret acted on forged deliveries, and one with a blank Slack secret answered
    every Slack request 500 (slack_sdk's verifier refuses the key). Either is refused with the
    other problems of the configuration, and nothing starts."""
    monkeypatch.setenv(name, blank)
    with pytest.raises(ConfigError) as refused:
        load_settings(Settings, env_file=None)
    assert [p for p in refused.value.problems if p.startswith(name)] == [
        f"{name}: empty: anyone can sign with an empty key; {_BLANK_SECRET_FIX[name]}"
    ]


_BLANK_SECRET_FIX = {
    "SLACK_SIGNING_SECRET": "set the Slack app's Signing Secret (Basic Information)",
    "GITHUB_WEBHOOK_SECRET": (
        "set the webhook's secret, or leave GITHUB_WEBHOOK_SECRET unset to refuse every delivery"
    ),
}


async def test_healthz_answers_when_the_database_does(client: TestClient[object, object]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"


async def readyz(client: TestClient[object, object]) -> tuple[int, dict[str, str]]:
    response = await client.get("/readyz")
    return response.status, await response.json()


def write(database_url: str, statement: str) -> None:
    """Change the bot's SQLite database behind its back. Run it in a thread of its own: the
    bot's event loop goes on meanwhile, so a transaction it has open commits instead of
    holding the write lock this waits for (on the loop's thread, neither would give way)."""
    with sqlite3.connect(make_url(database_url).database or "", timeout=15) as db:
        db.execute(statement)


async def test_readyz_once_the_scheduler_went_round_then_503_with_the_reason(
    client: TestClient[object, object], sqlite_database_url: str
) -> None:
    async with asyncio.timeout(10):
        while (await readyz(client))[0] != 200:  # noqa: ASYNC110 - the scheduler's first round
            await asyncio.sleep(0.05)
    assert await readyz(client) == (200, {"status": "ready"})

    # Another version's `migrate` took the database back a revision: not ready, and why.
    await asyncio.to_thread(
        write, sqlite_database_url, "update alembic_version set version_num = '0005'"
    )
    status, body = await readyz(client)
    assert status == 503 and body["status"] == "not ready"
    assert body["reason"].endswith("run `rollout-bot migrate`")
    # The next version migrated it during a rolling upgrade: this replica keeps serving.
    await asyncio.to_thread(
        write,
        sqlite_database_url,
        "update alembic_version set version_num = '0099_from_the_next_version'",
    )
    assert (await readyz(client))[0] == 200

    # SIGTERM drains: not ready at once, while the process still answers.
    assert client.app is not None
    await client.app[READINESS].drain()
    assert await readyz(client) == (
        503,
        {"status": "not ready", "reason": "shutting down: this replica takes no new work"},
    )
    assert (await client.get("/healthz")).status == 200


async def test_a_failed_scheduler_pass_does_not_move_the_tick_readyz_reads(
    settings: Settings, sqlite_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The scheduler's timers table is gone while `SELECT 1` and the migration revision still
    answer: every pass fails and is retried 5 s later, and no failed pass moves the tick
    `/readyz` reads, so the replica goes unready instead of firing no window end for ever."""
    caplog.set_level(logging.WARNING, logger="bot.services.scheduler")

    def failures() -> int:
        return sum("scheduler iteration failed" in r.getMessage() for r in caplog.records)

    polling = settings.model_copy(update={"github_poll_interval": 0.5})  # the next pass soon
    async with TestClient(TestServer(app_of(polling))) as client:
        async with asyncio.timeout(10):
            while (await readyz(client))[0] != 200:  # noqa: ASYNC110 - the first round
                await asyncio.sleep(0.05)
        assert client.app is not None
        readiness = client.app[READINESS]
        await asyncio.to_thread(write, sqlite_database_url, "drop table timers")
        async with asyncio.timeout(15):
            while failures() < 1:  # noqa: ASYNC110 - the scheduler's next pass
                await asyncio.sleep(0.05)
            failed_at = datetime.now(UTC)
            while failures() < 2:  # noqa: ASYNC110 - its retry, 5 s later
                await asyncio.sleep(0.05)
        # The polls go on (they need no timers table), but the tick is the loop further
        # behind: the timers', which has not moved since it failed.
        tick = readiness.last_tick()
        assert tick is not None and tick <= failed_at, "a failed pass moved the scheduler's tick"


def socket_command(slack: SlackTestServer, text: str, **extra: str) -> tuple[str, dict[str, str]]:
    """A release manager's `/rollout <text>` in the release channel, as Slack sends it over the
    socket: its response URL and its payload."""
    url = slack.new_response_url(channel=RELEASE_CHANNEL, user=RELEASE_MANAGER)
    payload = slash_command_payload(
        text=text,
        user_id=RELEASE_MANAGER,
        channel_id=RELEASE_CHANNEL,
        response_url=url,
        **extra,
    )
    return url, payload


async def test_socket_mode_answers_help_over_the_socket(
    settings: Settings, slack: SlackTestServer
) -> None:
    async with TestClient(TestServer(app_of(settings, socket_mode=True))):
        await slack.wait_for(lambda: slack.socket_connected)
        url, payload = socket_command(slack, "help")
        envelope = await slack.socket_send_envelope(type="slash_commands", payload=payload)
        await slack.wait_for_socket_ack(envelope)
        answer = await ephemeral_answer(slack, url)
    assert "npm-token" in answer


async def test_socket_mode_refuses_a_command_from_another_workspace_in_its_ack(
    settings: Settings, slack: SlackTestServer
) -> None:
    """The socket has no signature, but the same check of the workspace: the command is
    answered in its acknowledgement and reaches no listener."""
    async with TestClient(TestServer(app_of(settings, socket_mode=True))):
        await slack.wait_for(lambda: slack.socket_connected)
        url, payload = socket_command(slack, "help", team_id="T0ELSEWHERE")
        envelope = await slack.socket_send_envelope(type="slash_commands", payload=payload)
        ack = await slack.wait_for_socket_ack(envelope)
    assert ack["payload"] == {"response_type": "ephemeral", "text": ELSEWHERE}
    assert slack.responses(url) == []


async def test_socket_mode_serves_no_slack_route_over_http(
    settings: Settings, slack: SlackTestServer
) -> None:
    """Over Socket Mode, Slack reaches the bot through the socket only: `POST /slack/events` is
    not served (a request signed with SLACK_SIGNING_SECRET, which an operator of `socket` may
    have left a placeholder, is answered 404 and acted on by nobody), while the health,
    readiness and metrics endpoints and GitHub's webhook stay."""
    async with TestClient(TestServer(app_of(settings, socket_mode=True))) as client:
        await slack.wait_for(lambda: slack.socket_connected)
        status, url = await post_command(client, slack, "help")
        served = {
            path: (await client.get(path)).status for path in ("/healthz", "/readyz", "/metrics")
        }
        body, headers = _webhook({"zen": "x", "hook_id": 1})
        webhook = await client.post("/github/webhook", data=body, headers=headers)
    assert status == 404
    assert slack.responses(url) == []
    assert 404 not in served.values() and served["/healthz"] == 200
    assert webhook.status == 200


@pytest.mark.postgres
async def test_the_database_gone_leaves_healthz_alive_readyz_503_and_metrics_saying_so(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, empty_postgres_database_url: str
) -> None:
    await upgrade(empty_postgres_database_url)
    monkeypatch.setenv("DATABASE_URL", empty_postgres_database_url)
    on_postgres = load_settings(Settings, env_file=None)
    name = make_url(empty_postgres_database_url).database
    async with TestClient(TestServer(app_of(on_postgres))) as test_client:
        assert (await test_client.get("/healthz")).status == 200
        admin = create_engine(
            str(make_url(empty_postgres_database_url).set(database="test")),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
        )
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.dispose()
        response = await test_client.get("/healthz")
        health = await response.json()
        ready = await readyz(test_client)
        scrape = await test_client.get("/metrics")
        figures = {
            sample.name: sample.value
            for family in text_string_to_metric_families(await scrape.text())
            for sample in family.samples
            if not sample.labels
        }
    assert response.status == 200  # liveness: restarting the replica would not help
    assert health["database"] == "unavailable"
    assert ready == (503, {"status": "not ready", "reason": "the database does not answer"})
    # Every replica still answers its scrape: the series say what is down (RolloutBotNotReady),
    # and the database's figures are unknown rather than the last ones read.
    assert scrape.status == 200
    assert (figures["rollout_bot_ready"], figures["rollout_bot_database_up"]) == (0, 0)
    assert math.isnan(figures["rollout_bot_timers_overdue"])


async def test_opening_the_app_home_shows_the_help(
    client: TestClient[object, object], slack: SlackTestServer
) -> None:
    body = event_callback_body(
        event={"type": "app_home_opened", "user": RELEASE_MANAGER, "tab": "home"}
    )
    headers = slack_signature_headers(SLACK_SIGNING_SECRET, body, content_type="application/json")
    response = await client.post("/slack/events", data=body, headers=headers)
    assert response.status == 200
    await slack.wait_for_call("views.publish")
    assert "npm-token" in json.dumps(slack.home_tabs[RELEASE_MANAGER])
    assert "No active rollouts" in json.dumps(slack.home_tabs[RELEASE_MANAGER])


async def test_every_timer_worker_its_lease_renewal_the_loops_and_requests_get_a_connection_at_once(
    client: TestClient[object, object],
) -> None:
    """A replica's timer workers all in the database, each with its lease renewal beside it,
    with the polls and the outbox loops and a few requests: none waits for a connection (a
    renewal that waited could let its lease run out under a worker still at work). Before,
    the pool held 15 at most, and the 16th waited for one to be given back."""
    database = client.app[SERVICES].database
    assert isinstance(database, Database)
    at_once = 2 * TIMER_WORKERS + 2 + 5
    async with AsyncExitStack() as held, asyncio.timeout(10):
        connections = await asyncio.gather(
            *(held.enter_async_context(database.engine.connect()) for _ in range(at_once))
        )
        for connection in connections:
            assert await connection.scalar(text("SELECT 1")) == 1


async def test_bolt_does_not_warn_at_each_start_that_the_token_it_read_goes_unused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Bolt reads SLACK_BOT_TOKEN by itself and would warn, at every start of every replica,
    that the client's token (the same one) wins: that line is dropped, Bolt's others are not."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-the-same-token")
    caplog.set_level(logging.WARNING, logger="slack_bolt")
    bolt_app(AsyncWebClient(token="xoxb-the-same-token"), signing_secret="secret")
    assert [r.getMessage() for r in caplog.records] == []
    logging.getLogger("slack_bolt.AsyncApp").warning("any other line of Bolt's")
    assert [r.getMessage() for r in caplog.records] == ["any other line of Bolt's"]


@pytest.mark.postgres
async def test_a_database_turned_read_only_by_a_failover_makes_readyz_say_so(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, empty_postgres_database_url: str
) -> None:
    """A failover left DATABASE_URL on a server that takes no writes (the old primary, now a
    standby): it answers `SELECT 1`, its migrations read at head, and every claim, click and
    delivery fails. `/readyz` said ready until the scheduler's tick went stale, then "the
    scheduler last went round N s ago": never why, though `serve` refuses that database."""
    await upgrade(empty_postgres_database_url)
    monkeypatch.setenv("DATABASE_URL", empty_postgres_database_url)
    on_postgres = load_settings(Settings, env_file=None)
    name = make_url(empty_postgres_database_url).database
    async with TestClient(TestServer(app_of(on_postgres))) as test_client:
        async with asyncio.timeout(10):
            while (await readyz(test_client))[0] != 200:  # noqa: ASYNC110 - the first round
                await asyncio.sleep(0.05)
        admin = create_engine(
            str(make_url(empty_postgres_database_url).set(database="test")),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
        )
        async with admin.connect() as connection:  # the bot's connections reconnect to it
            await connection.exec_driver_sql(
                f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
            )
            # Each ended before this returns (its timeout, ms), so none answers /readyz after.
            ended = (
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = :name"
            )
            await connection.execute(text(ended), {"name": name})
        await admin.dispose()
        ready = await readyz(test_client)
    assert ready == (
        503,
        {
            "status": "not ready",
            "reason": "the database takes no writes (transaction_read_only is on: a read "
            "replica, or default_transaction_read_only set on the database or its role): "
            "point DATABASE_URL at the primary",
        },
    )
