"""What goes wrong around the App's custom deployment protection rule, end to end: a rule that
is not the bot's, GitHub's 422 ("Validation failed, or the endpoint has been spammed"), unclear
answers read back, an environment held by the rule and reviewers, requests that are not for
this App or repository, deployments linked as check runs, and requests without a deployment.
A story on SQLite (tests/conftest.py; docs/protection-rules.md).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from figures import CANARY_OK, every_gate_passes, passing_sandbox
from sandbox_views import begun, both_held, dispatched, value_of
from test_protection_rules import answers, app_box, box

from bot.domain.protection_rules import RuleRequest
from bot.domain.rollout import Phase, StageState, TrackState
from sandbox.github_app import SandboxApp
from sandbox.harness import Sandbox, fast_plan, write_figures

__all__ = ["box"]  # the fixture this module's tests use

pytestmark = pytest.mark.story

CALLBACK = "/repos/*/actions/runs/*/deployment_protection_rule"


def callbacks(box: Sandbox) -> list[int]:
    """The statuses GitHub answered the bot's posts to a run's callback."""
    return [
        r.status
        for r in box.github.requests
        if r.method == "POST" and r.path.endswith("deployment_protection_rule")
    ]


async def canary_holding(box: Sandbox) -> str:
    """Dispatched, the relay canary holding: the value of its Promote button."""
    await dispatched(box)
    await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.HOLDING)
    return await value_of(box, "promote", "relay")


@pytest.mark.parametrize("pending_lists_rules", [True, False])
async def test_in_token_mode_another_apps_rule_is_never_answered(
    tmp_path: Path, database_url: str, pending_lists_rules: bool
) -> None:
    """Token mode, relay-rollout-50 held by another App's rule whose requests go to that App:
    the bot never posts to the rule's callback (a token's answer is refused), poll after poll,
    whether or not `pending_deployments` lists the rule's wait, and follows the stage once that
    App approves."""
    async with passing_sandbox(
        tmp_path, database_url=database_url, plan_yaml=fast_plan(tmp_path / "figures.yml")
    ) as box:
        box.github.protection_rule(["relay-rollout-50"], app="datadog[bot]")
        box.github.pending_lists_rules = pending_lists_rules
        box.github.app_hook.lose_next(1000)  # Datadog's webhook, not the bot's
        promote = await canary_holding(box)
        rollout = await box.rollout()

        await box.click("promote", value=promote)
        for _ in range(5):  # polls while Datadog has not answered
            await box.services.rollouts.reconcile(rollout.id)

        assert callbacks(box) == []
        trail = await box.audit.list_for_rollout(rollout.id)
        assert [e for e in trail if e.action.startswith("github_") and e.result == "error"] == []
        box.github.engine.review_rule(
            rollout.run_id or 0,
            environment="relay-rollout-50",
            state="approved",
            comment="",
            actor="datadog[bot]",
        )
        await begun(box, "relay", "half")


async def test_a_422_on_the_callback_leaves_the_request_open_for_a_second_click(
    tmp_path: Path, database_url: str
) -> None:
    async with app_box(tmp_path, database_url) as box:
        promote = await canary_holding(box)
        box.github.fail_next("POST", CALLBACK, 422, {"message": "Validation Failed"})

        said = await box.click("promote", value=promote)

        assert said is not None and "answered 422" in said and "still waits" in said
        assert "try again" in said and "asks again" not in said, said  # nothing saved
        assert answers(box, "relay-rollout-50") == []
        assert await box.click("promote", value=await value_of(box, "promote", "relay")) is None
        await begun(box, "relay", "half")
        assert answers(box, "relay-rollout-50") == [("relay-rollout-50", "approved")]
        assert callbacks(box)[-2:] == [422, 204]


async def test_an_unclear_answer_where_a_reviewer_also_holds_the_job_reads_back_as_applied(
    tmp_path: Path, database_url: str
) -> None:
    """The job still waits for its reviewer after the App's answer: only the answer posted
    again (422: applied already) tells it was applied."""
    async with app_box(tmp_path, database_url, reviewers=True) as box:
        box.github.engine.protected -= {"relay-canary-5", "desktop-internal"}
        promote = await canary_holding(box)
        box.github.fault_next("POST", CALLBACK, "apply_then_502")

        assert await box.click("promote", value=promote) is None

        assert answers(box, "relay-rollout-50") == [("relay-rollout-50", "approved")]
        assert callbacks(box)[-2:] == [502, 422]
        rollout = await box.rollout()
        assert box.github.run(rollout.run_id or 0).job("relay-rollout-50").status == "waiting"


async def test_an_answer_not_applied_after_a_502_is_applied_by_the_read_back(
    tmp_path: Path, database_url: str
) -> None:
    async with app_box(tmp_path, database_url) as box:
        promote = await canary_holding(box)
        box.github.fault_next("POST", CALLBACK, "server_error")

        assert await box.click("promote", value=promote) is None

        assert answers(box, "relay-rollout-50") == [("relay-rollout-50", "approved")]
        assert callbacks(box)[-2:] == [502, 204]


async def test_an_answer_that_cannot_be_read_back_is_said_and_asked_again(
    tmp_path: Path, database_url: str
) -> None:
    async with app_box(tmp_path, database_url) as box:
        promote = await canary_holding(box)
        box.github.fault_next("POST", CALLBACK, "server_error", times=2)

        said = await box.click("promote", value=promote)

        assert said is not None and "could not be read back" in said
        assert answers(box, "relay-rollout-50") == []
        assert await box.click("promote", value=await value_of(box, "promote", "relay")) is None
        assert answers(box, "relay-rollout-50") == [("relay-rollout-50", "approved")]


async def test_requests_not_for_this_app_on_this_repository_are_ignored(box: Sandbox) -> None:
    """The App receives the requests of every repository it is installed on: another
    repository's, another installation's, or a callback that is not a run's are ignored."""
    await dispatched(box)
    await both_held(box)
    sample = json.loads(box.github.app_hook.deliveries[0].body)
    repository = dict(sample["repository"], full_name="someone/else")
    callback = sample["deployment_callback_url"]
    payloads = [
        dict(sample, repository=repository),
        dict(sample, installation=dict(sample["installation"], id=42)),
        *(
            dict(sample, deployment_callback_url=url)
            for url in (
                callback + "/x",
                callback.replace("/repos/", "/elsewhere/repos/"),
                callback + "?page=2",
                "http://[::1/repos/x",
            )
        ),
    ]
    before, requests = answers(box), len(box.github.requests)

    sent = [await box.github.app_hook.send("deployment_protection_rule", p) for p in payloads]

    assert [(d.status_code, d.result) for d in sent] == [(202, "ignored")] * 6
    await box.services.webhooks.settled()
    assert answers(box) == before
    assert [r for r in box.github.requests[requests:] if r.method == "POST"] == []


