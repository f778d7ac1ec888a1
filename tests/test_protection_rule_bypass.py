"""A repository admin starts a job past its protection rules on github.com ("Start all waiting
jobs") while the bot holds the App's request for it: GitHub deploys the stage without the App's
answer (the job starts, its deployment goes `in_progress`, the callback answers 422 from then
on). The thread says the stage was started by that bypass, not let through by the bot's gate,
and the held request is let go: nothing answers it later (a re-run's request at the same
environment is a request of its own), and no card offers it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from sandbox_views import dispatched, holding, value_of
from test_protection_rules import answers, app_box, both_held, requested
from test_unfollowed_runs import has_buttons, rollout_cards, run_cards

from bot.adapters.github import protection_rules as rules_module
from bot.adapters.github.protection_rules import ProtectionRules
from bot.adapters.slack.actions import RunValue
from bot.domain import rollout as machine
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
WITHOUT = "*50%* (Hosted relay) started on GitHub without the bot"
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
    """The first look that tells 50% as `told` (having let its request go) fails right after
    (a later read of GitHub's): 50%'s environment, once it did."""
    holding_of = ProtectionRules.holding
    failed: list[frozenset[str]] = []

    async def then_fails(rules: ProtectionRules, *args: Any, **kwargs: Any) -> RunSnapshot:
        snapshot = await holding_of(rules, *args, **kwargs)
        half = getattr(snapshot, told) & {"relay-rollout-50"}
        if half and not failed:
            failed.append(half)
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


def thread(box: Sandbox, rollout: Rollout) -> list[str]:
    """The replies in the thread of `rollout`'s card."""
    (card,) = [m for m in rollout_cards(box) if rollout.id in str(m.metadata)]
    return [reply.rendered for reply in card.replies]


async def adopted_re_run(box: Sandbox, run_id: int) -> Rollout:
    """The run cancelled on GitHub, re-run by a person (attempt 2) and adopted from its card:
    the adopted rollout once it runs."""
    engine = box.github.engine
    box.clock.advance(timedelta(minutes=5))
    engine.cancel(run_id)
    await box.github.settle()
    first = await box.wait_until(lambda r: r.phase is Phase.ENDED)
    box.clock.advance(timedelta(minutes=5))
    engine.rerun(run_id, by="octo-release")
    await box.github.settle()
    await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)
    (card,) = run_cards(box)
    assert await box.click("adopt_run", message=card) is None
    adopted = await box.wait_until(lambda r: r.id != first.id and r.phase is Phase.RUNNING)
    assert (adopted.run_id, box.github.run(run_id).attempt) == (run_id, 2)
    return adopted


@pytest.mark.database_matters  # the request's stored `requested_at`, against the re-run's start
async def test_an_admin_bypass_on_a_re_run_is_not_told_as_an_earlier_attempts_approval(
    tmp_path: Path, database_url: str
) -> None:
    """Attempt 1: a Promote of 50% GitHub applied, its reply and read-back lost, its request
    closed so. The run is cancelled, re-run on GitHub and adopted; attempt 2's request at 50%
    is lost (its deployment not listed yet), and a repository admin starts 50% there. Requests
    name no attempt, and attempt 1's is still 50%'s latest: but its approval started attempt
    1's job, not this one. The thread never tells the bot's approval: 50% started without the
    bot, as any start of a request the bot never held."""
    async with app_box(tmp_path, database_url) as box:
        first = await promote_applied_unseen(box)
        await box.slack.wait_for(lambda: any(APPLIED_UNSEEN in line for line in box.thread()))
        run_id = first.run_id or 0
        box.github.set_job_duration("relay-canary-5", timedelta(minutes=10))
        await adopted_re_run(box, run_id)
        run = box.github.run(run_id)
        await box.wait_until(lambda _: run.job("relay-canary-5").status == "in_progress")
        await box.wait_until(lambda _: requested(box).count("desktop-beta") == 2)  # asked first
        box.github.app_hook.lose_next()
        box.github.unlisted_deployments.add("relay-rollout-50")
        box.clock.advance(timedelta(minutes=11))
        await box.github.settle()  # the canary ends: 50% waits, its request lost
        rollout = await box.wait_until(holding("relay", "canary"))
        (lost,) = box.github.app_hook.failed()
        assert json.loads(lost.body)["environment"] == "relay-rollout-50"

        box.github.engine.bypass(
            run_id, environments=["relay-rollout-50"], comment="", actor="octo-admin"
        )

        await box.slack.wait_for(lambda: any(STARTED in line for line in thread(box, rollout)))
        told = [line for line in thread(box, rollout) if STARTED in line]
        assert len(told) == 1 and WITHOUT in told[0], told


