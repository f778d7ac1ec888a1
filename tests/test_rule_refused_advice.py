"""With the GitHub App, an environment the App's protection rule holds has no required
reviewer: when GitHub refuses (or keeps failing) the App's answer, the thread's advice must be
one a person can follow there (a repository admin starts the job past its protection rules),
not "have one of the environment's required reviewers approve it". And a review reads no more
of the run than it needs: nothing waits for a reviewer, so the review history is not read.
Through the whole bot, the real PyGithub against the GitHub simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_desktop_track import ga_held_by_github
from test_protection_rule_faults import CALLBACK
from test_rerun_while_approving import rule_box

from sandbox.github_json import error

pytestmark = pytest.mark.story

REFUSED = "Resource not accessible by integration"


async def test_a_refused_answer_to_the_apps_rule_advises_what_a_person_can_do_there(
    tmp_path: Path, database_url: str
) -> None:
    async with rule_box(tmp_path, database_url) as box:

        def refusing() -> None:
            box.github.fail_next("POST", CALLBACK, 403, error(REFUSED, 403), times=10_000)

        await ga_held_by_github(box, CALLBACK, failing=refusing)
        told = await box.wait_for_thread("refused the bot's approval of *GA ring*")
        assert f"403: {REFUSED}" in told, told
        assert "required reviewers" not in told, told
        assert "repository admin start the waiting job past its protection rules" in told, told


async def test_a_review_where_nothing_waits_for_a_reviewer_reads_no_history(
    tmp_path: Path, database_url: str
) -> None:
    """The bot's answer to GA through the App's rule, asked where no request of the rule is
    open any more (another replica answered it): it reads what waits for a reviewer, and
    nothing (not the run's review history, not its attempt) once nothing does."""
    async with rule_box(tmp_path, database_url) as box:
        await ga_held_by_github(box, CALLBACK)
        run = (await box.rollout()).run_id or 0
        github = box.services.rollouts.effects.github
        # The bot's own looks held at the run's jobs, before they read its waits or history.
        looks = box.github.hold("GET", f"/repos/*/actions/runs/{run}/jobs")
        await box.wait_until(lambda _: box.github.holding >= 1)
        seen = len(box.github.requests)
        sent = await github.review(
            run_id=run,
            environments=["desktop-nowhere"],
            state="approved",
            comment="rollout-bot",
            attempt=1,
        )
        assert sent is False
        read = [
            r.path.split(f"/runs/{run}")[-1]
            for r in box.github.requests[seen:]
            if r.method == "GET" and r.path.endswith(("/pending_deployments", "/approvals"))
        ]
        looks.set()
        assert read == ["/pending_deployments"], read
