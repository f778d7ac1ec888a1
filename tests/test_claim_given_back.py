"""A person's effect whose save went through, then a step after the save failed (the window
extended, its new timer written with it, then the cancel of its old timer lost): done, not given
back as "nothing done". The person is told it was done and what is left undone (the old timer,
which changes nothing); a second person who waited for the claim is told it was done; a click on
the old card again is told so too, not extended twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from figures import HALF_OK, every_gate_passes
from sandbox_views import (
    dispatched,
    figures_form_opened,
    stage_state,
    value_of,
    window_timer_of,
)
from sqlalchemy.exc import OperationalError
from test_claim_lapses import audited, observing
from test_controls import CANARY_BAD
from test_stop_second_person import SECOND, two_approvers

from bot.domain.rollout import StageState, TrackState
from bot.services.records import Claim
from sandbox.config import RELEASE_MANAGER
from sandbox.harness import Sandbox, fast_plan, write_figures

pytestmark = pytest.mark.story

DONE = "Done: extend the 5% canary window of `v1.4.2`"
OWED = "A window's old timer could not be cancelled right after: it changes nothing."


def the_second_waits(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """The event returned is set once a request meets a claim held, and waits for it."""
    once = box.services.controls._once  # type: ignore[attr-defined]
    settled = once._settled
    waiting = asyncio.Event()

    async def waits(held: Claim, *, wait: bool) -> Claim | None:
        waiting.set()
        return await settled(held, wait=wait)

    monkeypatch.setattr(once, "_settled", waits)
    return waiting


@asynccontextmanager
async def canary_observing(
    tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[Sandbox, str, datetime]]:
    """Two approvers, the relay canary observing its hour: the box, its Extend button's value
    and the window's end. The desktop's internal ring observing too: the next look at the run
    (after a click) then moves no window of its own, nor cancels a window's timer, which a fault
    meant for the click's would meet instead."""
    async with two_approvers(tmp_path, database_url, window="1h", extension="15m") as box:
        every_gate_passes(box)
        await observing(box)
        await box.wait_until(
            lambda r: stage_state(r, "desktop", "internal") is StageState.OBSERVING
        )
        value = await value_of(box, "extend_window", "relay")
        ends = (await box.rollout()).track("relay").stage("canary").window_ends_at
        assert ends is not None
        yield box, value, ends


def cancel_lost_once(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch, meanwhile: asyncio.Event | None = None
) -> asyncio.Event:
    """The cancel of the next window timer cancelled (the window's old end, once the Extend
    saved its new one) is lost (once `meanwhile` is set, when given): the event returned is set
    once the extension is saved."""
    timers = box.services.rollouts.effects.timers
    cancel = timers.cancel
    saved = asyncio.Event()

    async def lost(*, key: str, now: datetime) -> bool:
        if not key.startswith("window:"):
            return await cancel(key=key, now=now)
        monkeypatch.setattr(timers, "cancel", cancel)
        saved.set()
        if meanwhile is not None:
            await meanwhile.wait()
        raise OperationalError("UPDATE timers", {}, ConnectionResetError("lost"))

    monkeypatch.setattr(timers, "cancel", lost)
    return saved


async def extended_once(box: Sandbox, before_ends: datetime) -> None:
    """The window was extended once, its timer written with it; the old window's timer, not
    cancelled, fires at the old end and changes nothing."""
    after = await box.rollout()
    assert await audited(box, after, "extend") == 1, "it extended twice"
    ends = before_ends + timedelta(minutes=15)
    assert after.track("relay").stage("canary").window_ends_at == ends
    timer = await box.wait_for_timer(window_timer_of(after, "relay", "canary"), lambda _: True)
    assert timer.is_pending and timer.due_at >= ends, timer
    await box.pass_time(before_ends - box.clock() + timedelta(minutes=1))
    assert stage_state(await box.rollout(), "relay", "canary") is StageState.OBSERVING


