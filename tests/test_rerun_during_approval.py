"""A person re-runs the run on GitHub while the bot's approval of a stage is on its way: the
bot read attempt 1 just before it sent the approval, GitHub's review names no attempt, and it
lands on the same environment waiting on attempt 2, which no gate of the bot's watched. The
bot reads the run's attempt back after GitHub took the approval, and the thread is told, once,
that its approval may have reached attempt 2 and what to do. Through the whole bot and the
GitHub simulator, both ways the bot approves (a reviewer's review, the App's rule)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_desktop_track import ga_held_by_github
from test_github_faults import REVIEWS
from test_protection_rule_faults import CALLBACK
from test_rerun_while_approving import rule_box, token_box

from bot.domain import rollout as machine
from bot.domain.rollout import Phase
from bot.services import effects as effect_runner
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story

LAST = {
    "relay-rollout-100": ("100%", "relay-rollout-100"),
    "desktop-ga": ("GA ring", "desktop-cli-ring-ga"),
}
"""The last stage of each track (its environment: its label, its job's key), whose approvals
GitHub fails."""


def held_environment(box: Sandbox, body: dict[str, Any]) -> str:
    """The environment of an approval GitHub holds unanswered."""
    if "environment_name" in body:  # the App's rule
        return str(body["environment_name"])
    ids = {box.github.environment_id(name): name for name in LAST}
    (environment,) = {ids[i] for i in body["environment_ids"]}
    return environment


def another_replica_looks_first(box: Sandbox) -> Callable[[int], Awaitable[int]]:
    """The read-back of the run's attempt, after another replica's look at the run ended the
    rollout (as a re-run not followed)."""
    effects = box.services.rollouts.effects
    latest_attempt = effects.github.latest_attempt

    async def read_back(run_id: int) -> int:
        rollout, plan = await effects.with_plan((await box.rollout()).id)
        snapshot = await effects.read_run(run_id)
        looked = machine.reconcile(rollout, plan, snapshot, effects.clock())
        await effects.apply(rollout, looked, plan)
        return await latest_attempt(run_id)

    return read_back


async def rerun_while_posted(box: Sandbox, approvals: str) -> str:
    """GitHub fails the bot's approvals no more, and holds the next one (`approvals`: its
    endpoint) unanswered while a person cancels the run and re-runs the job it approves
    (attempt 2, waiting at the same environment); then answers it. Its environment."""
    run = box.github.run((await box.rollout()).run_id or 0)
    posted = box.github.hold("POST", approvals)
    box.github.clear_faults()
    await box.wait_until(lambda _: box.github.holding == 1)
    environment = held_environment(box, box.github.held_bodies[0])
    _, job = LAST[environment]
    box.github.engine.cancel(run.id)
    box.github.engine.rerun_job(run.id, run.job(job).id, by="octocat")
    box.github.engine.process()
    assert (run.attempt, run.job(job).status) == (2, "waiting")
    posted.set()
    return environment


@pytest.mark.parametrize(
    ("box_of", "approvals"),
    [(token_box, REVIEWS), (rule_box, CALLBACK)],
    ids=["reviewers", "protection-rule"],
)
async def test_an_approval_a_re_run_overtook_on_its_way_is_told_once(
    tmp_path: Path, database_url: str, box_of: Callable[[Path, str], Any], approvals: str
) -> None:
    """GitHub failed the bot's approvals of the last stages (the relay's 100%, the GA ring),
    which the bot's next look sends again. That look reads attempt 1 and posts one; while
    GitHub has not carried it out yet, a person cancels the run and re-runs that stage's job
    (attempt 2, waiting at the same environment). GitHub then applies
    the approval to attempt 2: the thread says the bot's approval may have reached attempt 2,
    once, and not that nothing approves it."""
    async with box_of(tmp_path, database_url) as box:
        await ga_held_by_github(box, approvals)
        run = box.github.run((await box.rollout()).run_id or 0)
        environment = await rerun_while_posted(box, approvals)
        label, job = LAST[environment]
        ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)

        assert ended.attempt == 2
        assert run.job(job).status != "waiting"  # the approval took attempt 2's job
        told = await box.wait_for_thread("may have approved")
        assert f"approval of *{label}*" in told, told
        assert f"`{environment}` on attempt 2" in told, told
        await box.pass_time(timedelta(minutes=2))  # later looks tell nothing more of it
        thread = box.thread()
        assert sum("may have approved" in line for line in thread) == 1, thread
        assert not any("which does not come" in line for line in thread), thread


async def test_an_overtaken_approval_is_told_after_another_replicas_look_ended_the_rollout(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, but another replica's look finds the re-run first (between GitHub's answer
    and this replica's read-back) and ends the rollout as a re-run not followed: the thread is
    still told, once, that the bot's approval may have reached attempt 2."""
    async with token_box(tmp_path, database_url) as box:
        await ga_held_by_github(box, REVIEWS)
        effects = box.services.rollouts.effects
        monkeypatch.setattr(effects.github, "latest_attempt", another_replica_looks_first(box))
        environment = await rerun_while_posted(box, REVIEWS)

        told = await box.wait_for_thread("may have approved")
        assert f"`{environment}` on attempt 2" in told, told
        await box.wait_for_thread("does not follow a re-run")  # the other replica's ending
        await box.pass_time(timedelta(minutes=2))
        thread = box.thread()
        assert sum("may have approved" in line for line in thread) == 1, thread
        assert (await box.rollout()).phase is Phase.ENDED


