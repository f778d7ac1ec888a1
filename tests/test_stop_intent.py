"""A Kill-switch or Roll back of a track whose stage is saved as deploying reads the run on
GitHub (does GitHub still hold that stage?) only after the stop is saved: a restart during that
read leaves the stop made, and no look approves the stage meanwhile. What GitHub answers then
decides what the thread is told. Through the whole bot; GitHub holds the read of the run until
the test lets it go (`GitHubSimulator.hold`)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from figures import running_sandbox
from sandbox_views import dispatched, promote, reviews, stage_state
from test_desktop_track import ga_held_by_github, ga_plan
from test_github_faults import REVIEWS
from test_resent_approval import canary_for_an_hour

from bot.domain.rollout import StageState, TrackState
from bot.domain.rollout_summary import summarize
from sandbox.config import REPOSITORY
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story

SLOW = {"GITHUB_TIMEOUT": "300"}
"""The bot waits for GitHub's answer as long as GitHub holds it (no timeout, no retry)."""


async def test_a_kill_is_saved_before_github_is_asked_whether_it_holds_the_ga_ring(
    tmp_path: Path, database_url: str
) -> None:
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=ga_plan(tmp_path), extra_env=SLOW
    ) as box:
        await ga_held_by_github(box, REVIEWS)
        run = (await box.rollout()).run_id
        # The kill's read of the run held at its jobs: the run itself is read again by each
        # look's re-sent approval (its attempt, under the rollout's lock), which must go on.
        answered = box.github.hold("GET", f"/repos/{REPOSITORY}/actions/runs/{run}/jobs")
        try:
            kill = asyncio.create_task(box.command("kill crash spike in beta"))
            # While GitHub has not answered the kill's read, the kill is saved already.
            stopping = await box.wait_until(
                lambda r: r.track("desktop").state is TrackState.ABORTING
            )
            assert stopping.track("desktop").stage("ga").state is StageState.DEPLOYING
            assert not answered.is_set() and not kill.done()  # its read still held
            answered.set()
            box.github.clear_faults()
            assert "Kill-switch tripped" in await kill
        finally:
            answered.set()
        announced = await box.wait_for_thread("crash spike in beta")
        assert "The release stays on the beta ring." in announced  # GA never deployed
        halted = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
        assert halted.track("desktop").stage("ga").state is StageState.REJECTED
        assert ("desktop-ga", "rejected") in reviews(box, "desktop")
        assert ("desktop-ga", "approved") not in reviews(box, "desktop")


def after_a_post(box: Sandbox) -> bool:
    """Whether the bot's last request GitHub answered on the run's waits was a post (an
    approval): the read of them held now follows it, its read-back, not a look's read ahead."""
    asked = [r.method for r in box.github.requests if fnmatchcase(r.path, REVIEWS)]
    return bool(asked) and asked[-1] == "POST"


async def test_a_kill_is_saved_while_a_look_waits_for_github_to_list_what_it_re_approves(
    tmp_path: Path, database_url: str
) -> None:
    """A look sending GA's approval again reads what waits on the run (and the review history,
    the attempt) before it posts it: GitHub slow to answer those reads holds the look, never
    the rollout's lock, so a Kill pressed meanwhile is saved at once; the look, overtaken by
    it, does not approve GA once GitHub answers. (The relay canary observes for an hour: no
    window of its ends meanwhile, whose gate's approval reads under the lock.)"""
    plan = canary_for_an_hour(tmp_path)
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=plan, extra_env=SLOW
    ) as box:
        await ga_held_by_github(box, REVIEWS)
        # Only the approval's own read of the waits: a look's conditional read of the run
        # (and the kill's) goes on.
        answered = box.github.hold("GET", REVIEWS, plain=True)
        try:
            await box.wait_until(lambda _: box.github.holding > 0)  # a look re-sends GA
            # A read held right after the bot's post of the approval is its read-back of that
            # unclear answer (the 502), under the rollout's lock (docs/github-polling.md): on a
            # loaded machine the hold can begin there. Let it go; hold the next look's read.
            while after_a_post(box):
                answered.set()
                await box.wait_until(lambda _: box.github.holding == 0)
                answered = box.github.hold("GET", REVIEWS, plain=True)
                await box.wait_until(lambda _: box.github.holding > 0)
            kill = asyncio.create_task(box.command("kill crash spike in beta"))
            # However long the kill takes on a loaded machine, the look is held until below.
            stopping = await box.wait_until(
                lambda r: r.track("desktop").state is TrackState.ABORTING
            )
            assert stopping.track("desktop").stage("ga").state is StageState.DEPLOYING
            assert not answered.is_set()  # the look still waits for GitHub
            box.github.clear_faults()  # GitHub takes approvals again: a stale look would land
            answered.set()
            assert "Kill-switch tripped" in await kill
        finally:
            answered.set()
        halted = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
        assert halted.track("desktop").stage("ga").state is StageState.REJECTED
        assert ("desktop-ga", "approved") not in reviews(box, "desktop")


