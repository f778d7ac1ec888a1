"""A stopping track whose rejection (or failure job's approval) GitHub refuses the bot: its
lane on the card, the card's fallback text and `/rollout status` say GitHub holds it, not that
it rolls back (its rollback job cannot start while the next stage waits on GitHub)."""

from __future__ import annotations

from dataclasses import replace

from test_rollout_views import PLAN, canary_judged, lanes, plan_for, relay_verdict

from bot.adapters.slack.rollout_card import rollout_card, rollout_text
from bot.adapters.slack.status_views import status_blocks
from bot.domain.rollout import Rollout, StageState, TrackState
from sandbox.render import render_blocks

HELD = "not rolling back yet: GitHub has not taken the bot's"


def refused(*environments: str) -> Rollout:
    """The relay's canary gate failed (the track stopping, its 50% saved rejected), and GitHub
    refused the bot's reviews of `environments`."""
    rollout = canary_judged(relay_verdict("0.001", "0.05"))
    relay = rollout.track("relay")
    assert relay.state is TrackState.ABORTING
    rejected = replace(relay.stage("half"), state=StageState.REJECTED)  # once GitHub waits
    return replace(rollout.with_track(relay.with_stage(rejected)), refused_approvals=environments)


def test_a_refused_rejection_is_told_on_the_lane_in_the_status_and_the_fallback() -> None:
    rollout = refused("relay-rollout-50")

    lane = lanes(rollout_card(rollout, PLAN))["Hosted relay"]
    title = lane.splitlines()[0]
    assert "rolling back" not in title.replace(HELD, ""), title
    assert f"{HELD} rejection of 50% (see the thread)" in title, title
    assert "5% canary gate ROLLBACK" in title, title
    assert HELD in rollout_text(rollout, PLAN)
    shown = render_blocks(status_blocks([rollout], plan_for))
    assert f"*Hosted relay*: {HELD} rejection of 50%" in shown, shown


def test_a_refused_approval_of_the_rollback_job_is_told_on_the_lane() -> None:
    rollout = refused(PLAN.track("relay").on_failure.environment)

    title = lanes(rollout_card(rollout, PLAN))["Hosted relay"].splitlines()[0]
    job = PLAN.track("relay").on_failure.job
    assert f"{HELD} approval of {job} (see the thread)" in title, title


def test_a_refusal_of_another_track_leaves_the_lane_rolling_back() -> None:
    rollout = refused("desktop-beta")

    title = lanes(rollout_card(rollout, PLAN))["Hosted relay"].splitlines()[0]
    assert ":rotating_light: *Hosted relay*: rolling back" in title, title
