"""Re-evaluate on a held stage while another replica saves the rollout between the stage's save
as evaluating and the save of its verdict: the verdict is decided again on that replica's
state, not left undone with the stage evaluating and no window timer to decide it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from figures import HALF_OK, every_gate_passes
from sandbox_views import stage_state, value_of
from test_claim_lapses import holding
from test_controls import CANARY_BAD

from bot.domain.rollout import Rollout, StageState, TrackState
from sandbox.harness import Sandbox, fast_plan, write_figures

pytestmark = pytest.mark.story


def looked(rollout: Rollout) -> Rollout:
    """A look at the run on another replica, which changed nothing of the relay's stages."""
    return replace(rollout, unread_since=None, told_unread=False)


@pytest.mark.database_matters
async def test_a_reevaluate_of_a_held_stage_decides_again_after_a_save_elsewhere(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay canary held on a PASS; its figures turn bad and Re-evaluate is clicked. Once
    the stage is saved evaluating, another replica saves the rollout before the verdict (the
    roll back) is saved: the verdict is taken again on the rollout as that replica left it,
    and the track rolls back. Before, the click failed and the stage stayed evaluating, its
    window's timer long fired: the failing verdict was acted on by nobody."""
    plan = fast_plan(tmp_path / "figures.yml", window="1h")
    async with Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=plan) as box:
        every_gate_passes(box)
        await holding(box)
        write_figures(box.figures, "relay", {"canary": CANARY_BAD, "half": HALF_OK})
        store = box.services.rollouts.effects.store
        save = store.save
        elsewhere: list[Rollout] = []

        async def another_replica_first(rollout: Rollout, *args: Any, **kwargs: Any) -> Any:
            if not elsewhere and rollout.track("relay").state is not TrackState.ACTIVE:
                latest = await store.get(rollout.id)
                assert latest is not None
                assert stage_state(latest, "relay", "canary") is StageState.EVALUATING
                elsewhere.append(await save(looked(latest)))
            return await save(rollout, *args, **kwargs)

        monkeypatch.setattr(store, "save", another_replica_first)
        told = await box.click("reevaluate", value=await value_of(box, "reevaluate", "relay"))

        assert elsewhere, "the verdict was never saved"
        assert told is None, told
        done = await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
        # Taken once: the lost save recorded nothing, and its retry said it once.
        events = await box.audit.list_for_rollout(done.id)
        verdicts = [e.result for e in events if e.action == "gate" and e.stage == "canary"]
        assert verdicts.count("ROLLBACK") == 1, verdicts
        said = [line for line in box.thread() if "gate *ROLLBACK*" in line]
        assert len(said) == 1, box.thread()
