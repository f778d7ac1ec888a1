"""A second person's stop pressed while a first person's is being settled (the first kill
reads the run on GitHub): when the first is put back (GA already approved and deploying),
the second person is told that their stop, too, was refused, and why; each person once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from figures import RELAY_OK, RINGS_OK
from sandbox_views import dispatched, held
from test_desktop_track import kill_button
from test_stop_races import ga_approved, kills_of, never_settled, put_back

from bot.domain.rollout import Rollout
from bot.domain.rollout_summary import PUT_BACK
from bot.services.records import Claim
from sandbox.config import RELEASE_MANAGER
from sandbox.harness import Sandbox, fast_plan, write_figures

pytestmark = pytest.mark.story

SECOND = "U0RELMGR02"
REFUSED = "already deploying GA ring"


@asynccontextmanager
async def two_approvers(
    tmp_path: Path,
    database_url: str,
    *,
    window: str,
    extension: str,
    others: tuple[str, ...] = (SECOND,),
) -> AsyncIterator[Sandbox]:
    """A sandbox on `fast_plan` (its windows and extensions as given) where the release
    manager and `others` (`SECOND`) approve."""
    plan = fast_plan(tmp_path / "figures.yml", window=window, extension=extension)
    approvers = {"ROLLOUT_APPROVERS": ",".join((RELEASE_MANAGER, *others))}
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=plan, extra_env=approvers
    ) as box:
        yield box


@asynccontextmanager
async def ga_deploying(
    tmp_path: Path, database_url: str, *, others: tuple[str, ...] = (SECOND,)
) -> AsyncIterator[tuple[Sandbox, str]]:
    """Two approvers (or more: `others`), every gate passing, GA approved and deploying; with
    the value of the card's Kill-switch as drawn while the internal ring held."""
    async with two_approvers(
        tmp_path, database_url, window="1s", extension="1s", others=others
    ) as box:
        write_figures(box.figures, "relay", RELAY_OK)
        write_figures(box.figures, "desktop", RINGS_OK)
        await dispatched(box)
        await held(box, "desktop", "internal")
        kill = kill_button(box)["value"]
        await ga_approved(box)
        yield box, kill


Read = Callable[[Rollout], Awaitable[frozenset[str] | None]]


def read_once_answered(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, asyncio.Event, Read]:
    """A kill's read of the run (its stop saved) sets the first event, then waits for the
    second to be set before it reads; and the read as it was."""
    stops = box.services.rollouts.abort.__self__  # type: ignore[attr-defined]
    read: Read = stops._waiting
    reading, answered = asyncio.Event(), asyncio.Event()

    async def read_once_answered(rollout: Rollout) -> frozenset[str] | None:
        reading.set()
        await answered.wait()
        return await read(rollout)

    monkeypatch.setattr(stops, "_waiting", read_once_answered)
    return reading, answered, read


