"""Scheduled starts, follow-ups of a review (each test's docstring says what went wrong before):
a service removed from the services file while its start was scheduled, and a version released
by hand on GitHub before the scheduled time."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import test_scheduled_starts as starts
from cleared import cleared_rollout
from figures import passing_sandbox
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from test_scheduled_starts import sandbox
from test_services_corners import no_service_scheduler
from test_services_removed import BILLING, RELAY, restarted_with

from bot.domain.rollout import Phase
from bot.domain.schedule import dispatch_timer_key
from bot.plan_file import load_plan
from bot.services.effects import DISPATCH_TIMER
from bot.services.records import Timer
from sandbox.clock import ManualClock
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.github_repository import SimRepository
from sandbox.github_runs import commit_sha
from sandbox.harness import Sandbox
from storage.rollout_store import RolloutStore
from storage.timers import TimerStore

__all__ = ["sandbox"]  # the fixture a test here uses

pytestmark = pytest.mark.story

PLAN = load_plan(None)


def told(box: Sandbox, needle: str) -> str | None:
    """The reply in billing-api's preflight thread that says `needle`, if any."""
    card = next(
        m
        for m in box.slack.messages(RELEASE_CHANNEL)
        if "Preflight:" in m.rendered and "v2.0.0" in m.rendered
    )
    return next((r.rendered for r in card.replies if needle in r.rendered), None)


async def tried(box: Sandbox, key: str, *, times: int) -> Timer:
    """Let the scheduler try the timer `times` times (or give it up), five minutes apart."""
    timers = TimerStore(box.services.database.sessions)
    for attempt in range(1, times + 1):
        await box.pass_time(timedelta(minutes=5))
        async with asyncio.timeout(20):
            while True:
                timer = await timers.get(key=key)
                assert timer is not None
                # Claimed (attempts counted), then failed: released again, or buried.
                if timer.attempts >= attempt and timer.claimed_by is None:
                    break
                await asyncio.sleep(0.05)
        if timer.dead_at is not None:
            break
    return timer


@pytest.mark.parametrize("away", [3, 8], ids=["back-while-retried", "back-after-dead-letter"])
async def test_a_service_removed_over_its_scheduled_time_says_so_when_it_comes_back(
    tmp_path: Path, away: int
) -> None:
    """billing-api was out of the services file at its scheduled time, the bot running. Back
    while the timer was still retried, the hold said "the bot was not running then", which is
    untrue; back after the timer was dead-lettered, nothing was said at all: the card kept
    "Scheduled: dispatch at 09:00" for a time long past, the schedule pending for ever."""
    async with passing_sandbox(tmp_path, rollout_services=[RELAY, BILLING]) as box:
        box.slack.time_zones[RELEASE_MANAGER] = "Europe/Berlin"
        at = starts.tomorrow_nine(box)
        said = await box.command('start billing-api v2.0.0 --flags-ready --at "tomorrow 09:00"')
        assert f"dispatch scheduled for {starts.slack_date(at)}" in said, said
        (rollout,) = await box.rollouts()
        await restarted_with(box, [RELAY])
        await box.pass_time(at - box.clock() + timedelta(seconds=30))
        timer = await tried(box, dispatch_timer_key(rollout.id, at), times=away)
        assert timer.last_error is not None and "billing-api" in timer.last_error
        assert (timer.dead_at is not None) == (away == 8), timer
        await restarted_with(box, [RELAY, BILLING])
        await box.pass_time(timedelta(minutes=5))  # 20 minutes or more after its time
        await box.slack.wait_for(lambda: told(box, "did not go") is not None, timeout=30)
        held = told(box, "did not go")
        assert held is not None
        assert "not running" not in held, held
        assert "`billing-api` was not in ROLLOUT_SERVICES" in held, held
        (rollout,) = await box.rollouts()
        assert rollout.phase is Phase.PREFLIGHT
        assert rollout.schedule is not None and rollout.schedule.held is not None
        billing = box.github.repository_named(BILLING.repository)
        assert billing is not None and billing.dispatches == []


async def test_a_release_run_by_hand_before_the_time_is_not_dispatched_again(
    sandbox: Sandbox,
) -> None:
    """Token mode: someone ran Deployment Strategy for `v1.4.2` by hand on GitHub after the
    start was scheduled; at the time the bot dispatched it again (a second deploy of the
    release, its gates run twice), never looking."""
    at = await starts.scheduled(sandbox)
    repository = sandbox.github.repository_named("scriptum/scriptum")
    assert repository is not None
    repository.push_tag("v1.4.2")
    older = repository.create_foreign_run(actor="octocat", branch="v1.4.1")  # another release
    by_hand = repository.create_foreign_run(actor="octocat", branch="v1.4.2")
    await starts.reach(sandbox, at)
    said = await starts.told_in_thread(sandbox, "did not go")
    assert f"run {by_hand}" in said and f"run {older}" not in said, said
    assert "not dispatched again" in said
    assert sandbox.github.dispatches == []
    assert await starts.recorded(sandbox, "schedule:dispatch") == [("held", at.isoformat())]
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT


