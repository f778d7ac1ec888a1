"""The whole bot wired to the sandbox: Slack's test server, the GitHub Actions simulator and
the real app, driven through signed requests exactly as Slack would send them.

The end-to-end tests and `rollout-bot demo` both use it; nothing in it shortcuts the app:
commands and clicks go through `POST /slack/events`, and the bot talks to the servers with
the real Slack and GitHub clients.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from bot.adapters.chart_worker import ChartWorker
from bot.bootstrap import create_app
from bot.config import Settings
from bot.domain.rollout import Rollout
from bot.services.catalog import Services
from bot.services.records import Timer
from handlers.ack_first import AckFirst
from handlers.app_keys import ACKS, SERVICES
from sandbox.clock import LaggingClock, SkippingClock
from sandbox.config import GITHUB_TOKEN as SANDBOX_GITHUB_TOKEN
from sandbox.config import (
    RELEASE_CHANNEL,
    SLACK_APP_TOKEN,
    SLACK_BOT_TOKEN,
    SandboxService,
    bot_environment,
    write_services,
)
from sandbox.github import GitHubSimulator
from sandbox.github_app import SandboxApp
from sandbox.github_variation import GitHubVariation
from sandbox.harness_slack import SlackUser, button
from sandbox.loopback import Lifecycle
from sandbox.plans import fast_plan, write_figures
from sandbox.replica import ServeProcess
from sandbox.slack import SlackTestServer
from sandbox.slack_variation import SlackVariation
from sandbox.workflows import Workflow
from storage.audit_log import AuditLog
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.rollout_store import RolloutStore
from storage.timers import TimerStore

__all__ = ["Sandbox", "fast_plan", "write_figures"]

SKIP_AT_MOST = timedelta(seconds=2)
"""The longest wait for a timer that the harness's waits skip on the clock: the windows of
`fast_plan` (2 s by default). A test that picks a longer window wants time inside it (to
click Extend, to kill a ring), and an hour-long window only moves with `pass_time`."""

LOOK_AGAIN = 0.2
"""Seconds a wait looks again at most after its last look when Slack recorded nothing."""

CHARTS = ChartWorker(niceness=0)
"""The chart worker every in-process bot of this process shares: a test session spawns one
(each imports matplotlib, about a second) instead of one per test. The session ends it
(tests/conftest.py); in `rollout-bot demo`, the process's exit does. It draws at the
sandbox's own priority: the sandbox's bots share the machine with their simulators and with
the test session's other workers, all of them the bot's own work here, and at the lower
priority a busy test run starved it past `DRAW_TIMEOUT_S` (a load of 15 on two cores). The
lower priority is tested on a worker of its own (tests/test_chart_worker.py)."""

OUTBOX_POSTS = frozenset({"chat.postMessage", "chat.update"})
"""Methods the variation mode's Slack answers at once on their first call too: the outbox
waits out a 429 on its own clock (tests/test_slack_faults.py), and a story that reads the card
right after a command would read it before the retry."""

GITHUB_TIMEOUT = 5
"""Seconds the sandboxed bot waits for GitHub's answer (generous: a slow answer on a loaded
machine must not read as a fault; the simulator's `timeout` fault waits one second more)."""


