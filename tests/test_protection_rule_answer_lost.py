"""The replica answering the App's protection rule dies in the middle of its post (a Promote's
approval marked `sent`, the post never reaching GitHub): the mark must not make a later admin
bypass of that environment pass for the bot's own approval. The mark is dated by when the post
ends at the latest (`ANSWER_REACH`): a read begun after then that sees the job still waiting
clears it, and a job GitHub started later than that bound, no read having seen it waiting, is
told as possibly a bypass, in words that say the bot's answer may not have reached GitHub."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sandbox_views import dispatched, holding, value_of
from test_protection_rule_bypass import APPLIED_UNSEEN, BYPASSED, STARTED, told_as_a_bypass
from test_protection_rules import app_box

from bot.adapters.github import protection_rules as rules_module
from bot.domain.protection_rules import ANSWER_REACH, RuleRequest
from bot.domain.rollout import Rollout, StageState
from bot.services.actions import PeoplesActions
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story

LATE = (
    "*50%* (Hosted relay) started on GitHub at least 3 minutes after the bot's approval was "
    "sent, whose reply from GitHub the bot never saw: the approval may not have reached GitHub, "
    "and a repository admin may have started it past its protection rules"
)


class ReplicaDied(RuntimeError):
    """The post of the answer ends here: nothing after it runs (the replica is gone)."""


async def promote_died_mid_post(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Rollout:
    """A Promote of 50% whose replica dies in the middle of posting the approval, which never
    reaches GitHub: the rollout then, 50% still waiting, its request marked `sent`."""
    await dispatched(box)
    await box.wait_until(holding("relay", "canary"))
    promote = await value_of(box, "promote", "relay")
    died: list[str] = []

    async def dies(*args: Any, **kwargs: Any) -> object:
        died.append(kwargs["operation"])
        raise ReplicaDied("the replica died in the middle of the post")

    monkeypatch.setattr(rules_module, "post_review", dies)
    await box.click("promote", value=promote)
    monkeypatch.undo()
    assert died == ["approve relay-rollout-50 on run %s (protection rule)" % (await run_id(box))]
    rollout = await box.rollout()
    (half,) = [
        r
        for r in await box.services.webhooks.rules.for_run(rollout.run_id or 0)
        if r.named("relay-rollout-50")
    ]
    assert (half.answer, half.sent) == (None, "approved")  # open, marked as posted
    assert rollout.track("relay").stage("half").state is StageState.PENDING
    return rollout


@pytest.mark.database_matters  # the mark read back is the request's stored `sent` / `sent_at`
async def test_a_bypass_after_a_replica_died_mid_post_is_told_as_a_bypass(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read begun once the post has ended at the latest sees 50% still waiting: the answer
    was not applied, and an admin's start of the job later is the bypass it is."""
    async with app_box(tmp_path, database_url) as box:
        rollout = await promote_died_mid_post(box, monkeypatch)
        box.clock.advance(ANSWER_REACH + timedelta(seconds=1))
        await box.services.rollouts.reconcile(rollout.id)  # a read sees 50% still waiting

        await told_as_a_bypass(box, rollout)


