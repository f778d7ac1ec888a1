"""Stages held by the App's custom deployment protection rule, end to end: the bot runs as the
GitHub App, every environment of the Deployment Strategy workflow has the rule (and no required
reviewers), the simulator delivers signed `deployment_protection_rule` requests to the bot's
`/github/webhook`, and the bot answers through the run's callback. A story on SQLite (the
restart and the redelivery on both; tests/conftest.py). What goes wrong on the way is in
`test_protection_rule_faults.py`.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from figures import CANARY_CRASHING, HALF_OK, passing_sandbox, two_serve_processes
from github import Auth, Github, GithubException
from sandbox_views import HALTED_ON_BETA, begun, both_held, dispatched, holding, value_of
from test_exactly_once import APPROVERS_ENV, fifty_promote_clicks
from test_restart import assert_evaluated_once, canary_observing

from bot.cli import demo
from bot.domain.rollout import Phase, StageState, TrackState
from sandbox.config import RELEASE_MANAGER, SECRETS
from sandbox.github import GitHubSimulator
from sandbox.github_app import SandboxApp
from sandbox.github_rules import APP_LOGIN
from sandbox.harness import Sandbox, fast_plan, write_figures
from storage.db import create_engine, create_session_factory
from storage.protection_rules import ProtectionRuleStore

pytestmark = pytest.mark.story

BETA_CRASHES = {"internal": {"crash_rate": "0.001"}, "beta": {"crash_rate": "0.0025"}}


@asynccontextmanager
async def app_box(
    tmp_path: Path,
    database_url: str,
    *,
    ruled: Iterable[str] | None = None,
    reviewers: bool = False,
    extra_env: dict[str, str] | None = None,
    plan_yaml: str | None = None,
) -> AsyncIterator[Sandbox]:
    """The bot running as the GitHub App, the App's rule on `ruled` (default: every
    environment of the plan, without their reviewers unless `reviewers`), on `plan_yaml`
    (default: the accelerated built-in plan)."""
    async with passing_sandbox(
        tmp_path,
        database_url=database_url,
        plan_yaml=plan_yaml or fast_plan(tmp_path / "figures.yml"),
        github_app=SandboxApp(),
        extra_env=extra_env,
    ) as sandbox:
        everywhere = set(sandbox.github.engine.protected)
        sandbox.github.protection_rule(everywhere if ruled is None else ruled, reviewers=reviewers)
        yield sandbox


@pytest.fixture
async def box(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    """The bot answering as the App's installation, every environment on the App's rule."""
    async with app_box(tmp_path, database_url) as sandbox:
        yield sandbox


def answers(box: Sandbox, prefix: str = "") -> list[tuple[str, str]]:
    """The App's answers through the callback, in order."""
    return [
        (review.environments[0], review.state)
        for review in box.github.engine.rule_reviews
        if review.environments[0].startswith(prefix)
    ]


def requested(box: Sandbox) -> list[str]:
    """The environments of the requests delivered to the bot (any answer)."""
    return [json.loads(d.body)["environment"] for d in box.github.app_hook.deliveries]


async def test_every_stage_held_by_the_rule_runs_to_100_percent(box: Sandbox) -> None:
    await dispatched(box)
    for _ in range(2):
        await both_held(box)
        assert "Promoted" in await box.command("promote")
    ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)

    assert {t.name: t.state for t in ended.tracks} == {
        "relay": TrackState.COMPLETED,
        "desktop": TrackState.COMPLETED,
    }
    assert answers(box, "relay") == [
        ("relay-canary-5", "approved"),
        ("relay-rollout-50", "approved"),
        ("relay-rollout-100", "approved"),
    ]
    assert answers(box, "desktop") == [
        ("desktop-internal", "approved"),
        ("desktop-beta", "approved"),
        ("desktop-ga", "approved"),
    ]
    assert box.github.reviews == []  # nothing went through pending_deployments
    assert {r.actor for r in box.github.engine.rule_reviews} == {APP_LOGIN}
    promoted = next(
        r for r in box.github.engine.rule_reviews if r.environments == ("relay-rollout-50",)
    )
    assert (
        promoted.comment == f"rollout-bot: v1.4.2 to 50%, promoted by Slack user {RELEASE_MANAGER}"
    )
    delivered = box.github.app_hook.deliveries
    assert len(delivered) == 6
    # Followed, or kept when it came before the bot had saved the run its dispatch started, or
    # a duplicate when a poll found the wait from the run's deployments first (a loaded machine).
    outcomes = {(202, "followed"), (202, "kept"), (200, "duplicate")}
    assert {(d.status_code, d.result) for d in delivered} <= outcomes
    trail = await box.audit.list_for_rollout(ended.id)
    approved = [e for e in trail if e.action == "github_approved"]
    assert {e.result for e in approved} == {"ok"}