async def test_a_kill_while_github_deploys_the_ga_ring_is_refused_and_leaves_it_as_it_was(
    tmp_path: Path, database_url: str
) -> None:
    """The stop is saved before the read; GitHub then says GA was approved and deploys (an
    approved job cannot be stopped): the track is put back as it was, and the kill refused
    (the summary does not name it as a kill)."""
    async with running_sandbox(tmp_path, database_url) as box:
        box.github.set_job_duration("Desktop/CLI ring deploy - GA", timedelta(minutes=10))
        await dispatched(box)
        await promote(box, "desktop", "internal")
        await promote(box, "desktop", "beta")
        await box.wait_until(lambda r: stage_state(r, "desktop", "ga") is StageState.DEPLOYING)

        answer = await box.command("kill too late")
        assert "already deploying GA ring" in answer, answer
        after = await box.rollout()
        assert after.track("desktop").state is TrackState.ACTIVE
        assert stage_state(after, "desktop", "ga") is StageState.DEPLOYING
        assert ("desktop-ga", "rejected") not in reviews(box, "desktop")
        assert "too late" not in "\n".join(box.thread())
        # Its `ok`, saved before GitHub was read, is undone: the summary names no kill.
        plan = await box.services.rollouts.effects.plan_of(after)
        trail = await box.audit.list_for_rollout(after.id)
        ended = replace(after, ended_at=box.clock())
        summary = summarize(ended, plan, trail, machine=lambda actor: False)
        assert "tripped the kill-switch" not in {act.what for act in summary.acts}, summary.acts
        await box.pass_time(timedelta(minutes=10))  # GA lands: the track completes
        done = await box.wait_until(lambda r: r.track("desktop").state is TrackState.COMPLETED)
        assert stage_state(done, "desktop", "ga") is StageState.DEPLOYED


async def test_a_kill_whose_process_dies_after_its_save_still_rejects_ga_and_the_thread_learns(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill is saved, then its process dies before GitHub answers its read (and before
    the thread is told): the next look rejects GA all the same, the track ends halted, and the
    thread says so."""
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=ga_plan(tmp_path)
    ) as box:
        await ga_held_by_github(box, REVIEWS)
        await killed_by_a_process_that_dies_after_its_save(box, monkeypatch)
        stopping = await box.rollout()
        assert stopping.track("desktop").state is TrackState.ABORTING
        box.github.clear_faults()
        halted = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
        assert halted.track("desktop").stage("ga").state is StageState.REJECTED
        assert ("desktop-ga", "approved") not in reviews(box, "desktop")
        await box.wait_for_thread("halted by the kill-switch")  # told after the save
        assert "Rejected *GA ring*" in "\n".join(box.thread())


async def test_a_kill_whose_process_dies_after_its_save_is_told_once_by_the_look_that_acts_on_it(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill's own line (who tripped it, and why) was owed when its process died: the look
    that rejects GA tells it first, once."""
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=ga_plan(tmp_path)
    ) as box:
        await ga_held_by_github(box, REVIEWS)
        await killed_by_a_process_that_dies_after_its_save(box, monkeypatch)
        box.github.clear_faults()
        halted = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
        assert halted.untold_stops == ()
        thread = box.thread()
        told = [n for n, line in enumerate(thread) if "crash spike in beta" in line]
        rejected = [n for n, line in enumerate(thread) if "Rejected *GA ring*" in line]
        assert len(told) == 1 and rejected and told[0] < rejected[0], thread
        assert "The release stays on the beta ring." in thread[told[0]]


async def killed_by_a_process_that_dies_after_its_save(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/rollout kill crash spike in beta`, its process dying once the kill is saved, before
    GitHub answers its read of the run (and before the thread is told)."""
    stops = box.services.rollouts.abort.__self__  # type: ignore[attr-defined]

    async def dies(_: object) -> None:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(stops, "_waiting", dies)
    await box.command("kill crash spike in beta")
