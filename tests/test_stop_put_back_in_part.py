"""A second person's stop that waited for a first person's (its claim) while the first was
settled: the first stood on one track and was put back on another (GitHub deploys its last
stage). The second is told what the stop did on each track, from what is stored, not that it
was simply done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path

import pytest
from figures import RINGS_OK
from sandbox_views import dispatched, held
from test_claim_given_back import the_second_waits
from test_stop_races import ga_approved, kills_of
from test_stop_second_person import SECOND, read_once_answered
from test_stop_tracks import two_desktop_plan

from bot.domain.rollout import TrackState
from bot.domain.rollout_summary import PUT_BACK
from bot.services import stops
from sandbox.config import RELEASE_MANAGER
from sandbox.harness import Sandbox, write_figures

pytestmark = pytest.mark.story


@asynccontextmanager
async def relay_held_ga_deploying(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    """Two desktop-gated tracks, the release manager and `SECOND` approvers: the relay's holds
    on its canary, the desktop deploys GA (GitHub approved it)."""
    approvers = {"ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{SECOND}"}
    async with Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        plan_yaml=two_desktop_plan(tmp_path),
        extra_env=approvers,
    ) as box:
        write_figures(box.figures, "relay", {"canary": {"crash_rate": "0"}})
        write_figures(box.figures, "desktop", RINGS_OK)
        await dispatched(box)
        await held(box, "relay", "canary")
        await ga_approved(box)
        yield box


async def test_a_second_kill_that_waited_for_a_kill_put_back_on_one_track_is_told_which(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two desktop-gated tracks: the relay's holds on its canary, the desktop deploys GA. The
    first kill stops the relay's and is put back on the desktop (GitHub deploys GA); the
    second person, who waited for it less than the bot waits, is told what it did on each
    track and what to do about the desktop, not "Already done … Nothing more was done"."""
    async with relay_held_ga_deploying(tmp_path, database_url) as box:
        reading, answered, _ = read_once_answered(box, monkeypatch)
        second_waits = the_second_waits(box, monkeypatch)
        first = asyncio.create_task(box.command("kill crash spike"))
        await reading.wait()
        second_url = await box.send_command("kill crash spike too", user=SECOND)
        await second_waits.wait()
        answered.set()

        assert "Not stopped, still on `v1.4.2`: *Desktop app and CLI* (landing" in await first
        (second,) = await box.slack.wait_for_response(second_url, timeout=30)
        shown = str(second.body)
        assert f"Already done by <@{RELEASE_MANAGER}>" in shown, shown
        assert "put back on *Desktop app and CLI*" in shown, shown
        assert "GitHub had already approved the last stage, which it cannot stop" in shown, shown
        assert "It stopped *Hosted relay* only." in shown, shown
        assert "*Desktop app and CLI* is already deploying its last stage (GA ring)" in shown
        after = await box.rollout()
        assert after.track("relay").state is not TrackState.ACTIVE
        assert after.track("desktop").state is TrackState.ACTIVE
        assert after.stop_waiters == () and after.untold_stops == ()
        assert await kills_of(box, after) == [
            ("relay", "ok"),
            ("desktop", "ok"),
            ("desktop", "not_stopped"),
            ("desktop", PUT_BACK),
        ]


async def test_a_kill_asked_for_once_done_is_told_its_put_back_whatever_the_claimants_clock(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replica that took the first kill's claim runs a minute ahead of the one that
    wrote its audit events (skewed clocks): the second person, who asks once it is done, is
    still told it was put back on the desktop. The events are read by the claim that wrote
    them, not by the moment it was taken (before, every event looked older than the claim,
    and the answer was "Already done … Nothing more was done")."""
    async with relay_held_ga_deploying(tmp_path, database_url) as box:
        once = box.services.controls._once
        ahead = once._clock
        monkeypatch.setattr(once, "_clock", lambda: ahead() + timedelta(minutes=1))

        assert "Not stopped, still on `v1.4.2`" in await box.command("kill crash spike")
        shown = await box.command("kill crash spike too", user=SECOND)

        assert f"Already done by <@{RELEASE_MANAGER}>" in shown, shown
        assert "put back on *Desktop app and CLI*" in shown, shown
        assert "It stopped *Hosted relay* only." in shown, shown


@pytest.mark.database_matters  # the claim is read from the JSON detail: each dialect's own SQL
async def test_a_kill_an_e248966_replica_did_is_told_its_put_back_from_events_naming_no_claim(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first kill's `ok` and `put_back` events name no claim, as an e248966 replica writes
    them: the second person, who asks once it is done, is still told it was put back on the
    desktop (they are read by the time its claim was taken, `AuditLog.list_for_claim`)."""
    async with relay_held_ga_deploying(tmp_path, database_url) as box:
        monkeypatch.setattr(stops, "acting_now", ContextVar("e248966", default=None))

        assert "Not stopped, still on `v1.4.2`" in await box.command("kill crash spike")
        trail = await box.audit.list_for_rollout((await box.rollout()).id)
        kills = [e for e in trail if e.action == "abort_desktop"]
        shown = await box.command("kill crash spike too", user=SECOND)

        assert kills and all("claim" not in (e.detail or {}) for e in kills), kills
        assert f"Already done by <@{RELEASE_MANAGER}>" in shown, shown
        assert "put back on *Desktop app and CLI*" in shown, shown
        assert "It stopped *Hosted relay* only." in shown, shown