@pytest.mark.database_matters
async def test_a_second_extend_that_waited_is_told_the_first_saved_then_failed_was_done(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with canary_observing(tmp_path, database_url) as (box, value, was):
        waiting = the_second_waits(box, monkeypatch)
        saved = cancel_lost_once(box, monkeypatch, meanwhile=waiting)
        first = asyncio.create_task(box.click("extend_window", value=value))
        await saved.wait()  # the first person's click holds the claim
        second = await box.click("extend_window", value=value, user=SECOND)
        told = await first

        assert told is not None and DONE in told and OWED in told, told
        assert "lost its connection" not in told
        assert second is not None and "Already done by" in second, second
        await extended_once(box, was)


@pytest.mark.database_matters
async def test_the_old_extend_card_clicked_again_after_a_save_then_a_failure_does_not_extend(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with canary_observing(tmp_path, database_url) as (box, value, was):
        cancel_lost_once(box, monkeypatch)
        told = await box.click("extend_window", value=value)

        again = await box.click("extend_window", value=value, user=SECOND)

        await extended_once(box, was)
        assert again is not None and "Already done by" in again, again
        assert told is not None and DONE in told, told


TYPED = {
    "crash_rate": {"figure": {"type": "number_input", "value": "0.001"}},
    "error_rate": {"figure": {"type": "number_input", "value": "0.001"}},
}
"""Figures that pass the relay canary's gate."""


async def test_figures_that_waited_for_a_submission_given_back_are_taken_for_the_same_window(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first person's figures failed before anything was saved; the second person's, typed
    for the same window, waited for the first's claim: given back, they are taken (they were
    refused "out of date" whatever happened: the claim is keyed by the window's end)."""
    plan = fast_plan(tmp_path / "figures.yml", manual_tracks=("relay",))
    approvers = {"ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{SECOND}"}
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=plan, extra_env=approvers
    ) as box:
        view_id = await figures_form_opened(box)
        waiting = the_second_waits(box, monkeypatch)
        rollouts = box.services.rollouts
        submit = rollouts.submit_figures
        acting = asyncio.Event()

        async def lost_once_the_second_waits(**typed: Any) -> Any:
            monkeypatch.setattr(rollouts, "submit_figures", submit)
            acting.set()
            await waiting.wait()  # nothing saved yet
            raise OperationalError("SELECT rollouts", {}, ConnectionResetError("lost"))

        monkeypatch.setattr(rollouts, "submit_figures", lost_once_the_second_waits)
        assert await box.submit_view(view_id, TYPED) == {}
        await acting.wait()
        assert await box.submit_view(view_id, TYPED, user=SECOND) == {}

        def answered() -> list[str]:  # the second's refusal, or the gate's verdict
            refused = [note.text for note in box.slack.ephemerals(user=SECOND)]
            return refused + [line for line in box.thread() if "5% canary gate: PASS" in line]

        await box.slack.wait_for(lambda: bool(answered()), timeout=30)
        assert not any("out of date" in text for text in answered()), answered()
        evaluated = await box.rollout()
        assert stage_state(evaluated, "relay", "canary") is StageState.HOLDING


@pytest.mark.database_matters
async def test_a_roll_back_whose_github_answer_was_not_recorded_is_not_told_a_timer_failed(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Roll back saved, then the record of GitHub's answer it owes (its look right after
    the save) lost: done, and the person is told what is still owed, GitHub's answer (given by
    the bot's next look), not a window's timer that never failed."""
    async with canary_observing(tmp_path, database_url) as (box, _, _):
        value = await value_of(box, "rollback")
        effects = box.services.rollouts.effects
        record = effects.record
        lost: list[str] = []

        async def lost_once(*events: Any) -> Any:
            if not lost and any(e.action.startswith("github_") for e in events):
                lost.extend(e.action for e in events)
                monkeypatch.setattr(effects, "record", record)
                raise OperationalError("INSERT INTO audit_events", {}, ConnectionResetError())
            return await record(*events)

        monkeypatch.setattr(effects, "record", lost_once)
        told = await box.click("rollback", value=value)

        assert lost, "no GitHub answer was recorded after the Roll back"
        assert told is not None and "Done: roll back" in told, told
        assert "timer" not in told, told
        assert "GitHub" in told and "next look" in told, told


@pytest.mark.database_matters
async def test_a_promote_github_approved_whose_save_then_failed_is_done_not_given_back(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub took the Promote's approval, then the save of the promotion was lost: done (the
    stage deploys on GitHub), and the person is told so, not that the bot cannot tell. Before,
    the claim was given back, so the same click again (or a second person's) acted again."""
    async with two_approvers(tmp_path, database_url, window="1s", extension="1s") as box:
        every_gate_passes(box)
        await dispatched(box)
        await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.HOLDING)
        value = await value_of(box, "promote", "relay")
        effects = box.services.rollouts.effects
        review, save = effects.review, effects.store.save
        approved: list[bool] = []

        async def approves(*args: Any, **kwargs: Any) -> Any:
            done = await review(*args, **kwargs)
            approved.append(bool(kwargs.get("strict")))
            return done

        async def lost_once_approved(*args: Any, **kwargs: Any) -> Any:
            if any(approved):
                monkeypatch.setattr(effects.store, "save", save)
                raise OperationalError("UPDATE rollouts", {}, ConnectionResetError("lost"))
            return await save(*args, **kwargs)

        monkeypatch.setattr(effects, "review", approves)
        monkeypatch.setattr(effects.store, "save", lost_once_approved)
        told = await box.click("promote", value=value)
        again = await box.click("promote", value=value, user=SECOND)

        assert any(approved), "GitHub was not asked to approve"
        assert told is not None and "Done: promote" in told, told
        assert "GitHub took the approval" in told and "could not save" in told, told
        assert again is not None and "Already done by" in again, again
        approvals = [r for r in box.github.reviews if "relay-rollout-50" in r.environments]
        assert len(approvals) == 1, approvals


@pytest.mark.database_matters
async def test_a_dispatch_github_took_whose_record_then_failed_is_done_not_dispatched_again(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub took the Dispatch, then the record of its run was lost: done (the bot finds the
    run and follows it), and the person is told so. Before, the claim was given back: the
    person was told the bot could not tell whether it went through, and a click again was
    answered as if nobody had dispatched it."""
    async with two_approvers(tmp_path, database_url, window="1h", extension="15m") as box:
        assert "Preflight" in await box.command("start v1.4.2 --flags-ready")
        value = await value_of(box, "dispatch")
        effects = box.services.rollouts.effects
        record = effects.record

        async def lost_once(*events: Any) -> Any:
            if any(e.action == "dispatch" and e.result == "ok" for e in events):
                monkeypatch.setattr(effects, "record", record)
                raise OperationalError("INSERT INTO audit_events", {}, ConnectionResetError())
            return await record(*events)

        monkeypatch.setattr(effects, "record", lost_once)
        told = await box.click("dispatch", value=value)
        again = await box.click("dispatch", value=value, user=SECOND)

        assert told is not None and "Done: " in told and "GitHub took the dispatch" in told, told
        assert again is not None and "Already done by" in again, again
        await box.wait_until(lambda r: r.run_id is not None)
        assert len(box.github.dispatches) == 1, box.github.dispatches


@pytest.mark.database_matters
async def test_a_promote_github_did_not_take_is_not_told_approved_when_its_save_fails(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone on GitHub rejected the stage right before the Promote's approval went out, so
    GitHub took nothing of the bot's (its answer: not waiting); then the save failed. The
    person is not told that GitHub took the approval, and the claim is given back (a click
    again is not refused as already done): the effect never happened."""
    async with two_approvers(tmp_path, database_url, window="1s", extension="1s") as box:
        every_gate_passes(box)
        await dispatched(box)
        await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.HOLDING)
        value = await value_of(box, "promote", "relay")
        run_id = (await box.rollout()).run_id
        assert run_id is not None
        effects = box.services.rollouts.effects
        review, save = effects.github.review, effects.store.save
        answered: list[bool] = []

        async def rejected_first(*args: Any, **kwargs: Any) -> Any:
            if answered:  # the bot's later answers (the rollback job's) as they come
                return await review(*args, **kwargs)
            box.github.review(run_id, kwargs["environments"], "rejected", actor="octocat")
            answered.append(await review(*args, **kwargs))
            return answered[-1]

        async def lost_once_answered(*args: Any, **kwargs: Any) -> Any:
            if answered:
                monkeypatch.setattr(effects.store, "save", save)
                raise OperationalError("UPDATE rollouts", {}, ConnectionResetError("lost"))
            return await save(*args, **kwargs)

        monkeypatch.setattr(effects.github, "review", rejected_first)
        monkeypatch.setattr(effects.store, "save", lost_once_answered)
        told = await box.click("promote", value=value)

        assert answered == [False], answered  # GitHub took nothing of the bot's
        assert told is not None and "GitHub took the approval" not in told, told
        assert "Done: promote" not in told, told


async def reevaluate_failing_verdict_lost(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> str | None:
    """Re-evaluate clicked on a failing canary, the save of its verdict (the roll back) lost
    once: the answer to the click."""
    write_figures(box.figures, "relay", {"canary": CANARY_BAD, "half": HALF_OK})
    effects = box.services.rollouts.effects
    save = effects.store.save

    async def verdict_lost_once(rollout: Any, *args: Any, **kwargs: Any) -> Any:
        if rollout.track("relay").state is not TrackState.ACTIVE:
            monkeypatch.setattr(effects.store, "save", save)
            raise OperationalError("UPDATE rollouts", {}, ConnectionResetError("lost"))
        return await save(rollout, *args, **kwargs)

    monkeypatch.setattr(effects.store, "save", verdict_lost_once)
    return await box.click("reevaluate", value=await value_of(box, "reevaluate", "relay"))


@pytest.mark.database_matters
async def test_a_reevaluate_whose_verdict_was_not_saved_is_not_told_done(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-evaluate read a failing canary and saved the stage evaluating, then the save of the
    verdict (the roll back) was lost: the verdict, the click's effect, was not done (only the
    window's timer decides it, at the window's end). The person is not told it was done, and
    its claim is given back: Re-evaluate again rolls the track back. Before, the evaluating
    save counted as the effect: "Done: re-evaluate …", the next look to do it."""
    async with canary_observing(tmp_path, database_url) as (box, _, _):
        told = await reevaluate_failing_verdict_lost(box, monkeypatch)

        assert told is not None and "Done: " not in told, told
        assert (await box.rollout()).track("relay").state is TrackState.ACTIVE
        again = await box.click("reevaluate", value=await value_of(box, "reevaluate", "relay"))
        assert again is None, again
        await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)


@pytest.mark.database_matters
async def test_a_reevaluate_whose_verdict_was_lost_is_decided_at_the_window_end_after_all(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, and nobody clicks Re-evaluate again (the replica died between the two saves,
    or the person left): the stage waits evaluating, and its window's timer, kept until a
    verdict is saved, reads the figures at the window's end and rolls the track back. Before,
    Re-evaluate cancelled the timer as it saved the stage evaluating: the canary stayed at 5%
    with no gate to come."""
    async with canary_observing(tmp_path, database_url) as (box, _, ends):
        told = await reevaluate_failing_verdict_lost(box, monkeypatch)
        assert told is not None and "Done: " not in told, told
        stranded = await box.rollout()
        assert stage_state(stranded, "relay", "canary") is StageState.EVALUATING

        await box.pass_time(ends - box.clock() + timedelta(minutes=5))

        await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
