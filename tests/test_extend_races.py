"""A person's Extend while another replica saves the rollout between the Extend's read and its
save: a save that left the window as the person saw it (a look at the run) is no reason to
refuse the Extend, which is decided again on that replica's state, as a Promote is; one that
changed the window (another extension) refuses it, changed by someone else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from figures import every_gate_passes
from test_claim_lapses import audited, observing

from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout
from sandbox.harness import Sandbox, fast_plan

pytestmark = pytest.mark.story


@asynccontextmanager
async def observing_an_hour(
    tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[Sandbox, str]]:
    """The relay canary observing its hour-long window (extended by 15 minutes), with the
    value of its Extend button."""
    plan = fast_plan(tmp_path / "figures.yml", window="1h", extension="15m")
    async with Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=plan) as box:
        every_gate_passes(box)
        yield box, await observing(box)


def saved_elsewhere_after_the_read(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch, change: Callable[[Rollout], Rollout]
) -> list[Rollout]:
    """Once the Extend has read the rollout (as it reads its plan), another replica saves it
    once, as `change` makes it: what that replica saved."""
    effects = box.services.rollouts.effects
    plan_of = effects.plan_of
    saved: list[Rollout] = []

    async def another_replica_saves(rollout: Rollout) -> RolloutPlan:
        if not saved:
            latest = await effects.store.get(rollout.id)
            assert latest is not None
            saved.append(await effects.store.save(change(latest)))
        return await plan_of(rollout)

    monkeypatch.setattr(effects, "plan_of", another_replica_saves)
    return saved


def looked(rollout: Rollout) -> Rollout:
    """A look at the run that changed nothing of the relay's window (it read the run at last,
    after GitHub had refused it a while)."""
    return replace(rollout, unread_since=None, told_unread=False)


def extended_elsewhere(rollout: Rollout) -> Rollout:
    """Another person's extension of the relay canary's window, by an hour."""
    track = rollout.track("relay")
    canary = track.stage("canary")
    assert canary.window_ends_at is not None
    moved = replace(canary, window_ends_at=canary.window_ends_at + timedelta(hours=1))
    return rollout.with_track(track.with_stage(moved))


async def test_an_extend_is_decided_again_after_a_look_saved_elsewhere_meanwhile(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with observing_an_hour(tmp_path, database_url) as (box, value):
        before = await box.rollout()
        saved = saved_elsewhere_after_the_read(box, monkeypatch, looked)

        answer = await box.click("extend_window", value=value)

        assert saved, "no other replica saved"
        assert answer is None or "changed by someone else" not in answer, answer
        after = await box.rollout()
        was = before.track("relay").stage("canary").window_ends_at
        assert was is not None
        assert after.track("relay").stage("canary").window_ends_at == was + timedelta(minutes=15)
        assert await audited(box, after, "extend") == 1
        await box.wait_for_thread("extended the window")


async def test_an_extend_of_a_window_extended_elsewhere_meanwhile_is_refused(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with observing_an_hour(tmp_path, database_url) as (box, value):
        saved = saved_elsewhere_after_the_read(box, monkeypatch, extended_elsewhere)

        answer = await box.click("extend_window", value=value)

        assert answer is not None and "changed by someone else" in answer, answer
        after = await box.rollout()
        assert after.track("relay").stage("canary") == saved[0].track("relay").stage("canary")
        assert await audited(box, after, "extend") == 0