async def test_a_failed_gate_rejects_the_next_stage_through_the_rule_and_rolls_back(
    box: Sandbox,
) -> None:
    write_figures(box.figures, "relay", {"canary": CANARY_CRASHING, "half": HALF_OK})
    await dispatched(box)

    ended = await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)

    assert ended.track("relay").stage("canary").state is StageState.FAILED_GATE
    assert answers(box, "relay") == [
        ("relay-canary-5", "approved"),
        ("relay-rollout-50", "rejected"),
        ("relay-rollback", "approved"),
    ]
    rejected = next(r for r in box.github.engine.rule_reviews if r.state == "rejected")
    assert rejected.comment == "rollout-bot: 5% canary gate ROLLBACK: crash rate"  # the verdict
    assert box.github.run(ended.run_id or 0).job("relay-rollback").conclusion == "success"


async def test_a_crashing_ring_trips_the_kill_switch_through_the_rule(box: Sandbox) -> None:
    write_figures(box.figures, "desktop", BETA_CRASHES)
    await dispatched(box)
    await box.wait_until(lambda r: r.track("desktop").stage("internal").state is StageState.HOLDING)
    await box.click("promote", value=await value_of(box, "promote", "desktop"))

    ended = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)

    assert answers(box, "desktop") == HALTED_ON_BETA
    assert box.github.run(ended.run_id or 0).job("desktop-cli-kill-switch").conclusion == "success"


@pytest.mark.database_matters
async def test_a_request_not_sent_while_the_installation_was_suspended_is_answered_after(
    box: Sandbox,
) -> None:
    """GitHub sends a suspended installation's App no webhook (its "Suspend an app
    installation"), so the 50% job's request never comes; the bot's reads are refused 403
    meanwhile. Once the suspension is lifted, the bot finds the request from the deployment
    still waiting (as after a lost delivery) and a Promote answers it."""
    box.github.set_job_duration("relay-canary-5", timedelta(minutes=10))
    rollout = await dispatched(box)
    run = box.github.run(rollout.run_id or 0)
    await box.wait_until(lambda r: run.job("relay-canary-5").status == "in_progress")
    app, hook = box.github.app, box.github.app_hook
    assert app is not None
    sent = len(hook.deliveries)
    app.suspend("scriptum")
    box.clock.advance(timedelta(minutes=11))
    await box.github.settle()  # the canary ends: the 50% job waits, and GitHub sends nothing
    assert run.job("relay-rollout-50").status == "waiting"
    assert len(hook.deliveries) == sent

    def refused() -> int:
        return sum(1 for request in box.github.requests if request.status == 403)

    before = refused()
    await box.wait_until(lambda r: refused() > before)  # a poll, refused while suspended

    app.unsuspend("scriptum")
    await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.HOLDING)
    await box.click("promote", value=await value_of(box, "promote", "relay"))
    await begun(box, "relay", "half")
    assert ("relay-rollout-50", "approved") in answers(box, "relay")


async def test_a_request_lost_while_the_bot_was_down_is_answered_after_restart(
    box: Sandbox, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    box.github.set_job_duration("relay-canary-5", timedelta(minutes=10))
    rollout = await dispatched(box)
    run = box.github.run(rollout.run_id or 0)
    await box.wait_until(lambda r: run.job("relay-canary-5").status == "in_progress")
    await box.stop_bot()
    box.clock.advance(timedelta(minutes=11))
    await box.github.settle()  # the canary ends: the 50% job waits, its request is lost
    (lost,) = box.github.app_hook.failed()
    assert json.loads(lost.body)["environment"] == "relay-rollout-50"

    await box.start_bot()
    await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.HOLDING)
    await box.click("promote", value=await value_of(box, "promote", "relay"))
    await begun(box, "relay", "half")

    assert ("relay-rollout-50", "approved") in answers(box, "relay")
    assert "waits at relay-rollout-50 for the App's rule, and its request never arrived" in (
        caplog.text
    )
    assert box.github.app_hook.failed() == [lost]  # recovered without a redelivery
    engine = create_engine(database_url)
    try:
        store = ProtectionRuleStore(create_session_factory(engine))
        still_open = {r.environment for r in await store.open_for_run(run.id)}
        assert "relay-rollout-50" not in still_open
    finally:
        await engine.dispose()


