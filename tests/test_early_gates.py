"""Re-evaluate of a stage whose window still runs: a failing verdict acts at once, and when its
save is lost its backstop (a timer that takes only a failing verdict) acts minutes later; a
PASS before the window's end never holds or promotes the stage, however it came to evaluate."""

from __future__ import annotations

from pathlib import Path

import pytest
from figures import every_gate_passes
from sandbox_views import stage_state
from test_claim_lapses import observing
from test_reevaluate_races import (
    evaluating_to_the_window_end,
    readying,
    reevaluate,
    reevaluated_blinking,
    reevaluated_losing_every_verdict_save,
    rolls_back,
    turning_bad,
    verdict_saved,
)

from bot.domain.rollout import StageState
from bot.services.backstops import REEVALUATE_BACKSTOP
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story


def card(box: Sandbox) -> str:
    return box.card_message().rendered


@pytest.mark.database_matters
async def test_a_pass_on_a_stage_left_evaluating_mid_window_waits_for_the_window_end(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The observed relay canary's figures turn bad; Re-evaluate is clicked and the database
    blinks on its verdict's save (the roll back): the canary is left evaluating minutes into
    its hour. The figures recover and Re-evaluate is clicked again: its PASS is shown, and the
    window runs on to its end, where the gate holds the canary. Before, that PASS of a few
    minutes' figures held the canary at once (a `promote: auto` stage was promoted)."""
    async with turning_bad(tmp_path, database_url, reach=observing) as box:
        await reevaluated_blinking(box, monkeypatch, verdict_saved)
        assert stage_state(await box.rollout(), "relay", "canary") is StageState.EVALUATING
        every_gate_passes(box)

        told = await reevaluate(box)

        assert told is None, told
        assert "The window runs on until" in box.thread()[-1], box.thread()
        # Its card says the window runs on until its end, as the thread does (not "ended").
        await box.slack.wait_for(lambda: "evaluating the gate (window until" in card(box))
        assert "window ended" not in card(box), card(box)
        # Nor does the failing verdict's backstop, which reads a PASS now, decide it.
        await evaluating_to_the_window_end(box)


@pytest.mark.database_matters
async def test_a_failing_verdict_whose_save_blinks_mid_window_acts_minutes_later(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The observed relay canary's figures turn bad; Re-evaluate is clicked and the database
    blinks on its verdict's save (the roll back), leaving the canary evaluating minutes into its
    hour. The click's backstop reads the figures again minutes later, still failing, and rolls
    the track back, once. Before, the canary kept its traffic on a known-bad verdict until its
    window's end (hours, for a desktop ring of a day)."""
    async with turning_bad(tmp_path, database_url, reach=observing) as box:
        await reevaluated_blinking(box, monkeypatch, verdict_saved)

        await box.pass_time(REEVALUATE_BACKSTOP)
        done = await box.wait_until(rolls_back, timeout=10)
        events = await box.audit.list_for_rollout(done.id)
        verdicts = [e.result for e in events if e.action == "gate" and e.stage == "canary"]
        assert verdicts.count("ROLLBACK") == 1, verdicts


@pytest.mark.database_matters
async def test_a_failing_verdict_never_saved_evaluating_acts_minutes_later(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, but the database blinks on the save that readies the canary for its verdict:
    the canary stays observing. Its figures stay bad, and the click's backstop rolls the track
    back minutes later. Before, the failing verdict was lost until the window's end."""
    async with turning_bad(tmp_path, database_url, reach=observing) as box:
        await reevaluated_blinking(box, monkeypatch, readying)
        assert stage_state(await box.rollout(), "relay", "canary") is StageState.OBSERVING

        await box.pass_time(REEVALUATE_BACKSTOP)
        await box.wait_until(rolls_back, timeout=10)


@pytest.mark.database_matters
async def test_a_failing_verdict_that_loses_every_save_mid_window_says_what_its_early_gate_does(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The observed relay canary's figures turn bad and Re-evaluate is clicked; other replicas
    save the rollout before each try to save its verdict. The person is told the gate runs again
    on its own and acts then only on figures still failing, else the window runs on to its end
    (not that its gate then decides, which a PASS never does before the window's end). The
    figures recover: the early gate changes nothing, and the gate holds the canary at the end."""
    async with turning_bad(tmp_path, database_url, reach=observing) as box:
        told = await reevaluated_losing_every_verdict_save(box, monkeypatch)

        assert "no verdict is saved yet" in told, told
        assert "only if its figures still fail" in told, told
        assert "the window runs on until" in told, told
        every_gate_passes(box)
        await evaluating_to_the_window_end(box)
