"""A Kill-switch of a track saved as deploying its last stage saves the stop, then reads the
run on GitHub; another replica may save the rollout meanwhile (a look, a window of another
track). The stop's last save then loses the race: it is decided again on the rollout as that
replica left it, so that a stop GitHub makes void is still put back (and refused), and the
trail keeps its `put_back` and `not_stopped` events. Through the whole bot; the other
replica's save is made while the kill waits for GitHub's answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from figures import running_sandbox
from sandbox_views import dispatched, promote, stage_state
from test_desktop_track import ga_held_by_github, ga_plan
from test_github_faults import REVIEWS
from test_stop_tracks import two_desktop_tracks

from bot.domain import rollout as machine
from bot.domain.errors import ConcurrentChange
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Decision, Rollout, StageState, TrackState
from bot.domain.rollout_summary import NOT_STOPPED, PUT_BACK
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story

GA_JOB = "Desktop/CLI ring deploy - GA"


async def ga_approved(box: Sandbox) -> None:
    """The desktop promoted through beta: GitHub deploys GA (approved, for 10 minutes)."""
    box.github.set_job_duration(GA_JOB, timedelta(minutes=10))
    await promote(box, "desktop", "internal")
    await promote(box, "desktop", "beta")
    await box.wait_until(lambda r: stage_state(r, "desktop", "ga") is StageState.DEPLOYING)


async def put_back(box: Sandbox) -> Rollout:
    """The rollout, its desktop put back as it was (GA deploying)."""
    after = await box.rollout()
    assert after.track("desktop").state is TrackState.ACTIVE
    assert stage_state(after, "desktop", "ga") is StageState.DEPLOYING
    return after


async def kills_of(box: Sandbox, rollout: Rollout) -> list[tuple[str | None, str]]:
    """The kill's audit events (track, result), in order."""
    trail = await box.audit.list_for_rollout(rollout.id)
    return [(e.track, e.result) for e in trail if e.action == "abort_desktop"]


@asynccontextmanager
async def ga_held(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    """A sandbox whose GitHub still holds GA, the bot's approval of it failed."""
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=ga_plan(tmp_path)
    ) as box:
        await ga_held_by_github(box, REVIEWS)
        yield box


async def a_look(box: Sandbox, rollout_id: str) -> tuple[Rollout, Decision, RolloutPlan]:
    """What another replica's look decides of the rollout as stored now (not yet saved)."""
    effects = box.services.rollouts.effects
    latest, plan = await effects.with_plan(rollout_id)
    assert latest.run_id is not None
    snapshot = await effects.read_run(latest.run_id)
    return latest, machine.reconcile(latest, plan, snapshot, box.clock()), plan


def saved_elsewhere_while_github_is_read(
    box: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[Rollout], Rollout] = lambda rollout: rollout,
) -> list[int]:
    """While the kill reads the run, another replica saves the rollout (once, as `change`
    makes it): the versions it saved at."""
    stops = box.services.rollouts.abort.__self__  # type: ignore[attr-defined]
    read: Callable[[Rollout], Awaitable[frozenset[str] | None]] = stops._waiting
    store = box.services.rollouts.effects.store
    raced: list[int] = []

    async def read_while_another_saves(rollout: Rollout) -> frozenset[str] | None:
        waiting = await read(rollout)
        if not raced:
            latest = await store.get(rollout.id)
            assert latest is not None
            raced.append((await store.save(change(latest))).version)
        return waiting

    monkeypatch.setattr(stops, "_waiting", read_while_another_saves)
    return raced


