"""A stage whose window runs, or that evaluates, always has a due timer that will decide it,
whatever the order of faults: the timer of a window a save starts or moves is written in that
save's transaction (`EffectRunner.apply`), so no fault leaves the window saved and its timer
lost, to be written again only by a look at the run that may never come in time (the stage
saved evaluating meanwhile by a failing verdict whose save was lost)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from figures import HALF_OK, every_gate_passes
from sandbox_views import stage_state
from statement_faults import failing
from test_claim_lapses import audited, observing
from test_controls import CANARY_BAD
from test_reevaluate_races import evaluating_to_the_window_end, reevaluated_blinking, verdict_saved

from bot.domain.rollout import Rollout, StageState, window_timer_key
from handlers.errors import INTERRUPTED
from sandbox.harness import Sandbox, fast_plan, write_figures

pytestmark = pytest.mark.story


@contextmanager
def moved_window_timers_lost(rollout: Rollout) -> Iterator[list[str]]:
    """Every write of a relay canary window timer other than the one its window has now fails
    as a lost database would (the write of a moved window's timer, and each look's writing it
    again): the statements failed."""
    ends = rollout.track("relay").stage("canary").window_ends_at
    assert ends is not None
    kept = window_timer_key(rollout.id, "relay", "canary", ends)
    canary = kept.removesuffix(ends.isoformat())

    def lost(statement: str, params: Any) -> BaseException | None:
        written = str(params)
        if not statement.lstrip().startswith("INSERT INTO timers") or canary not in written:
            return None
        return None if kept in written else ConnectionResetError("connection lost")

    with failing(lost) as failed:
        yield failed


@pytest.mark.database_matters
async def test_an_extend_whose_timer_write_is_lost_leaves_no_stage_evaluating_for_good(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay canary observes its hour. Extend is clicked and the database fails the write
    of the moved window's timer (and each look's writing it again); the figures turn bad and
    Re-evaluate is clicked, the database blinking on its verdict's save (the roll back): the
    canary is left evaluating mid-window. The figures recover, so the failing verdict's early
    gate changes nothing. The gate still holds the canary at its window's end. Before, the
    Extend was saved and its window's timer was not, and no look writes the timer of a stage
    evaluating: the canary stayed evaluating with no timer to decide it, its 5% for good (a
    failing canary kept its traffic)."""
    plan = fast_plan(tmp_path / "figures.yml", window="1h", extension="15m")
    async with Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=plan) as box:
        every_gate_passes(box)
        extend = await observing(box)
        with moved_window_timers_lost(await box.rollout()) as failed:
            extended = await box.click("extend_window", value=extend)
            write_figures(box.figures, "relay", {"canary": CANARY_BAD, "half": HALF_OK})
            await reevaluated_blinking(box, monkeypatch, verdict_saved)
            assert stage_state(await box.rollout(), "relay", "canary") is StageState.EVALUATING
        assert failed, "no window timer's write was lost"
        every_gate_passes(box)

        await evaluating_to_the_window_end(box)

        # The Extend's save and its timer were one write: lost together, the person told so.
        assert extended is not None and INTERRUPTED in extended, extended
        assert await audited(box, await box.rollout(), "extend") == 0
