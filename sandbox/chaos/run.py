"""One chaos run: three `rollout-bot serve` replicas on a fresh PostgreSQL database, driven
by people in Slack and GitHub's webhooks, under the faults, and the evidence it leaves."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.domain.durations import parse_duration
from bot.domain.rollout import CheckState, Phase, Rollout, holding_tracks
from bot.services.clock import SystemClock
from sandbox.chaos.checks import Evidence, Finding, check
from sandbox.chaos.evidence import gather_evidence, named_installation
from sandbox.chaos.script import (
    ADMIN_URL,
    SCENARIOS,
    Faults,
    Progress,
    Scenario,
    inject_service_faults,
    pick_scenarios,
    rollout_budget,
)
from sandbox.chaos.world import (
    APP_TOKEN_LIFETIME,
    Lane,
    Played,
    admin,
    service_lanes,
    terminate_connections,
)
from sandbox.config import GITHUB_WEBHOOK_SECRET, RELEASE_CHANNEL
from sandbox.github_app import SandboxApp
from sandbox.harness import Sandbox, fast_plan, write_figures
from sandbox.loopback import Lifecycle
from sandbox.signing import github_signature_headers
from sandbox.slack import ChannelMessage
from storage.db import create_engine, create_session_factory
from storage.migrate import upgrade
from storage.rollout_store import RolloutStore


def _button(card: ChannelMessage, action: str, track: str) -> str | None:
    for block in card.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            value = str(element.get("value", ""))
            if element.get("action_id") == action and f'"track":"{track}"' in value:
                return value
    return None


class ChaosRun(Lifecycle):
    """The three replicas, the sandbox servers, the people and the faults of one run."""

    def __init__(
        self,
        *,
        workdir: Path,
        seed: int,
        faults: Faults,
        rollouts: int = 10,
        duration: float = 0.0,
        window: str = "1s",
        replicas: int = 3,
        rollout_timeout: float | None = None,
        admin_url: str = ADMIN_URL,
        poll_interval: float = 0.2,
        github_app: bool = False,
        services: int = 1,
    ) -> None:
        self.workdir = workdir
        self.seed = seed
        self.faults = faults
        self.rng = random.Random(seed)
        self.minimum = rollouts
        self.duration = duration
        self.window = window
        self.replica_count = replicas
        self.rollout_timeout = rollout_timeout or rollout_budget(
            faults, window=parse_duration(window).total_seconds()
        )
        """Seconds a rollout may go without progress (`rollout_budget` unless given)."""
        self.admin_url = admin_url
        self.poll_interval = poll_interval
        self.app = SandboxApp(token_lifetime=APP_TOKEN_LIFETIME) if github_app else None
        """App mode: the replicas authenticate as this App, and every stage's environment is
        held by its custom deployment protection rule instead of required reviewers."""
        self.database = f"rb_chaos_{secrets.token_hex(5)}"
        self.database_url = (
            make_url(admin_url).set(database=self.database).render_as_string(hide_password=False)
        )
        self.answers: Counter[int] = Counter()
        self.figures: Counter[str] = Counter()
        self.played: list[Played] = []
        self.delivered: Counter[tuple[str, int | None]] = Counter()
        """App mode: the run's webhook deliveries by (repository, installation id named)."""
        self.service_count = services
        """Services of the bot, each with its repository, channel and plan (1: the sandbox's
        one service, configured without a services file)."""
        self._lanes: list[Lane] = []
        self._numbers = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._box: Sandbox | None = None
        self._http: aiohttp.ClientSession | None = None
        self._engine: AsyncEngine | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await admin(self.admin_url, f'CREATE DATABASE "{self.database}"')
        await upgrade(self.database_url)  # `rollout-bot migrate`'s work, without its imports
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        plan = fast_plan(self.workdir / "figures.yml", window=self.window, extension=self.window)
        services = (
            service_lanes(self.workdir, self.service_count, self.window)
            if self.service_count > 1
            else []
        )
        self._lanes = [lane for _, lane in services]
        self._box = Sandbox(
            workdir=self.workdir,
            database_url=self.database_url,
            plan_yaml=plan,
            rollout_services=[service for service, _ in services],
            in_process=False,
            poll_interval=self.poll_interval,
            # A replica is SIGKILLed every few seconds: its timers, messages and clicks are
            # taken over after seconds, not the minutes a production lease lasts.
            # A dispatch answered unclearly is looked for 15 s, not 10 minutes, before the
            # release manager may dispatch again.
            extra_env={
                "LEASE_SECONDS": "3",
                "CLAIM_LEASE_SECONDS": "8",
                "DISPATCH_SEARCH_SECONDS": "15",
            },
            github_app=self.app,
        )
        github = self._box.github
        self._lanes = self._lanes or [Lane(RELEASE_CHANNEL, self._box.figures)]
        if self.app is not None:
            for repository in github.repositories.values():
                repository.protection_rule(set(repository.engine.protected))
            github.app_hook.route = self._app_hook_url
        await self._box.start()
        await asyncio.gather(*(self._box.start_replica() for _ in range(self.replica_count - 1)))
        github.on_event(self._webhook)
        self._engine = create_engine(self.database_url)

    async def stop(self) -> None:
        await self._stop_background()
        if self._engine is not None:
            await self._engine.dispose()
        if self._box is not None:
            await self._box.stop()
        if self._http is not None:
            await self._http.close()
        await admin(self.admin_url, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    @property
    def box(self) -> Sandbox:
        assert self._box is not None, "use ChaosRun as an async context manager"
        return self._box

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop_background(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- playing --------------------------------------------------------------------------------

    async def play(self) -> Evidence:
        """Run rollouts until at least `rollouts` ran and `duration` seconds passed, under the
        faults, one after another in each service (a track runs one rollout at a time) and
        the services side by side; then gather evidence."""
        started = time.monotonic()
        assert self._engine is not None
        store = RolloutStore(create_session_factory(self._engine), clock=SystemClock())
        injected = inject_service_faults(self.box, self.faults, seed=self.seed)
        if self.faults.kill_every:
            self._spawn(self._kill_replicas(self.faults.kill_every))
        if self.faults.db_kill_every and self.faults.db_kills:
            self._spawn(self._kill_connections(self.faults.db_kill_every, self.faults.db_kills))
        plan = pick_scenarios(self.minimum, self.rng)
        lanes = len(self._lanes)
        await asyncio.gather(
            *(
                self._play_lane(store, lane, plan[number::lanes], started)
                for number, lane in enumerate(self._lanes)
            )
        )
        await asyncio.sleep(1.0)  # late deliveries, a last poll: anything done twice shows now
        await self._stop_background()
        self.figures.update(injected())
        return await gather_evidence(self, store, time.monotonic() - started)

    async def _play_lane(
        self, store: RolloutStore, lane: Lane, plan: Sequence[Scenario], started: float
    ) -> None:
        index = 0
        while index < len(plan) or time.monotonic() - started < self.duration:
            scenario = plan[index] if index < len(plan) else self.rng.choice(SCENARIOS)
            index += 1
            played = Played(f"v{self.seed}.{next(self._numbers)}.0", scenario, lane)
            self.played.append(played)
            if not await self._play_one(store, played):
                return  # stuck: its tracks stay busy, no later rollout could start

    async def _play_one(self, store: RolloutStore, played: Played) -> bool:
        """A release manager runs one rollout to its end; False when it is stuck (`Progress`)."""
        tag, scenario, lane = played.tag, played.scenario, played.lane
        write_figures(lane.figures, "relay", scenario.relay)
        write_figures(lane.figures, "desktop", scenario.desktop)
        acted: dict[tuple[str, ...], float] = {}

        def due(*what: str, every: float = 2.0) -> bool:
            """A person repeats an action only after looking again a while later."""
            now = time.monotonic()
            if now - acted.get(what, -every) < every:
                return False
            acted[what] = now
            return True

        progress = Progress(self.rollout_timeout)
        while not progress.stuck:
            progress.saw(found := await self._look(store, tag))
            if found is None:
                if due("start", every=3.0):
                    self._spawn(self._command(f"start {tag} --flags-ready", lane.channel))
            elif found.phase is Phase.ENDED:
                return True
            elif found.phase is Phase.PREFLIGHT:
                unchecked = CheckState.ERROR in (
                    found.preflight.migrations.state,
                    found.preflight.image.state,
                )
                if unchecked and due("recheck"):  # GitHub failed the check: look again
                    await self._click(found, "recheck", None, lane.channel)
                elif not unchecked and due("dispatch"):
                    await self._click(found, "dispatch", None, lane.channel)
            elif found.phase is Phase.RUNNING:
                for track in holding_tracks(found):
                    stage = found.track(track).current
                    assert stage is not None
                    if scenario.stop_at == (track, stage.key):
                        action = "rollback" if track == "relay" else "kill"
                    else:
                        action = "promote"
                    if due(action, track, stage.key):
                        await self._click(found, action, track, lane.channel)
            await asyncio.sleep(0.2)
        return False

    async def _look(self, store: RolloutStore, tag: str) -> Rollout | None:
        try:
            found = await store.by_tag(tag)
        except (OSError, SQLAlchemyError):
            # The person's own connection was among the terminated ones: look again.
            self.figures["the test's own database reads that failed"] += 1
            return None
        return found[0] if found else None

    def _replica(self) -> str | None:
        running = [r.url for r in self.box.replicas if r.running]
        return self.rng.choice(running) if running else None

    def _app_hook_url(self) -> str | None:
        """The App's webhook reaches a replica that is up (a load balancer's choice), or
        fails, as GitHub's delivery does when none is."""
        replica = self._replica()
        return f"{replica}/github/webhook" if replica is not None else None

    async def _command(self, text: str, channel: str) -> None:
        replica = self._replica()
        if replica is None:
            return
        try:
            await self.box.command(text, channel=channel, replica=replica)
            self.answers[200] += 1
        except AssertionError as refused:
            self.answers[_status_in(str(refused))] += 1
        except (aiohttp.ClientError, TimeoutError):
            self.answers[0] += 1

    async def _click(self, rollout: Rollout, action: str, track: str | None, channel: str) -> None:
        replica = self._replica()
        if replica is None or rollout.message_ts is None:
            return
        try:
            card = self.box.slack.message(channel, rollout.message_ts)
        except KeyError:
            return
        value = _button(card, action, track) if track is not None else None
        if track is not None and value is None:
            return  # the card does not show it (yet): look again
        try:
            await self.box.click(
                action, channel=channel, message=card, value=value, wait=False, replica=replica
            )
            self.answers[200] += 1
            self.figures[f"clicks: {action}"] += 1
        except AssertionError as refused:
            self.answers[_status_in(str(refused))] += 1
        except (aiohttp.ClientError, TimeoutError):
            self.answers[0] += 1

    async def _webhook(self, event: str, payload: Mapping[str, Any]) -> None:
        """GitHub delivers each event to one replica (behind a load balancer), never twice."""
        if self.app is not None:
            self.delivered[named_installation(payload)] += 1
        self._spawn(self._deliver(event, json.dumps(payload).encode()))

    async def _deliver(self, event: str, body: bytes) -> None:
        replica = self._replica()
        assert self._http is not None
        self.figures["webhook deliveries"] += 1
        if replica is None:
            self.figures["webhook deliveries lost (no replica up)"] += 1
            return
        headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, body, event=event)
        try:
            async with self._http.post(
                f"{replica}/github/webhook", data=body, headers=headers
            ) as answer:
                self.answers[answer.status] += 1
        except (aiohttp.ClientError, TimeoutError):
            self.answers[0] += 1
            self.figures["webhook deliveries lost (replica died)"] += 1

    # -- faults ---------------------------------------------------------------------------------

    async def _kill_replicas(self, every: float) -> None:
        """SIGKILL a random replica every few seconds and start it again at once."""
        while True:
            await asyncio.sleep(self.rng.uniform(every / 2, every * 1.5))
            victim = self.rng.choice(self.box.replicas)
            await victim.kill()
            self.figures["replicas SIGKILLed"] += 1
            with contextlib.suppress(RuntimeError, TimeoutError):
                await victim.start()

    async def _kill_connections(self, every: float, rounds: int) -> None:
        for _ in range(rounds):
            await asyncio.sleep(self.rng.uniform(every / 2, every * 1.5))
            killed = await terminate_connections(self.admin_url, self.database)
            self.figures["database kills (pg_terminate_backend rounds)"] += 1
            self.figures["database connections terminated"] += killed


def _status_in(message: str) -> int:
    found = re.search(r"HTTP (\d{3})", message)
    return int(found.group(1)) if found else 0


async def run_chaos(
    *, workdir: Path, seed: int, faults: Faults, **options: Any
) -> tuple[Evidence, list[Finding]]:
    async with ChaosRun(workdir=workdir, seed=seed, faults=faults, **options) as run:
        evidence = await run.play()
    return evidence, check(evidence)
