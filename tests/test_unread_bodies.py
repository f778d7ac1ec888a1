"""What the rest of a refused body costs: a request answered before its body is read (401 or 413)
still has its sender's bytes taken in and dropped for a while, so that the answer reaches a
sender still sending, then the connection closes. Before, aiohttp's default let that go on for
10 seconds: a forger dripping a large body held the connection, and the bot's reading, that
long for each request."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from aiohttp.test_utils import TestClient
from test_app import client, settings

from handlers import github_webhook
from handlers.bodies import LINGER_S

__all__ = ["client", "settings"]  # the fixtures this module's tests use (and conftest's slack)

LARGE = 20 * 1000 * 1000
"""A body far larger than what the bot reads of a refused request (nothing)."""

REFUSED = {
    "unsigned webhook": (
        b"POST /github/webhook HTTP/1.1\r\nHost: bot\r\nX-GitHub-Event: ping\r\n"
        b"Content-Length: %d\r\n\r\n" % LARGE,
        b"401",
    ),
    "webhook over GitHub's limit": (
        b"POST /github/webhook HTTP/1.1\r\nHost: bot\r\nX-GitHub-Event: ping\r\n"
        b"X-Hub-Signature-256: sha256=%b\r\nContent-Length: %d\r\n\r\n"
        % (b"0" * 64, github_webhook.MAX_BODY + 1),
        b"413",
    ),
    "unsigned Slack request": (
        b"POST /slack/events HTTP/1.1\r\nHost: bot\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % LARGE,
        b"401",
    ),
}

SLACK = 4.0
"""Seconds beyond `LINGER_S` a busy machine may take to close the connection (still well under
aiohttp's default of 10 s, so the test fails without the bound)."""


async def _drip(writer: asyncio.StreamWriter, *, pause: float) -> None:
    """Send the body 64 KB at a time, `pause` seconds apart, until the bot closes."""
    with contextlib.suppress(ConnectionError):
        while True:
            writer.write(b"a" * 64 * 1024)
            await writer.drain()
            await asyncio.sleep(pause)


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the bot sends until it closes the connection (a reset is a close too)."""
    answer = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(64 * 1024):
            answer += chunk
    return answer


@pytest.mark.parametrize("refused", list(REFUSED))
async def test_a_slow_sender_of_a_refused_body_is_answered_and_cut_off_within_the_bound(
    client: TestClient[object, object], refused: str
) -> None:
    request, status = REFUSED[refused]
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request)
    dripping = asyncio.create_task(_drip(writer, pause=0.05))
    try:
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        answered = time.monotonic()
        async with asyncio.timeout(LINGER_S + SLACK):  # the bug: it read on for 10 s
            await _until_closed(reader)
        closed = time.monotonic() - answered
    finally:
        dripping.cancel()
        writer.close()
    assert status_line.split()[1] == status
    assert closed < LINGER_S + SLACK


async def test_a_sender_that_writes_its_whole_body_before_reading_still_gets_its_answer(
    client: TestClient[object, object],
) -> None:
    """The reason the bot does not close at once: a sender that writes the whole body first,
    as urllib does, would meet a connection reset (the bot closing with bytes still coming)
    instead of its 401."""
    request, _ = REFUSED["unsigned webhook"]
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request + b"a" * LARGE)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await _until_closed(reader)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert answer.endswith(b'{"error": "invalid signature"}')