async def test_a_second_kill_pressed_while_the_first_is_put_back_is_told_why_it_is_refused(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ga_deploying(tmp_path, database_url) as (box, _):
        reading, answered, read = read_once_answered(box, monkeypatch)
        stops = box.services.rollouts.abort.__self__  # type: ignore[attr-defined]
        first = asyncio.create_task(box.command("kill crash spike"))
        await reading.wait()
        second_url = await box.send_command("kill crash spike too", user=SECOND)
        answered.set()
        monkeypatch.setattr(stops, "_waiting", read)

        assert REFUSED in await first
        (second,) = await box.slack.wait_for_response(second_url, timeout=30)
        shown = str(second.body)
        assert REFUSED in shown, shown
        after = await put_back(box)
        kills = await kills_of(box, after)
        assert kills.count(("desktop", "refused")) == 2, kills


@pytest.mark.parametrize("by", ["command", "card"])
async def test_a_second_kill_told_it_is_being_done_is_named_when_the_first_is_put_back(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, by: str
) -> None:
    """The first kill reads the run longer than the second waits for it: the second person
    (`/rollout kill`, or the Kill-switch of a card drawn before GA) is answered that it is
    being done, and recorded as waiting on it (in the rollout). GitHub then makes the first
    void (GA deploys): it is put back, and the thread line that says so names the second
    person, so they do not walk away thinking it tripped."""
    async with ga_deploying(tmp_path, database_url) as (box, kill):
        reading, answered, _ = read_once_answered(box, monkeypatch)
        # The second's wait for the first runs out (10 s in the bot) while GitHub is read.
        monkeypatch.setattr(box.services.controls._once, "_holder_wait", 0.2)
        first = asyncio.create_task(box.command("kill crash spike"))
        await reading.wait()
        if by == "command":
            second_url = await box.send_command("kill crash spike too", user=SECOND)
            (second,) = await box.slack.wait_for_response(second_url, timeout=30)
            shown = str(second.body)
        else:
            shown = str(await box.click("kill", value=kill, user=SECOND))
        waiting = await box.rollout()
        answered.set()

        assert "Already being done by" in shown and "names you" in shown, shown
        assert waiting.stop_waiters == (("desktop", SECOND),)
        assert REFUSED in await first
        told = await box.wait_for_thread("is put back")
        assert f"<@{SECOND}>" in told and f"<@{RELEASE_MANAGER}>" in told, told
        assert "Nothing was stopped" in told and "GA ring" in told, told
        after = await put_back(box)
        assert after.stop_waiters == () and after.untold_stops == ()
        assert await kills_of(box, after) == [
            ("desktop", "ok"),
            ("desktop", PUT_BACK),
            ("desktop", "refused"),
        ]


async def test_a_kill_told_being_done_before_the_first_is_saved_is_recorded_once_it_is(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first kill is claimed but not saved yet (its process waits for the rollout) when
    the second person's wait for it runs out: nothing to wait on is recorded yet. The second
    person waits once more, and, the first saved by then (GitHub being read), is recorded and
    answered "names you", and named by the put back (before, they were answered that it was
    being done, not recorded, and named by nobody)."""
    async with ga_deploying(tmp_path, database_url) as (box, _):
        reading, answered, _ = read_once_answered(box, monkeypatch)
        stops = box.services.rollouts.abort.__self__  # type: ignore[attr-defined]
        monkeypatch.setattr(box.services.controls._once, "_holder_wait", 0.2)
        deploying, claimed, asked = stops._stop_deploying, asyncio.Event(), asyncio.Event()

        async def saved_once_asked(*args: Any, **kwargs: Any) -> None:
            claimed.set()
            await asked.wait()
            await deploying(*args, **kwargs)

        wait_on, unsaved = stops.wait_on, list[bool | None]()

        async def first_unsaved(claim: Claim, actor: str) -> bool | None:
            recorded = await wait_on(claim, actor)
            if not unsaved:  # the first kill saves its stop now, then reads GitHub
                unsaved.append(recorded)
                asked.set()
                await reading.wait()
            return recorded

        monkeypatch.setattr(stops, "_stop_deploying", saved_once_asked)
        monkeypatch.setattr(stops, "wait_on", first_unsaved)
        first = asyncio.create_task(box.command("kill crash spike"))
        await claimed.wait()
        second_url = await box.send_command("kill crash spike too", user=SECOND)
        (second,) = await box.slack.wait_for_response(second_url, timeout=120)
        waiting = await box.rollout()
        answered.set()

        assert unsaved == [False]
        shown = str(second.body)
        assert "Already being done by" in shown and "names you" in shown, shown
        assert waiting.stop_waiters == (("desktop", SECOND),)
        assert REFUSED in await first
        told = await box.wait_for_thread("is put back")
        assert f"<@{SECOND}>" in told, told


@pytest.mark.database_matters  # PostgreSQL's concurrent writers race as SQLite's never do
async def test_twenty_people_asking_for_a_kill_at_once_are_each_recorded_and_named(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty people ask for the kill at once while the first is decided: each one's record
    of waiting saves the rollout, and each loses races to the others. A race lost to another
    waiter uses none of the tries (it is progress), so every one is recorded and answered
    "names you" (before, on PostgreSQL, the tries ran out: some were answered without it, and
    named by nobody), and the put back names all twenty."""
    people = tuple(f"U0WAITER{n:02d}" for n in range(20))
    async with ga_deploying(tmp_path, database_url, others=people) as (box, _):
        reading, answered, _ = read_once_answered(box, monkeypatch)
        monkeypatch.setattr(box.services.controls._once, "_holder_wait", 0.2)
        first = asyncio.create_task(box.command("kill crash spike"))
        await reading.wait()
        urls = [await box.send_command("kill", user=who) for who in people]
        answers = [await box.slack.wait_for_response(url, timeout=120) for url in urls]
        waiting = await box.rollout()
        answered.set()

        shown = [str(post.body) for (post,) in answers]
        assert all("Already being done by" in s and "names you" in s for s in shown), shown
        assert sorted(who for _, who in waiting.stop_waiters) == sorted(people)
        assert REFUSED in await first
        told = await box.wait_for_thread("is put back")
        assert all(f"<@{who}>" in told for who in people), told
        assert (await put_back(box)).stop_waiters == ()


async def test_who_waits_on_a_kill_that_stands_is_forgotten_by_the_look_that_tells_it(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill's process never settles it (it loses every race, as a process that died
    would leave it): the kill stands, and the look that tells its line forgets who waited on
    it, saying nothing more to them (it was being done); no later stop names them."""
    async with ga_deploying(tmp_path, database_url) as (box, _):
        never_settled(box, monkeypatch)
        assert "saved, but GitHub had already approved" in await box.command("kill too late")
        stands = await box.rollout()
        store = box.services.rollouts.effects.store
        await store.save(replace(stands, stop_waiters=(("desktop", SECOND),)))

        await box.pass_time(timedelta(minutes=10))  # GA lands: the look tells the kill's line
        told = await box.wait_for_thread("too late")
        assert "kill-switch by" in told, told
        after = await box.rollout()
        assert after.untold_stops == () and after.stop_waiters == ()
        assert not [line for line in box.thread() if "is put back" in line]