@pytest.mark.database_matters  # the request's stored `requested_at`, against the re-run's start
async def test_a_start_on_a_re_run_is_not_told_as_an_earlier_attempts_bypass(
    tmp_path: Path, database_url: str
) -> None:
    """The mirror: attempt 1's 50% started by an admin's bypass, its request let go (`gone`).
    The run is cancelled, re-run on GitHub and adopted, and the App's rule taken off 50%'s
    environment meanwhile: attempt 2's 50% starts once the canary ends, nobody bypassing
    anything. Attempt 1's request is still 50%'s latest, but its bypass was attempt 1's: no
    admin is said to have started 50% again."""
    async with app_box(tmp_path, database_url) as box:
        await dispatched(box)
        first = await box.wait_until(holding("relay", "canary"))
        await told_as_a_bypass(box, first)
        run_id = first.run_id or 0
        box.github.set_job_duration("relay-canary-5", timedelta(minutes=10))
        rollout = await adopted_re_run(box, run_id)
        run = box.github.run(run_id)
        await box.wait_until(lambda _: run.job("relay-canary-5").status == "in_progress")
        box.github.engine.rule_environments.discard("relay-rollout-50")
        box.github.app_rule_environments.discard("relay-rollout-50")

        box.clock.advance(timedelta(minutes=11))
        await box.github.settle()  # the canary ends: 50% starts at once

        await box.slack.wait_for(lambda: any(STARTED in line for line in thread(box, rollout)))
        told = [line for line in thread(box, rollout) if STARTED in line]
        assert len(told) == 1 and WITHOUT in told[0], told


@pytest.mark.database_matters  # the mark read back is the closed request's stored `sent`
async def test_a_promote_let_go_while_its_answer_was_on_its_way_is_told_as_the_bots(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub applies a Promote of 50% while its reply is still on its way back: another
    replica's look finds 50% started, closes the request with the answer posted, then fails;
    a third look acts before the click records the Promote. It tells the bot's own approval,
    whose reply it had not seen, not a start "without the bot"."""
    async with app_box(tmp_path, database_url) as box:
        await dispatched(box)
        await box.wait_until(holding("relay", "canary"))
        effects = box.services.rollouts.effects
        failed = look_fails_after(monkeypatch, "applied_unseen")
        posted = rules_module.post_review

        async def another_replica_looks(*args: Any, **kwargs: Any) -> object:
            answer = await posted(*args, **kwargs)
            run_id = (await box.rollout()).run_id or 0
            try:
                snapshot = await effects.read_run(run_id)
            except GitHubError:  # it let 50% go and failed (else a poll's read did, first)
                snapshot = await effects.read_run(run_id)
            rollout, plan = await effects.with_plan((await box.rollout()).id)
            looked = machine.reconcile(rollout, plan, snapshot, box.clock())
            await effects.apply(rollout, looked, plan)  # the click holds the rollout's lock
            return answer

        monkeypatch.setattr(rules_module, "post_review", another_replica_looks)

        await box.click("promote", value=await value_of(box, "promote", "relay"))

        assert failed == [frozenset({"relay-rollout-50"})]
        await box.slack.wait_for(lambda: any(STARTED in line for line in box.thread()))
        told = [line for line in box.thread() if STARTED in line]
        assert len(told) == 1 and APPLIED_UNSEEN in told[0], told


async def test_an_adopt_clicked_as_the_run_card_appears_redraws_that_card(
    tmp_path: Path, database_url: str
) -> None:
    """A re-run's card, adopted the moment it appears, after the story moved the clock on
    (`adopted_re_run`): the card itself is redrawn as adopted, no second card is posted, and
    no Adopt or Reject is left live; a Reject on the card as first drawn rejects nothing."""
    async with app_box(tmp_path, database_url) as box:
        await dispatched(box)
        first = await box.wait_until(holding("relay", "canary"))
        run_id = first.run_id or 0
        await adopted_re_run(box, run_id)
        await box.slack.wait_for(lambda: any("dopted" in c.rendered for c in run_cards(box)))

        (card,) = run_cards(box)
        assert card.updates == 1 and not has_buttons(card), card.rendered
        reviewed = answers(box)
        value = RunValue(run_id=run_id).encode()
        refused = await box.click("reject_run", message=card, value=value)
        assert refused is not None and f"Run {run_id} was adopted by" in refused, refused
        assert answers(box) == reviewed
