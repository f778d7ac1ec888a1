"""A look at the run reads what waits on it (and its review history) before it takes the
rollout's lock, and posts its review under the lock only while the rollout's version has not
moved (`bot.services.following`). A person's review on the run's page moves no version: what
the look read ahead can be stale by the time it posts. The post names environments, which
GitHub checks itself (a 422 when one of them no longer waits), so a stale read never approves
a stage a second time. Through the whole bot, the real PyGithub against the GitHub simulator."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from test_desktop_track import ga_held_by_github
from test_github_faults import REVIEWS
from test_resent_approval import canary_for_an_hour

from bot.services.ports import ReviewAhead
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story


async def test_a_stage_a_person_approved_after_a_looks_read_ahead_is_not_approved_again(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub failed the bot's approval of the GA ring; its next look reads GA waiting, and
    right after that read (before the look takes the rollout's lock) a person approves GA on
    the run's page. The look's post meets GitHub's 422 and reads again: GA is approved once,
    by the person, and deploys."""
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=canary_for_an_hour(tmp_path)
    ) as box:
        await ga_held_by_github(box, REVIEWS)
        run = box.github.run((await box.rollout()).run_id or 0)
        github = box.services.rollouts.effects.github
        read_ahead, approved = github.review_ahead, list[int]()

        async def then_a_person_approves(run_id: int, environments: Sequence[str]) -> ReviewAhead:
            ahead = await read_ahead(run_id, environments)
            if not approved and "desktop-ga" in environments:
                approved.append(len(box.github.requests))
                box.github.review(run_id, ["desktop-ga"], "approved", actor="octocat")
                # GitHub answers again only now: a look that read ahead before this test
                # replaced `review_ahead` (still in flight when it did) posts into the fault.
                box.github.clear_faults()
            return ahead

        monkeypatch.setattr(github, "review_ahead", then_a_person_approves)

        def posted() -> list[int]:
            return [
                r.status
                for r in box.github.requests[approved[0] :]
                if r.method == "POST" and r.path.endswith("/pending_deployments")
            ]

        await box.wait_until(lambda _: bool(approved))
        # The look that read ahead is still under way (moving the clock waits for the loops
        # it wakes, not for one in the middle of a pass): its post comes when it comes.
        await box.wait_until(lambda _: bool(posted()))
        await box.pass_time(timedelta(minutes=1))
        assert posted() == [422], posted()  # the look's post, on what it read before
        assert run.job("desktop-cli-ring-ga").status != "waiting"
        ga = [(r.actor, r.state) for r in box.github.reviews if "desktop-ga" in r.environments]
        assert ga == [("octocat", "approved")], ga
