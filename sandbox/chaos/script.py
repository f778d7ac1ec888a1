"""What a chaos run plays: rollouts whose metrics are scripted (so each end is known in
advance) and the faults injected meanwhile."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout, TrackState
from bot.plan_file import load_plan
from sandbox.harness import Sandbox

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


STAGE_SECONDS = 10.0
"""What a window costs a rollout besides its length, undisturbed: a deploy, the gate, the
card's redraw and the person's next look (every 2 s)."""
KILL_SECONDS = 8.0
"""What one SIGKILL can cost the rollout it hits: a click's claim held for its lease (8 s; a
timer's or a message's 3 s, then a timer's backoff)."""


def rollout_budget(faults: Faults, *, window: float) -> float:
    """Seconds a rollout may go without reaching a step it had not reached before the run
    calls it stuck (`Progress`): what the whole rollout takes on an idle machine, each of its
    windows (`WINDOWS`) with STAGE_SECONDS, plus KILL_SECONDS for each SIGKILL expected
    meanwhile. With 1 s windows and a kill every 4 s: 44 s + 11 kills x 8 s = 132 s. A bound on
    progress, not on the whole rollout: a loaded machine makes every step slower, a stuck
    rollout makes none; and as a rollout has finitely many steps, its whole run is bounded."""
    undisturbed = len(WINDOWS) * (window + STAGE_SECONDS)
    kills = undisturbed / faults.kill_every if faults.kill_every else 0.0
    return undisturbed + kills * KILL_SECONDS


class Progress:
    """The bound on one rollout's run: stuck once `seconds` (`rollout_budget`) passed on `clock`
    since it last reached a step it had not reached before. A step is its phase, its run found
    or not, its preflight checks' and each track's and stage's state (a redraw of its card is
    none); a step seen again (a state left and entered again) is no progress."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._reached: set[Hashable] = set()
        self._since = clock()

    def saw(self, rollout: Rollout | None) -> None:
        """The rollout as the person looked at it now (None: not started yet, or not read)."""
        if rollout is None:
            where: Hashable = None
        else:
            checks = (rollout.preflight.migrations.state, rollout.preflight.image.state)
            tracks = tuple((t.state, tuple(s.state for s in t.stages)) for t in rollout.tracks)
            where = (rollout.phase, rollout.run_id is not None, checks, tracks)
        if where not in self._reached:
            self._reached.add(where)
            self._since = self._clock()

    @property
    def stuck(self) -> bool:
        return self._clock() - self._since >= self._seconds


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