async def test_a_request_before_the_run_is_identified_is_kept_and_answered_later(
    box: Sandbox,
) -> None:
    assert "Preflight" in await box.command("start v1.4.2 --flags-ready")
    # The dispatch takes effect but its answer is lost, and the bot cannot list the runs to
    # find it: the run's first jobs reach their environments and their requests come first.
    box.github.fault_next("POST", "/repos/*/actions/workflows/*/dispatches", "accept_then_drop")
    box.github.fault_next("GET", "/repos/*/actions/*runs", "server_error", times=10_000)
    await box.click("dispatch", wait=False)  # its answer comes once the run is found
    await box.wait_until(
        lambda _: (
            len(box.github.app_hook.deliveries) >= 2
            and any(r.fault == "server_error" and r.method == "GET" for r in box.github.requests)
        )
    )
    assert {(d.status_code, d.result) for d in box.github.app_hook.deliveries} == {(202, "kept")}
    assert (await box.rollout()).run_id is None
    assert answers(box) == []

    box.github.clear_faults()
    rollout = await box.wait_until(lambda r: r.phase is Phase.RUNNING)
    await box.wait_until(lambda _: ("relay-canary-5", "approved") in answers(box))

    assert sorted(requested(box)[:2]) == ["desktop-internal", "relay-canary-5"]
    assert rollout.run_id == next(iter(box.github.runs))


@pytest.mark.database_matters
async def test_a_redelivered_request_is_answered_once(box: Sandbox) -> None:
    await dispatched(box)
    await both_held(box)
    first = box.github.app_hook.deliveries[0]
    before = answers(box)

    again = await box.github.app_hook.redeliver(first.guid)

    assert (again.status_code, again.result) == (200, "duplicate")
    await box.services.webhooks.settled()
    assert answers(box) == before
    assert len([a for a in before if a[0] == json.loads(first.body)["environment"]]) == 1


async def test_an_answer_applied_but_answered_502_is_read_back_as_applied(box: Sandbox) -> None:
    await dispatched(box)
    await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.HOLDING)
    promote = await value_of(box, "promote", "relay")
    box.github.fault_next(
        "POST", "/repos/*/actions/runs/*/deployment_protection_rule", "apply_then_502"
    )

    assert await box.click("promote", value=promote) is None  # no error for the clicker

    await begun(box, "relay", "half")
    assert answers(box, "relay-rollout-50") == [("relay-rollout-50", "approved")]
    assert box.github.faults_injected == {"apply_then_502": 1}


async def test_a_request_that_is_not_one_for_the_bot_is_ignored(box: Sandbox) -> None:
    await dispatched(box)
    await both_held(box)
    sample = json.loads(box.github.app_hook.deliveries[0].body)
    foreign = dict(
        sample,
        deployment_callback_url=sample["deployment_callback_url"].replace(
            "scriptum/scriptum", "someone/else"
        ),
    )
    unnamed = {k: v for k, v in sample.items() if k != "environment"}
    before, requests = answers(box), len(box.github.requests)

    sent = [
        await box.github.app_hook.send("deployment_protection_rule", p) for p in (foreign, unnamed)
    ]

    assert [(d.status_code, d.result) for d in sent] == [(202, "ignored"), (202, "ignored")]
    await box.services.webhooks.settled()
    assert answers(box) == before
    callbacks = [r for r in box.github.requests[requests:] if r.method == "POST"]
    assert callbacks == []  # nothing answered, nothing reviewed