def never_settled(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Other replicas save the rollout before each of a stop's tries to save what GitHub
    answered: it stands as saved, its line owed to the next look."""
    stops = box.services.rollouts.abort.__self__  # type: ignore[attr-defined]

    async def loses(*_: object) -> bool:
        raise ConcurrentChange("saved elsewhere first", rollout_id="")

    monkeypatch.setattr(stops, "_settle", loses)


async def kill_while_another_saves(
    box: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    reason: str,
    change: Callable[[Rollout], Rollout] = lambda rollout: rollout,
) -> str:
    """Kill-switch the desktop (`/rollout kill reason`) while another replica saves the
    rollout as `change` makes it (see `saved_elsewhere_while_github_is_read`): the answer."""
    raced = saved_elsewhere_while_github_is_read(box, monkeypatch, change)

    answer = await box.command(f"kill {reason}")

    assert raced
    return answer


async def test_a_kill_github_makes_void_is_put_back_though_another_replica_saved_meanwhile(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub deploys GA (approved): the kill is put back and refused, as without the race,
    rather than left standing untold while its answer says it was saved."""
    async with running_sandbox(tmp_path, database_url) as box:
        await dispatched(box)
        await ga_approved(box)
        answer = await kill_while_another_saves(box, monkeypatch, "too late")

        assert "already deploying GA ring" in answer, answer
        after = await put_back(box)
        kills = await kills_of(box, after)
        assert kills == [("desktop", "ok"), ("desktop", PUT_BACK), ("desktop", "refused")]
        assert "too late" not in "\n".join(box.thread())


@pytest.mark.parametrize("old", [False, True], ids=["new", "091736d"])
async def test_a_kill_another_replica_acted_on_before_it_was_put_back_stands_and_is_told(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, old: bool
) -> None:
    """GitHub deploys GA, but before the kill is put back another replica acts on it (its
    look saw GA land while the track stops): the kill stands, the thread is told of it, and
    whoever pressed it learns that GA lands all the same. Also when that replica runs 091736d
    (a rolling upgrade): its look never tells a stop's line and drops `untold_stops` as it
    saves, so the kill's process tells it (as 091736d's kill did) rather than nobody."""

    def landed(rollout: Rollout) -> Rollout:
        track = rollout.track("desktop")
        ga = replace(track.stage("ga"), state=StageState.STOPPED)
        if old:  # saved as 091736d saves it: no `untold_stops` key in its context
            rollout = replace(rollout, untold_stops=(), untold_stops_kept=False)
        return rollout.with_track(track.with_stage(ga))

    async with running_sandbox(tmp_path, database_url) as box:
        await dispatched(box)
        await ga_approved(box)
        answer = await kill_while_another_saves(box, monkeypatch, "too late", landed)

        assert "saved, but GitHub had already approved" in answer, answer
        after = await box.rollout()
        assert after.track("desktop").state is TrackState.ABORTING
        assert stage_state(after, "desktop", "ga") is StageState.STOPPED
        told = await box.wait_for_thread("too late")
        assert "kill-switch by" in told and "stays on the GA ring" in told, told
        kills = await kills_of(box, after)
        assert kills == [("desktop", "ok")]


async def test_a_kill_of_two_tracks_puts_back_the_landing_one_though_another_replica_saved(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two desktop-gated tracks: the desktop deploys GA (approved), the other holds on its
    first stage. The kill halts the other and puts the desktop back (GitHub deploys GA), its
    `put_back` and `not_stopped` recorded, although another replica saved meanwhile."""
    async with two_desktop_tracks(tmp_path, database_url) as box:
        await ga_approved(box)
        answer = await kill_while_another_saves(box, monkeypatch, "crash reports")

        assert "Kill-switch tripped" in answer, answer
        after = await put_back(box)
        assert after.track("relay").state in (TrackState.ABORTING, TrackState.HALTED)
        kills = await kills_of(box, after)
        assert ("desktop", PUT_BACK) in kills and ("desktop", NOT_STOPPED) in kills, kills
        await box.wait_for_thread("Not stopped by this Kill-switch")


async def test_a_kill_a_look_elsewhere_acts_on_while_github_is_read_is_told_once(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub still holds GA (the bot's approval failed): while the kill reads the run, another
    replica's look rejects GA, telling the kill's line (owed since its save) before its
    rejection. The kill, deciding again on that look's rollout, does not tell it again."""
    async with ga_held(tmp_path, database_url) as box:
        effects = box.services.rollouts.effects
        stops = box.services.rollouts.abort.__self__  # type: ignore[attr-defined]
        read = stops._waiting
        looked: list[Rollout] = []

        async def read_while_a_look_acts(rollout: Rollout) -> frozenset[str] | None:
            waiting = await read(rollout)
            if not looked:
                latest, decision, plan = await a_look(box, rollout.id)
                looked.append(await effects.apply(latest, decision, plan))
            return waiting

        monkeypatch.setattr(stops, "_waiting", read_while_a_look_acts)
        answer = await box.command("kill crash spike in beta")

        assert looked and looked[0].untold_stops == ()
        assert stage_state(looked[0], "desktop", "ga") is StageState.REJECTED
        assert "Kill-switch tripped" in answer, answer
        box.github.clear_faults()
        await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
        thread = box.thread()
        told = [n for n, line in enumerate(thread) if "crash spike in beta" in line]
        rejected = [n for n, line in enumerate(thread) if "Rejected *GA ring*" in line]
        assert len(told) == 1 and rejected and told[0] < rejected[0], thread


async def test_a_kill_whose_outcome_loses_every_race_stands_and_its_line_waits_for_the_look(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other replicas save the rollout before each of the kill's tries to save what GitHub
    answered: the kill stands as saved (never answered as refused, nor as changing nothing),
    and the look that sees GA land tells its line first."""
    async with running_sandbox(tmp_path, database_url) as box:
        await dispatched(box)
        await ga_approved(box)
        never_settled(box, monkeypatch)
        answer = await box.command("kill too late")

        assert "saved, but GitHub had already approved" in answer, answer
        stands = await box.rollout()
        assert stands.track("desktop").state is TrackState.ABORTING
        assert stands.untold_stops == ("desktop",)
        assert [result for _, result in await kills_of(box, stands)] == ["ok"]
        await box.pass_time(timedelta(minutes=10))  # GA lands: the look tells the kill's line
        told = await box.wait_for_thread("too late")
        assert "kill-switch by" in told and "stays on the GA ring" in told, told
        assert (await box.rollout()).untold_stops == ()


async def test_a_kill_unread_whose_ga_an_old_replica_rejected_meanwhile_tells_where_it_stays(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub still holds GA; the kill cannot read the run, and meanwhile a 091736d replica's
    look rejects GA (dropping `untold_stops`, telling no stop). The kill's line, told by its
    process, says the release stays on beta, as that look left it: not on the GA ring its own
    save had as deploying."""
    async with ga_held(tmp_path, database_url) as box:
        stops = box.services.rollouts.abort.__self__  # type: ignore[attr-defined]
        looked: list[Rollout] = []

        async def unread_while_an_old_look_acts(rollout: Rollout) -> None:
            if not looked:
                _, decision, _ = await a_look(box, rollout.id)
                old = replace(decision.rollout, untold_stops=(), untold_stops_kept=False)
                looked.append(await box.services.rollouts.effects.store.save(old))
            return None

        monkeypatch.setattr(stops, "_waiting", unread_while_an_old_look_acts)
        await box.command("kill crash spike in beta")

        assert looked and stage_state(looked[0], "desktop", "ga") is StageState.REJECTED
        told = await box.wait_for_thread("crash spike in beta")
        assert "kill-switch by" in told and "stays on the beta ring" in told, told
