"""Re-evaluate on a held stage while another replica saves the rollout between the stage's save
as evaluating and the save of its verdict, or the database blinks on that save: the verdict is
decided again (on that replica's state, or by the click's backstop timer), not left undone with
the stage evaluating and no window timer to decide it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from figures import HALF_OK, every_gate_passes
from sandbox_views import stage_state, value_of
from sqlalchemy.exc import OperationalError
from test_claim_lapses import holding, observing
from test_controls import CANARY_BAD

from bot.domain.rollout import Rollout, StageState, TrackState
from bot.services.backstops import REEVALUATE_BACKSTOP
from handlers.errors import INTERRUPTED
from sandbox.harness import Sandbox, fast_plan, write_figures

pytestmark = pytest.mark.story


def looked(rollout: Rollout) -> Rollout:
    """A look at the run on another replica, which changed nothing of the relay's stages."""
    return replace(rollout, unread_since=None, told_unread=False)


def rolls_back(rollout: Rollout) -> bool:
    return rollout.track("relay").state is TrackState.ROLLED_BACK


def verdict_saved(rollout: Rollout) -> bool:
    """A save of the relay's verdict (its roll back), not of the stage readied for it."""
    return rollout.track("relay").state is not TrackState.ACTIVE


@asynccontextmanager
async def turning_bad(
    tmp_path: Path, database_url: str, reach: Callable[[Sandbox], Awaitable[str]] = holding
) -> AsyncIterator[Sandbox]:
    """The relay canary `reach`ed (held on its passed gate, by default), its figures bad now."""
    plan = fast_plan(tmp_path / "figures.yml", window="1h")
    async with Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=plan) as box:
        every_gate_passes(box)
        await reach(box)
        write_figures(box.figures, "relay", {"canary": CANARY_BAD, "half": HALF_OK})
        yield box


Save = Callable[..., Awaitable[Rollout]]


def before_saves(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch, first: Callable[[Save, Rollout], Awaitable[None]]
) -> None:
    """Each save of the rollout awaits `first` (given the store's own save) before it is made."""
    store = box.services.rollouts.effects.store
    save = store.save

    async def saving(rollout: Rollout, *args: Any, **kwargs: Any) -> Rollout:
        await first(save, rollout)
        return await save(rollout, *args, **kwargs)

    monkeypatch.setattr(store, "save", saving)


async def reevaluate(box: Sandbox) -> str | None:
    return await box.click("reevaluate", value=await value_of(box, "reevaluate", "relay"))


def blink() -> OperationalError:
    return OperationalError("UPDATE rollouts", {}, ConnectionResetError("lost"))


async def reevaluated_blinking(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch, on: Callable[[Rollout], bool]
) -> None:
    """Re-evaluate is clicked on the relay canary whose figures turned bad, and the
    database blinks on the first save `on` picks: the click says it may not have gone through."""
    blinked: list[Rollout] = []

    async def blink_once(_: Save, rollout: Rollout) -> None:
        if not blinked and on(rollout):
            blinked.append(rollout)
            raise blink()

    before_saves(box, monkeypatch, blink_once)
    told = await reevaluate(box)
    assert blinked and told is not None and INTERRUPTED in told, told