async def test_only_the_rules_app_answers_and_only_what_waits(tmp_path: Path) -> None:
    """The simulator's callback, as GitHub documents it: 204, 422 when nothing of the App's
    waits there, 404 for a token that is not a GitHub App's."""
    async with GitHubSimulator(repository="scriptum/scriptum") as gh:
        gh.add_token("ghs_app", APP_LOGIN)
        gh.protection_rule(["relay-canary-5"])
        run_id = gh.create_foreign_run()
        path = f"/repos/scriptum/scriptum/actions/runs/{run_id}"

        def post(token: str, body: dict[str, str]) -> tuple[int, object]:
            github = Github(base_url=gh.api_url, auth=Auth.Token(token), retry=None)
            try:
                github.requester.requestJsonAndCheck(
                    "POST", f"{path}/deployment_protection_rule", input=body
                )
            except GithubException as error:
                return error.status, error.data
            return 204, None

        def get(path_: str) -> Any:
            github = Github(base_url=gh.api_url, auth=Auth.Token("ghs_app"), retry=None)
            return github.requester.requestJsonAndCheck("GET", path_)[1]

        approve = {"environment_name": "relay-canary-5", "state": "approved", "comment": "ok"}
        assert (await asyncio.to_thread(post, gh.token, approve))[0] == 404
        pending = await asyncio.to_thread(get, f"{path}/pending_deployments")
        assert {p["environment"]["name"]: p["current_user_can_approve"] for p in pending} == {
            "desktop-internal": False,  # its reviewer is the simulator's, not the App
            "relay-canary-5": False,  # the App's rule: no reviewer at all
        }
        (deployment,) = await asyncio.to_thread(get, "/repos/scriptum/scriptum/deployments")
        statuses = await asyncio.to_thread(
            get, f"/repos/scriptum/scriptum/deployments/{deployment['id']}/statuses"
        )
        assert [s["state"] for s in statuses] == ["waiting"]
        assert f"/actions/runs/{run_id}/job/" in statuses[0]["log_url"]
        elsewhere = dict(approve, environment_name="relay-rollout-50")
        status, data = await asyncio.to_thread(post, "ghs_app", elsewhere)
        assert status == 422 and "No pending custom deployment requests" in str(data)

        assert await asyncio.to_thread(post, "ghs_app", approve) == (204, None)
        assert (await asyncio.to_thread(post, "ghs_app", approve))[0] == 422
        assert gh.run(run_id).job("relay-canary-5").status != "waiting"
        (review,) = gh.engine.rule_reviews
        assert (review.environments, review.state, review.actor) == (
            ("relay-canary-5",),
            "approved",
            APP_LOGIN,
        )


async def test_an_environment_with_reviewers_and_the_rule_waits_for_the_reviewer_after_the_app(
    tmp_path: Path, database_url: str
) -> None:
    """The App answers its rule once; the job then waits for the person who is the required
    reviewer, and the bot neither answers the rule again nor reviews in the person's place."""
    async with app_box(tmp_path, database_url, ruled=["relay-canary-5"], reviewers=True) as box:
        rollout = await dispatched(box)
        run = box.github.run(rollout.run_id or 0)
        await box.wait_until(lambda _: answers(box) == [("relay-canary-5", "approved")])
        posts = len(box.github.requests)
        for _ in range(5):  # polls
            await box.services.rollouts.reconcile(rollout.id)

        assert run.job("relay-canary-5").status == "waiting"
        assert answers(box) == [("relay-canary-5", "approved")]
        callbacks = [r for r in box.github.requests[posts:] if r.method == "POST"]
        assert callbacks == []  # no second answer, no review in the reviewer's place
        box.github.engine.review(
            run.id,
            environment_ids=[box.github.environment_id("relay-canary-5")],
            state="approved",
            comment="",
            actor="release-manager",
        )
        await begun(box, "relay", "canary")


