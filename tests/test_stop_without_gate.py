"""Stops that cannot stop anything say why: `/rollout kill` under a plan without desktop rings
(a web-only service), `/rollout rollback` under one with rings only (a desktop app or a CLI of
its own), either while the dispatch's run is not identified yet. Nothing stops, and the person
is told so with what does apply, instead of "Kill-switch tripped" over a release that goes on.
End to end: signed Slack requests, PyGithub against the GitHub simulator (SQLite;
tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


@asynccontextmanager
async def one_track(tmp_path: Path, database_url: str, *, kept: str) -> AsyncIterator[Sandbox]:
    """A sandbox whose plan has the track `kept` only, dispatched, its first stage held."""
    other = "desktop" if kept == "relay" else "relay"
    plan = plan_of(tmp_path, without=other)
    async with Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=plan) as box:
        write_figures(box.figures, kept, RELAY_OK if kept == "relay" else RINGS_OK)
        await dispatched(box)
        first = "canary" if kept == "relay" else "internal"
        await held(box, kept, first)
        await box.wait_for_thread("gate: PASS")  # the gate card, after the hold
        yield box


async def stop_refused(box: Sandbox, command: str, *, gate: str, track: str, other: str) -> None:
    """`/rollout <command>` under a plan without a `gate`-gated track: refused naming the stop
    the plan has (`/rollout <other>`); nothing sent to GitHub or said in the thread, `track`
    still running, and the command not audited as done."""
    thread, before = box.thread(), list(box.github.reviews)
    answer = await box.command(command)
    assert "Kill-switch tripped" not in answer and "Rolling back" not in answer
    assert f"no {gate}-gated track" in answer and "nothing was changed" in answer
    assert f"`/rollout {other}`" in answer
    assert box.github.reviews == before
    assert box.thread() == thread
    rollout = await box.rollout()
    assert rollout.track(track).state is TrackState.ACTIVE
    assert "ok" not in await audit_results(box, rollout.id, f"abort_{gate}", 1)


async def test_a_kill_under_a_plan_without_rings_trips_nothing_and_says_so(
    tmp_path: Path, database_url: str
) -> None:
    async with one_track(tmp_path, database_url, kept="relay") as box:
        await stop_refused(
            box, "kill crashes in the field", gate="desktop", track="relay", other="rollback"
        )
        # The plan's own stop still works.
        assert "Rolling back" in await box.command("rollback")
        await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)


async def test_a_rollback_under_a_plan_of_rings_only_rolls_back_nothing_and_says_so(
    tmp_path: Path, database_url: str
) -> None:
    async with one_track(tmp_path, database_url, kept="desktop") as box:
        await stop_refused(box, "rollback", gate="relay", track="desktop", other="kill")
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
