"""Relay rollouts end to end: signed Slack requests, the real app, the GitHub simulator.

Windows are two seconds; figures come from files the test writes before each gate. A story on
SQLite (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from figures import CANARY_CRASHING, CANARY_OK, HALF_OK, RINGS_OK, passing_sandbox
from sandbox_views import (
    RELAY_COMPLETED,
    RELAY_ROLLED_BACK_AT_CANARY,
    dispatched,
    held,
    promote,
    reviews,
    stage_state,
    value_of,
)

from bot.domain.rollout import Phase, StageState, TrackState
from sandbox.config import BYSTANDER
from sandbox.harness import Sandbox, fast_plan, write_figures

pytestmark = pytest.mark.story


@pytest.fixture
async def sandbox(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with passing_sandbox(tmp_path, database_url=database_url) as box:
        yield box


async def test_the_pass_path_reaches_100_percent_with_approvals_in_order(
    sandbox: Sandbox,
) -> None:
    await dispatched(sandbox)
    (dispatch,) = sandbox.github.dispatches
    assert dispatch.inputs == {
        "relay_image_tag": "v1.4.2",
        "feature_flags_ready": "true",
        "relay_baseline_crash_rate": "0.001",
        "relay_canary_crash_rate": "0.001",
        "relay_canary_error_rate": "0",
        "relay_half_crash_rate": "0.001",
        "relay_half_error_rate": "0",
        "desktop_baseline_crash_rate": "0.001",
        "desktop_internal_crash_rate": "0.001",
        "desktop_beta_crash_rate": "0.001",
    }
    await held(sandbox, "relay", "canary")
    assert "PASS" in await sandbox.wait_for_thread("gate PASS")
    await promote(sandbox, "relay", "canary")
    await promote(sandbox, "relay", "half")
    done = await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.COMPLETED)
    assert done.track("relay").stage("full").state is StageState.DEPLOYED
    assert reviews(sandbox, "relay") == RELAY_COMPLETED
    assert "100%" in sandbox.card_message().rendered


async def test_a_crash_rate_failure_at_the_canary_rolls_back(sandbox: Sandbox) -> None:
    write_figures(
        sandbox.figures,
        "relay",
        {"canary": CANARY_CRASHING, "half": HALF_OK},
    )
    await dispatched(sandbox)
    ended = await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
    assert ended.track("relay").stage("canary").state is StageState.FAILED_GATE
    assert reviews(sandbox, "relay") == RELAY_ROLLED_BACK_AT_CANARY
    verdict = await sandbox.wait_for_thread("ROLLBACK")
    assert "0.0021" in verdict and "0.002" in verdict


async def test_a_rollback_job_that_fails_on_github_says_where_the_relay_may_still_be(
    sandbox: Sandbox,
) -> None:
    sandbox.github.fail_job("next", "Relay auto-rollback", log="helm rollback: timed out")
    write_figures(
        sandbox.figures,
        "relay",
        {"canary": CANARY_CRASHING},
    )
    await dispatched(sandbox)
    failed = await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.FAILED)
    assert reviews(sandbox, "relay") == RELAY_ROLLED_BACK_AT_CANARY
    told = await sandbox.wait_for_thread("*Relay auto-rollback* ended `failure`")
    assert "Hosted relay may still be on *5% canary*" in told and "/job/" in told
    assert "rolled back" not in told
    assert failed.track("relay").stage("canary").state is StageState.FAILED_GATE


async def test_an_error_rate_failure_at_50_percent_rolls_back(sandbox: Sandbox) -> None:
    write_figures(
        sandbox.figures,
        "relay",
        {
            "canary": CANARY_OK,
            "half": {"crash_rate": "0.001", "error_rate": "0.0101", "sample": 40000},
        },
    )
    await dispatched(sandbox)
    await promote(sandbox, "relay", "canary")
    await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
    assert reviews(sandbox, "relay") == [
        ("relay-canary-5", "approved"),
        ("relay-rollout-50", "approved"),
        ("relay-rollout-100", "rejected"),
        ("relay-rollback", "approved"),
    ]
    assert "error rate" in await sandbox.wait_for_thread("ROLLBACK")


async def test_a_zero_baseline_with_crashes_rolls_back(sandbox: Sandbox) -> None:
    write_figures(
        sandbox.figures,
        "relay",
        {"canary": {"crash_rate": "0.0001", "error_rate": "0", "sample": 5000}, "half": HALF_OK},
        baseline="0",
    )
    await dispatched(sandbox)
    await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
    assert "zero baseline" in await sandbox.wait_for_thread("ROLLBACK")


async def test_inconclusive_extends_the_window_once_then_holds(sandbox: Sandbox) -> None:
    write_figures(sandbox.figures, "relay", {"half": HALF_OK})  # no canary figures: no data
    await dispatched(sandbox)
    await sandbox.wait_for_thread("extended once")
    canary = (await held(sandbox, "relay", "canary")).track("relay").stage("canary")
    assert canary.extensions == 1
    assert canary.verdict is not None and canary.verdict.verdict == "INCONCLUSIVE"
    assert [env for env, _ in reviews(sandbox, "relay")] == ["relay-canary-5"]
    answer = await sandbox.command("promote")
    assert "INCONCLUSIVE" in answer


async def test_a_destructive_migration_blocks_the_dispatch(sandbox: Sandbox) -> None:
    sandbox.github.files["main"]["crates/relay/src/db/migrations/0002_drop.sql"] = (
        "ALTER TABLE documents\n  DROP COLUMN title;\n"
    )
    await sandbox.command("start v1.4.2 --flags-ready")
    card = sandbox.card_message().rendered
    assert "0002_drop.sql" in card and "line 2" in card
    assert "[Dispatch]" not in card
    assert "blocked" in card.lower()
    assert sandbox.github.dispatches == []


async def test_a_second_start_is_refused_with_a_link_to_the_active_rollout(
    sandbox: Sandbox,
) -> None:
    await sandbox.command("start v1.4.2")
    first = await sandbox.rollout()
    answer = await sandbox.command("start v1.4.3")
    assert "v1.4.2" in answer and first.id in answer
    assert len(sandbox.slack.messages("C0RELEASES")) == 1


async def test_a_malformed_tag_starts_nothing(sandbox: Sandbox) -> None:
    answer = await sandbox.command("start v1.4.2;rm")
    assert "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}" in answer
    assert sandbox.slack.messages("C0RELEASES") == []


async def test_a_non_approver_cannot_start(sandbox: Sandbox) -> None:
    answer = await sandbox.command("start v1.4.2", user=BYSTANDER)
    assert "approver" in answer
    assert sandbox.slack.messages("C0RELEASES") == []


async def test_the_feature_flags_button_unblocks_the_dispatch(sandbox: Sandbox) -> None:
    await sandbox.command("start v1.4.2")
    assert "[Dispatch]" not in sandbox.card_message().rendered
    await sandbox.click("confirm_flags")
    await sandbox.slack.wait_for(lambda: "[Dispatch]" in sandbox.card_message().rendered)


async def test_status_and_history_show_the_rollout(sandbox: Sandbox) -> None:
    await dispatched(sandbox)
    status = await sandbox.command("status")
    assert "v1.4.2" in status
    history = await sandbox.command("history")
    assert "v1.4.2" in history


@pytest.fixture
async def enterprise(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with passing_sandbox(tmp_path, enterprise=True) as box:
        yield box


async def test_github_enterprise_dispatch_finds_our_run_and_not_someone_elses(
    enterprise: Sandbox,
) -> None:

    foreign = enterprise.github.create_foreign_run(
        actor="octocat",
        branch="main",
        created_at=enterprise.clock(),
        workflow="deployment-strategy.yml",
    )
    running = await dispatched(enterprise)
    (ours,) = enterprise.github.dispatches
    assert ours.return_run_details is False
    assert running.run_id == ours.run_id != foreign
    await held(enterprise, "relay", "canary")


async def test_extend_window_moves_the_end_of_the_canary_window(tmp_path: Path) -> None:
    # An hour's window: one of seconds could end, in real time, before a click under load.
    plan = fast_plan(tmp_path / "figures.yml", window="1h")
    async with passing_sandbox(tmp_path, plan_yaml=plan) as box:
        await dispatched(box)
        before = await box.wait_until(
            lambda r: stage_state(r, "relay", "canary") is StageState.OBSERVING
        )
        # The card is redrawn from the outbox a moment after the state is saved.
        await box.click("extend_window", value=await value_of(box, "extend_window", "relay"))
        moved = await box.wait_until(
            lambda r: (
                r.track("relay").stage("canary").window_ends_at
                != before.track("relay").stage("canary").window_ends_at
            )
        )
        delta = (
            moved.track("relay").stage("canary").window_ends_at
            - before.track(  # type: ignore[operator]
                "relay"
            )
            .stage("canary")
            .window_ends_at
        )
        assert delta.total_seconds() == 15 * 60
        assert "extended the window of *5% canary*" in await box.wait_for_thread("extended")


async def test_manual_figures_are_asked_in_the_thread_and_validated(tmp_path: Path) -> None:
    plan = fast_plan(tmp_path / "figures.yml", manual_tracks=("relay",))
    async with Sandbox(workdir=tmp_path, plan_yaml=plan) as box:
        write_figures(box.figures, "desktop", RINGS_OK)
        await dispatched(box)
        ask = await box.wait_for_thread("Enter the observed rates")
        assert "<@U0RELMGR01>" in ask
        request = next(r for r in box.card_message().replies if "[Enter figures]" in r.rendered)
        await box.click("enter_figures", message=request)
        opened = await box.slack.wait_for_call("views.open")
        view_id = opened[-1].response["view"]["id"]

        def figures(crash: str, error: str) -> dict[str, dict[str, dict[str, str]]]:
            return {
                "crash_rate": {"figure": {"type": "number_input", "value": crash}},
                "error_rate": {"figure": {"type": "number_input", "value": error}},
            }

        refused = await box.submit_view(view_id, figures("abc", "0.001"))
        assert refused["response_action"] == "errors" and "crash_rate" in refused["errors"]
        bystander = await box.submit_view(view_id, figures("0.001", "0.001"), user=BYSTANDER)
        assert bystander["response_action"] == "errors"
        assert "Only release approvers may enter gate figures" in bystander["errors"]["crash_rate"]
        assert await box.submit_view(view_id, figures("0.0011", "0.02")) == {}
        await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
        assert "0.02" in await box.wait_for_thread("ROLLBACK")


async def test_an_ambiguous_enterprise_dispatch_is_never_attached_nor_repeated(
    enterprise: Sandbox,
) -> None:

    # Another run by the bot's own account, on the same branch, that GitHub dated after the
    # bot's dispatch began: the dispatch cannot be told apart from it. Dated ahead of the
    # sandbox's clock (which runs in real time), so it still is after the dispatch however
    # long the command and the click take (more than the search's clock skew under load).
    enterprise.github.create_foreign_run(
        actor="release-bot",
        branch="main",
        created_at=enterprise.clock() + timedelta(minutes=1),
        workflow="deployment-strategy.yml",
    )
    await enterprise.command("start v1.4.2 --flags-ready")
    answer = await enterprise.click("dispatch")
    assert answer is not None and "could not be identified" in answer
    stuck = await enterprise.rollout()
    assert stuck.phase is Phase.DISPATCHING and stuck.run_id is None
    for _ in range(3):  # the poller keeps looking, and never dispatches again
        await enterprise.pass_time(timedelta(seconds=0.5))
    assert len(enterprise.github.dispatches) == 1
    assert (await enterprise.rollout()).run_id is None


async def test_a_deploy_step_failing_on_github_ends_the_relay_as_failed_with_its_logs(
    sandbox: Sandbox,
) -> None:
    sandbox.github.fail_job("next", "Relay rollout 5% canary (30m)", log="helm: timed out")
    await dispatched(sandbox)
    failed = await sandbox.wait_until(lambda r: r.track("relay").state is TrackState.FAILED)
    assert failed.track("relay").stage("canary").state is StageState.FAILED
    report = await sandbox.wait_for_thread("on GitHub")
    assert "Relay rollout 5% canary (30m)" in report and "/job/" in report
    assert reviews(sandbox, "relay") == [
        ("relay-canary-5", "approved"),
        ("relay-rollback", "approved"),
    ]
