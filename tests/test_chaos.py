"""The chaos test (bounded form; `make chaos` runs the long one) and its checks.

The checks are proven able to fail on hand-made records first: a window evaluated twice, an
environment approved twice, a verdict posted twice, a traceback or a secret in a log.
The bounded runs (token mode with one service; a GitHub App releasing two services) need
PostgreSQL (`-m chaos` selects them) and take about a minute each.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cleared import cleared_rollout

from bot.domain.rollout import Phase, Rollout, StageState, TrackState
from sandbox.chaos.checks import (
    CHECKS,
    Evidence,
    Outcome,
    check,
    dispatched_once,
    each_owner_its_installation,
    ends_as_scripted,
    no_secrets,
    no_server_errors,
    no_tracebacks,
    report,
    reviews_at_most_once,
    verdicts_posted_once,
    windows_evaluated_once,
)
from sandbox.chaos.run import run_chaos
from sandbox.chaos.script import PLAN, SCENARIOS, Faults, Progress, pick_scenarios
from sandbox.config import GITHUB_TOKEN, SLACK_SIGNING_SECRET

PASSES = SCENARIOS[0]
CANARY_FAILS = SCENARIOS[1]
THREAD = (
    "Dispatched *Deployment Strategy* for `v1.0.0`: <http://gh/run/1|run 1>.",
    ":large_green_circle: 5% canary gate PASS (crash 0.001). Holding *50%* until someone clicks",
    ":large_green_circle: *5% canary gate: PASS*. Every metric is within its limit.",
    ":large_green_circle: 50% gate PASS (crash 0.0015). Holding *100%* until someone clicks",
    ":large_green_circle: *50% gate: PASS*. Every metric is within its limit.",
    ":large_green_circle: internal ring gate PASS (crash 0.001). Holding *beta ring*",
    ":large_green_circle: *internal ring gate: PASS*. Every metric is within its limit.",
    ":large_green_circle: beta ring gate PASS (crash 0.0012). Holding *GA ring*",
    ":large_green_circle: *beta ring gate: PASS*. Every metric is within its limit.",
)
GOOD = Evidence(
    outcomes=(
        Outcome(
            tag="v1.0.0",
            scenario=PASSES,
            phase="ended",
            tracks={"relay": "completed", "desktop": "completed"},
            gates=(
                ("relay", "canary", "PASS"),
                ("desktop", "internal", "PASS"),
                ("relay", "half", "PASS"),
                ("desktop", "beta", "PASS"),
            ),
            thread=THREAD,
            run_id=1,
        ),
    ),
    reviews=(
        (1, "relay-canary-5", "approved"),
        (1, "desktop-internal", "approved"),
        (1, "relay-rollout-50", "approved"),
    ),
    dispatches={"v1.0.0": 1},
    logs={"serve.log": "INFO bot.services.scheduler: scheduler started\n"},
    sent_to_slack=('{"text": "Rollout of `v1.0.0` ended."}',),
    answers={200: 12, 202: 30},
)


def with_outcome(**changes: Any) -> Evidence:
    return replace(GOOD, outcomes=(replace(GOOD.outcomes[0], **changes),))


def test_a_clean_record_passes_every_check() -> None:
    findings = check(GOOD)

    assert [f.problems for f in findings if not f.ok] == []
    assert all(f.checked > 0 for f in findings)
    assert "0 broken" in report(GOOD, findings, seed=1)


def test_a_window_evaluated_twice_is_caught() -> None:
    twice = with_outcome(gates=(*GOOD.outcomes[0].gates, ("relay", "half", "PASS")))

    finding = windows_evaluated_once(twice)

    assert finding.problems == ("v1.0.0 relay/half evaluated 2 times",)


def test_a_window_never_evaluated_is_caught() -> None:
    lost = with_outcome(gates=GOOD.outcomes[0].gates[:3])

    assert windows_evaluated_once(lost).problems == ("v1.0.0 desktop/beta evaluated 0 times",)


def test_an_environment_approved_twice_is_caught() -> None:
    again = replace(GOOD, reviews=(*GOOD.reviews, (1, "relay-rollout-50", "approved")))

    assert reviews_at_most_once(again).problems == ("run 1 relay-rollout-50 reviewed 2 times",)


def test_a_second_dispatch_is_caught() -> None:
    assert dispatched_once(replace(GOOD, dispatches={"v1.0.0": 2})).problems == (
        "v1.0.0 dispatched 2 times",
    )


def test_an_end_other_than_the_scripted_one_is_caught() -> None:
    stuck = with_outcome(phase="running", tracks={"relay": "active", "desktop": "completed"})
    wrong_verdict = replace(
        GOOD,
        outcomes=(
            replace(GOOD.outcomes[0], scenario=CANARY_FAILS, tracks={"relay": "rolled_back"}),
        ),
    )

    assert ends_as_scripted(stuck).problems == (
        "v1.0.0 (passes to 100% and GA): running {'relay': 'active', 'desktop': 'completed'}",
    )
    problems = ends_as_scripted(wrong_verdict).problems
    assert "v1.0.0 relay/canary: PASS, not ROLLBACK" in problems


def test_a_verdict_posted_twice_or_never_is_caught() -> None:
    doubled = with_outcome(thread=(*THREAD, THREAD[3]))
    missing = with_outcome(thread=THREAD[:-1])

    assert verdicts_posted_once(doubled).problems == ("v1.0.0 50% PASS line posted 2 times",)
    assert verdicts_posted_once(missing).problems == ("v1.0.0 beta ring PASS card posted 0 times",)


def test_a_traceback_in_a_log_is_caught_with_its_exception() -> None:
    log = (
        "ERROR bot.services.scheduler: timer window:r-1:relay:half failed; retrying in 0:00:30\n"
        "Traceback (most recent call last):\n"
        '  File "bot/services/rollouts.py", line 1, in on_timer\n'
        "bot.domain.errors.ConcurrentChange: Rollout `v1.0.0` was changed by someone else\n"
    )
    broken = replace(GOOD, logs={**GOOD.logs, "serve-2.log": log})

    assert no_tracebacks(broken).problems == (
        "serve-2.log: bot.domain.errors.ConcurrentChange: Rollout `v1.0.0` was changed by "
        "someone else",
    )


@pytest.mark.parametrize(
    "where",
    [
        {"logs": {"serve.log": f"DEBUG sending Authorization: token {GITHUB_TOKEN}\n"}},
        {"sent_to_slack": (f'{{"text": "secret is {SLACK_SIGNING_SECRET}"}}',)},
    ],
)
def test_a_secret_in_a_log_or_a_message_is_caught(where: Mapping[str, Any]) -> None:
    assert len(no_secrets(replace(GOOD, **where)).problems) == 1


def test_a_server_error_is_caught() -> None:
    assert no_server_errors(replace(GOOD, answers={200: 3, 500: 2})).problems == (
        "2 answers with a 5xx status",
    )


ORG_1, ORG_2 = 61_000_002, 61_000_003
AS_APP = replace(
    GOOD,
    installations={"scriptum": 61_000_001, "org-1": ORG_1, "org-2": ORG_2},
    calls={("org-1/svc-001", ORG_1): 40, ("org-2/svc-002", ORG_2): 38},
    deliveries={("org-1/svc-001", ORG_1): 12, ("org-2/svc-002", ORG_2): 9},
)
"""A run as the App releasing services of two owners, each call and delivery with its own."""


def test_as_an_app_a_call_or_delivery_without_its_owners_installation_is_caught() -> None:
    findings = check(AS_APP)
    crossed = replace(
        AS_APP, calls={**AS_APP.calls, ("org-2/svc-002", ORG_1): 1, ("org-1/svc-001", None): 2}
    )
    unnamed = replace(AS_APP, deliveries={**AS_APP.deliveries, ("org-2/svc-002", None): 1})

    assert [f.problems for f in findings if not f.ok] == []
    assert len(check(GOOD)) == len(CHECKS) == len(findings) - 1  # token mode: no installations
    assert (
        "ok   every GitHub call and delivery of a repository with its owner's installation: "
        "99 checked, 0 broken"
    ) in report(AS_APP, findings, seed=1)
    assert each_owner_its_installation(crossed).problems == (
        "2 x call of org-1/svc-001 with installation None, not its owner's (61000002)",
        "1 x call of org-2/svc-002 with installation 61000002, not its owner's (61000003)",
    )
    assert each_owner_its_installation(unnamed).problems == (
        "1 x delivery of org-2/svc-002 with installation None, not its owner's (61000003)",
    )


def started() -> Rollout:
    return cleared_rollout(PLAN, now=datetime(2030, 1, 1, tzinfo=UTC))


def a_step_on(rollout: Rollout) -> Rollout:
    """The first stage not yet passed, passed: the rollout got one step further."""
    relay = rollout.track("relay")
    stage = relay.current
    assert stage is not None
    stages = tuple(replace(s, state=StageState.PASSED) if s == stage else s for s in relay.stages)
    tracks = tuple(replace(t, stages=stages) if t is relay else t for t in rollout.tracks)
    return replace(rollout, tracks=tracks)


def test_a_rollout_that_keeps_getting_further_is_never_stuck_however_slow_each_step() -> None:
    now = [0.0]
    progress = Progress(132.0, clock=lambda: now[0])
    progress.saw(None)  # not started yet
    rollout = started()
    for look in range(4):  # four steps of 100 s each: 400 s in all, on a loaded machine
        now[0] += 100.0
        rollout = replace(rollout, phase=Phase.RUNNING) if look == 0 else a_step_on(rollout)
        progress.saw(rollout)
        assert not progress.stuck
    now[0] += 131.0
    progress.saw(replace(rollout, message_ts="1.1", version=9))  # a redraw is no step
    assert not progress.stuck
    now[0] += 1.0
    assert progress.stuck  # 132 s since its last step


def test_a_rollout_that_goes_back_and_forth_is_stuck() -> None:
    now = [0.0]
    progress = Progress(132.0, clock=lambda: now[0])
    here, there = started(), replace(started(), phase=Phase.RUNNING)
    for rollout in (here, there) * 2:
        progress.saw(rollout)
        now[0] += 70.0
    assert progress.stuck  # 140 s since a step not reached before


def test_every_scenario_is_played_in_a_run_of_ten() -> None:
    chosen = pick_scenarios(10, random.Random(3))

    assert len(chosen) == 10
    assert {s.name for s in chosen} == {s.name for s in SCENARIOS}
    ends = {state for s in chosen for state in s.ends.values()}
    assert {TrackState.COMPLETED, TrackState.ROLLED_BACK, TrackState.HALTED} <= ends
    again = pick_scenarios(10, random.Random(3))
    assert [s.name for s in again] == [s.name for s in chosen]  # the seed decides the order


BOUNDED = Faults(github=0.2, slack=0.1, kill_every=4.0, db_kill_every=8.0, db_kills=2)
"""About 20% of GitHub's answers and 10% of Slack's posts fail, a replica is SIGKILLed every
few seconds and database connections are terminated twice. Two or three rollouts keep `make test`
short; `make chaos` plays ten or more (docs/reliability.md has its figures). A rollout gets
`rollout_budget` (132 s here) to reach each step it had not reached before (`Progress`): under
these faults a whole rollout takes 20 to 40 seconds on an idle machine, several times that on a
loaded one, where every step is slower but a stuck rollout is still caught."""


REPLICAS = 2
"""The bounded runs' replicas (the long run has three): one to kill and one to take over.
Each holds up to 28 PostgreSQL connections (docs/operating.md), and the rest of the suite,
beside them, runs other replicas on the same server (`max_connections` 100)."""


@pytest.mark.chaos
@pytest.mark.postgres
# The outer bound against a hang only: a rollout that makes no progress is caught by the run
# itself (`Progress`); a loaded machine makes every step slower, and this leaves it room.
@pytest.mark.timeout(1200)
@pytest.mark.parametrize(
    ("github_app", "services", "rollouts", "installations"),
    [
        pytest.param(False, 1, 3, 0, id="token"),
        # As the App (every stage held by its protection rule, installation tokens that last
        # 30 s) releasing two services side by side (each its repository, channel and plan, of
        # an owner of its own: each its installation): one rollout to 100% and GA, the other
        # rolled back by its 5% gate, at the same time.
        pytest.param(True, 2, 2, 2, id="github-app-2-services"),
    ],
)
async def test_rollouts_under_chaos_keep_every_invariant(
    tmp_path: Path,
    postgres_server: str,
    github_app: bool,
    services: int,
    rollouts: int,
    installations: int,
) -> None:
    evidence, findings = await run_chaos(
        workdir=tmp_path,
        seed=11,
        faults=BOUNDED,
        rollouts=rollouts,
        admin_url=postgres_server,
        github_app=github_app,
        services=services,
        replicas=REPLICAS,
    )
    figures = report(evidence, findings, seed=11)
    print(figures)  # the figures are the point of a chaos run (pytest -s shows them)

    assert all(finding.ok for finding in findings), figures
    # Every service's owner's installation carried calls (none in token mode).
    assert len({number for _, number in evidence.calls}) == installations, figures
