"""GitHub failing under a person's click, end to end: signed Slack requests to the real app, the
GitHub simulator injecting faults into its answers (an approval applied but answered 502, a
dispatch accepted but its connection dropped, a 502 on the preflight's reads).

What a person is told must be what GitHub holds: a write that took effect is a success, credited
to whoever clicked, and a write whose outcome is unclear is never sent a second time.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from figures import SECOND_APPROVER, two_approvers_sandbox
from sandbox_views import audit_results, button, dispatched, held, holding, value_of

from bot.config import Settings
from bot.domain.rollout import DISPATCH_SEARCH, CheckState, Phase
from bot.domain.rollout.state import WATCHED
from bot.services.rollouts import RolloutService
from sandbox.config import RELEASE_MANAGER
from sandbox.github_json import error
from sandbox.harness import Sandbox

REVIEWS = "/repos/*/actions/runs/*/pending_deployments"
DISPATCHES = "/repos/*/actions/workflows/*/dispatches"
MIGRATIONS = "/repos/*/contents/crates/relay/src/db/migrations"


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with two_approvers_sandbox(tmp_path) as box:
        yield box


def approvals(box: Sandbox, environment: str) -> list[str]:
    return [r.actor for r in box.github.reviews if environment in r.environments]


async def dispatch_answered_502(box: Sandbox) -> str:
    """Start v1.4.2 and click Dispatch while GitHub answers the dispatch 502, until the thread
    says no run of it appeared; the Dispatch button's value that was clicked."""
    await box.command("start v1.4.2 --flags-ready")
    dispatch = await value_of(box, "dispatch")
    box.github.fault_next("POST", DISPATCHES, "server_error")
    await box.click("dispatch", value=dispatch, wait=False)
    await box.wait_for_thread("no run of it appeared", timeout=30)
    return dispatch


async def promote_meeting(box: Sandbox, fault: str) -> tuple[str, str | None]:
    """Start and dispatch `v1.4.2`; once the canary holds, click Promote while GitHub meets the
    approval with `fault`. The Promote button's value, and what the click was answered."""
    await dispatched(box)
    await held(box, "relay", "canary")
    promote = await value_of(box, "promote", "relay")
    box.github.fault_next("POST", REVIEWS, fault)
    return promote, await box.click("promote", value=promote)


async def test_an_approval_applied_but_answered_502_is_the_clickers_promotion(
    sandbox: Sandbox,
) -> None:
    _, answer = await promote_meeting(sandbox, "apply_then_502")

    assert answer is None  # no error: the card and the thread show the promotion
    promoted = await sandbox.wait_for_thread("promoted Hosted relay")
    assert promoted.startswith(f"<@{RELEASE_MANAGER}> promoted Hosted relay to *50%*")
    # Deployed, its window running or ended (2 s, which a wait may skip): held on its gate.
    await sandbox.wait_until(lambda r: r.track("relay").stage("half").state in WATCHED)
    assert not any("without the bot" in line for line in sandbox.thread())
    assert not any("on GitHub" in line and "50%" in line for line in sandbox.thread())
    assert approvals(sandbox, "relay-rollout-50") == [sandbox.github.actor]
    assert sandbox.github.faults_injected == {"apply_then_502": 1}
    rollout = await sandbox.rollout()
    assert await audit_results(sandbox, rollout.id, "click:promote", 1) == ["ok"]


async def test_an_approval_answered_502_and_not_applied_says_so_and_can_be_repeated(
    sandbox: Sandbox,
) -> None:
    promote, answer = await promote_meeting(sandbox, "server_error")

    assert answer is not None and "GitHub answered 502" in answer
    assert "it was not applied: try again" in answer
    assert holding("relay", "canary")(await sandbox.rollout())
    assert await sandbox.click("promote", value=promote) is None
    await sandbox.wait_for_thread("promoted Hosted relay")
    assert approvals(sandbox, "relay-rollout-50") == [sandbox.github.actor]


async def test_a_promotion_answered_422_while_it_waits_says_to_try_again_not_that_the_bot_will(
    sandbox: Sandbox,
) -> None:
    """GitHub answers the approval of a person's Promote 422 while the stage still waits for
    the bot: nothing was approved, and nothing is saved, so the bot never asks again by itself
    (its stage is held for a person): the click's answer must not say it will."""
    await dispatched(sandbox)
    await held(sandbox, "relay", "canary")
    promote = await value_of(sandbox, "promote", "relay")
    sandbox.github.fail_next("POST", REVIEWS, 422, error("Validation Failed", 422))

    answer = await sandbox.click("promote", value=promote)

    assert answer is not None and "422" in answer and "still waits" in answer, answer
    assert "asks again" not in answer, answer
    assert "try again" in answer, answer
    assert holding("relay", "canary")(await sandbox.rollout())
    assert approvals(sandbox, "relay-rollout-50") == []
    assert await sandbox.click("promote", value=promote) is None
    await sandbox.wait_for_thread("promoted Hosted relay")
    assert approvals(sandbox, "relay-rollout-50") == [sandbox.github.actor]