@pytest.mark.database_matters  # the mark read back is the request's stored `sent_at`
async def test_a_start_long_after_a_replica_died_mid_post_is_told_as_possibly_a_bypass(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No read saw 50% still waiting after the post had ended (the bot was down): GitHub's
    start of the job 5.5 minutes after the post began, 3.5 after it had ended at the latest, is
    told as possibly an admin's bypass, never as the bot's own approval nor a certain one."""
    async with app_box(tmp_path, database_url) as box:
        rollout = await promote_died_mid_post(box, monkeypatch)
        # No await between the two: no read of the bot's begins in between.
        box.clock.advance(timedelta(minutes=5, seconds=30))
        box.github.engine.bypass(
            rollout.run_id or 0, environments=["relay-rollout-50"], comment="", actor="octo-admin"
        )

        await box.wait_until(
            lambda r: r.track("relay").stage("half").state is not StageState.PENDING
        )
        await box.slack.wait_for(lambda: any(STARTED in line for line in box.thread()))
        told = [line for line in box.thread() if STARTED in line]
        assert len(told) == 1 and LATE in told[0], told
        assert not any(APPLIED_UNSEEN in line or BYPASSED in line for line in box.thread())


def test_only_a_start_past_the_bound_after_a_dated_answer_is_late() -> None:
    """Late is GitHub's start of the job more than `ANSWER_REACH` after the post of the bot's
    answer had ended at the latest; an undated mark (an earlier version's post on its way), no
    mark, or no start known is never late."""
    at = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)
    marked = RuleRequest(1, "relay-rollout-50", 7, at, sent="approved", sent_at=at)
    assert marked.started_late(at + ANSWER_REACH) is None
    assert marked.started_late(at - timedelta(minutes=1)) is None
    assert marked.started_late(at + ANSWER_REACH + timedelta(seconds=1)) == ANSWER_REACH + (
        timedelta(seconds=1)
    )
    assert marked.started_late(None) is None
    # Closed before its post had ended at the latest: by the post, GitHub's reply seen.
    seen = replace(marked, answer="approved", answered_at=at - timedelta(seconds=1))
    assert seen.started_late(at + timedelta(hours=1)) is None
    looked = replace(seen, answered_at=at + timedelta(hours=1))  # a look closed it after
    assert looked.started_late(at + timedelta(hours=1)) == timedelta(hours=1)
    later = at + timedelta(hours=1)
    for unmarked in (
        RuleRequest(1, "relay-rollout-50", 7, at, sent="approved"),
        RuleRequest(1, "relay-rollout-50", 7, at, sent_at=at),
    ):
        assert unmarked.started_late(later) is None


async def run_id(box: Sandbox) -> int:
    return (await box.rollout()).run_id or 0


@pytest.mark.database_matters  # the request is read back closed, with its stored `sent_at`
async def test_a_slow_runner_after_an_approval_github_took_is_no_possible_bypass(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub answered the Promote's approval (applied: the request closed with it), then the
    replica died before the promotion was saved; a busy self-hosted runner took 50% 5.5
    minutes later. The bot saw GitHub apply its answer: the start is its approval, never told
    as possibly an admin's bypass (`RuleRequest.started_late` is for an answer whose outcome
    the bot never learned)."""
    async with app_box(tmp_path, database_url) as box:
        await dispatched(box)
        await box.wait_until(holding("relay", "canary"))
        promote = await value_of(box, "promote", "relay")
        engine = box.github.engine
        runner_took = timedelta(minutes=5, seconds=30)
        begin = engine._begin

        def slow_runner(run: Any, job: Any, at: datetime) -> None:
            begin(run, job, at + runner_took if job.environment == "relay-rollout-50" else at)

        async def dies(*args: Any, **kwargs: Any) -> object:
            raise ReplicaDied("the replica died after GitHub applied the approval")

        monkeypatch.setattr(engine, "_begin", slow_runner)
        monkeypatch.setattr(PeoplesActions, "_save_promotion", dies)
        await box.click("promote", value=promote)
        monkeypatch.undo()
        rollout = await box.rollout()
        (half,) = [
            r
            for r in await box.services.webhooks.rules.for_run(rollout.run_id or 0)
            if r.named("relay-rollout-50")
        ]
        assert (half.answer, half.sent) == ("approved", "approved")  # GitHub's reply seen
        assert rollout.track("relay").stage("half").state is StageState.PENDING
        box.clock.advance(runner_took)
        await box.services.rollouts.reconcile(rollout.id)

        await box.slack.wait_for(lambda: any(STARTED in line for line in box.thread()))
        told = [line for line in box.thread() if STARTED in line]
        assert len(told) == 1 and APPLIED_UNSEEN in told[0], told