async def test_a_pull_requests_run_named_as_the_tag_does_not_hold_the_dispatch(
    sandbox: Sandbox,
) -> None:
    """A fork's pull request from a branch named `v1.4.2` runs the workflow (its own version of
    it) under that name: anyone who may open a pull request held every scheduled release so,
    the look taking it for a release run by hand. It is no release: the dispatch goes."""
    at = await starts.scheduled(sandbox)
    repository = sandbox.github.repository_named("scriptum/scriptum")
    assert repository is not None
    repository.push_tag("v1.4.2")
    repository.create_foreign_run(actor="mallory", branch="v1.4.2", event="pull_request")
    await starts.reach(sandbox, at)
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert len(sandbox.github.dispatches) == 1


@pytest.mark.parametrize(
    ("event", "at_tag", "holds"),
    [("push", False, False), ("workflow_run", True, False), ("push", True, True)],
    ids=["branch-named-as-the-tag", "workflow-run-chain", "the-tags-own-run"],
)
async def test_only_a_run_at_the_tags_commit_holds_the_dispatch(
    sandbox: Sandbox, event: str, at_tag: bool, holds: bool
) -> None:
    """Anyone who could push a branch named `v1.4.2` (its run at the branch's commit), or start
    a `workflow_run` chain under that name (GitHub runs the default branch's commit, whatever
    `head_sha` says), held every scheduled release so: only pull requests' runs were left out.
    Only a run that is of the tag's commit holds it, named in the thread."""
    at = await starts.scheduled(sandbox)
    repository = sandbox.github.repository_named("scriptum/scriptum")
    assert repository is not None
    repository.push_tag("v1.4.2")
    run = repository.create_foreign_run(actor="mallory", branch="v1.4.2", event=event)
    if not at_tag:
        repository.engine.runs[run].head_sha = commit_sha("mallory's branch v1.4.2")
    await starts.reach(sandbox, at)
    if holds:
        said = await starts.told_in_thread(sandbox, "did not go")
        assert f"already ran for `v1.4.2` on GitHub since it was scheduled: run {run}" in said
        assert sandbox.github.dispatches == []
        assert (await sandbox.rollout()).phase is Phase.PREFLIGHT
    else:
        await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
        assert len(sandbox.github.dispatches) == 1


async def test_a_run_named_as_the_tag_holds_the_dispatch_when_github_does_not_say_the_tags_commit(
    sandbox: Sandbox,
) -> None:
    """A run on `v1.4.2` may be the release while GitHub fails to say which commit the tag is
    at: the dispatch is held (never a second release), the thread saying why."""
    at = await starts.scheduled(sandbox)
    repository = sandbox.github.repository_named("scriptum/scriptum")
    assert repository is not None
    repository.push_tag("v1.4.2")
    run = repository.create_foreign_run(actor="octocat", branch="v1.4.2", event="push")
    sandbox.github.fail_next("GET", "/repos/*/git/ref/tags/*", 502, times=10_000)
    await starts.reach(sandbox, at)
    said = await starts.told_in_thread(sandbox, "did not go")
    assert "GitHub did not say which commit the tag is at" in said, said
    assert f"so that may be the release: run {run}" in said, said
    assert sandbox.github.dispatches == []
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT


async def test_a_dead_scheduled_dispatch_of_a_service_still_removed_is_not_logged_again(
    session_factory: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    """A service stayed out of the services file after its scheduled dispatch was
    dead-lettered (its rollout still open). The scheduler hands that timer to the services
    again as it starts and every hour (`GivingUp.tell_again`), and each time they answered
    with an ERROR "timer ... of service 'gone', which is not configured, is dead-lettered": one
    more alert at every start and every hour, on every replica, for a timer buried long ago."""
    now = datetime(2030, 1, 1, 9, tzinfo=UTC)
    clock = ManualClock(now)
    rollouts = RolloutStore(session_factory, clock=clock)
    rollout = replace(cleared_rollout(PLAN, now=now, rollout_id="r-0000000000b1"), service="gone")
    await rollouts.create(rollout=rollout, plan=PLAN)
    timers = TimerStore(session_factory)
    key = dispatch_timer_key(rollout.id, now)
    await timers.schedule(
        key=key,
        kind=DISPATCH_TIMER,
        due_at=now,
        now=now,
        rollout_id=rollout.id,
        payload={"at": now.isoformat()},
        service="gone",
    )

    def buried() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.ERROR
            and key in r.getMessage()
            and "not configured" in r.getMessage()
        ]

    scheduler = no_service_scheduler(
        session_factory, clock, poll_interval=timedelta(hours=1)
    )  # a replica without `gone`
    for _ in range(4):
        await scheduler.fire_due()
        clock.advance(timedelta(seconds=5))
    dead = await timers.get(key=key)
    assert dead is not None and dead.dead_at is not None, dead
    assert len(buried()) == 1, buried()  # as it was dead-lettered: said once
    for pruning in (
        scheduler,
        no_service_scheduler(session_factory, clock, poll_interval=timedelta(hours=1)),
    ):  # every hour, and as a replica starts
        await pruning.prune()
        clock.advance(timedelta(minutes=61))
        await pruning.prune()
    assert len(buried()) == 1, buried()
    again = await timers.get(key=key)
    assert again is not None and again.dead_at == dead.dead_at, again


