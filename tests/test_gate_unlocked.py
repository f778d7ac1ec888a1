"""A window's end reads its figures without holding the rollout's lock: a person's Kill-switch
or Roll back never waits for a slow metrics source, and a verdict read while a stop was saved
never overrides that stop. Through the whole bot; the metrics source's answer is held until
the test lets it go (no clock involved)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from figures import every_gate_passes
from sandbox_views import dispatched, stage_state

from bot.domain.metrics import QueryWindow, Reading
from bot.domain.plan import Metrics
from bot.domain.rollout import StageState, TrackState, window_timer_key
from bot.services.ports import MetricsSource
from sandbox.harness import Sandbox, fast_plan

pytestmark = pytest.mark.story


class HeldSource:
    """A metrics source whose reads wait until `answered` is set."""

    def __init__(self, source: MetricsSource, reading: asyncio.Event, answered: asyncio.Event):
        self._source = source
        self._reading = reading
        self._answered = answered

    async def read(self, window: QueryWindow) -> Reading | None:
        self._reading.set()
        await self._answered.wait()
        return await self._source.read(window)


def held_reads(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, asyncio.Event]:
    """Every gate passes; the gate's reads wait (the first sets `reading`) until `answered`."""
    every_gate_passes(box)
    gate = box.services.rollouts._gate
    sources = gate._sources
    reading, answered = asyncio.Event(), asyncio.Event()

    def held(config: Metrics) -> MetricsSource:
        return HeldSource(sources(config), reading, answered)

    monkeypatch.setattr(gate, "_sources", held)
    return reading, answered


async def test_a_kill_is_saved_while_the_window_ends_read_of_the_figures_hangs(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = fast_plan(tmp_path / "figures.yml", window="1s")
    async with Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=plan) as box:
        reading, answered = held_reads(box, monkeypatch)
        try:
            await dispatched(box)
            await asyncio.wait_for(reading.wait(), timeout=30)  # a window ended: read held
            evaluating = await box.rollout()
            assert StageState.EVALUATING in {
                stage_state(evaluating, "desktop", "internal"),
                stage_state(evaluating, "relay", "canary"),
            }

            kill = asyncio.create_task(box.command("kill crash reports from support"))
            await box.wait_for_thread("crash reports from support", timeout=10)
            stopping = await box.rollout()
            assert stopping.track("desktop").state is TrackState.ABORTING
            assert not answered.is_set()  # the figures are not read yet
            answered.set()
            assert "Kill-switch tripped" in await kill
        finally:
            answered.set()
        halted = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
        assert stage_state(halted, "desktop", "internal") is StageState.STOPPED
        # The verdict read meanwhile was not taken: the stop stands, GitHub was not told to
        # approve the next ring.
        assert "desktop-beta" not in {
            name
            for review in box.github.reviews
            if review.state == "approved"
            for name in review.environments
        }


async def test_a_window_end_fired_again_while_its_figures_are_read_gives_one_verdict(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same window timer fired a second time while the first read hangs (a replica whose
    lease ran out, a retry after a crash between the evaluating save and the verdict): both
    read the figures, one verdict is taken, the other reading dropped."""
    plan = fast_plan(tmp_path / "figures.yml", window="1s")
    async with Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=plan) as box:
        reading, answered = held_reads(box, monkeypatch)
        try:
            await dispatched(box)
            await asyncio.wait_for(reading.wait(), timeout=30)
            evaluating = await box.rollout()
            track = next(
                name
                for name, stage in (("relay", "canary"), ("desktop", "internal"))
                if stage_state(evaluating, name, stage) is StageState.EVALUATING
            )
            stage = evaluating.track(track).current
            assert stage is not None and stage.window_ends_at is not None
            key = window_timer_key(evaluating.id, track, stage.key, stage.window_ends_at)
            timer = await box.wait_for_timer(key, lambda t: t.rollout_id is not None)
            again = asyncio.create_task(box.services.rollouts.on_timer(timer))
            await asyncio.sleep(0.2)  # the second fire reads too (held)
            answered.set()
            await again
        finally:
            answered.set()
        decided = await box.wait_until(
            lambda r: r.track(track).stage(stage.key).state is not StageState.EVALUATING
        )
        await asyncio.sleep(0.5)
        assert decided.track(track).stage(stage.key).verdict is not None
        gates = [
            e
            for e in await box.audit.list_for_rollout(decided.id)
            if e.action == "gate" and e.stage == stage.key
        ]
        assert len(gates) == 1, gates
