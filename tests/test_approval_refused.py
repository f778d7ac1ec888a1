"""An approval GitHub refuses on the automatic path (a ring that promotes itself on a PASS,
`promote: auto`): the stage is saved as deploying, with its thread line "Approved … deploying",
before GitHub is asked. A definite refusal (a 403: the bot's account may not review the
environment) is told to the thread once, in GitHub's words with what the bot does next, and
the card stops saying "deploying" for a stage GitHub holds; the bot's later looks ask again
(told no more), and once GitHub takes the approval the stage deploys. Through the whole bot,
the real PyGithub against the GitHub simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbox_views import reviews
from test_desktop_track import DESKTOP, card_shows, ga_held_by_github, ga_plan
from test_github_faults import REVIEWS

from bot.domain.rollout import TrackState
from sandbox.github_json import error
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story

REFUSED = "Resource not accessible by integration"


async def ga_refused_by_github(box: Sandbox) -> int:
    """`ga_held_by_github`, GitHub refusing (403) every approval the bot posts from then on:
    GA is saved as deploying, the bot's approval refused. Its run's id."""

    def refusing() -> None:
        box.github.fail_next("POST", REVIEWS, 403, error(REFUSED, 403), times=10_000)

    await ga_held_by_github(box, REVIEWS, failing=refusing)
    return (await box.rollout()).run_id or 0


def refusals(box: Sandbox) -> int:
    """How many approvals GitHub has refused the bot so far."""
    return sum(
        r.method == "POST" and r.path.endswith("/pending_deployments") and r.status == 403
        for r in box.github.requests
    )


async def test_a_refused_approval_is_told_once_and_the_card_says_github_holds_the_stage(
    tmp_path: Path, database_url: str
) -> None:
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=ga_plan(tmp_path)
    ) as box:
        run = await ga_refused_by_github(box)
        # Saved with the stage, before GitHub was asked: it stands, and is followed by the truth.
        await box.wait_for_thread("Approved *GA ring*")
        told = await box.wait_for_thread("refused the bot's approval of *GA ring*")
        assert DESKTOP in told, told
        assert f"403: {REFUSED}" in told, told  # GitHub's own words
        assert "asks again at each look" in told, told
        assert "approve it on the run's page" in told, told
        card = await card_shows(
            box, "`desktop-ga` · held by GitHub: it has not taken the bot's approval"
        )
        ga_line = next(line for line in card.splitlines() if "`desktop-ga`" in line)
        assert "deploying" not in ga_line and ":rocket:" not in ga_line, card

        # Later looks ask again, and are refused again: the thread is not told twice.
        asked = refusals(box)
        await box.wait_until(lambda _: refusals(box) >= asked + 3)
        ga_told = [
            line for line in box.thread() if "refused the bot's approval of *GA ring*" in line
        ]
        assert len(ga_told) == 1, box.thread()
        assert box.github.run(run).job("desktop-cli-ring-ga").status == "waiting"

        # GitHub takes the approval again: GA deploys, the card says no more of the refusal.
        box.github.clear_failures()
        done = await box.wait_until(
            lambda r: all(t.state is TrackState.COMPLETED for t in r.tracks)
        )
        assert done.refused_approvals == ()
        assert ("desktop-ga", "approved") in reviews(box, "desktop")
        await box.slack.wait_for(lambda: "refused" not in box.card_message().rendered)


async def test_an_approval_github_failed_without_refusing_it_is_not_told_as_refused(
    tmp_path: Path, database_url: str
) -> None:
    """A 502 read back as not applied may clear by itself: asked again at the next look, as
    before, and not told as GitHub's refusal."""
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=ga_plan(tmp_path)
    ) as box:
        await ga_held_by_github(box, REVIEWS)
        failed = box.github.faults_injected["server_error"]
        await box.wait_until(lambda _: box.github.faults_injected["server_error"] >= failed + 3)
        assert not any("refused the bot's approval" in line for line in box.thread())
        assert "held by GitHub" not in box.card_message().rendered
        assert (await box.rollout()).refused_approvals == ()