class Sandbox(SlackUser, Lifecycle):
    """The bot on a random loopback port, with the Slack and GitHub servers it talks to."""

    def __init__(
        self,
        *,
        workdir: Path,
        database_url: str | None = None,
        plan_yaml: str | None = None,
        enterprise: bool = False,
        poll_interval: float = 0.1,
        in_process: bool = True,
        extra_env: Mapping[str, str] | None = None,
        skip_windows: bool = True,
        github_app: SandboxApp | None = None,
        rollout_services: Sequence[SandboxService] = (),
        variation: bool | None = None,
        workflows: Sequence[Workflow] | None = None,
        github_lag: timedelta = timedelta(0),
    ) -> None:
        """`workflows`: the repository's workflows instead of Scriptum's two (a plan's own
        conditions on its jobs); `github_lag`: how far GitHub's clock is behind the bot's."""
        self.workdir = workdir
        if variation is None:
            variation = os.environ.get("SANDBOX_VARIATION", "") not in ("", "0")
        self.variation = variation
        """Whether Slack and GitHub answer in their variation modes (`github_variation`,
        `slack_variation`); by default when `SANDBOX_VARIATION` is set (not to 0)."""
        self._extra_env = dict(extra_env or {})
        self.figures = workdir / "figures.yml"
        self.plan_file = workdir / "plan.yml"
        self.plan_file.write_text(plan_yaml or fast_plan(self.figures), encoding="utf-8")
        self.database_url = database_url or f"sqlite:///{workdir}/rollout-bot.db"
        self._skip_windows = skip_windows
        """Whether waits skip short windows (not with metrics that run in real time, such as
        a real Prometheus scraping the sandbox's exporter)."""
        self.clock = SkippingClock()
        """The clock the bot (in this process), the GitHub simulator and Slack's ts run on: waits
        of the harness skip the short windows on it instead of sleeping through them."""
        self.slack = SlackTestServer(bot_token=SLACK_BOT_TOKEN, app_token=SLACK_APP_TOKEN)
        self.slack.ts_clock = self.clock
        self.slack.variation = SlackVariation(spared=OUTBOX_POSTS) if variation else None
        self.github = GitHubSimulator(
            repository="scriptum/scriptum",
            token=SANDBOX_GITHUB_TOKEN,
            enterprise=enterprise,
            fault_delay=GITHUB_TIMEOUT + 1,
            clock=LaggingClock(self.clock, github_lag) if github_lag else self.clock,
            app=github_app,
            variation=GitHubVariation() if variation else None,
            workflows=workflows,
        )
        self.services_file = self._serve(rollout_services) if rollout_services else None
        """The `ROLLOUT_SERVICES` file of a bot of several services (None: one service)."""
        self._poll_interval = poll_interval
        self._in_process = in_process
        self.replicas: list[ServeProcess] = []
        """The `rollout-bot serve` processes; the first is the one `start_process` starts."""
        self._engine = create_engine(self.database_url)
        sessions = create_session_factory(self._engine)
        self._store = RolloutStore(sessions, clock=self.clock)
        self._timers = TimerStore(sessions)
        self.audit = AuditLog(sessions)
        """The audit trail in the bot's database, for assertions."""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.url = ""

    def _serve(self, services: Sequence[SandboxService]) -> Path:
        """Write the services file (a service without a plan gets the sandbox's accelerated
        one) and serve each service's repository on the GitHub simulator."""
        for service in services:
            if self.github.repository_named(service.repository) is None:
                self.github.add_repository(service.repository)
        planned = [replace(s, plan=s.plan or self.plan_file) for s in services]
        return write_services(self.workdir / "services.yml", planned)

    async def start(self) -> None:
        """Migrate the database (as `rollout-bot migrate` does before a deploy), then start the
        servers and the bot (`async with` does)."""
        await upgrade(self.database_url)
        await self.slack.start()
        await self.github.start()
        self._http = aiohttp.ClientSession()
        if self._in_process:
            await self.start_bot()
        else:
            await self.start_process()

    async def stop(self) -> None:
        await self.stop_bot()
        for replica in self.replicas:
            await replica.kill()
        await self._engine.dispose()
        if self._http is not None:
            await self._http.close()
        await self.github.stop()
        await self.slack.stop()

    def environment(self, port: int = 0) -> dict[str, str]:
        """The bot's environment variables (for a `rollout-bot serve` process too)."""
        env = bot_environment(
            slack_api_url=self.slack.api_url,
            github_api_url=self.github.api_url,
            database_url=self.database_url,
            port=port or 3000,
        )
        if (app := self.github.app) is not None:  # App mode: the App's id and key, no token
            del env["GITHUB_TOKEN"]
            env["GITHUB_APP_ID"] = str(app.app_id)
            env["GITHUB_APP_PRIVATE_KEY"] = app.private_key
        env["ROLLOUT_PLAN"] = str(self.plan_file)
        if self.services_file is not None:  # each service names its own
            for name in (
                "GITHUB_REPOSITORY",
                "ROLLOUT_PLAN",
                "RELEASE_CHANNELS",
                "ROLLOUT_APPROVERS",
            ):
                del env[name]
            env["ROLLOUT_SERVICES"] = str(self.services_file)
        env["GITHUB_POLL_INTERVAL"] = str(self._poll_interval)
        # Short waits, so the simulator's `timeout` fault (GITHUB_TIMEOUT + 1 s) is one.
        env["GITHUB_TIMEOUT"] = str(GITHUB_TIMEOUT)
        env["GITHUB_RETRY_BACKOFF"] = "0.05"
        # The simulator lists a run at once: a dispatch it answered unclearly, and that started
        # no run, is given up on after ten looks in one second instead of ten.
        env["GITHUB_DISPATCH_LOOK_INTERVAL"] = "0.1"
        env.update(self._extra_env)  # e.g. PROMETHEUS_URL of a test's Prometheus
        return env

    def settings(self) -> Settings:
        values = {name.lower(): value for name, value in self.environment().items()}
        return Settings(_env_file=None, **values)  # type: ignore[arg-type]

    async def start_bot(self) -> None:
        """Start (or start again) the bot in this process."""
        app = create_app(self.settings(), clock=self.clock, charts=CHARTS)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self.github.app_hook.url = f"{self.url}/github/webhook"

    async def restart_bot(self, extra_env: Mapping[str, str]) -> None:
        """Start the bot in this process again with `extra_env` among its settings, for the
        part of a story that needs them (a short lease only while a lock holds it up). Returns
        once its loops went round and sleep on the clock, as many as the bot had before."""
        await self.stop_bot()
        loops = self.clock.forget_ended()
        self._extra_env.update(extra_env)
        await self.start_bot()
        await self.clock.until_sleeping(loops)

    async def stop_bot(self) -> None:
        self.github.app_hook.url = None  # the App's deliveries fail while the bot is down
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def start_process(self) -> None:
        """Start (or start again) the bot as an operator does: a `rollout-bot serve` process."""
        if not self.replicas:
            self.replicas.append(self._replica("serve.log"))
        self.url = await self.replicas[0].start()
        self.github.app_hook.url = f"{self.url}/github/webhook"

    async def start_replica(self) -> str:
        """Start one more `rollout-bot serve` process on the same database, as a second
        replica behind a load balancer would run; returns its base URL (killed on exit)."""
        replica = self._replica(f"serve-{len(self.replicas) + 1}.log")
        self.replicas.append(replica)
        return await replica.start()

    def _replica(self, log_name: str) -> ServeProcess:
        assert self._http is not None
        return ServeProcess(
            environment=self.environment,
            workdir=self.workdir,
            log=self.workdir / log_name,
            http=self._http,
        )

    async def kill_process(self) -> None:
        """SIGKILL the first `serve` process: no cleanup, no goodbye, as when a node dies."""
        self.github.app_hook.url = None
        if self.replicas:
            await self.replicas[0].kill()

    @property
    def services(self) -> Services:
        assert self._runner is not None
        return self._runner.app[SERVICES]

    @property
    def acks(self) -> AckFirst:
        """The bot's requests being acknowledged and work under way (`handlers.ack_first`)."""
        assert self._runner is not None
        return self._runner.app[ACKS]

    # -- what the channel shows ---------------------------------------------------------------

    async def wait_for_thread(self, needle: str, *, timeout: float = 30.0) -> str:  # noqa: ASYNC109
        """Wait until a reply in the card's thread contains `needle`; returns it."""

        def found() -> str | None:
            messages = self.slack.messages(RELEASE_CHANNEL)
            if not messages:
                return None
            return next(
                (t for t in (r.rendered for r in messages[-1].replies) if needle in t), None
            )

        async with asyncio.timeout(timeout):
            while (reply := found()) is None:
                await self._next_moment()
        return reply

    async def wait_for_button(self, action_id: str, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until the newest card in the channel has the button `action_id`. A command's
        answer can come before its card: with several replicas, another's outbox loop may be
        posting it (docs/reliability.md)."""

        def shown() -> bool:
            messages = self.slack.messages(RELEASE_CHANNEL)
            return bool(messages) and button(messages[-1].blocks, action_id) is not None

        async with asyncio.timeout(timeout):
            while not shown():
                await self._next_moment()

    async def rollouts(self, limit: int = 50) -> list[Rollout]:
        """The newest rollouts of every service, as stored, newest first."""
        return await self._store.recent(limit)

    async def rollout(self, service: str | None = None) -> Rollout:
        """The newest rollout (of `service`, or of any), as stored."""
        latest = await self._store.recent(1 if service is None else 50)
        latest = [r for r in latest if service in (None, r.service)]
        assert latest, "no rollout yet"
        return latest[0]

    async def wait_until(
        self,
        predicate: Callable[[Rollout], bool],
        *,
        timeout: float = 30.0,  # noqa: ASYNC109
        service: str | None = None,
    ) -> Rollout:
        """Poll the stored rollout (the newest of `service`, if given) until `predicate`
        holds."""
        async with asyncio.timeout(timeout):
            while not predicate(current := await self.rollout(service)):
                await self._next_moment()
        return current

    async def wait_for_timer(
        self,
        key: str,
        holds: Callable[[Timer], bool],
        *,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> Timer:
        """Wait until the bot's timer `key`, as stored, `holds` (its attempts, who holds it)."""
        async with asyncio.timeout(timeout):
            # A row in the database: nothing to be woken by, so it is read again and again.
            while (timer := await self._timers.get(key=key)) is None or not holds(timer):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        return timer

    async def skip_to_next_timer(self, *, at_most: timedelta = SKIP_AT_MOST) -> bool:
        """Move the clock to the next window end (or other timer) if it is due within
        `at_most`, waking the bot's loops; False when there was none to skip to. Only the bot
        in this process runs on the clock: `serve` processes keep the system's."""
        if self._runner is None:
            return False
        due = await self._timers.next_due()
        ahead = due - self.clock() if due is not None else None
        if ahead is None or not timedelta(0) < ahead <= at_most:
            return False
        self.clock.advance(ahead)
        return True

    async def pass_time(self, delta: timedelta) -> None:
        """Let `delta` pass on the bot's clock at once, and wait until its loops have looked
        (timers due meanwhile fired, runs polled): what did not happen by then did not happen
        in that time."""
        self.clock.advance(delta)
        await self.clock.settle()

    async def _next_moment(self) -> None:
        """Between two looks of a wait: until Slack records something (the bot redraws the
        card or posts when a rollout changes) or `LOOK_AGAIN` passed, then a short window
        skipped. Looking again only then, not every few milliseconds, leaves the CPU to the
        bot: every look reads the whole rollout."""
        await self.slack.changed(timeout=LOOK_AGAIN)
        if self._skip_windows:
            await self.skip_to_next_timer()
