"""A run the bot follows waits, for the bot's answer, at an environment its plan does not name:
the bot never answers it (no stage of the plan gates that deployment), and its rollout's thread
is told so once, naming the environment and what to do, whatever the number of deliveries,
redeliveries and looks at the run: in App mode (the App's rule) and in token mode (the bot's
account a required reviewer there, whose notifications nobody reads). A request left open there
is closed with its run, so no card and no GitHub call follow it. End to end (SQLite and
PostgreSQL; tests/conftest.py).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from figures import passing_sandbox, two_serve_processes
from sandbox_views import dispatched, reviews
from test_exactly_once import APPROVERS_ENV
from test_protection_rules import answers, app_box
from test_unfollowed_runs import run_cards

from bot.domain.rollout import Phase, StageState
from sandbox.harness import Sandbox, fast_plan
from sandbox.idle import bots_database
from storage.protection_rules import ProtectionRuleStore

pytestmark = pytest.mark.story

OUTSIDE = "desktop-internal"


def relay_only_plan(tmp_path: Path, *, level: str = "stages") -> str:
    """The accelerated plan without the desktop track: the workflow's desktop job still
    deploys to `desktop-internal`, which no stage of this plan names (`level`: the plan's
    notification level)."""
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml"))
    del plan["tracks"]["desktop"]
    for name, given in plan["inputs"].items():
        if given.get("track") == "desktop":
            plan["inputs"][name] = {"from": "literal", "value": "0.001"}
    plan["notifications"] = {"level": level}
    return yaml.safe_dump(plan)


def told_outside(box: Sandbox) -> list[str]:
    """The thread's lines about the environment outside the plan."""
    return [line for line in box.thread() if "does not name" in line]


async def told_once(box: Sandbox) -> str:
    """After three more polls, the canary held: the thread's one line about the environment
    outside the plan, whose job still waits on GitHub, remembered as told on the rollout."""
    for _ in range(3):
        await box.pass_time(timedelta(seconds=30))
    await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.HOLDING)
    (line,) = told_outside(box)
    assert f"waits at `{OUTSIDE}`" in line
    assert "neither approves nor rejects it" in line
    assert f"add `{OUTSIDE}` to the plan" in line
    assert "/actions/runs/" in line  # the run's page, where a person can act
    rollout = await box.wait_until(lambda r: r.phase is Phase.RUNNING)
    job = box.github.run(rollout.run_id or 0).job("desktop-cli-ring-internal")
    assert job.status == "waiting"
    assert rollout.told_outside == (OUTSIDE,)
    return line


@pytest.mark.database_matters
async def test_a_followed_run_waiting_outside_the_plan_is_told_once_and_never_answered(
    tmp_path: Path, database_url: str
) -> None:
    async with app_box(tmp_path, database_url, plan_yaml=relay_only_plan(tmp_path)) as box:
        await dispatched(box)
        await box.slack.wait_for(lambda: bool(told_outside(box)), timeout=30)

        # The same request again: redelivered, its body sent under a new id, and more looks.
        (request,) = [
            d
            for d in box.github.app_hook.deliveries
            if json.loads(d.body)["environment"] == OUTSIDE
        ]
        await box.github.app_hook.redeliver(request.guid)
        await box.github.app_hook.replay(request.guid)
        await box.services.webhooks.settled()

        assert "for the bot's protection rule" in await told_once(box)
        assert [a for a in answers(box) if a[0] == OUTSIDE] == []  # nothing answered there


@pytest.mark.postgres
@pytest.mark.parametrize("app_rule", [True, False], ids=["app", "token"])
async def test_two_replicas_tell_the_thread_once(
    tmp_path: Path, postgres_database_url: str, app_rule: bool
) -> None:
    """Both `serve` processes follow the run (their pollers, and in App mode the request
    delivered to each): the line is saved with the rollout, so one of them tells it."""
    async with two_serve_processes(
        tmp_path,
        postgres_database_url,
        APPROVERS_ENV,
        app_rule=app_rule,
        plan_yaml=relay_only_plan(tmp_path),
    ) as (box, second):
        await dispatched(box)
        await box.slack.wait_for(lambda: bool(told_outside(box)), timeout=30)
        if app_rule:
            (request,) = [
                d
                for d in box.github.app_hook.deliveries
                if json.loads(d.body)["environment"] == OUTSIDE
            ]
            box.github.app_hook.url = f"{second}/github/webhook"
            await box.github.app_hook.replay(request.guid)
        await told_once(box)
        assert [a for a in answers(box) if a[0] == OUTSIDE] == []


