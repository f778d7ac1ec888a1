"""A look that re-sends an approval GitHub failed (the stage saved as deploying, GitHub still
holding it) while another replica saves a stop of its track: the approval goes only with a
save that checks the rollout is still as the look read it, so the stop wins and GitHub is sent
the rejection, never the approval. Through the whole bot and the GitHub simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_desktop_track import ga_held_by_github, ga_plan
from test_github_faults import REVIEWS
from test_webhooks import reviews

from bot.domain import rollout as machine
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Decision, Review, Rollout, StageState, TrackState
from sandbox.config import RELEASE_MANAGER
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story


@pytest.mark.database_matters
async def test_a_stop_saved_elsewhere_while_a_look_resends_ga_approval_is_never_overtaken(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=ga_plan(tmp_path)
    ) as box:
        await ga_held_by_github(box, REVIEWS)
        effects = box.services.rollouts.effects
        apply = effects.apply
        raced: list[int] = []

        async def kill_saved_elsewhere(
            before: Rollout, decision: Decision, plan: RolloutPlan, **kw: Any
        ) -> Rollout:
            """A look decided to approve GA again (nothing else to save); another replica
            saves a kill of the desktop track after that look read the rollout."""
            again = [e for e in decision.effects if isinstance(e, Review) and e.approve]
            if not raced and any(e.environment == "desktop-ga" for e in again):
                killed = machine.abort(
                    before,
                    plan,
                    track="desktop",
                    actor=RELEASE_MANAGER,
                    reason="crash spike",
                    now=box.clock(),
                    waiting=frozenset({"desktop-ga"}),
                )
                raced.append((await effects.store.save(killed.rollout)).version)
                # GitHub takes answers again only now: no look's approval sent before the kill
                # was saved can be the one GitHub takes first.
                box.github.clear_faults()
            return await apply(before, decision, plan, **kw)

        monkeypatch.setattr(effects, "apply", kill_saved_elsewhere)
        answered = await ga_answered(box)
        assert raced
        assert answered == ("desktop-ga", "rejected")
        halted = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
        assert halted.track("desktop").stage("ga").state is StageState.REJECTED
        assert ("desktop-ga", "approved") not in reviews(box, "desktop")


async def ga_answered(box: Sandbox) -> tuple[str, str]:
    """The first answer GitHub took at the GA ring (approved or rejected)."""
    for _ in range(3000):
        if answers := [(name, state) for name, state, _ in reviews(box, "desktop-ga")]:
            return answers[0]
        await asyncio.sleep(0.01)
    raise AssertionError("GitHub took no answer at the GA ring")
