"""How fast the bot acknowledges Slack, beside a bare Bolt app that only acknowledges.

Both serve on the same aiohttp server stack with the same signing secret, each in a process
of its own, as in production: the bot (`rollout-bot serve`, run by `Sandbox`) and a Bolt
`AsyncApp` whose listeners only call `ack()` (this script, `--serve-bare`). This process holds
the sandbox's Slack and GitHub and sends the requests. Each round sends bursts of N concurrent
signed requests to each app in turn (the order alternates from round to round, so drift of a
shared machine hits both alike): `/rollout status`, and a click that the bot refuses (a
bystander's Cancel on the preflight card: read, checked, audited, answered ephemerally, nothing
changed). Before the next burst the bot's answers on the response_urls are awaited, so no burst
pays for the last one's work.

Prints, per request kind, p50/p99 of the HTTP answer and the throughput (requests / burst
time) of each app over all rounds, and the ratios; then the median (and range) of the ratios
taken round by round, which a load coming and going on a shared machine moves less. Slack
gives an app 3 seconds.

Usage: python bench/ack_latency.py [CONCURRENT] [ROUNDS] [--profile FILE]
(`--profile` runs the bot in this process instead, under cProfile, and writes the statistics
of its bursts to FILE: the profile shows the bot's work, the figures are not comparable.)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.actions import Action
from sandbox.config import (
    BYSTANDER,
    RELEASE_CHANNEL,
    RELEASE_MANAGER,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
)
from sandbox.harness import Sandbox
from sandbox.signing import slack_signature_headers, slash_command_body

Request = tuple[str, str | None]
"""A body to post, and the response_url the bot answers it on (None: no answer awaited)."""


@dataclass
class Figures:
    """Answer times of one app for one kind of request, over every burst."""

    times: list[float] = field(default_factory=list)
    burst_seconds: float = 0.0
    bursts: list[tuple[list[float], float]] = field(default_factory=list)
    """Each burst's answer times and its duration, in the order of the rounds."""
    cpu_seconds: float = 0.0
    """CPU time of the app's process from the start of each burst until its work on the
    burst was done (for the bot: its answers on the response_urls arrived)."""

    def p(self, percentile: int) -> float:
        return percentile(self.times, percentile)

    @property
    def throughput(self) -> float:
        return len(self.times) / self.burst_seconds

    @property
    def cpu_per_request(self) -> float:
        return self.cpu_seconds / len(self.times)


def percentile(times: Sequence[float], at: int) -> float:
    """The `at`-th percentile of `times` (inclusive method)."""
    return statistics.quantiles(times, n=100, method="inclusive")[at - 1]


def round_ratios(bot: Figures, bare: Figures) -> tuple[list[float], list[float]]:
    """Per round, the bot's p99 over the bare app's, and its throughput over the bare app's:
    the two bursts of a round ran a moment apart, so a load that comes and goes on a shared
    machine moves both, where the pooled figures mix a quiet round of one with a busy one of
    the other."""
    pairs = list(zip(bot.bursts, bare.bursts, strict=True))
    p99 = [percentile(b, 99) / percentile(a, 99) for (b, _), (a, _) in pairs]
    throughput = [(len(b) / tb) / (len(a) / ta) for (b, tb), (a, ta) in pairs]
    return p99, throughput


def cpu_seconds(pid: int | None) -> float:
    """User and system CPU time of a process so far (Linux `/proc/<pid>/stat`); 0 for this
    process's own bot (`--profile`), which shares its CPU with the servers and the client."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_app(slack_api_url: str) -> web.Application:
    """A Bolt app that acknowledges `/rollout` and every click, and does nothing else."""
    bolt = AsyncApp(
        name="bare",
        client=AsyncWebClient(token=SLACK_BOT_TOKEN, base_url=slack_api_url),
        signing_secret=SLACK_SIGNING_SECRET,
    )

    async def only_ack(ack: AsyncAck) -> None:
        await ack()

    bolt.command("/rollout")(only_ack)
    bolt.action(re.compile(".*"))(only_ack)
    return bolt.web_app(path="/slack/events")


async def start_bare(slack_api_url: str) -> tuple[asyncio.subprocess.Process, str]:
    """This script as the bare app, in a process of its own; returns it and its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-bare", str(port), "--slack-api-url", slack_api_url
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.post(f"{url}/slack/events", data="") as answer:
                    if answer.status == 401:  # listening, and it checks signatures
                        return process, url
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    process.kill()
    raise RuntimeError("the bare app did not start")


def status_request(box: Sandbox) -> Request:
    url = box.slack.new_response_url(channel=RELEASE_CHANNEL, user=RELEASE_MANAGER)
    body = slash_command_body(
        text="status", user_id=RELEASE_MANAGER, channel_id=RELEASE_CHANNEL, response_url=url
    )
    return body, url


