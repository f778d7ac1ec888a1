"""A person re-runs the run on GitHub between the bot's decision to approve a stage (its gate
passed on the attempt it follows) and its approval: GitHub's review names no attempt, and
would take it for the same environment waiting on the new attempt, which the bot never
watched nor gated. The bot sends nothing for an attempt it does not follow, and the thread
says the re-run is not followed. Through the whole bot and the GitHub simulator."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from test_desktop_track import ga_held_by_github, ga_plan
from test_github_faults import REVIEWS
from test_protection_rule_faults import CALLBACK
from test_protection_rules import answers, app_box
from test_webhooks import reviews

from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Decision, Phase, Review, Rollout
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story


def token_box(tmp_path: Path, database_url: str) -> AbstractAsyncContextManager[Sandbox]:
    return Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=ga_plan(tmp_path))


def rule_box(tmp_path: Path, database_url: str) -> AbstractAsyncContextManager[Sandbox]:
    return app_box(tmp_path, database_url, plan_yaml=ga_plan(tmp_path))


def approved(box: Sandbox) -> list[tuple[str, str]]:
    """The bot's approvals and rejections at the desktop rings, either way it answers."""
    return [(n, s) for n, s, _ in reviews(box, "desktop")] + answers(box, "desktop")


@pytest.mark.parametrize(
    ("box_of", "approvals"),
    [(token_box, REVIEWS), (rule_box, CALLBACK)],
    ids=["reviewers", "protection-rule"],
)
async def test_an_approval_decided_before_a_person_re_ran_the_run_does_not_approve_the_new_one(
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    box_of: Callable[[Path, str], Any],
    approvals: str,
) -> None:
    """Beta passed; GitHub failed the bot's approval of the GA ring, which the bot's next look
    sends again. That look read the run at attempt 1; before it sends the approval, a person
    cancels the run and re-runs its failed jobs (attempt 2: its GA job waits at the same
    environment). The approval is not sent: attempt 2's GA job still waits, and the thread
    says the re-run is not followed."""
    async with box_of(tmp_path, database_url) as box:
        await ga_held_by_github(box, approvals)
        run = box.github.run((await box.rollout()).run_id or 0)
        effects = box.services.rollouts.effects
        apply = effects.apply
        raced: list[int] = []

        async def re_run_meanwhile(
            before: Rollout, decision: Decision, plan: RolloutPlan, **kw: Any
        ) -> Rollout:
            again = [e for e in decision.effects if isinstance(e, Review) and e.approve]
            if not raced and any(e.environment == "desktop-ga" for e in again):
                box.github.engine.cancel(run.id)
                ga = run.job("desktop-cli-ring-ga").id
                box.github.engine.rerun_job(run.id, ga, by="octocat")
                box.github.engine.process()
                raced.append(run.attempt)
                box.github.clear_faults()
            return await apply(before, decision, plan, **kw)

        monkeypatch.setattr(effects, "apply", re_run_meanwhile)
        ended = await box.wait_until(lambda r: r.phase is Phase.ENDED)

        assert raced == [2]
        assert ended.attempt == 2
        told = await box.wait_for_thread("attempt 2")
        assert "does not follow a re-run" in told, told
        assert "Attempt 2 waits at `desktop-ga` for the bot's answer, which does not come" in told
        assert ("desktop-ga", "approved") not in approved(box)
        assert run.job("desktop-cli-ring-ga").status == "waiting"
