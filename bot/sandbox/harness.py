"""The whole bot wired to the sandbox: Slack's test server, the GitHub Actions simulator and
the real app, driven through signed requests exactly as Slack would send them.

The end-to-end tests and `rollout-bot demo` both use it; nothing in it shortcuts the app:
commands and clicks go through `POST /slack/events`, and the bot talks to the servers with
the real Slack and GitHub clients.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from bot.app import create_app, utc_now
from bot.app_keys import SERVICES
from bot.config import Settings
from bot.domain.rollout import Rollout
from bot.rollout_store import RolloutStore
from bot.sandbox.config import GITHUB_TOKEN as SANDBOX_GITHUB_TOKEN
from bot.sandbox.config import (
    RELEASE_CHANNEL,
    RELEASE_MANAGER,
    SLACK_APP_TOKEN,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    bot_environment,
)
from bot.sandbox.github import GitHubSimulator
from bot.sandbox.render import render_message
from bot.sandbox.replica import ServeProcess
from bot.sandbox.signing import (
    block_actions_body,
    slack_signature_headers,
    slash_command_body,
    view_submission_body,
)
from bot.sandbox.slack import ChannelMessage, SlackTestServer
from bot.services import Services
from storage.db import create_engine, create_session_factory
from storage.repositories import AuditLog


def fast_plan(
    figures_file: Path,
    *,
    window: str = "2s",
    extension: str = "2s",
    promote: str = "manual",
    check_image: bool = False,
    manual_tracks: tuple[str, ...] = (),
) -> str:
    """The built-in plan as YAML, accelerated: every window `window`, static figures from
    `figures_file` (one per track, see `write_figures`), or asked of the approvers for the
    `manual_tracks`."""
    plan = yaml.safe_load(
        resources.files("bot.domain").joinpath("default_plan.yml").read_text(encoding="utf-8")
    )
    plan["preflight"]["check_image_published"] = check_image
    for name, track in plan["tracks"].items():
        for stage in track["stages"]:
            if "observe" in stage:
                stage["observe"].update(
                    window=window, inconclusive_extension=extension, promote=promote
                )
        track["metrics"] = (
            {"source": "manual", "baseline_crash_rate": "0.001"}
            if name in manual_tracks
            else {
                "source": "static",
                "baseline_crash_rate": "0.001",
                "file": str(figures_file.with_name(f"{figures_file.stem}-{name}.yml")),
            }
        )
    return yaml.safe_dump(plan, sort_keys=False)


def write_figures(
    figures_file: Path,
    track: str,
    stages: Mapping[str, Mapping[str, Any]],
    *,
    baseline: str = "0.001",
) -> None:
    """Set the figures the static source reads for one track at its next gate."""
    path = figures_file.with_name(f"{figures_file.stem}-{track}.yml")
    content = {"baseline_crash_rate": baseline, "stages": {k: dict(v) for k, v in stages.items()}}
    path.write_text(yaml.safe_dump(content), encoding="utf-8")


GITHUB_TIMEOUT = 5
"""Seconds the sandboxed bot waits for GitHub's answer (generous: a slow answer on a loaded
machine must not read as a fault; the simulator's `timeout` fault waits one second more)."""