def click_request(box: Sandbox) -> Request:
    url, body = box.click_body(Action.CANCEL_PREFLIGHT, user=BYSTANDER)
    return body, url


async def burst(
    http: aiohttp.ClientSession, target: str, requests: list[Request], into: Figures
) -> None:
    """Post every request at once (signed beforehand); record each answer's time."""
    signed = [(body, slack_signature_headers(SLACK_SIGNING_SECRET, body)) for body, _ in requests]

    async def one(body: str, headers: dict[str, str]) -> float:
        start = time.perf_counter()
        async with http.post(f"{target}/slack/events", data=body, headers=headers) as answer:
            await answer.read()
            assert answer.status == 200, answer.status
        return time.perf_counter() - start

    start = time.perf_counter()
    times = await asyncio.gather(*(one(body, headers) for body, headers in signed))
    seconds = time.perf_counter() - start
    into.times += times
    into.burst_seconds += seconds
    into.bursts.append((times, seconds))


async def run(concurrent: int, rounds: int, profile: Path | None) -> dict[str, dict[str, Figures]]:
    kinds: dict[str, Callable[[Sandbox], Request]] = {
        "/rollout status": status_request,
        "refused click": click_request,
    }
    figures = {kind: {"bot": Figures(), "bare": Figures()} for kind in kinds}
    profiler = cProfile.Profile(time.thread_time) if profile else None
    with tempfile.TemporaryDirectory() as workdir:
        # The production poll interval: the bot's poller runs beside the bursts as it would.
        box = Sandbox(workdir=Path(workdir), poll_interval=15, in_process=profile is not None)
        async with box:
            await box.command("start v1.4.2")  # the preflight card the clicks are on
            bare, bare_url = await start_bare(box.slack.api_url)
            targets = {"bot": box.url, "bare": bare_url}
            pids = {"bot": box.replicas[0].pid if box.replicas else None, "bare": bare.pid}
            try:
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=concurrent)
                ) as http:
                    for make in kinds.values():  # warm up (auth.test, connections, caches)
                        for target in targets.values():
                            await burst(http, target, [make(box)], Figures())
                    await box.slack.wait_for_response(count=3, timeout=60)  # start, 2 warm-ups
                    for index in range(rounds):
                        order = list(targets) if index % 2 == 0 else list(reversed(targets))
                        for kind, make in kinds.items():
                            for name in order:
                                requests = [make(box) for _ in range(concurrent)]
                                into = figures[kind][name]
                                if profiler and name == "bot":
                                    profiler.enable()
                                cpu = cpu_seconds(pids[name])
                                await burst(http, targets[name], requests, into)
                                if name == "bot":
                                    for _, url in requests:
                                        await box.slack.wait_for_response(url, timeout=60)
                                into.cpu_seconds += cpu_seconds(pids[name]) - cpu
                                if profiler and name == "bot":
                                    profiler.disable()
            finally:
                bare.terminate()
                await bare.wait()
    if profiler and profile:
        profiler.dump_stats(profile)
    return figures


def report(figures: dict[str, dict[str, Figures]], concurrent: int, rounds: int) -> None:
    print(f"{concurrent} concurrent requests, {rounds} rounds interleaved (bot | bare Bolt app)")
    for kind, apps in figures.items():
        bot, bare = apps["bot"], apps["bare"]
        print(
            f"{kind}: p50 {bot.p(50) * 1000:.0f} | {bare.p(50) * 1000:.0f} ms, "
            f"p99 {bot.p(99) * 1000:.0f} | {bare.p(99) * 1000:.0f} ms, "
            f"throughput {bot.throughput:.0f} | {bare.throughput:.0f}/s, "
            f"CPU {bot.cpu_per_request * 1000:.1f} | {bare.cpu_per_request * 1000:.1f} ms/request; "
            f"p99 ratio {bot.p(99) / bare.p(99):.2f}x (goal <= 1.5), "
            f"throughput ratio {bot.throughput / bare.throughput:.2f}x (goal >= 0.7)"
        )
        p99, throughput = round_ratios(bot, bare)
        print(
            f"  per round (median, range): p99 ratio {statistics.median(p99):.2f}x "
            f"({min(p99):.2f}-{max(p99):.2f}), throughput ratio "
            f"{statistics.median(throughput):.2f}x ({min(throughput):.2f}-{max(throughput):.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("concurrent", type=int, nargs="?", default=100)
    parser.add_argument("rounds", type=int, nargs="?", default=5)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--serve-bare", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--slack-api-url", default="", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_bare is not None:
        web.run_app(
            bare_app(options.slack_api_url),
            host="127.0.0.1",
            port=options.serve_bare,
            access_log=None,
            print=None,
        )
        return
    figures = asyncio.run(run(options.concurrent, options.rounds, options.profile))
    report(figures, options.concurrent, options.rounds)


if __name__ == "__main__":
    main()