async def test_a_callback_on_another_host_is_answered_on_the_bots_own_github(
    box: Sandbox,
) -> None:
    """A proxy or a GitHub double may name its host otherwise than GITHUB_API_URL does: the
    request is read from the callback's path and answered on the bot's GitHub, never on the
    payload's host."""
    box.github.set_job_duration("relay-preflight", timedelta(minutes=10))
    await dispatched(box)
    await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.APPROVING)
    box.github.app_hook.lose_next(1)
    box.github.unlisted_deployments.add("relay-canary-5")  # no recovery from the deployments
    box.clock.advance(timedelta(minutes=11))
    await box.github.settle()  # the preflight ends: the canary's job waits, its request lost
    (lost,) = box.github.app_hook.failed()
    sample = json.loads(lost.body)
    elsewhere = sample["deployment_callback_url"].replace(box.github.api_url, "http://127.0.0.2:9")

    sent = await box.github.app_hook.send(
        "deployment_protection_rule", dict(sample, deployment_callback_url=elsewhere)
    )

    assert sent.status_code == 202 and sent.result != "ignored"
    async with asyncio.timeout(30):
        while ("relay-canary-5", "approved") not in answers(box, "relay"):
            await box.pass_time(timedelta(seconds=5))  # polls


async def test_a_lost_request_is_recovered_from_a_deployment_linked_as_a_check_run(
    box: Sandbox,
) -> None:
    """Octokit's published Actions deployment status links `.../runs/{job_id}?check_suite_focus
    =true`: the bot matches the run's job ids, whichever the shape."""
    box.github.check_run_links = True
    box.github.set_job_duration("relay-canary-5", timedelta(minutes=10))
    rollout = await dispatched(box)
    run = box.github.run(rollout.run_id or 0)
    await box.wait_until(lambda r: run.job("relay-canary-5").status == "in_progress")
    box.github.app_hook.lose_next()
    box.clock.advance(timedelta(minutes=11))
    await box.github.settle()  # the canary ends: the 50% job waits, its request is lost

    await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.HOLDING)
    await box.click("promote", value=await value_of(box, "promote", "relay"))

    assert ("relay-rollout-50", "approved") in answers(box, "relay")
    assert len(box.github.app_hook.failed()) == 1  # recovered without a redelivery