async def reevaluated_losing_every_verdict_save(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Re-evaluate is clicked on the relay canary whose figures turned bad, and other replicas
    save the rollout before each of the click's four tries to save its verdict; its answer."""
    elsewhere: list[Rollout] = []

    async def another_replica_each_time(save: Save, rollout: Rollout) -> None:
        if len(elsewhere) < 4 and verdict_saved(rollout):
            latest = await box.services.rollouts.effects.get(rollout.id)
            elsewhere.append(await save(looked(latest)))

    before_saves(box, monkeypatch, another_replica_each_time)
    told = await reevaluate(box)
    assert len(elsewhere) == 4, elsewhere
    assert told is not None
    return told


async def evaluating_to_the_window_end(box: Sandbox) -> None:
    """The relay canary, left evaluating ten minutes into its hour and its figures good now,
    is still evaluating past its Re-evaluate's backstop, and held by its gate at its end."""
    await box.pass_time(REEVALUATE_BACKSTOP + timedelta(minutes=1))
    assert stage_state(await box.rollout(), "relay", "canary") is StageState.EVALUATING
    await box.pass_time(timedelta(hours=1))
    await box.wait_until(lambda r: stage_state(r, "relay", "canary") is StageState.HOLDING)


def readying(rollout: Rollout) -> bool:
    """The save of the canary readied for its verdict (saved evaluating)."""
    return stage_state(rollout, "relay", "canary") is StageState.EVALUATING


@pytest.mark.database_matters
async def test_a_reevaluate_of_a_held_stage_decides_again_after_a_save_elsewhere(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay canary held on a PASS; its figures turn bad and Re-evaluate is clicked. Once
    the stage is saved evaluating, another replica saves the rollout before the verdict (the
    roll back) is saved: the verdict is taken again on the rollout as that replica left it,
    and the track rolls back. Before, the click failed and the stage stayed evaluating, its
    window's timer long fired: the failing verdict was acted on by nobody."""
    async with turning_bad(tmp_path, database_url) as box:
        elsewhere: list[Rollout] = []

        async def another_replica_first(save: Save, rollout: Rollout) -> None:
            if not elsewhere and verdict_saved(rollout):
                latest = await box.services.rollouts.effects.get(rollout.id)
                assert stage_state(latest, "relay", "canary") is StageState.EVALUATING
                elsewhere.append(await save(looked(latest)))

        before_saves(box, monkeypatch, another_replica_first)
        told = await reevaluate(box)

        assert elsewhere, "the verdict was never saved"
        assert told is None, told
        done = await box.wait_until(rolls_back)
        # Taken once: the lost save recorded nothing, and its retry said it once.
        events = await box.audit.list_for_rollout(done.id)
        verdicts = [e.result for e in events if e.action == "gate" and e.stage == "canary"]
        assert verdicts.count("ROLLBACK") == 1, verdicts
        said = [line for line in box.thread() if "gate *ROLLBACK*" in line]
        assert len(said) == 1, box.thread()


@pytest.mark.database_matters
async def test_a_reevaluate_whose_verdict_save_blinks_is_decided_by_its_backstop(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The held relay canary's figures turn bad and Re-evaluate is clicked; the database blinks
    on the verdict's save (the roll back), after the stage was saved evaluating (a replica that
    dies there leaves the same). The click says it may not have gone through, and the stage's
    backstop timer, written with the click, takes the verdict a few minutes later: the track
    rolls back, once. Before, the stage stayed evaluating with no timer, its window's long
    fired, until someone clicked again: a failing canary kept its traffic all night."""
    async with turning_bad(tmp_path, database_url) as box:
        await reevaluated_blinking(box, monkeypatch, verdict_saved)
        stranded = await box.rollout()
        assert stage_state(stranded, "relay", "canary") is StageState.EVALUATING
        telemetry = box.services.rollouts.effects.telemetry
        late: list[timedelta] = []
        monkeypatch.setattr(telemetry, "window_closed", lambda *, lateness: late.append(lateness))
        await box.pass_time(REEVALUATE_BACKSTOP)
        done = await box.wait_until(rolls_back, timeout=10)
        events = await box.audit.list_for_rollout(done.id)
        verdicts = [e.result for e in events if e.action == "gate" and e.stage == "canary"]
        assert verdicts.count("ROLLBACK") == 1, verdicts
        assert late == [], "the backstop is no window's end, however late: not measured as one"


@pytest.mark.database_matters
async def test_a_reevaluate_that_loses_every_verdict_save_says_what_it_did(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other replicas save the rollout before each of the click's four tries to save its
    verdict. The person is told the truth: the stage was saved evaluating, its verdict was
    not, and the gate runs again on its own when (not "this action changed nothing"); it
    does, and the track rolls back."""
    async with turning_bad(tmp_path, database_url) as box:
        told = await reevaluated_losing_every_verdict_save(box, monkeypatch)

        assert "changed nothing" not in told, told
        assert "no verdict is saved yet" in told and "runs again on its own" in told, told
        stranded = await box.rollout()
        assert stage_state(stranded, "relay", "canary") is StageState.EVALUATING
        await box.pass_time(REEVALUATE_BACKSTOP)
        await box.wait_until(rolls_back, timeout=10)


@pytest.mark.database_matters
async def test_a_reevaluate_of_an_observed_stage_writes_no_backstop_to_end_its_window_early(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The observed relay canary's figures turn bad and Re-evaluate is clicked; the database
    blinks on the save that readies the stage for its verdict, so the stage stays observing.
    Its figures recover: past the backstop's wait the window still runs (its own timer ends
    it when the card says), never closed early by a backstop that would then promote it."""
    async with turning_bad(tmp_path, database_url, reach=observing) as box:
        await reevaluated_blinking(box, monkeypatch, readying)
        every_gate_passes(box)
        await box.pass_time(REEVALUATE_BACKSTOP + timedelta(minutes=1))
        still = await box.rollout()
        assert stage_state(still, "relay", "canary") is StageState.OBSERVING


@pytest.mark.database_matters
async def test_a_reevaluate_of_a_stage_left_evaluating_mid_window_writes_no_backstop_to_end_it(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The observed relay canary's figures turn bad; Re-evaluate is clicked and the database
    blinks on its verdict's save (the roll back): the canary is left evaluating ten minutes
    into its hour, its window's own timer kept. Re-evaluate is clicked again, and blinks the
    same way. The figures recover: the gate runs at the window's end, as the card says. Before,
    the second click wrote a backstop, which ran the gate five minutes later and held the canary
    on a PASS of a few minutes' figures (a `promote: auto` stage would have been promoted)."""
    async with turning_bad(tmp_path, database_url, reach=observing) as box:
        blinked: list[Rollout] = []

        async def blink_on_each_verdict(_: Save, rollout: Rollout) -> None:
            if len(blinked) < 2 and verdict_saved(rollout):
                blinked.append(rollout)
                raise blink()

        before_saves(box, monkeypatch, blink_on_each_verdict)
        for _ in range(2):
            told = await reevaluate(box)
            assert told is not None and INTERRUPTED in told, told
        assert len(blinked) == 2, blinked
        every_gate_passes(box)
        await evaluating_to_the_window_end(box)


@pytest.mark.database_matters
async def test_a_reevaluate_that_loses_its_first_save_says_it_changed_nothing(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The held relay canary's figures turn bad and Re-evaluate is clicked; another replica
    saves the rollout just before the click saves the stage evaluating. The person is told the
    truth: the click changed nothing (not that it saved the stage evaluating, nor that the
    gate runs again on its own: the held stage's backstop finds it held and does nothing). The
    canary stays held, and Re-evaluate clicked again rolls the track back."""
    async with turning_bad(tmp_path, database_url) as box:
        elsewhere: list[Rollout] = []

        async def another_replica_first(save: Save, rollout: Rollout) -> None:
            if not elsewhere and readying(rollout):
                latest = await box.services.rollouts.effects.get(rollout.id)
                elsewhere.append(await save(looked(latest)))

        before_saves(box, monkeypatch, another_replica_first)
        told = await reevaluate(box)

        assert elsewhere, "the stage was never saved evaluating"
        assert told is not None and "changed nothing" in told, told
        assert "evaluating" not in told and "runs again on its own" not in told, told
        await box.pass_time(REEVALUATE_BACKSTOP + timedelta(minutes=1))
        assert stage_state(await box.rollout(), "relay", "canary") is StageState.HOLDING
        assert await reevaluate(box) is None
        await box.wait_until(rolls_back)
