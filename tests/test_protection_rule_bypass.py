"""A repository admin starts a job past its protection rules on github.com ("Start all waiting
jobs") while the bot holds the App's request for it: GitHub deploys the stage without the App's
answer (the job starts, its deployment goes `in_progress`, the callback answers 422 from then
on). The thread says the stage was started by that bypass, not let through by the bot's gate,
and the held request is let go: nothing answers it later (a re-run's request at the same
environment is a request of its own), and no card offers it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from sandbox_views import dispatched, holding, value_of
from test_protection_rules import answers, app_box, both_held

from bot.adapters.github.protection_rules import ProtectionRules
from bot.domain.errors import GitHubError
from bot.domain.rollout import Phase, Rollout, StageState
from bot.domain.run import RunSnapshot
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story

CALLBACK = "/repos/*/actions/runs/*/deployment_protection_rule"
APPLIED_UNSEEN = (
    "*50%* (Hosted relay) started on GitHub on the bot's own approval, whose reply from GitHub "
    "the bot had not seen"
)
STARTED = "*50%* (Hosted relay) "
"""Each line that tells how 50% went on GitHub starts so."""
BYPASSED = (
    "*50%* (Hosted relay) was started on GitHub by a repository admin past its protection "
    "rules, not let through by the bot's gate"
)


async def test_an_admin_bypass_of_the_held_stage_is_told_and_its_request_let_go(
    tmp_path: Path, database_url: str
) -> None:
    async with app_box(tmp_path, database_url) as box:
        await dispatched(box)
        rollout = await both_held(box)
        run_id = rollout.run_id or 0
        assert rollout.track("relay").stage("canary").state is StageState.HOLDING

        box.github.engine.bypass(
            run_id, environments=["relay-rollout-50"], comment="hotfix", actor="octo-admin"
        )
        moved = await box.wait_until(
            lambda r: r.track("relay").stage("half").state is not StageState.PENDING
        )

        assert moved.track("relay").stage("canary").state is StageState.PASSED
        # The thread's line is posted after the stage is saved (the outbox).
        await box.slack.wait_for(lambda: any(BYPASSED in line for line in box.thread()))
        assert [line for line in box.thread() if "50%" in line and "GitHub" in line] == [
            line for line in box.thread() if BYPASSED in line
        ]
        assert any(BYPASSED in line for line in box.thread())
        rules = box.services.webhooks.rules
        (half,) = [r for r in await rules.for_run(run_id) if r.environment == "relay-rollout-50"]
        assert half.answer == "gone"  # let go: GitHub no longer waits for the App there
        # The rest of the rollout goes on through the rule; 50% is never answered.
        await both_held(box)  # relay after 50%, desktop after its internal ring
        assert "Promoted" in await box.command("promote")
        await box.wait_until(holding("desktop", "beta"))
        assert "Promoted" in await box.command("promote")
        ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)
        assert ended.run_id == run_id
        assert ("relay-rollout-50", "approved") not in answers(box, "relay")
        assert answers(box, "relay") == [
            ("relay-canary-5", "approved"),
            ("relay-rollout-100", "approved"),
        ]
        assert await rules.open_for_run(run_id) == []


async def promote_applied_unseen(box: Sandbox) -> Rollout:
    """A Promote of 50% GitHub applies, its reply and read-back both lost (the clicker told it
    could not be read back): the rollout once a look moved 50% on, the canary passed."""
    await dispatched(box)
    await box.wait_until(holding("relay", "canary"))
    promote = await value_of(box, "promote", "relay")
    box.github.fault_next("POST", CALLBACK, "apply_then_502")
    box.github.fault_next("POST", CALLBACK, "server_error")

    said = await box.click("promote", value=promote)

    assert said is not None and "could not be read back" in said
    moved = await box.wait_until(
        lambda r: r.track("relay").stage("half").state is not StageState.PENDING
    )
    assert moved.track("relay").stage("canary").state is StageState.PASSED
    return moved


async def test_a_promote_applied_though_github_s_reply_was_lost_is_not_told_as_a_bypass(
    tmp_path: Path, database_url: str
) -> None:
    """A Promote's approval reaches GitHub, which deploys the stage, but GitHub's reply is
    lost and so is the read-back's: the clicker is told it could not be read back. At the next
    read the job runs with the App's request still open: that is the bot's own answer applied,
    not an admin's bypass. The thread says so, and the request is closed as approved."""
    async with app_box(tmp_path, database_url) as box:
        moved = await promote_applied_unseen(box)
        await box.slack.wait_for(lambda: any(APPLIED_UNSEEN in line for line in box.thread()))
        assert not [line for line in box.thread() if "repository admin" in line]
        rules = box.services.webhooks.rules
        (half,) = [
            r for r in await rules.for_run(moved.run_id or 0) if r.environment == "relay-rollout-50"
        ]
        assert half.answer == "approved"


async def told_as_a_bypass(box: Sandbox, rollout: Rollout) -> None:
    """An admin starts 50% past the rule on GitHub: the thread says so, never that the bot's
    own approval was applied."""
    box.github.engine.bypass(
        rollout.run_id or 0, environments=["relay-rollout-50"], comment="", actor="octo-admin"
    )
    await box.wait_until(lambda r: r.track("relay").stage("half").state is not StageState.PENDING)
    await box.slack.wait_for(lambda: any(BYPASSED in line for line in box.thread()))
    assert not any(APPLIED_UNSEEN in line for line in box.thread())