async def test_requests_without_a_deployment_run_to_100_percent(box: Sandbox) -> None:
    """GitHub's `deployment` may be null (`sha` and `ref` are at the top level then)."""
    box.github.requests_without_deployment = True
    await dispatched(box)
    for _ in range(2):
        await both_held(box)
        assert "Promoted" in await box.command("promote")
    ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)

    assert ended.phase is Phase.ENDED
    assert len(answers(box)) == 6
    assert all(json.loads(d.body)["deployment"] is None for d in box.github.app_hook.deliveries)


async def test_a_lost_request_whose_deployment_github_lists_late_is_found_by_a_later_poll(
    box: Sandbox,
) -> None:
    """The canary's job waits, its request is lost, and GitHub lists its deployment as waiting
    only after the bot's first look at the wait: the wait stays unexplained, so later polls
    look again in full (they do not take the run as settled) and answer it."""
    box.github.set_job_duration("relay-preflight", timedelta(minutes=10))
    await dispatched(box)
    await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.APPROVING)
    box.github.app_hook.lose_next(1)
    box.github.unlisted_deployments.add("relay-canary-5")
    box.clock.advance(timedelta(minutes=11))
    await box.github.settle()
    for _ in range(3):
        await box.pass_time(timedelta(seconds=1))  # polls while GitHub lists no deployment yet
    assert ("relay-canary-5", "approved") not in answers(box, "relay")
    box.github.unlisted_deployments.clear()

    async with asyncio.timeout(30):  # polls on a loaded machine take their time
        while ("relay-canary-5", "approved") not in answers(box, "relay"):
            await box.pass_time(timedelta(seconds=5))


async def test_a_lost_rollback_request_is_recovered_beside_a_stale_open_request(
    tmp_path: Path, database_url: str
) -> None:
    """Found by the chaos run: a request stayed open although its job ran (GitHub applied the
    approval, its reply and the read-back were lost, and the stage moved on without asking
    again). Then the relay canary's gate failed, the 50% stage was rejected, and the rollback
    job's request was lost: the stale open request must not count for the waiting rollback
    job, or the run's deployments are never read and the rollback is never approved."""
    async with Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        plan_yaml=fast_plan(tmp_path / "figures.yml", window="1h"),
        github_app=SandboxApp(),
        skip_windows=False,
    ) as box:
        box.github.protection_rule(set(box.github.engine.protected))
        every_gate_passes(box)
        write_figures(box.figures, "relay", {"canary": {**CANARY_OK, "error_rate": "0.02"}})
        rollout = await dispatched(box)
        await box.wait_until(
            lambda r: r.track("relay").stage("canary").state is StageState.OBSERVING
        )
        stale = RuleRequest(rollout.run_id or 0, "relay-canary-5", 424242, box.clock())
        assert await box.services.webhooks.rules.remember(stale)
        box.github.app_hook.lose_next()  # the rollback job's request, once 50% is rejected

        await box.pass_time(timedelta(hours=1))  # the canary's window ends: its gate fails
        async with asyncio.timeout(30):
            while ("relay-rollback", "approved") not in answers(box, "relay"):
                await box.pass_time(timedelta(seconds=5))  # polls

        ended = await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
        assert ended.id == rollout.id
        assert [d.result for d in box.github.app_hook.failed()] == [None]  # not redelivered
