"""Many services at once: one bot of N services (default 50; issue 13 asks for 200), each with
one two-track rollout, on PostgreSQL with two `rollout-bot serve` replicas, against the
sandbox's GitHub and Slack, with webhooks and then with polling only, side by side in one run.

Per mode, on a fresh database (dropped afterwards):

1. **Complete rollouts.** Every window WINDOW seconds, every gate passing, `promote: auto`.
   The rollouts start at once, or evenly over SPREAD seconds (`--spread`). Each service's
   `/rollout start svc-NNN v1.4.2 --flags-ready` is typed in its own channel
   and its card's Dispatch clicked, through the replicas in turn (a load balancer's
   alternation); with webhooks, the simulator's every `workflow_run`, `workflow_job` and
   `deployment_review` is delivered, signed, to the replicas in turn. Measured until every
   rollout ended: window-end lateness (the window timer's due time to the gate's verdict,
   recorded and posted in the thread), GitHub requests per complete rollout (304s apart),
   each replica's RSS and CPU, and apart from them those of its chart worker (the process
   it draws the charts in, `bot.adapters.chart_worker`).
2. **Long windows.** The replicas restart on the plan with 1 h windows, every service starts
   one more rollout, and once its 2N tracks observe their first stage, each replica's CPU
   (`/proc/<pid>/stat`), RSS, its chart worker's and the GitHub requests are measured over
   IDLE seconds.

The simulator's rate limit is kept full (hours of releases pass in minutes here): the figures
are what the bot asks of GitHub, not what its budget would let through. Goals (issue 13):
lateness p99 < 1 s, <= 60 GitHub requests per complete rollout, RSS < 250 MB and idle CPU
< 2 % of a core per replica.

Usage: python bench/services_scale.py [SERVICES] [WINDOW] [--idle SECONDS] [--spread SECONDS]
    [--poll-interval SECONDS] [--modes webhooks,polling] [--logs DIR] [--profile DIR]
(`--logs` keeps each mode's working directory, with the replicas' logs; `--profile` runs the
replicas under cProfile, their figures are then not comparable.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from ack_latency import cpu_seconds
from databases import fresh_database
from scale_readings import (
    chart_cpu_seconds,
    chart_rss_kb,
    count_requests,
    lateness,
    memory_kb,
    pids,
    request_kinds,
    wait_for,
)
from scale_report import ModeFigures, report

from bot.adapters.slack.actions import Action
from sandbox.chaos.script import CANARY_OK, HALF_OK, RINGS_OK
from sandbox.config import GITHUB_WEBHOOK_SECRET, numbered_services
from sandbox.github_requests import RATE_LIMIT
from sandbox.harness import Sandbox, fast_plan, write_figures
from sandbox.signing import github_signature_headers

MODES = ("webhooks", "polling")
STARTING_AT_ONCE = 8
"""Services whose start (command, card, Dispatch) is under way at once."""


class Webhooks:
    """GitHub's side of the webhooks: each simulator event, signed, to the replicas in turn,
    each delivery on its own (GitHub does not wait for one answer before the next delivery)."""

    def __init__(self, http: aiohttp.ClientSession, urls: Sequence[str]) -> None:
        self._http = http
        self.urls = list(urls)
        self._turn = itertools.count()
        self._sending: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.refused = 0

    def deliver(self, event: str, payload: Mapping[str, Any]) -> None:
        url = self.urls[next(self._turn) % len(self.urls)]
        task = asyncio.create_task(self._post(url, event, json.dumps(payload).encode()))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _post(self, url: str, event: str, body: bytes) -> None:
        headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, body, event=event)
        self.delivered += 1
        try:
            async with self._http.post(
                f"{url}/github/webhook", data=body, headers=headers
            ) as answer:
                refused = answer.status >= 300
        except aiohttp.ClientConnectionError:
            refused = True
        self.refused += refused

    async def sent(self) -> None:
        """Until every delivery so far has its answer."""
        while self._sending:
            await asyncio.wait(set(self._sending))


async def start_rollouts(
    box: Sandbox, count: int, tag: str, urls: Sequence[str], *, spread: float = 0.0
) -> None:
    """Every service's start command in its channel, then its card's Dispatch click, through
    the replicas in turn, STARTING_AT_ONCE services at a time; with `spread`, the starts are
    paced evenly over that many seconds (an organisation's releases, not one burst)."""
    gate = asyncio.Semaphore(STARTING_AT_ONCE)
    loop = asyncio.get_running_loop()
    begun = loop.time()

    async def start(number: int) -> None:
        channel = f"C0SVC{number:03d}"
        replica = urls[number % len(urls)]
        await asyncio.sleep(begun + spread * (number - 1) / count - loop.time())
        async with gate:
            before = len(box.slack.messages(channel))
            answer = await box.command(
                f"start svc-{number:03d} {tag} --flags-ready", channel=channel, replica=replica
            )
            assert "Preflight" in answer, answer
            async with asyncio.timeout(120):
                while not (
                    len(messages := box.slack.messages(channel)) > before
                    and Action.DISPATCH in json.dumps(messages[-1].blocks)
                ):
                    await box.slack.changed(timeout=0.5)
            await box.click(
                Action.DISPATCH,
                channel=channel,
                message=messages[-1],
                replica=replica,
                wait=False,
            )

    await asyncio.gather(*(start(number) for number in range(1, count + 1)))


async def keep_the_rate_limit_full(box: Sandbox) -> None:
    """GitHub's hourly reset of the rate limit, brought forward as the accelerated plan brings
    the windows forward: hours of releases pass in minutes here, and the budget would stop
    polling at 5,000 requests. Kept full, the figures are what the bot asks for."""
    while True:
        box.github.rate_limit_remaining = RATE_LIMIT
        await asyncio.sleep(1)


@contextlib.contextmanager
def workdir_of(mode: str, logs: Path | None) -> Iterator[str]:
    """A temporary working directory, or one kept in `logs` (its replicas' logs)."""
    if logs is None:
        with tempfile.TemporaryDirectory() as workdir:
            yield workdir
    else:
        logs.mkdir(parents=True, exist_ok=True)
        yield tempfile.mkdtemp(prefix=f"{mode}-", dir=logs)


async def run_mode(mode: str, options: argparse.Namespace) -> ModeFigures:
    figures = ModeFigures(mode, options.services)
    count = options.services
    with workdir_of(mode, options.logs) as workdir:
        plan = Path(workdir) / "figures.yml"
        async with (
            fresh_database("postgres") as database,
            aiohttp.ClientSession() as http,
            Sandbox(
                workdir=Path(workdir),
                database_url=database,
                poll_interval=options.poll_interval,
                in_process=False,
                plan_yaml=fast_plan(
                    plan,
                    window=f"{options.window}s",
                    extension=f"{options.window}s",
                    promote="auto",
                ),
                rollout_services=numbered_services(count),
            ) as box,
        ):
            write_figures(box.figures, "relay", {"canary": CANARY_OK, "half": HALF_OK})
            write_figures(box.figures, "desktop", RINGS_OK)
            await box.start_replica()
            if options.profile is not None:  # started again, under cProfile
                for replica in box.replicas:
                    replica.profile = options.profile / mode
                    replica.profile.mkdir(parents=True, exist_ok=True)
                    await replica.stop()
                    await replica.start()
                box.url = box.replicas[0].url
            full = asyncio.create_task(keep_the_rate_limit_full(box))
            hooks = Webhooks(http, [replica.url for replica in box.replicas])
            if mode == "webhooks":
                box.github.on_event(hooks.deliver)

            since, started = len(box.github.requests), time.monotonic()
            cpu = [cpu_seconds(pid) for pid in pids(box)]
            charts = [chart_cpu_seconds(pid) for pid in pids(box)]
            simulators = cpu_seconds(os.getpid())
            await start_rollouts(box, count, "v1.4.2", hooks.urls, spread=options.spread)
            await wait_for(
                database,
                "SELECT count(*) FROM rollout_tracks WHERE state = 'completed'",
                2 * count,
                timeout=options.timeout,
            )
            figures.rollout_seconds = time.monotonic() - started
            figures.rollout_cpu = [
                (cpu_seconds(pid) - before) / figures.rollout_seconds
                for pid, before in zip(pids(box), cpu, strict=True)
            ]
            simulated = cpu_seconds(os.getpid()) - simulators
            figures.simulators_cpu = simulated / figures.rollout_seconds
            figures.completed = count
            await hooks.sent()
            figures.deliveries = hooks.delivered
            figures.rollout_requests = count_requests(box, since)
            figures.rollout_kinds = request_kinds(box, since)
            figures.rollout_rss = [memory_kb(pid, "VmRSS") for pid in pids(box)]
            figures.rollout_peak = [memory_kb(pid, "VmHWM") for pid in pids(box)]
            figures.rollout_charts = chart_figures(box, charts, figures.rollout_seconds)
            late = await lateness(database)
            figures.recorded, figures.posted = late["recorded"], late["posted"]
            figures.written, figures.known = late["written"], late["known"]

            # Long windows: the plan a rollout starts on is its own, so the replicas restart
            # on the new one and every service starts another rollout.
            box.plan_file.write_text(
                fast_plan(plan, window="1h", extension="1h", promote="auto"), encoding="utf-8"
            )
            for replica in box.replicas:
                await replica.stop()
                await replica.start()
            hooks.urls = [replica.url for replica in box.replicas]
            box.url = hooks.urls[0]
            await start_rollouts(box, count, "v1.5.0", hooks.urls)
            await wait_for(
                database,
                "SELECT count(*) FROM stages WHERE state = 'observing'",
                2 * count,
                timeout=options.timeout,
            )
            await hooks.sent()
            await asyncio.sleep(options.settle)  # the last posts and looks of the start
            since, cpu = len(box.github.requests), [cpu_seconds(pid) for pid in pids(box)]
            charts = [chart_cpu_seconds(pid) for pid in pids(box)]
            started = time.monotonic()
            await asyncio.sleep(options.idle)
            figures.idle_seconds = time.monotonic() - started
            figures.idle_cpu = [
                (cpu_seconds(pid) - before) / figures.idle_seconds
                for pid, before in zip(pids(box), cpu, strict=True)
            ]
            figures.idle_rss = [memory_kb(pid, "VmRSS") for pid in pids(box)]
            figures.idle_charts = chart_figures(box, charts, figures.idle_seconds)
            figures.idle_requests = count_requests(box, since)
            figures.idle_kinds = request_kinds(box, since)
            assert hooks.refused == 0, f"{hooks.refused} webhook deliveries refused"
            full.cancel()
            if options.profile is not None:  # cProfile writes its statistics on the way out
                for replica in box.replicas:
                    await replica.stop()
    return figures


def chart_figures(box: Sandbox, before: Sequence[float], seconds: float) -> list[tuple[float, int]]:
    """Per replica, its chart worker's CPU share since `before` (its CPU seconds then) and
    its kB now (0 while it drew no chart: the worker starts at the first)."""
    return [
        ((chart_cpu_seconds(pid) - then) / seconds, chart_rss_kb(pid))
        for pid, then in zip(pids(box), before, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("services", type=int, nargs="?", default=50)
    parser.add_argument("window", type=int, nargs="?", default=5, help="window seconds")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement")
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="seconds over which the rollouts start, evenly (default: all at once)",
    )
    parser.add_argument("--settle", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--poll-interval", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run the replicas under cProfile; statistics in PROFILE/<mode>/serve*.prof",
    )
    parser.add_argument(
        "--logs",
        type=Path,
        default=None,
        help="keep each mode's workdir (the replicas' logs) in this directory",
    )
    options = parser.parse_args()
    modes = options.modes.split(",")
    if not set(modes) <= set(MODES) or not 1 <= options.services <= 999:
        parser.error(f"modes are {', '.join(MODES)}; services 1 to 999")

    async def run_all() -> None:
        for mode in modes:  # each mode's figures as soon as it is done
            report(await run_mode(mode, options), options)

    asyncio.run(run_all())


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    main()
