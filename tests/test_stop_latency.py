"""A stop takes hold while GitHub is slow: a person's Kill-switch or Roll back never waits for
the poller's (or a webhook's) read of the run to come back. Signed Slack requests through the
real app, PyGithub against the GitHub simulator, which holds its answers to the reads of the
run until the test lets them go (`GitHubSimulator.hold`): GitHub as slow as it likes, no
clock involved. A story on SQLite and PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from figures import every_gate_passes
from sandbox_views import dispatched, reviews, stage_state
from test_reevaluate_races import reevaluate, turning_bad

from bot.domain.rollout import Rollout, StageState, TrackState
from sandbox.config import RELEASE_MANAGER, REPOSITORY
from sandbox.harness import Sandbox, fast_plan

pytestmark = pytest.mark.story

SLOW = {"GITHUB_TIMEOUT": "300"}
"""The bot waits for GitHub's answer as long as GitHub holds it (no timeout, no retry)."""


async def test_a_kill_takes_hold_while_the_pollers_read_of_the_run_hangs(
    tmp_path: Path, database_url: str
) -> None:
    """The poller is reading the run and GitHub does not answer. The kill is saved and told in
    the thread at once: the beta ring can no longer be approved by anyone's later look. Its
    rejection reaches GitHub as soon as GitHub answers the kill's own read."""
    plan = fast_plan(tmp_path / "figures.yml", window="1h")
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=plan, extra_env=SLOW
    ) as box:
        every_gate_passes(box)
        rollout = await dispatched(box)
        await box.wait_until(
            lambda r: stage_state(r, "desktop", "internal") is StageState.OBSERVING
        )
        answered = box.github.hold("GET", f"/repos/{REPOSITORY}/actions/runs/{rollout.run_id}")
        try:
            await reading_held(box)  # the poller's look at the run hangs

            kill = asyncio.create_task(box.command("kill crash reports from support"))
            announced = await box.wait_for_thread("crash reports from support")
            assert "The release stays on the internal ring." in announced
            stopping = await box.rollout()
            assert stopping.track("desktop").state is TrackState.ABORTING
            assert not answered.is_set()  # GitHub has answered no read of the run yet

            answered.set()
            assert "Kill-switch tripped" in await kill
            halted = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
            assert halted.track("desktop").stage("beta").state is StageState.REJECTED
            assert ("desktop-beta", "approved") not in reviews(box, "desktop")
        finally:
            answered.set()  # the bot's calls in flight end before it stops


async def reading_held(box: Sandbox, count: int = 1) -> None:
    """Until GitHub holds `count` reads of the run unanswered."""
    for _ in range(3000):
        if box.github.holding >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"GitHub holds {box.github.holding} reads, not {count}")


async def test_a_stop_never_waits_for_a_look_another_stop_overtook(
    tmp_path: Path, database_url: str
) -> None:
    """The poller's look at the run hangs; a kill is saved meanwhile, so that look's read is
    out of date and it reads the run again, and GitHub holds that second read too. A Roll back
    then is saved and told at once all the same: the look reads again without the lock."""
    plan = fast_plan(tmp_path / "figures.yml", window="1h")
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=plan, extra_env=SLOW
    ) as box:
        every_gate_passes(box)
        await dispatched(box)
        await box.wait_until(
            lambda r: (
                stage_state(r, "desktop", "internal") is StageState.OBSERVING
                and stage_state(r, "relay", "canary") is StageState.OBSERVING
            )
        )
        first = box.github.hold("GET", "/repos/*/actions/runs/*/approvals")
        held = [first]
        try:
            await reading_held(box)  # the poller's look, its review history held
            kill = asyncio.create_task(box.command("kill crash reports from support"))
            await box.wait_for_thread("crash reports from support")
            await reading_held(box, 2)  # and the kill's own look, the rollout's lock held
            held.append(box.github.hold("GET", "/repos/*/actions/runs/*/jobs"))
            first.set()
            assert "Kill-switch tripped" in await kill
            await reading_held(box)  # the poller's look reads again: the kill overtook it

            rollback = asyncio.create_task(box.command("rollback"))
            stopping = await box.wait_until(
                lambda r: r.track("relay").state is TrackState.ABORTING, timeout=10
            )
            assert stopping.track("relay").stage("canary").state is StageState.STOPPED
            await box.wait_for_thread("Hosted relay: rolled back by", timeout=10)
        finally:
            for answered in held:
                answered.set()
        assert "Rolling back" in await rollback


def figures_answered_once_set(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, asyncio.Event, list[TrackState]]:
    """The gate's reads of the figures (a Re-evaluate's) wait until the second event is set
    (a metrics source that does not answer); the first is set once one waits; the list: the
    relay's state as each read saw it."""
    gate = box.services.rollouts._gate
    read, reading, answered = gate.read, asyncio.Event(), asyncio.Event()
    reads: list[TrackState] = []

    async def slow(rollout: Rollout, *args: Any, **kwargs: Any) -> Any:
        reads.append(rollout.track("relay").state)
        reading.set()
        await answered.wait()
        return await read(rollout, *args, **kwargs)

    monkeypatch.setattr(gate, "read", slow)
    return reading, answered, reads


async def test_a_roll_back_takes_hold_while_a_reevaluate_waits_for_the_figures(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Re-evaluate of the held relay canary reads its figures and the metrics source does not
    answer (a dead Prometheus, its retries): a Roll back pressed meanwhile is saved and told at
    once; the Re-evaluate, its track stopped while it read, judges nothing."""
    async with turning_bad(tmp_path, database_url) as box:
        reading, answered, _ = figures_answered_once_set(box, monkeypatch)
        try:
            reevaluating = asyncio.create_task(reevaluate(box))
            await asyncio.wait_for(reading.wait(), 10)
            rollback = asyncio.create_task(box.command("rollback"))
            stopping = await box.wait_until(
                lambda r: r.track("relay").state is TrackState.ABORTING, timeout=10
            )
            assert stopping.track("relay").stage("canary").state is StageState.STOPPED
            assert not answered.is_set() and not reevaluating.done()
        finally:
            answered.set()
        assert "Rolling back" in await rollback
        await reevaluating
        trail = await box.audit.list_for_rollout(stopping.id)
        assert not [e for e in trail if e.action == "gate" and e.actor == RELEASE_MANAGER]
        assert [e.result for e in trail if e.action == "reevaluate"] == ["refused"]


async def test_a_reevaluate_whose_track_rolled_back_while_it_read_reads_no_figures_again(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above: the relay is rolled back while its Re-evaluate waits for the figures. Once it
    finds the track changed, it does not read the (dead) metrics source again for a track no
    gate runs on any more (each read up to the transport's timeouts, about 24 s): it tells the
    person at once that the track is rolling back, not to press Re-evaluate again."""
    async with turning_bad(tmp_path, database_url) as box:
        reading, answered, reads = figures_answered_once_set(box, monkeypatch)
        try:
            reevaluating = asyncio.create_task(reevaluate(box))
            await asyncio.wait_for(reading.wait(), 10)
            assert "Rolling back" in await box.command("rollback")
        finally:
            answered.set()
        told = await reevaluating
        assert len(reads) == 1, reads
        assert told is not None and "Press Re-evaluate again" not in told, told
        assert "no gate to run" in told, told
