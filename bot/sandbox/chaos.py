"""The chaos test: three `rollout-bot serve` replicas on one fresh PostgreSQL database, driven
by signed Slack requests and GitHub webhooks sent to any replica, while replicas are SIGKILLed
and restarted, database connections are terminated, and the sandbox GitHub and Slack fail
some of their requests. Every rollout's metrics are scripted, so its end is known in advance.

Afterwards the evidence (the audit trail, GitHub's reviews and dispatches, what Slack
received, the replicas' logs) is checked against the invariants of issue 11 and printed as
figures. The check functions take plain records, so a test can hand them a bad one.

    python -m bot.sandbox.chaos --seed 7 --duration 300 [--github-faults 0.2 --slack-faults 0.1]

(`make chaos SEED=7 DURATION=300`); `tests/test_chaos.py` runs a bounded form.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from bot.app import utc_now
from bot.domain.plan import RolloutPlan, load_plan
from bot.domain.rollout import CheckState, Phase, Rollout, TrackState, holding_tracks
from bot.rollout_store import RolloutStore
from bot.sandbox.config import GITHUB_WEBHOOK_SECRET, RELEASE_CHANNEL, SECRETS
from bot.sandbox.harness import Sandbox, fast_plan, write_figures
from bot.sandbox.signing import github_signature_headers
from bot.sandbox.slack import ChannelMessage
from storage.db import create_engine, create_session_factory

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PLAN: RolloutPlan = load_plan(None)
"""The built-in plan: the chaos run accelerates its windows, the labels stay."""

# -- scripted metrics --------------------------------------------------------------------------

Figures = Mapping[str, Mapping[str, Any]]
CANARY_OK = {"crash_rate": "0.001", "error_rate": "0.002", "sample": 5000}
HALF_OK = {"crash_rate": "0.0015", "error_rate": "0.004", "sample": 40000}
RELAY_OK: Figures = {"canary": CANARY_OK, "half": HALF_OK}
RINGS_OK: Figures = {"internal": {"crash_rate": "0.001"}, "beta": {"crash_rate": "0.0012"}}
WINDOWS = (("relay", "canary"), ("relay", "half"), ("desktop", "internal"), ("desktop", "beta"))


@dataclass(frozen=True)
class Scenario:
    """One rollout's script: the figures each gate reads, what a person does, and where the
    rollout must end (the verdict of every window it observes and each track's final state)."""

    name: str
    gates: Mapping[tuple[str, str], str]
    ends: Mapping[str, TrackState]
    relay: Figures = field(default_factory=lambda: RELAY_OK)
    desktop: Figures = field(default_factory=lambda: RINGS_OK)
    stop_at: tuple[str, str] | None = None
    """A person stops this track (Roll back, Kill-switch) while it holds on this stage."""


def _passing(*windows: tuple[str, str]) -> dict[tuple[str, str], str]:
    return dict.fromkeys(windows, "PASS")


_DONE = TrackState.COMPLETED
SCENARIOS = (
    Scenario(
        "passes to 100% and GA",
        gates=_passing(*WINDOWS),
        ends={"relay": _DONE, "desktop": _DONE},
    ),
    Scenario(
        "relay gate fails at 5% (error rate)",
        relay={"canary": {**CANARY_OK, "error_rate": "0.02"}, "half": HALF_OK},
        gates={("relay", "canary"): "ROLLBACK", **_passing(*WINDOWS[2:])},
        ends={"relay": TrackState.ROLLED_BACK, "desktop": _DONE},
    ),
    Scenario(
        "relay gate fails at 50% (crash rate)",
        relay={"canary": CANARY_OK, "half": {**HALF_OK, "crash_rate": "0.003"}},
        gates={**_passing(*WINDOWS), ("relay", "half"): "ROLLBACK"},
        ends={"relay": TrackState.ROLLED_BACK, "desktop": _DONE},
    ),
    Scenario(
        "desktop kill-switch trips at the internal ring",
        desktop={"internal": {"crash_rate": "0.005"}, "beta": {"crash_rate": "0.001"}},
        gates={**_passing(*WINDOWS[:3]), ("desktop", "internal"): "KILL_SWITCH"},
        ends={"relay": _DONE, "desktop": TrackState.HALTED},
    ),
    Scenario(
        "desktop kill-switch trips at the beta ring",
        desktop={"internal": {"crash_rate": "0.001"}, "beta": {"crash_rate": "0.0025"}},
        gates={**_passing(*WINDOWS), ("desktop", "beta"): "KILL_SWITCH"},
        ends={"relay": _DONE, "desktop": TrackState.HALTED},
    ),
    Scenario(
        "relay rolled back by hand at 5%",
        stop_at=("relay", "canary"),
        gates=_passing(("relay", "canary"), *WINDOWS[2:]),
        ends={"relay": TrackState.ROLLED_BACK, "desktop": _DONE},
    ),
    Scenario(
        "desktop kill-switch by hand at the internal ring",
        stop_at=("desktop", "internal"),
        gates=_passing(*WINDOWS[:3]),
        ends={"relay": _DONE, "desktop": TrackState.HALTED},
    ),
)


def pick_scenarios(count: int, rng: random.Random) -> list[Scenario]:
    """`count` scenarios in a seeded order, each one at least once when `count` allows."""
    chosen = list(SCENARIOS[:count]) + [
        rng.choice(SCENARIOS) for _ in range(count - len(SCENARIOS))
    ]
    rng.shuffle(chosen)
    return chosen


# -- faults ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """What goes wrong during the run."""

    github: float = 0.2
    """Share of GitHub requests that fail (5xx, timeouts, secondary rate limits, writes applied
    but answered 502, writes accepted then the connection dropped)."""
    slack: float = 0.1
    """Share of Slack posts answered 429 with Retry-After."""
    kill_every: float | None = 4.0
    """Seconds between SIGKILLs of a random replica (restarted at once); None: no kills."""
    db_kill_every: float | None = 10.0
    """Seconds between rounds of pg_terminate_backend on every connection of the database."""
    db_kills: int = 3


NO_FAULTS = Faults(github=0.0, slack=0.0, kill_every=None, db_kill_every=None, db_kills=0)


def inject_service_faults(
    box: Sandbox, faults: Faults, *, seed: int
) -> Callable[[], dict[str, int]]:
    """Turn on the sandbox GitHub's and Slack's own fault injection: the one place the chaos
    run touches those knobs. Returns how to
    count, at the end, what they injected."""
    if faults.github:
        box.github.inject_faults(rate=faults.github, seed=seed)
    if faults.slack:
        box.slack.inject_faults(rate=faults.slack, seed=seed + 1)

    def injected() -> dict[str, int]:
        counts: dict[str, int] = {}
        if faults.github:
            github: Counter[str] = box.github.faults_injected
            counts.update({f"github {kind}": n for kind, n in sorted(github.items())})
        if faults.slack:
            counts["slack 429"] = int(box.slack.faults_injected)
        return counts

    return injected


# -- what the run leaves behind ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One rollout as it stood after the run: read from the database and from Slack."""

    tag: str
    scenario: Scenario
    phase: str | None
    """None when the rollout was never created."""
    tracks: Mapping[str, str] = field(default_factory=dict)
    gates: tuple[tuple[str, str, str], ...] = ()
    """Each window evaluation in the audit trail: (track, stage, verdict)."""
    thread: tuple[str, ...] = ()
    run_id: int | None = None


@dataclass(frozen=True)
class Evidence:
    outcomes: tuple[Outcome, ...]
    reviews: tuple[tuple[int, str, str], ...]
    """Every review GitHub recorded: (run id, environment, approved|rejected)."""
    dispatches: Mapping[str, int]
    """Deployment Strategy dispatches per tag."""
    logs: Mapping[str, str]
    """Each replica's log (stderr across its restarts)."""
    sent_to_slack: tuple[str, ...]
    """Everything the bot sent to Slack: Web API arguments and response_url bodies."""
    answers: Mapping[int, int] = field(default_factory=dict)
    """HTTP status of every answer the replicas gave to the run's requests (0: no answer)."""
    figures: Mapping[str, int] = field(default_factory=dict)
    """Faults and traffic, for the report."""
    seconds: float = 0.0


@dataclass(frozen=True)
class Finding:
    invariant: str
    checked: int
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def windows_evaluated_once(evidence: Evidence) -> Finding:
    """Every window the script demands was evaluated exactly once, and no other."""
    problems = []
    checked = 0
    for outcome in evidence.outcomes:
        seen = Counter((track, stage) for track, stage, _ in outcome.gates)
        for window in sorted(set(seen) | set(outcome.scenario.gates)):
            checked += 1
            if seen[window] != 1:
                problems.append(f"{outcome.tag} {'/'.join(window)} evaluated {seen[window]} times")
    return Finding("every window evaluated exactly once", checked, tuple(problems))


def reviews_at_most_once(evidence: Evidence) -> Finding:
    """GitHub never saw an environment of a run approved or rejected twice."""
    seen = Counter((run_id, environment) for run_id, environment, _ in evidence.reviews)
    problems = tuple(
        f"run {run_id} {environment} reviewed {n} times"
        for (run_id, environment), n in sorted(seen.items())
        if n > 1
    )
    return Finding("every environment approved or rejected at most once", len(seen), problems)


def dispatched_once(evidence: Evidence) -> Finding:
    """Each rollout started exactly one run."""
    problems = tuple(
        f"{o.tag} dispatched {evidence.dispatches.get(o.tag, 0)} times"
        for o in evidence.outcomes
        if evidence.dispatches.get(o.tag, 0) != 1
    )
    return Finding("every rollout dispatched exactly once", len(evidence.outcomes), problems)


def ends_as_scripted(evidence: Evidence) -> Finding:
    """Each rollout ended, each track where its metrics (or its person) sent it, and every
    verdict was the scripted one."""
    problems = []
    for o in evidence.outcomes:
        ends = {track: str(state) for track, state in o.scenario.ends.items()}
        if o.phase != Phase.ENDED or dict(o.tracks) != ends:
            problems.append(f"{o.tag} ({o.scenario.name}): {o.phase} {dict(o.tracks)}")
        verdicts = {(track, stage): verdict for track, stage, verdict in o.gates}
        for window, wanted in sorted(o.scenario.gates.items()):
            if verdicts.get(window, wanted) != wanted:
                problems.append(f"{o.tag} {'/'.join(window)}: {verdicts[window]}, not {wanted}")
    return Finding(
        "every rollout's final state is what its metrics demand",
        len(evidence.outcomes),
        tuple(problems),
    )


def verdict_lines(label: str, verdict: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """How a verdict shows in the thread: the machine's line and the gate card's headline."""
    name = re.escape(label)
    return (
        re.compile(rf"(?<![\w%]){name} gate \*?{verdict}\b"),
        re.compile(rf"(?<![\w%]){name} gate: {verdict}\b"),
    )


def verdicts_posted_once(evidence: Evidence) -> Finding:
    """Each verdict shows once in its rollout's thread: one line, one gate card."""
    problems = []
    checked = 0
    for o in evidence.outcomes:
        for (track, stage), verdict in sorted(o.scenario.gates.items()):
            label = PLAN.track(track).stage(stage).label
            for kind, pattern in zip(("line", "card"), verdict_lines(label, verdict), strict=True):
                checked += 1
                n = sum(1 for reply in o.thread if pattern.search(reply))
                if n != 1:
                    problems.append(f"{o.tag} {label} {verdict} {kind} posted {n} times")
    return Finding("each verdict posted once in its thread", checked, tuple(problems))


TRACEBACK = "Traceback (most recent call last)"


def no_tracebacks(evidence: Evidence) -> Finding:
    problems = []
    for name, log in sorted(evidence.logs.items()):
        lines = log.splitlines()
        for index, line in enumerate(lines):
            if TRACEBACK in line:
                last = next(
                    (ln for ln in lines[index + 1 :] if ln and not ln.startswith((" ", "\t"))),
                    "?",
                )
                problems.append(f"{name}: {last[:160]}")
    return Finding(
        "no unhandled traceback in any replica's log", len(evidence.logs), tuple(problems)
    )


def no_secrets(evidence: Evidence, hidden: Sequence[str] = SECRETS) -> Finding:
    places = [(f"log {name}", log) for name, log in sorted(evidence.logs.items())]
    places += [("a Slack message", sent) for sent in evidence.sent_to_slack]
    problems = tuple(
        f"{where} carries a secret ({secret[:6]}...)"
        for where, content in places
        for secret in hidden
        if secret in content
    )
    return Finding("no secret in any log line or Slack message", len(places), problems)


def no_server_errors(evidence: Evidence) -> Finding:
    """A replica that is up answers every signed request without a 5xx."""
    errors = sum(n for status, n in evidence.answers.items() if status >= 500)
    problems = (f"{errors} answers with a 5xx status",) if errors else ()
    return Finding("no 5xx answer to a signed request", sum(evidence.answers.values()), problems)


CHECKS: tuple[Callable[[Evidence], Finding], ...] = (
    windows_evaluated_once,
    reviews_at_most_once,
    dispatched_once,
    ends_as_scripted,
    verdicts_posted_once,
    no_tracebacks,
    no_secrets,
    no_server_errors,
)


def check(evidence: Evidence) -> list[Finding]:
    return [invariant(evidence) for invariant in CHECKS]


def _levels(logs: Mapping[str, str]) -> Counter[str]:
    """Log lines by level (a transient fault should be one WARNING, not an ERROR)."""
    return Counter(
        level
        for log in logs.values()
        for line in log.splitlines()
        for level in ("WARNING", "ERROR", "CRITICAL")
        if f" {level} " in line
    )


def report(evidence: Evidence, findings: Iterable[Finding], *, seed: int) -> str:
    """The run in figures, then each invariant with what broke it."""
    kinds = Counter(o.scenario.name for o in evidence.outcomes)
    ended = sum(1 for o in evidence.outcomes if o.phase == Phase.ENDED)
    lines = [
        f"chaos run, seed {seed}: {len(evidence.outcomes)} rollouts ({ended} ended) "
        f"in {evidence.seconds:.0f} s",
        *(f"  {n:3d} x {name}" for name, n in sorted(kinds.items())),
        "faults and traffic:",
        *(f"  {name}: {n}" for name, n in evidence.figures.items()),
        "  replicas' log lines: "
        + ", ".join(f"{level} x {n}" for level, n in sorted(_levels(evidence.logs).items())),
        "  answers to signed requests: "
        + ", ".join(
            f"{status or 'no answer'} x {n}" for status, n in sorted(evidence.answers.items())
        ),
        "invariants:",
    ]
    for finding in findings:
        mark = "ok  " if finding.ok else "FAIL"
        lines.append(
            f"  {mark} {finding.invariant}: {finding.checked} checked, "
            f"{len(finding.problems)} broken"
        )
        shown = Counter(finding.problems)
        lines += [
            f"         - {p}" + (f" (x{n})" if n > 1 else "") for p, n in list(shown.items())[:12]
        ]
        if len(shown) > 12:
            lines.append(f"         … {len(shown) - 12} more")
    return "\n".join(lines)


# -- the run -----------------------------------------------------------------------------------


async def _admin(url: str, statement: str, **parameters: str) -> int:
    """Run one statement outside a transaction (CREATE/DROP DATABASE need that); returns how
    many rows it gave."""
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text(statement), parameters)
            return len(result.fetchall()) if result.returns_rows else 0
    finally:
        await engine.dispose()


def _button(card: ChannelMessage, action: str, track: str) -> str | None:
    for block in card.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            value = str(element.get("value", ""))
            if element.get("action_id") == action and f'"track":"{track}"' in value:
                return value
    return None


class ChaosRun:
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
        rollout_timeout: float = 60.0,
        admin_url: str = ADMIN_URL,
        poll_interval: float = 0.2,
    ) -> None:
        self.workdir = workdir
        self.seed = seed
        self.faults = faults
        self.rng = random.Random(seed)
        self.minimum = rollouts
        self.duration = duration
        self.window = window
        self.replica_count = replicas
        self.rollout_timeout = rollout_timeout
        self.admin_url = admin_url
        self.poll_interval = poll_interval
        self.database = f"rb_chaos_{secrets.token_hex(5)}"
        self.database_url = (
            make_url(admin_url).set(database=self.database).render_as_string(hide_password=False)
        )
        self.answers: Counter[int] = Counter()
        self.figures: Counter[str] = Counter()
        self._played: list[tuple[str, Scenario]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._box: Sandbox | None = None
        self._http: aiohttp.ClientSession | None = None
        self._engine: AsyncEngine | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> ChaosRun:
        await _admin(self.admin_url, f'CREATE DATABASE "{self.database}"')
        await self._migrate()
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        plan = fast_plan(self.workdir / "figures.yml", window=self.window, extension=self.window)
        self._box = Sandbox(
            workdir=self.workdir,
            database_url=self.database_url,
            plan_yaml=plan,
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
        )
        await self._box.__aenter__()
        await asyncio.gather(*(self._box.start_replica() for _ in range(self.replica_count - 1)))
        self._box.github.on_event(self._webhook)
        self._engine = create_engine(self.database_url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop_background()
        if self._engine is not None:
            await self._engine.dispose()
        if self._box is not None:
            await self._box.__aexit__(exc_type, exc, tb)
        if self._http is not None:
            await self._http.close()
        await _admin(self.admin_url, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    async def _migrate(self) -> None:
        """`rollout-bot migrate`, as an operator prepares a new database."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "migrate",
            env=env | {"DATABASE_URL": self.database_url},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"rollout-bot migrate failed: {err.decode(errors='replace')}")

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
        """Run rollouts one after another (a track runs one rollout at a time) until at least
        `rollouts` ran and `duration` seconds passed, under the faults; then gather evidence."""
        started = time.monotonic()
        assert self._engine is not None
        store = RolloutStore(create_session_factory(self._engine), clock=utc_now)
        injected = inject_service_faults(self.box, self.faults, seed=self.seed)
        if self.faults.kill_every:
            self._spawn(self._kill_replicas(self.faults.kill_every))
        if self.faults.db_kill_every and self.faults.db_kills:
            self._spawn(self._kill_connections(self.faults.db_kill_every, self.faults.db_kills))
        plan = pick_scenarios(self.minimum, self.rng)
        index = 0
        while index < len(plan) or time.monotonic() - started < self.duration:
            scenario = plan[index] if index < len(plan) else self.rng.choice(SCENARIOS)
            tag = f"v{self.seed}.{index + 1}.0"
            index += 1
            self._played.append((tag, scenario))
            if not await self._play_one(store, tag, scenario):
                break  # stuck: its tracks stay busy, no later rollout could start
        await asyncio.sleep(1.0)  # late deliveries, a last poll: anything done twice shows now
        await self._stop_background()
        self.figures.update(injected())
        return await self._evidence(store, time.monotonic() - started)

    async def _play_one(self, store: RolloutStore, tag: str, scenario: Scenario) -> bool:
        """A release manager runs one rollout to its end; False when it did not end in time."""
        write_figures(self.box.figures, "relay", scenario.relay)
        write_figures(self.box.figures, "desktop", scenario.desktop)
        acted: dict[tuple[str, ...], float] = {}

        def due(*what: str, every: float = 2.0) -> bool:
            """A person repeats an action only after looking again a while later."""
            now = time.monotonic()
            if now - acted.get(what, -every) < every:
                return False
            acted[what] = now
            return True

        deadline = time.monotonic() + self.rollout_timeout
        while time.monotonic() < deadline:
            found = await self._look(store, tag)
            if found is None:
                if due("start", every=3.0):
                    self._spawn(self._command(f"start {tag} --flags-ready"))
            elif found.phase is Phase.ENDED:
                return True
            elif found.phase is Phase.PREFLIGHT:
                unchecked = CheckState.ERROR in (
                    found.preflight.migrations.state,
                    found.preflight.image.state,
                )
                if unchecked and due("recheck"):  # GitHub failed the check: look again
                    await self._click(found, "recheck", None)
                elif not unchecked and due("dispatch"):
                    await self._click(found, "dispatch", None)
            elif found.phase is Phase.RUNNING:
                for track in holding_tracks(found):
                    stage = found.track(track).current
                    assert stage is not None
                    if scenario.stop_at == (track, stage.key):
                        action = "rollback" if track == "relay" else "kill"
                    else:
                        action = "promote"
                    if due(action, track, stage.key):
                        await self._click(found, action, track)
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

    async def _command(self, text: str) -> None:
        replica = self._replica()
        if replica is None:
            return
        try:
            await self.box.command(text, replica=replica)
            self.answers[200] += 1
        except AssertionError as refused:
            self.answers[_status_in(str(refused))] += 1
        except (aiohttp.ClientError, TimeoutError):
            self.answers[0] += 1

    async def _click(self, rollout: Rollout, action: str, track: str | None) -> None:
        replica = self._replica()
        if replica is None or rollout.message_ts is None:
            return
        try:
            card = self.box.slack.message(RELEASE_CHANNEL, rollout.message_ts)
        except KeyError:
            return
        value = _button(card, action, track) if track is not None else None
        if track is not None and value is None:
            return  # the card does not show it (yet): look again
        try:
            await self.box.click(action, message=card, value=value, wait=False, replica=replica)
            self.answers[200] += 1
            self.figures[f"clicks: {action}"] += 1
        except AssertionError as refused:
            self.answers[_status_in(str(refused))] += 1
        except (aiohttp.ClientError, TimeoutError):
            self.answers[0] += 1

    async def _webhook(self, event: str, payload: Mapping[str, Any]) -> None:
        """GitHub delivers each event to one replica (behind a load balancer), never twice."""
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
            killed = await _admin(
                self.admin_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :database AND pid <> pg_backend_pid()",
                database=self.database,
            )
            self.figures["database kills (pg_terminate_backend rounds)"] += 1
            self.figures["database connections terminated"] += killed

    # -- evidence -------------------------------------------------------------------------------

    async def _evidence(self, store: RolloutStore, seconds: float) -> Evidence:
        box = self.box
        outcomes = []
        for tag, scenario in self._played:
            found = await store.by_tag(tag)
            if not found:
                outcomes.append(Outcome(tag, scenario, None))
                continue
            rollout = found[0]
            events = await box.audit.list_for_rollout(rollout.id)
            gates = tuple(
                (e.track or "", e.stage or "", e.result)
                for e in events
                if e.action == "gate" and not (e.detail or {}).get("interim")
            )
            thread: tuple[str, ...] = ()
            if rollout.message_ts is not None:
                with contextlib.suppress(KeyError):
                    card = box.slack.message(RELEASE_CHANNEL, rollout.message_ts)
                    thread = tuple(reply.rendered for reply in card.replies)
            outcomes.append(
                Outcome(
                    tag,
                    scenario,
                    rollout.phase.value,
                    {t.name: t.state.value for t in rollout.tracks},
                    gates,
                    thread,
                    rollout.run_id,
                )
            )
        for replica in box.replicas:
            await replica.kill()
        sent = [json.dumps(call.args) for call in box.slack.calls]
        sent += [json.dumps(post.body) for post in box.slack.all_responses]
        dispatches = Counter(str(d.inputs.get("relay_image_tag")) for d in box.github.dispatches)
        self.figures["GitHub requests"] = len(box.github.requests)
        self.figures["GitHub review attempts refused (not waiting)"] = sum(
            1
            for r in box.github.requests
            if r.method == "POST" and r.path.endswith("/pending_deployments") and r.status == 422
        )
        return Evidence(
            outcomes=tuple(outcomes),
            reviews=tuple(
                (review.run_id, environment, review.state)
                for review in box.github.reviews
                for environment in review.environments
            ),
            dispatches=dispatches,
            logs={r.log.name: r.log.read_text(errors="replace") for r in box.replicas},
            sent_to_slack=tuple(sent),
            answers=dict(self.answers),
            figures=dict(self.figures),
            seconds=seconds,
        )


def _status_in(message: str) -> int:
    found = re.search(r"HTTP (\d{3})", message)
    return int(found.group(1)) if found else 0


async def run_chaos(
    *, workdir: Path, seed: int, faults: Faults, **options: Any
) -> tuple[Evidence, list[Finding]]:
    async with ChaosRun(workdir=workdir, seed=seed, faults=faults, **options) as run:
        evidence = await run.play()
    return evidence, check(evidence)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.sandbox.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (at least)")
    parser.add_argument("--rollouts", type=int, default=10, help="at least this many")
    parser.add_argument("--github-faults", type=float, default=Faults.github)
    parser.add_argument("--slack-faults", type=float, default=Faults.slack)
    parser.add_argument("--kill-every", type=float, default=Faults.kill_every)
    parser.add_argument("--db-kills", type=int, default=Faults.db_kills)
    args = parser.parse_args(argv)
    faults = Faults(
        github=args.github_faults,
        slack=args.slack_faults,
        kill_every=args.kill_every or None,
        db_kills=args.db_kills,
    )
    workdir = Path(tempfile.mkdtemp(prefix="rollout-bot-chaos-"))
    evidence, findings = asyncio.run(
        run_chaos(
            workdir=workdir,
            seed=args.seed,
            faults=faults,
            rollouts=args.rollouts,
            duration=args.duration,
        )
    )
    sys.stdout.write(report(evidence, findings, seed=args.seed) + "\n")
    sys.stdout.write(f"logs: {workdir}\n")
    return 0 if all(f.ok for f in findings) else 1


if __name__ == "__main__":
    sys.exit(main())
