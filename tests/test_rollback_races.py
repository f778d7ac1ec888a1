"""Rolling back while something else moves the run: what the card and the thread say.

Signed Slack requests through the real app, PyGithub against the GitHub simulator; the bot's
own poller asleep (`quiet`), so each look at the run is one the test asks for.
"""

from __future__ import annotations

from sandbox_views import deploying_canary, reviews, stage_state

from bot.domain.rollout import StageState, TrackState
from sandbox.harness import Sandbox


async def test_a_roll_back_after_the_next_stage_was_approved_on_github_says_it_got_there(
    quiet: Sandbox,
) -> None:
    """A person approved 50% on github.com during the canary's window, and Roll back came
    before the bot looked: GitHub deploys the 50% all the same, so the release was at 50%, not
    at the canary, when the rollback started (the card said `rolled back from 5% canary`)."""
    rollout = await deploying_canary(quiet)
    assert rollout.run_id is not None
    await quiet.services.rollouts.reconcile(rollout.id)
    observing = await quiet.rollout()
    assert stage_state(observing, "relay", "canary") is StageState.OBSERVING

    quiet.github.review(rollout.run_id, ["relay-rollout-50"], "approved", actor="octocat")
    await quiet.command("rollback")

    landed = await quiet.wait_for_thread("*50%* deployed (Hosted relay)")
    assert "not observed: the track is stopping" in landed
    for _ in range(2):  # the rollback job's wait, then its end
        await quiet.services.rollouts.reconcile(rollout.id)
    rolled_back = await quiet.rollout()
    assert rolled_back.track("relay").state is TrackState.ROLLED_BACK
    assert stage_state(rolled_back, "relay", "half") is StageState.STOPPED
    assert reviews(quiet, "relay") == [
        ("relay-canary-5", "approved"),
        ("relay-rollout-50", "approved"),
        ("relay-rollout-100", "rejected"),
        ("relay-rollback", "approved"),
    ]
    await quiet.slack.wait_for(
        lambda: "*Hosted relay*: rolled back from 50%" in quiet.card_message().rendered
    )