class Sandbox:
    """The bot on a random loopback port, with the Slack and GitHub servers it talks to."""

    def __init__(
        self,
        *,
        workdir: Path,
        database_url: str | None = None,
        plan_yaml: str | None = None,
        enterprise: bool = False,
        poll_interval: float = 0.05,
        in_process: bool = True,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self._extra_env = dict(extra_env or {})
        self.figures = workdir / "figures.yml"
        self.plan_file = workdir / "plan.yml"
        self.plan_file.write_text(plan_yaml or fast_plan(self.figures), encoding="utf-8")
        self.database_url = database_url or f"sqlite:///{workdir}/rollout-bot.db"
        self.slack = SlackTestServer(bot_token=SLACK_BOT_TOKEN, app_token=SLACK_APP_TOKEN)
        self.github = GitHubSimulator(
            repository="scriptum/scriptum",
            token=SANDBOX_GITHUB_TOKEN,
            enterprise=enterprise,
            fault_delay=GITHUB_TIMEOUT + 1,
        )
        self._poll_interval = poll_interval
        self._in_process = in_process
        self.replicas: list[ServeProcess] = []
        """The `rollout-bot serve` processes; the first is the one `start_process` starts."""
        self._engine = create_engine(self.database_url)
        sessions = create_session_factory(self._engine)
        self._store = RolloutStore(sessions, clock=utc_now)
        self.audit = AuditLog(sessions)
        """The audit trail in the bot's database, for assertions."""
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> Sandbox:
        await self.slack.start()
        await self.github.start()
        self._http = aiohttp.ClientSession()
        if self._in_process:
            await self.start_bot()
        else:
            await self.start_process()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_bot()
        for replica in self.replicas:
            await replica.kill()
        await self._engine.dispose()
        if self._http is not None:
            await self._http.close()
        await self.github.close()
        await self.slack.stop()

    def environment(self, port: int = 0) -> dict[str, str]:
        """The bot's environment variables (for a `rollout-bot serve` process too)."""
        env = bot_environment(
            slack_api_url=self.slack.api_url,
            github_api_url=self.github.api_url,
            database_url=self.database_url,
            port=port or 3000,
        )
        env["ROLLOUT_PLAN"] = str(self.plan_file)
        env["GITHUB_POLL_INTERVAL"] = str(self._poll_interval)
        # Short waits, so the simulator's `timeout` fault (GITHUB_TIMEOUT + 1 s) is one.
        env["GITHUB_TIMEOUT"] = str(GITHUB_TIMEOUT)
        env["GITHUB_RETRY_BACKOFF"] = "0.05"
        env.update(self._extra_env)  # e.g. PROMETHEUS_URL of a test's Prometheus
        return env

    def settings(self) -> Settings:
        values = {name.lower(): value for name, value in self.environment().items()}
        return Settings(_env_file=None, **values)  # type: ignore[arg-type]

    async def start_bot(self) -> None:
        """Start (or start again) the bot in this process."""
        self._runner = web.AppRunner(create_app(self.settings()), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop_bot(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def start_process(self) -> None:
        """Start (or start again) the bot as an operator does: a `rollout-bot serve` process."""
        if not self.replicas:
            self.replicas.append(self._replica("serve.log"))
        self.url = await self.replicas[0].start()

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
        if self.replicas:
            await self.replicas[0].kill()

    @property
    def services(self) -> Services:
        assert self._runner is not None
        return self._runner.app[SERVICES]

    # -- acting as a person in Slack ----------------------------------------------------------

    async def _post(self, body: str, *, url: str | None = None) -> int:
        assert self._http is not None
        headers = slack_signature_headers(SLACK_SIGNING_SECRET, body)
        target = f"{url or self.url}/slack/events"
        async with self._http.post(target, data=body, headers=headers) as r:
            return r.status

    async def command(
        self,
        text: str,
        *,
        user: str = RELEASE_MANAGER,
        channel: str = RELEASE_CHANNEL,
        replica: str | None = None,
    ) -> str:
        """Type `/rollout <text>` (through `replica`, a URL of `start_replica`, or the first
        bot); returns the ephemeral answer as the user sees it."""
        url = self.slack.new_response_url(channel=channel, user=user)
        body = slash_command_body(text=text, user_id=user, channel_id=channel, response_url=url)
        status = await self._post(body, url=replica)
        assert status == 200, f"/rollout {text} answered HTTP {status}"
        (post,) = await self.slack.wait_for_response(url, timeout=10)
        return _shown(post.body)

    async def click(
        self,
        action_id: str,
        *,
        user: str = RELEASE_MANAGER,
        channel: str = RELEASE_CHANNEL,
        message: ChannelMessage | None = None,
        value: str | None = None,
        wait: bool = True,
        replica: str | None = None,
    ) -> str | None:
        """Click the button `action_id` on `message` (default: the newest rollout card),
        through `replica` (a URL from `start_replica`) or the first bot.

        Returns the ephemeral answer, if the bot sent one within a moment.
        """
        target = message or self.card_message()
        found = value if value is not None else _button_value(target.blocks, action_id)
        url = self.slack.new_response_url(
            channel=channel, user=user, message_ts=target.ts, kind="actions"
        )
        body = block_actions_body(
            user_id=user,
            channel_id=channel,
            action_id=action_id,
            value=found,
            response_url=url,
            message_ts=target.ts,
            message=target.to_json(),
        )
        status = await self._post(body, url=replica)
        assert status == 200, f"click {action_id} answered HTTP {status}"
        if not wait:
            return None
        try:
            posts = await self.slack.wait_for_response(url, timeout=1.5)
        except TimeoutError:
            return None
        return _shown(posts[0].body)

    async def submit_view(
        self,
        view_id: str,
        values: Mapping[str, Mapping[str, Mapping[str, Any]]],
        *,
        user: str = RELEASE_MANAGER,
    ) -> dict[str, Any]:
        """Submit a modal the bot opened; returns Slack's answer body (errors, if any)."""
        assert self._http is not None
        body = view_submission_body(user_id=user, view=self.slack.views[view_id], values=values)
        headers = slack_signature_headers(SLACK_SIGNING_SECRET, body)
        async with self._http.post(f"{self.url}/slack/events", data=body, headers=headers) as r:
            text = await r.text()
        return json.loads(text) if text else {}

    # -- what the channel shows ---------------------------------------------------------------

    def card_message(self, channel: str = RELEASE_CHANNEL) -> ChannelMessage:
        """The newest top-level message of the bot in the channel (the rollout card)."""
        messages = self.slack.messages(channel)
        assert messages, "no message in the channel yet"
        return messages[-1]

    def thread(self, channel: str = RELEASE_CHANNEL) -> list[str]:
        return [reply.rendered for reply in self.card_message(channel).replies]

    async def wait_for_thread(self, needle: str, *, timeout: float = 15.0) -> str:  # noqa: ASYNC109
        """Wait until a reply in the card's thread contains `needle`; returns it."""

        def found() -> str | None:
            messages = self.slack.messages(RELEASE_CHANNEL)
            if not messages:
                return None
            return next(
                (t for t in (r.rendered for r in messages[-1].replies) if needle in t), None
            )

        await self.slack.wait_for(lambda: found() is not None, timeout=timeout)
        reply = found()
        assert reply is not None
        return reply

    async def rollout(self) -> Rollout:
        """The newest rollout, as stored."""
        latest = await self._store.recent(1)
        assert latest, "no rollout yet"
        return latest[0]

    async def wait_until(
        self,
        predicate: Callable[[Rollout], bool],
        *,
        timeout: float = 15.0,  # noqa: ASYNC109
    ) -> Rollout:
        """Poll the stored rollout until `predicate` holds."""
        async with asyncio.timeout(timeout):
            while True:
                current = await self.rollout()
                if predicate(current):
                    return current
                await asyncio.sleep(0.05)


def _button_value(blocks: list[dict[str, Any]], action_id: str) -> str:
    """The value of a button, in an actions block or as a section's accessory."""
    for block in blocks:
        elements = list(block.get("elements", [])) if block.get("type") == "actions" else []
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if element.get("action_id") == action_id:
                return str(element.get("value", ""))
    raise AssertionError(f"no {action_id} button on the message")


def _shown(body: Mapping[str, Any]) -> str:
    return render_message(str(body.get("text", "")), list(body.get("blocks") or []))
