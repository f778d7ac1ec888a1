"""A failed gate's rejection GitHub refuses: the track is saved stopping, with its thread line
"Rejected 50%", before GitHub is asked. A definite refusal (a 403: the bot's account may not
review the environment) leaves the next stage waiting on GitHub, and the rollback (or the
kill-switch) job never starts: the thread is told once, in GitHub's words, and the card stops
saying the stage is rejected; the bot's later looks ask again (told no more), and once GitHub
takes the rejection the track rolls back. Through the whole bot, the real PyGithub against the
GitHub simulator."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from figures import CANARY_CRASHING, HALF_OK, passing_sandbox
from sandbox_views import RELAY_ROLLED_BACK_AT_CANARY, dispatched, reviews, stage_state
from test_approval_refused import REFUSED, ga_refused_by_github, refusals
from test_desktop_track import card_shows, ga_plan
from test_github_faults import REVIEWS

from bot.domain.rollout import StageState, TrackState
from sandbox.github_json import error
from sandbox.harness import Sandbox, write_figures

pytestmark = pytest.mark.story

CANARY_JOB = "Relay rollout 5% canary (30m)"


async def test_a_refused_rejection_of_a_failed_gate_is_told_once_and_the_card_says_it_waits(
    tmp_path: Path, database_url: str
) -> None:
    async with passing_sandbox(tmp_path, database_url=database_url) as box:
        write_figures(box.figures, "relay", {"canary": CANARY_CRASHING, "half": HALF_OK})
        box.github.set_job_duration(CANARY_JOB, timedelta(minutes=10))
        run = (await dispatched(box)).run_id or 0
        canary = box.github.run(run).job("relay-canary-5")
        # Approved and deploying: GitHub refuses every review the bot posts from then on.
        await box.wait_until(lambda _: canary.status == "in_progress")
        box.github.fail_next("POST", REVIEWS, 403, error(REFUSED, 403), times=10_000)
        await box.pass_time(timedelta(minutes=10))  # the canary deploys; its gate fails

        await box.wait_for_thread("gate *ROLLBACK*")
        # Saved with the stop, before GitHub was asked: it stands, and is followed by the truth.
        await box.wait_for_thread("Rejected *50%*")
        told = await box.wait_for_thread("refused the bot's rejection of *50%*")
        assert "Hosted relay" in told, told
        assert f"403: {REFUSED}" in told, told  # GitHub's own words
        assert "asks again at each look" in told, told
        assert "reject it on the run's page" in told, told
        card = await card_shows(box, "`relay-rollout-50` · held by GitHub: it has not taken")
        half_line = next(line for line in card.splitlines() if "`relay-rollout-50`" in line)
        assert ":warning:" in half_line and ":no_entry:" not in half_line, card

        # Later looks ask again, and are refused again: the thread is not told twice.
        asked = refusals(box)
        await box.wait_until(lambda _: refusals(box) >= asked + 3)
        said = [line for line in box.thread() if "refused the bot's rejection" in line]
        assert len(said) == 1, box.thread()
        assert box.github.run(run).job("relay-rollout-50").status == "waiting"
        assert box.github.run(run).job("relay-rollback").status != "completed"

        # GitHub takes the rejection again: the relay rolls back, the card forgets the refusal.
        box.github.clear_failures()
        done = await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
        assert stage_state(done, "relay", "half") is StageState.REJECTED
        assert done.refused_approvals == ()
        assert reviews(box, "relay") == RELAY_ROLLED_BACK_AT_CANARY
        await box.slack.wait_for(lambda: "refused" not in box.card_message().rendered)


async def test_a_kill_whose_rejection_is_refused_after_the_approval_was_is_told_too(
    tmp_path: Path, database_url: str
) -> None:
    """GitHub refused the bot's approval of the GA ring (told), and then refuses the kill's
    rejection of it as well (the same missing rights): the kill-switch job cannot start, and
    the thread is told so once; the approval's refusal, told before, does not stand for it."""
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=ga_plan(tmp_path)
    ) as box:
        await ga_refused_by_github(box)
        await box.wait_for_thread("refused the bot's approval of *GA ring*")

        answer = await box.command("kill crash spike in beta")
        assert "Kill-switch tripped" in answer, answer
        told = await box.wait_for_thread("refused the bot's rejection of *GA ring*")
        assert f"403: {REFUSED}" in told and "kill-switch" in told, told
        asked = refusals(box)
        await box.wait_until(lambda _: refusals(box) >= asked + 3)
        said = [line for line in box.thread() if "refused the bot's rejection" in line]
        assert len(said) == 1, box.thread()
        await card_shows(box, "`desktop-ga` · held by GitHub: it has not taken the bot's rejection")
