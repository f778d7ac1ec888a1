"""An approval GitHub failed is sent again by the next look, which changes nothing of the
rollout: that look checks the rollout is still as read (a stop saved since must fail it), but
does not move its version, so a person's Extend decided meanwhile on the same rollout is not
refused as "changed by someone else" although nothing they saw changed. Through the whole
bot; the other replica's look is made while the Extend decides."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sandbox_views import stage_state
from test_desktop_track import ga_held_by_github, ga_plan
from test_github_faults import REVIEWS
from test_stop_races import a_look

from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Review, Rollout, StageState
from sandbox.config import RELEASE_MANAGER
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story


def canary_for_an_hour(tmp_path: Path) -> str:
    """`ga_plan`, the relay canary observed for an hour (its window runs throughout)."""
    plan = yaml.safe_load(ga_plan(tmp_path))
    plan["tracks"]["relay"]["stages"][0]["observe"]["window"] = "1h"
    return yaml.safe_dump(plan)


async def test_an_extend_is_not_refused_for_an_approval_sent_again_meanwhile(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=canary_for_an_hour(tmp_path)
    ) as box:
        await ga_held_by_github(box, REVIEWS)
        before = await box.wait_until(
            lambda r: stage_state(r, "relay", "canary") is StageState.OBSERVING
        )
        effects = box.services.rollouts.effects
        plan_of = effects.plan_of
        resent: list[Rollout] = []

        async def plan_while_another_replica_sends_again(rollout: Rollout) -> RolloutPlan:
            if not resent:
                latest, decision, plan = await a_look(box, rollout.id)
                assert decision.rollout == latest  # it changes nothing
                assert any(isinstance(e, Review) and e.approve for e in decision.effects)
                resent.append(await effects.apply(latest, decision, plan))
            return await plan_of(rollout)

        monkeypatch.setattr(effects, "plan_of", plan_while_another_replica_sends_again)
        extended = await box.services.rollouts.extend(
            actor=RELEASE_MANAGER, rollout_id=before.id, track="relay", by=timedelta(minutes=15)
        )

        assert resent
        was = before.track("relay").stage("canary").window_ends_at
        now = extended.track("relay").stage("canary").window_ends_at
        assert was is not None and now == was + timedelta(minutes=15)