async def test_a_bypass_after_a_promote_github_refused_is_still_told_as_a_bypass(
    tmp_path: Path, database_url: str
) -> None:
    """Only an answer of the bot's that may have been applied is taken for the job's start: a
    Promote GitHub refused (422 while the job still waits) leaves nothing behind, and an
    admin's start of the job afterwards is told as the bypass it is."""
    async with app_box(tmp_path, database_url) as box:
        await dispatched(box)
        await box.wait_until(holding("relay", "canary"))
        promote = await value_of(box, "promote", "relay")
        box.github.fail_next("POST", CALLBACK, 422, {"message": "Validation Failed"})
        said = await box.click("promote", value=promote)
        assert said is not None and "still waits" in said
        assert "asks again" not in said and "try again" in said, said  # nothing saved
        rollout = await box.rollout()

        await told_as_a_bypass(box, rollout)


async def promote_never_applied(box: Sandbox) -> Rollout:
    """A Promote of 50% whose answer and read-back both got a 502 GitHub never applied, and
    a read after it that sees 50% still waiting: the rollout then."""
    await dispatched(box)
    await box.wait_until(holding("relay", "canary"))
    promote = await value_of(box, "promote", "relay")
    box.github.fault_next("POST", CALLBACK, "server_error", times=2)
    said = await box.click("promote", value=promote)
    assert said is not None and "could not be read back" in said
    box.clock.advance(timedelta(seconds=1))
    rollout = await box.rollout()
    await box.services.rollouts.reconcile(rollout.id)  # a read sees 50% still waiting
    return await box.rollout()


async def test_an_admin_bypass_after_a_promote_github_never_applied_is_told_as_a_bypass(
    tmp_path: Path, database_url: str
) -> None:
    """A Promote whose answer and read-back both got a 502 that GitHub never applied leaves
    the job waiting: a read that sees it still waiting after the click learns the answer was
    not taken. An admin's start of the job later is the bypass it is, not the bot's approval."""
    async with app_box(tmp_path, database_url) as box:
        rollout = await promote_never_applied(box)
        assert rollout.track("relay").stage("half").state is StageState.PENDING

        await told_as_a_bypass(box, rollout)


def look_fails_after(
    monkeypatch: pytest.MonkeyPatch, told: Literal["bypassed", "applied_unseen"]
) -> list[frozenset[str]]:
    """The first look that lets a request go told as `told` fails right after (a later read of
    GitHub's): the environments it let go, once it did."""
    holding_of = ProtectionRules.holding
    failed: list[frozenset[str]] = []

    async def then_fails(rules: ProtectionRules, *args: Any, **kwargs: Any) -> RunSnapshot:
        snapshot = await holding_of(rules, *args, **kwargs)
        if getattr(snapshot, told) and not failed:
            failed.append(getattr(snapshot, told))
            raise GitHubError("GitHub answered 502 when asked to list the deployments")
        return snapshot

    monkeypatch.setattr(ProtectionRules, "holding", then_fails)
    return failed


async def test_a_bypass_let_go_by_a_look_that_failed_after_it_is_still_told_as_a_bypass(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look that lets the bypassed request go may fail after it (a later read of GitHub's,
    or its replica gone), or be overtaken by another look: the request is closed already when
    the run is read again, and the look acted on still tells the bypass, not a start "without
    the bot"."""
    async with app_box(tmp_path, database_url) as box:
        await dispatched(box)
        await box.wait_until(holding("relay", "canary"))
        failed = look_fails_after(monkeypatch, "bypassed")

        await told_as_a_bypass(box, await box.rollout())
        assert failed == [frozenset({"relay-rollout-50"})]


@pytest.mark.database_matters  # the mark read back is the request's stored `sent_at`
async def test_a_promote_applied_unseen_let_go_by_a_look_that_failed_after_it_is_told_as_the_bots(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Promote's approval GitHub applied though its reply and read-back were lost; the look
    that finds the job started closes the request as approved, then fails after it (or is
    overtaken): the look acted on finds the request closed already, and still tells the bot's
    own approval, never a start "without the bot" nor an admin's bypass."""
    async with app_box(tmp_path, database_url) as box:
        failed = look_fails_after(monkeypatch, "applied_unseen")

        await promote_applied_unseen(box)

        assert failed == [frozenset({"relay-rollout-50"})]
        await box.slack.wait_for(lambda: any(STARTED in line for line in box.thread()))
        told = [line for line in box.thread() if STARTED in line]
        assert len(told) == 1 and APPLIED_UNSEEN in told[0], told


@pytest.mark.database_matters  # the mark cleared is the request's stored `sent` / `sent_at`
async def test_a_bypass_after_a_promote_never_applied_let_go_by_a_failed_look_is_a_bypass(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opposite: a Promote GitHub never applied (its answer and read-back got a 502), known
    not applied once a read saw the job still waiting; an admin then starts the job, and the
    look that lets the request go fails after it: the look acted on tells the bypass, not the
    bot's approval."""
    async with app_box(tmp_path, database_url) as box:
        rollout = await promote_never_applied(box)
        rules = box.services.webhooks.rules
        (half,) = [
            r for r in await rules.for_run(rollout.run_id or 0) if r.named("relay-rollout-50")
        ]
        assert (half.sent, half.sent_at) == (None, None)  # known not applied
        failed = look_fails_after(monkeypatch, "bypassed")

        await told_as_a_bypass(box, rollout)
        assert failed == [frozenset({"relay-rollout-50"})]