def asked_of(box: Sandbox, run_id: int) -> int:
    """How many requests the bot made to GitHub about the run so far."""
    return sum(1 for r in box.github.requests if f"/actions/runs/{run_id}" in r.path)


@pytest.mark.database_matters
async def test_a_run_cancelled_while_it_waits_outside_the_plan_leaves_nothing_open(
    tmp_path: Path, database_url: str
) -> None:
    """Someone cancels the run (as the line suggests) while its desktop job waits outside the
    plan: its requests are closed with the run, so the ended rollout's run gets no card of a
    run waiting for the bot, its default answers nothing, and GitHub is not asked about it
    again, poll after poll."""
    async with app_box(tmp_path, database_url, plan_yaml=relay_only_plan(tmp_path)) as box:
        rollout = await dispatched(box)
        run_id = rollout.run_id or 0
        await box.slack.wait_for(lambda: bool(told_outside(box)), timeout=30)
        await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.HOLDING)

        box.github.engine.cancel(run_id)
        await box.github.settle()
        await box.wait_until(lambda r: r.phase is Phase.ENDED)
        seen_ended = box.clock()  # the rollout's end is GitHub's job time, which may be earlier
        await box.pass_time(timedelta(seconds=30))
        asked = asked_of(box, run_id)
        for _ in range(3):
            await box.pass_time(timedelta(seconds=30))
        await box.pass_time(timedelta(seconds=1805))  # past UNFOLLOWED_RUN_TIMEOUT

        rules = ProtectionRuleStore(bots_database(box).sessions)
        assert await rules.open_for_run(run_id) == []
        gone = [r for r in await rules.for_run(run_id) if r.answer == "gone"]
        assert {r.environment for r in gone} == {OUTSIDE, "relay-rollout-50"}
        # Closed by the look that found the run completed, not by a later sweep.
        assert all(r.answered_at is not None and r.answered_at <= seen_ended for r in gone)
        assert run_cards(box) == []
        assert asked_of(box, run_id) == asked
        assert answers(box) == [("relay-canary-5", "approved")]


async def test_at_the_all_level_the_wait_outside_the_plan_is_said_once(
    tmp_path: Path, database_url: str
) -> None:
    """At the `all` notification level the thread says what GitHub reports, the requests of
    the plan's stages among it; the request at the environment outside the plan is said once,
    by the line that says what to do."""
    plan = relay_only_plan(tmp_path, level="all")
    async with app_box(tmp_path, database_url, plan_yaml=plan) as box:
        await dispatched(box)
        await box.slack.wait_for(lambda: bool(told_outside(box)), timeout=30)
        await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.HOLDING)
        await box.services.webhooks.settled()

        canary = "GitHub: `relay-canary-5` is waiting for the bot's protection rule."
        assert canary in box.thread()
        assert [line for line in box.thread() if OUTSIDE in line] == told_outside(box)
        assert len(told_outside(box)) == 1


@pytest.mark.database_matters
async def test_token_mode_a_wait_for_the_bots_review_outside_the_plan_is_told_once(
    tmp_path: Path, database_url: str
) -> None:
    """Token mode: the bot's account is a required reviewer of `desktop-internal`, which the
    plan does not name. GitHub notifies that account, whose mail nobody reads: the thread is
    told once, with what to do, and the bot reviews nothing there."""
    async with passing_sandbox(
        tmp_path, database_url=database_url, plan_yaml=relay_only_plan(tmp_path)
    ) as box:
        await dispatched(box)
        await box.slack.wait_for(lambda: bool(told_outside(box)), timeout=30)

        line = await told_once(box)
        assert f"waits at `{OUTSIDE}` for the bot's review" in line
        assert "another of its required reviewers can approve or reject it" in line
        assert reviews(box, OUTSIDE) == []