async def test_in_app_mode_every_stage_is_held_by_the_rule_to_100_percent_as_tokens_expire(
    tmp_path: Path, database_url: str
) -> None:
    """The bot authenticates as the App (its JWT, installation tokens that last 21 s, so a
    rollout outlives several) and answers the rule as `rollout-bot[bot]`; no token at all."""
    app = SandboxApp(token_lifetime=timedelta(seconds=21))
    async with passing_sandbox(
        tmp_path,
        database_url=database_url,
        plan_yaml=fast_plan(tmp_path / "figures.yml"),
        github_app=app,
    ) as box:
        box.github.protection_rule(set(box.github.engine.protected))
        assert "GITHUB_TOKEN" not in box.environment()

        await dispatched(box)
        for _ in range(2):
            await both_held(box)
            assert "Promoted" in await box.command("promote")
            app.advance(20)  # the App's clock: the installation token is about to expire
        await box.wait_until(lambda r: r.phase is Phase.ENDED)

        assert [a for a, _ in answers(box, "relay")] == [
            "relay-canary-5",
            "relay-rollout-50",
            "relay-rollout-100",
        ]
        assert {r.actor for r in box.github.engine.rule_reviews} == {app.bot_login}
        assert box.github.reviews == []
        assert len(app.issued) >= 2  # a new installation token before the old one expired


@pytest.mark.database_matters
async def test_a_window_running_when_the_serve_process_dies_ends_once_and_the_rule_answers_once(
    tmp_path: Path, database_url: str
) -> None:
    """The `serve` process, as the App with installation tokens that last 21 s, is SIGKILLed
    while the canary observes and started again; the App's clock passes 21 s meanwhile, so
    every token the dead process held has expired on GitHub. The window still ends once, and
    the canary and the 50% stage are each answered once through the App's rule, with tokens
    the new process mints."""
    app = SandboxApp(token_lifetime=timedelta(seconds=21))
    # The killed process's timer is taken over once its lease runs out (10 s, as in token mode).
    async with Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        plan_yaml=fast_plan(tmp_path / "figures.yml", window="3s"),
        in_process=False,
        extra_env={"LEASE_SECONDS": "10"},
        github_app=app,
    ) as box:
        box.github.protection_rule(set(box.github.engine.protected))
        window_end = await canary_observing(box)
        await box.kill_process()
        held_by_the_dead = list(app.issued)
        app.advance(21)
        await box.start_process()

        held = await box.wait_until(holding("relay", "canary"))
        await box.wait_for_thread("5% canary gate PASS")
        await box.click("promote", value=await value_of(box, "promote", "relay"))
        await begun(box, "relay", "half")
        await asyncio.sleep(1)  # the process polls and fires whatever it would fire twice

    await assert_evaluated_once(box, held, window_end)
    assert answers(box, "relay") == [
        ("relay-canary-5", "approved"),
        ("relay-rollout-50", "approved"),
    ]
    assert {r.actor for r in box.github.engine.rule_reviews} == {app.bot_login}
    assert box.github.reviews == []
    assert held_by_the_dead and all(t.expires_at <= app.now() for t in held_by_the_dead)
    assert len(app.issued) > len(held_by_the_dead)  # the restarted process minted its own
    logs = (tmp_path / "serve.log").read_text()
    key_lines = app.private_key.splitlines()[1:-1]
    tokens = [t.token for t in app.issued]
    assert not any(secret in logs for secret in (*SECRETS, *key_lines, *tokens))


@pytest.fixture
async def app_replicas(
    tmp_path: Path, postgres_database_url: str
) -> AsyncIterator[tuple[Sandbox, str]]:
    """Two `serve` replicas as the App on one PostgreSQL database, every protected environment
    on its rule: the sandbox, and the second replica's URL."""
    async with two_serve_processes(
        tmp_path, postgres_database_url, APPROVERS_ENV, app_rule=True
    ) as replicas:
        yield replicas


@pytest.mark.postgres_burst
@pytest.mark.postgres
async def test_fifty_clicks_on_two_serve_processes_answer_the_rule_once(
    app_replicas: tuple[Sandbox, str],
) -> None:
    box, second = app_replicas
    texts = await fifty_promote_clicks(box, [box.url, second])

    assert answers(box, "relay-rollout-50") == [("relay-rollout-50", "approved")]
    assert len(texts) == 49
    assert box.github.reviews == []


async def test_the_demo_runs_both_stories_as_a_github_app() -> None:
    out = io.StringIO()

    assert await demo.run(out, github_app=True, skip_windows=True) == 0

    text = out.getvalue()
    assert "The bot runs as the GitHub App rollout-bot[bot]" in text
    assert "== v1.4.2: relay: completed; desktop: completed ==" in text
    assert "== v1.4.3: relay: rolled_back" in text