@pytest.mark.database_matters
async def test_two_replicas_whose_approval_a_re_run_overtook_tell_it_once(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above (another replica's look ended the rollout first), and a second replica sent the
    same approval (its own look asked again) and read the re-run back at the same moment: both
    find the ending not theirs, and both read the audit trail before either writes to it.
    The thread is told once (the claim of the line, any replica, PostgreSQL or SQLite)."""
    async with token_box(tmp_path, database_url) as box:
        await ga_held_by_github(box, REVIEWS)
        effects = box.services.rollouts.effects
        telling = contextvars.ContextVar("telling", default=False)
        both_read = asyncio.Barrier(2)
        trail = effects.audit.list_for_rollout

        async def read_side_by_side(rollout_id: str) -> Any:
            found = await trail(rollout_id)
            if telling.get():  # the two replicas' reads, not the summary's
                async with asyncio.timeout(10):
                    await both_read.wait()
            return found

        tell_overtaken = effect_runner.tell_overtaken

        async def two_replicas(*args: Any) -> Any:
            told = telling.set(True)
            try:
                first, _ = await asyncio.gather(tell_overtaken(*args), tell_overtaken(*args))
            finally:
                telling.reset(told)
            return first

        monkeypatch.setattr(effects.github, "latest_attempt", another_replica_looks_first(box))
        monkeypatch.setattr(effects.audit, "list_for_rollout", read_side_by_side)
        monkeypatch.setattr(effect_runner, "tell_overtaken", two_replicas)
        await rerun_while_posted(box, REVIEWS)

        await box.wait_for_thread("may have approved")
        await box.pass_time(timedelta(minutes=2))
        thread = box.thread()
        assert sum("may have approved" in line for line in thread) == 1, thread


async def test_an_approval_taken_before_a_re_run_of_every_job_is_told_as_a_plain_re_run(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub took the bot's approval of the last stage on attempt 1; before the bot read the
    attempt back, a person cancelled the run and re-ran every job (attempt 2, waiting at its
    first stages, far from the last one). Nothing of attempt 2 waited at the last stage, so
    the approval cannot have reached it: the thread says the run was re-run, as any re-run
    not followed, and not that the approval may have approved attempt 2's job there, nor that
    that job "no longer waits" (it never waited)."""
    async with token_box(tmp_path, database_url) as box:
        await ga_held_by_github(box, REVIEWS)
        run = box.github.run((await box.rollout()).run_id or 0)
        effects = box.services.rollouts.effects
        latest_attempt = effects.github.latest_attempt

        async def rerun_before_the_read_back(run_id: int) -> int:
            box.github.engine.cancel(run.id)
            box.github.engine.rerun(run.id, by="octocat")
            box.github.engine.process()
            return await latest_attempt(run_id)

        monkeypatch.setattr(effects.github, "latest_attempt", rerun_before_the_read_back)
        box.github.clear_faults()

        told = await box.wait_for_thread("does not follow a re-run")
        assert "may have approved" not in told, told
        await box.pass_time(timedelta(minutes=2))
        thread = box.thread()
        assert not any("may have approved" in line for line in thread), thread
        assert (await box.rollout()).phase is Phase.ENDED


async def test_an_approval_taken_before_a_re_run_of_its_job_is_told_as_a_plain_re_run(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub took the bot's approval of a last stage on attempt 1; before the bot read the
    attempt back, a person cancelled the run and re-ran that stage's job (attempt 2, waiting at
    the same environment). In token mode a review of the bot's account is all that holds it
    there, so the approval did not reach attempt 2: the thread says the run was re-run, as any
    re-run not followed, and not that the approval may have approved attempt 2's job. (With the
    App, a job still waiting may wait for another of its rules after the App's answer reached
    it: the line says so.)"""
    async with token_box(tmp_path, database_url) as box:
        await ga_held_by_github(box, REVIEWS)
        run = box.github.run((await box.rollout()).run_id or 0)
        effects = box.services.rollouts.effects
        latest_attempt = effects.github.latest_attempt
        rerun: list[str] = []

        async def rerun_before_the_read_back(run_id: int) -> int:
            taken = [e for e, (_, job) in LAST.items() if run.job(job).status != "waiting"]
            if taken and not rerun:  # the first approval GitHub took: its job re-run
                rerun.append(taken[0])
                box.github.engine.cancel(run.id)
                box.github.engine.rerun_job(run.id, run.job(LAST[taken[0]][1]).id, by="octocat")
                box.github.engine.process()
            return await latest_attempt(run_id)

        monkeypatch.setattr(effects.github, "latest_attempt", rerun_before_the_read_back)
        box.github.clear_faults()

        told = await box.wait_for_thread("does not follow a re-run")
        assert rerun, "no approval was read back"
        assert run.job(LAST[rerun[0]][1]).status == "waiting"
        assert "may have approved" not in told, told
        await box.pass_time(timedelta(minutes=2))
        thread = box.thread()
        assert not any("may have approved" in line for line in thread), thread
        assert (await box.rollout()).phase is Phase.ENDED
