"""Stops that cannot stop anything say why: `/rollout kill` under a plan without desktop rings
(a web-only service), `/rollout rollback` under one with rings only (a desktop app or a CLI of
its own), either while the dispatch's run is not identified yet. Nothing stops, and the person
is told so with what does apply, instead of "Kill-switch tripped" over a release that goes on.
End to end: signed Slack requests, PyGithub against the GitHub simulator (SQLite;
tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from figures import RELAY_OK, RINGS_OK
from sandbox_views import audit_results, dispatched, held, reviews
from test_github_faults import sandbox
from test_link_run import unclear_dispatch

from bot.domain.rollout import Phase, TrackState
from sandbox.harness import Sandbox, fast_plan, write_figures

__all__ = ["sandbox"]  # the fixture the unclear dispatch's test uses

pytestmark = pytest.mark.story


def plan_of(tmp_path: Path, *, without: str) -> str:
    """The accelerated plan without the track `without` (its inputs given as literals)."""
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml"))
    del plan["tracks"][without]
    for name, given in plan["inputs"].items():
        if given.get("track") == without:
            plan["inputs"][name] = {"from": "literal", "value": "0.001"}
    return yaml.safe_dump(plan)


async def test_a_kill_under_a_plan_without_rings_trips_nothing_and_says_so(
    tmp_path: Path, database_url: str
) -> None:
    plan = plan_of(tmp_path, without="desktop")
    async with Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=plan) as box:
        write_figures(box.figures, "relay", RELAY_OK)
        rollout = await dispatched(box)
        await held(box, "relay", "canary")
        await box.wait_for_thread("5% canary gate: PASS")  # the gate card, after the hold
        thread = box.thread()
        before = list(box.github.reviews)

        answer = await box.command("kill crashes in the field")
        assert "Kill-switch tripped" not in answer
        assert "no desktop-gated track" in answer and "nothing was changed" in answer
        assert "`/rollout rollback`" in answer  # the stop this plan has
        assert box.github.reviews == before
        assert box.thread() == thread
        after = await box.rollout()
        assert after.track("relay").state is TrackState.ACTIVE
        assert "ok" not in await audit_results(box, rollout.id, "abort_desktop", 1)

        # The refusal took no claim: the rollout's one Roll back still works.
        assert "Rolling back" in await box.command("rollback")
        await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)


async def test_a_rollback_under_a_plan_of_rings_only_rolls_back_nothing_and_says_so(
    tmp_path: Path, database_url: str
) -> None:
    plan = plan_of(tmp_path, without="relay")
    async with Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=plan) as box:
        write_figures(box.figures, "desktop", RINGS_OK)
        rollout = await dispatched(box)
        await held(box, "desktop", "internal")
        before = list(box.github.reviews)

        answer = await box.command("rollback")
        assert "Rolling back" not in answer
        assert "no relay-gated track" in answer and "nothing was changed" in answer
        assert "`/rollout kill`" in answer
        assert box.github.reviews == before
        assert (await box.rollout()).track("desktop").state is TrackState.ACTIVE
        assert "ok" not in await audit_results(box, rollout.id, "abort_relay", 1)

        assert "Kill-switch tripped" in await box.command("kill")
        await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
        assert ("desktop-kill-switch", "approved") in reviews(box, "desktop")


async def test_a_kill_or_rollback_while_the_dispatch_is_unclear_says_why_not(
    sandbox: Sandbox,
) -> None:
    """The dispatch's run is not identified yet (GitHub answered 502): nothing is approved
    until it is, and a stop is refused saying so, not that the track is 'already pending'."""
    rollout = await unclear_dispatch(sandbox)
    assert rollout.phase is Phase.DISPATCHING
    for command in ("kill crashes on startup", "rollback"):
        answer = await sandbox.command(command)
        assert "pending" not in answer, answer
        assert "run is not identified yet" in answer and "nothing was changed" in answer
        assert "Link a run" in answer
    after = await sandbox.rollout()
    assert after.phase is Phase.DISPATCHING
    assert all(track.state is TrackState.PENDING for track in after.tracks)