async def test_a_dispatch_accepted_then_dropped_starts_one_run_even_after_a_second_click(
    sandbox: Sandbox,
) -> None:
    await sandbox.command("start v1.4.2 --flags-ready")
    dispatch = await value_of(sandbox, "dispatch")
    sandbox.github.fault_next("POST", DISPATCHES, "accept_then_drop")

    assert await sandbox.click("dispatch", value=dispatch) is None
    running = await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    again = await sandbox.click("dispatch", value=dispatch, user=SECOND_APPROVER)

    assert again is not None and "Already done by" in again
    (sent,) = sandbox.github.dispatches
    assert running.run_id == sent.run_id
    assert len(sandbox.github.runs) == 1
    assert sandbox.github.faults_injected == {"accept_then_drop": 1}


async def test_a_dispatch_answered_502_stays_sent_and_is_never_sent_twice(
    sandbox: Sandbox,
) -> None:
    dispatch = await dispatch_answered_502(sandbox)
    again = await sandbox.click("dispatch", value=dispatch, user=SECOND_APPROVER)

    assert again is not None and "Already done by" in again
    rollout = await sandbox.rollout()
    assert rollout.phase is Phase.DISPATCHING  # sent, run not yet identified: the poller looks
    assert len([r for r in sandbox.github.requests if r.method == "POST"]) == 1


async def test_a_dispatch_whose_run_never_appeared_can_be_dispatched_again_after_the_search(
    sandbox: Sandbox,
) -> None:
    dispatch = await dispatch_answered_502(sandbox)

    sent = await sandbox.rollout()
    assert sent.dispatched_at is not None
    # The search limit passes without a run: the poller gives up and says so.
    await sandbox._store.save(replace(sent, dispatched_at=sent.dispatched_at - DISPATCH_SEARCH))
    await sandbox.wait_for_thread("No run of the dispatch of `v1.4.2` could be identified")
    await sandbox.wait_until(lambda r: r.phase is Phase.PREFLIGHT)
    # The card is redrawn through the outbox right after the thread line: a new version.
    await sandbox.slack.wait_for(lambda: button(sandbox, "dispatch") != dispatch, timeout=30)
    fresh = await value_of(sandbox, "dispatch")

    assert await sandbox.click("dispatch", value=fresh) is None

    running = await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    (dispatched,) = sandbox.github.dispatches
    assert running.run_id == dispatched.run_id


def test_the_settings_defaults_are_the_rollouts_own_so_the_search_above_is_the_bots() -> None:
    """DISPATCH_SEARCH_SECONDS and GITHUB_UNREADABLE_SECONDS default to what the rollouts
    follow runs by when not given (10 and 5 minutes): moving a dispatch back by
    `DISPATCH_SEARCH` ends the search of a bot started with the default."""
    given = inspect.signature(RolloutService).parameters
    fields = Settings.model_fields
    search = timedelta(seconds=fields["dispatch_search_seconds"].default)
    unread = timedelta(seconds=fields["github_unreadable_seconds"].default)
    assert search == given["dispatch_search"].default == timedelta(minutes=10)
    assert unread == given["unread_after"].default == timedelta(minutes=5)


async def test_a_failed_search_for_the_run_is_one_warning_and_proves_nothing(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    await dispatch_answered_502(sandbox)
    searches = "/repos/*/actions/workflows/*/runs"
    sandbox.github.fault_next("GET", searches, "server_error", times=10)  # two polls' worth

    for _ in range(150):
        if sandbox.github.faults_injected["server_error"] == 11:
            break
        await asyncio.sleep(0.1)
    assert sandbox.github.faults_injected["server_error"] == 11

    assert (await sandbox.rollout()).phase is Phase.DISPATCHING
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        r.name == "bot.services.dispatched_runs"
        and r.getMessage().startswith("could not look for the run")
        for r in caplog.records
    )


async def test_a_preflight_check_github_failed_is_not_checked_and_re_check_passes(
    sandbox: Sandbox,
) -> None:
    sandbox.github.fault_next("GET", MIGRATIONS, "server_error", times=5)  # every retry

    await sandbox.command("start v1.4.2 --flags-ready")

    started = await sandbox.rollout()
    assert started.preflight.migrations.state is CheckState.ERROR
    assert started.preflight.migrations.detail.startswith(
        "could not check (GitHub answered 502 (Server Error)); not checked"
    )
    assert "[Re-check]" in sandbox.card_message().rendered
    assert "[Dispatch]" not in sandbox.card_message().rendered
    recheck = await value_of(sandbox, "recheck")

    assert await sandbox.click("recheck", value=recheck) is None

    checked = await sandbox.rollout()
    assert checked.preflight.migrations.state is CheckState.PASS
    assert checked.preflight.flags.state is CheckState.PASS  # the flags stay confirmed
    shown = sandbox.card_message().rendered
    assert "[Dispatch]" in shown and "[Re-check]" not in shown
    again = await sandbox.click("recheck", value=recheck, user=SECOND_APPROVER)
    assert again is not None and "Already done by" in again
    assert await audit_results(sandbox, checked.id, "click:recheck", 2) == ["ok", "duplicate"]
