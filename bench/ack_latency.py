"""How fast the bot acknowledges Slack: N concurrent signed `/rollout status` commands against
the real app (sandbox servers on loopback); prints the HTTP answer latency percentiles.
Slack gives an app 3 seconds."""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bot.sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER, SLACK_SIGNING_SECRET
from bot.sandbox.harness import Sandbox
from bot.sandbox.signing import slack_signature_headers, slash_command_body

CONCURRENT = int(sys.argv[1]) if len(sys.argv) > 1 else 100


async def one(http: aiohttp.ClientSession, box: Sandbox) -> float:
    url = box.slack.new_response_url(channel=RELEASE_CHANNEL, user=RELEASE_MANAGER)
    body = slash_command_body(
        text="status", user_id=RELEASE_MANAGER, channel_id=RELEASE_CHANNEL, response_url=url
    )
    headers = slack_signature_headers(SLACK_SIGNING_SECRET, body)
    start = time.perf_counter()
    async with http.post(f"{box.url}/slack/events", data=body, headers=headers) as answer:
        assert answer.status == 200
    return time.perf_counter() - start


async def run() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        async with Sandbox(workdir=Path(workdir)) as box, aiohttp.ClientSession() as http:
            await one(http, box)  # warm up (auth.test, connections)
            times = sorted(await asyncio.gather(*(one(http, box) for _ in range(CONCURRENT))))
            await box.slack.wait_for_response(count=CONCURRENT + 1, timeout=60)
    p95 = times[int(len(times) * 0.95) - 1]
    print(
        f"{CONCURRENT} concurrent /rollout status: ack median "
        f"{statistics.median(times) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {times[-1] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(run())