async def test_a_release_run_by_hand_before_it_was_scheduled_and_still_going_is_not_run_again(
    sandbox: Sandbox,
) -> None:
    """Someone ran Deployment Strategy for `v1.4.2` by hand on GitHub (its canary waiting for
    its reviewers), then the start was scheduled; or re-ran, after the start was scheduled, a
    run of `v1.4.2` from before (a re-run keeps its run's first creation time). The bot looked
    only at runs created since the schedule, so at the time it dispatched a second run of the
    release next to the one still going."""
    repository = sandbox.github.repository_named("scriptum/scriptum")
    assert repository is not None
    repository.push_tag("v1.4.2")
    earlier = sandbox.clock() - timedelta(hours=2)
    going = repository.create_foreign_run(actor="octocat", branch="v1.4.2", created_at=earlier)
    stopped = repository.create_foreign_run(actor="octocat", branch="v1.4.2", created_at=earlier)
    repository.engine.cancel(stopped)
    assert repository.engine.runs[going].status != "completed"
    at = await starts.scheduled(sandbox)
    repository.engine.rerun(stopped, by="octocat")
    await starts.reach(sandbox, at)
    said = await starts.told_in_thread(sandbox, "did not go")
    assert f"run {going}" in said and f"run {stopped}" in said, said
    assert sandbox.github.dispatches == []
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT


def rejected_on_github(repository: SimRepository, run_id: int) -> None:
    """Reviewers reject every deployment of the run on github.com, until it has completed."""
    engine = repository.engine
    for _ in range(10):
        run = engine.runs[run_id]
        if run.status == "completed":
            return
        waiting = {job.environment for job in run.jobs if job.status == "waiting"}
        repository.review(run_id, sorted(e for e in waiting if e), "rejected")
        engine.process()
    raise AssertionError(f"run {run_id} did not complete")


async def test_the_hold_for_a_release_run_by_hand_says_how_that_run_ended(
    sandbox: Sandbox,
) -> None:
    """The hold named the run by hand as `run 4242 (completed, ...)`: whether it deployed the
    release or failed (rejected, say, and nothing deployed), which decides whether an approver
    clicks Dispatch, was not said."""
    at = await starts.scheduled(sandbox)
    repository = sandbox.github.repository_named("scriptum/scriptum")
    assert repository is not None
    repository.push_tag("v1.4.2")
    by_hand = repository.create_foreign_run(actor="octocat", branch="v1.4.2")
    rejected_on_github(repository, by_hand)
    await starts.reach(sandbox, at)
    said = await starts.told_in_thread(sandbox, "did not go")
    assert f"run {by_hand} (completed: failure, " in said, said
    assert sandbox.github.dispatches == []


async def test_a_tag_moved_since_the_start_was_scheduled_holds_the_dispatch(
    sandbox: Sandbox,
) -> None:
    """`v1.4.2` was released by hand on GitHub after the start was scheduled, then the tag was
    force-pushed to another commit: the hand's run was not at the tag's new commit, so it held
    nothing, and the scheduled dispatch went, releasing a commit nobody had scheduled next to
    the release already out. The tag's commit is kept with the schedule and read again at the
    time: moved, the dispatch is held, the thread naming both commits."""
    repository = sandbox.github.repository_named("scriptum/scriptum")
    assert repository is not None
    repository.push_tag("v1.4.2")
    at = await starts.scheduled(sandbox)
    schedule = (await sandbox.rollout()).schedule
    assert schedule is not None and schedule.tag_commit == commit_sha("v1.4.2")
    repository.create_foreign_run(actor="octocat", branch="v1.4.2", event="push")
    moved = commit_sha("v1.4.2 moved")
    repository.push_tag("v1.4.2", at=moved)
    await starts.reach(sandbox, at)
    said = await starts.told_in_thread(sandbox, "did not go")
    assert "`v1.4.2` was moved" in said, said
    assert commit_sha("v1.4.2")[:12] in said and moved[:12] in said, said
    assert sandbox.github.dispatches == []
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT


async def test_a_tag_still_where_it_was_scheduled_lets_the_dispatch_go(sandbox: Sandbox) -> None:
    """The tag read again at the time, where it was when the start was scheduled: the
    dispatch goes."""
    repository = sandbox.github.repository_named("scriptum/scriptum")
    assert repository is not None
    repository.push_tag("v1.4.2", annotated=True)
    at = await starts.scheduled(sandbox)
    await starts.reach(sandbox, at)
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert len(sandbox.github.dispatches) == 1
