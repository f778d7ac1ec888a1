"""A stage's window starts when its job deployed, on the bot's clock: GitHub's `completed_at`
only when it lies between the bot's approval of the stage and the bot's now (GitHub's clock far
behind would open a window already over, read on figures from before the deploy)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from figures import every_gate_passes
from sandbox_views import dispatched
from test_rollout_machine import (
    CANARY,
    FULL,
    HALF,
    INTERNAL,
    OCTOCAT_APPROVED_HALF,
    PLAN,
    PREFLIGHT,
    RELAY_ROLLBACK,
    Says,
    approved,
    at,
    at_half_and_beta,
    canary_observing,
    effects,
    job,
    judged,
    passed,
    relay_verdict,
    snapshot,
    waiting,
)

from bot.domain.rollout import ClockSkewed, ScheduleWindow, StageState, TrackState, reconcile
from sandbox.harness import Sandbox, fast_plan

BEHIND = timedelta(minutes=40)


def test_a_completion_github_dates_before_the_bots_approval_opens_the_window_when_seen() -> None:
    """The bot approved the canary at 1; GitHub's clock 40 minutes behind says its job ended
    at 5 - 40. Taken as is, the 30-minute window would have ended before the bot saw the
    deploy, and the gate would read figures from before the release."""
    rollout = approved()
    assert rollout.track("relay").stage("canary").cleared_at == at(1)
    run = snapshot(job(PREFLIGHT), job(CANARY, completed_at=at(5) - BEHIND), job(INTERNAL, None))

    decision = reconcile(rollout, PLAN, run, at(6))

    canary = decision.rollout.track("relay").stage("canary")
    assert (canary.state, canary.window_started_at, canary.window_ends_at) == (
        StageState.OBSERVING,
        at(6),
        at(36),
    )
    assert effects(decision) == [
        ClockSkewed("relay", "canary", reported=at(5) - BEHIND, seen=at(6)),
        ScheduleWindow("relay", "canary", at(36)),
        Says("*5% canary* deployed (Hosted relay). Observing for 30m"),
    ]


def test_a_completion_github_dates_after_the_bots_now_opens_the_window_when_seen() -> None:
    run = snapshot(job(PREFLIGHT), job(CANARY, completed_at=at(60)), job(INTERNAL, None))

    decision = reconcile(approved(), PLAN, run, at(6))

    canary = decision.rollout.track("relay").stage("canary")
    assert (canary.window_started_at, canary.window_ends_at) == (at(6), at(36))
    assert ClockSkewed("relay", "canary", reported=at(60), seen=at(6)) in effects(decision)


def test_a_completion_seconds_ahead_of_the_bots_now_starts_the_window_now_unwarned() -> None:
    """GitHub's clock (or the runner's that reports the job) 2 seconds ahead, the completion
    seen within the second of its webhook: within the 5 s the doctor passes, so no clock is
    blamed in the log for every stage; the window starts when the bot saw it."""
    run = snapshot(job(PREFLIGHT), job(CANARY, completed_at=at(6) + timedelta(seconds=2)))

    decision = reconcile(approved(), PLAN, run, at(6))

    canary = decision.rollout.track("relay").stage("canary")
    assert (canary.window_started_at, canary.window_ends_at) == (at(6), at(36))
    assert not [e for e in effects(decision) if isinstance(e, ClockSkewed)]


def test_a_completion_github_dates_within_the_second_before_the_approval_is_no_skew() -> None:
    """GitHub gives a job's times in whole seconds: a canary approved at 1 (and a fraction)
    and done at once is dated in that same second, before the approval to the microsecond,
    as at nearly every stage of `make demo`. Within the 5 s the doctor passes, the window
    opens at the approval, the earliest the release could be out, and no clock is blamed."""
    rollout = approved()
    cleared = rollout.track("relay").stage("canary").cleared_at
    assert cleared == at(1)
    dated = cleared - timedelta(seconds=0.4)
    run = snapshot(job(PREFLIGHT), job(CANARY, completed_at=dated), job(INTERNAL, None))

    decision = reconcile(rollout, PLAN, run, at(1) + timedelta(seconds=3))

    canary = decision.rollout.track("relay").stage("canary")
    assert (canary.window_started_at, canary.window_ends_at) == (at(1), at(31))
    assert not [e for e in effects(decision) if isinstance(e, ClockSkewed)]


def test_the_bot_down_while_the_job_ended_keeps_githubs_time() -> None:
    """Approved at 1, deployed at 5, the bot back at 50: the window ran from 5 (restarts rely
    on it), and no clock is blamed."""
    run = snapshot(job(PREFLIGHT), job(CANARY, completed_at=at(5)), job(INTERNAL, None))

    decision = reconcile(approved(), PLAN, run, at(50))

    canary = decision.rollout.track("relay").stage("canary")
    assert (canary.window_started_at, canary.window_ends_at) == (at(5), at(35))
    assert not [e for e in effects(decision) if isinstance(e, ClockSkewed)]


def test_a_later_stage_dated_before_its_approval_but_after_the_dispatch_opens_when_seen() -> None:
    """The 50% stage approved by the bot at 79; GitHub, 20 minutes behind, dates its job at
    80 - 20 = 60: after the dispatch (so the dispatch bound alone would take it) but before
    the approval. Its hour-long window would read 20 minutes of figures from before it."""
    rollout = passed(canary_observing(), "relay", "canary", relay_verdict(), at(36))
    asked = snapshot(
        job(CANARY, completed_at=at(5)), waiting(HALF), waiting_on={"relay-rollout-50"}
    )
    rollout = reconcile(rollout, PLAN, asked, at(79)).rollout
    done = snapshot(job(CANARY, completed_at=at(5)), job(HALF, completed_at=at(60)))

    decision = reconcile(rollout, PLAN, done, at(81))

    half = decision.rollout.track("relay").stage("half")
    assert (half.window_started_at, half.window_ends_at) == (at(81), at(141))
    assert ClockSkewed("relay", "half", reported=at(60), seen=at(81)) in effects(decision)


def test_a_stage_promoted_on_github_is_bounded_by_the_stage_before_its_deploy() -> None:
    """Promoted on GitHub (no approval of the bot's to bound it): a completion after the
    canary's deploy is GitHub's time (the bot may have been down); one before it is not."""
    observing = canary_observing()
    for completed, start in ((at(20), at(20)), (at(4), at(45))):
        done = replace(
            snapshot(job(CANARY, completed_at=at(5)), job(HALF, completed_at=completed)),
            reviews=(OCTOCAT_APPROVED_HALF,),
        )
        rollout = reconcile(observing, PLAN, done, at(45)).rollout
        half = rollout.track("relay").stage("half")
        assert (half.state, half.window_started_at) == (StageState.OBSERVING, start)


def test_a_last_stage_dated_before_its_approval_ends_the_track_when_seen() -> None:
    rollout = at_half_and_beta()
    rollout = passed(rollout, "relay", "half", relay_verdict(), at(141))
    asked = snapshot(waiting(FULL), waiting_on={"relay-rollout-100"})
    rollout = reconcile(rollout, PLAN, asked, at(142)).rollout

    decision = reconcile(rollout, PLAN, snapshot(job(FULL, completed_at=at(120))), at(150))

    assert decision.rollout.track("relay").ended_at == at(150)
    assert ClockSkewed("relay", "full", reported=at(120), seen=at(150)) in effects(decision)


def test_a_rollback_github_dates_before_the_deploy_it_took_back_ends_the_track_when_seen() -> None:
    """GitHub 40 minutes behind: the canary's window ran from 6 (when the bot saw it) to 36,
    its gate failed, and the rollback job GitHub dates at 42 - 40 = 2 ended at 42. After the
    dispatch, but before the deploy it rolled back (the rollback job needs every relay job):
    the track cannot have ended then, and the report would show the canary deployed after
    its rollout ended."""
    run = snapshot(job(PREFLIGHT), job(CANARY, completed_at=at(5) - BEHIND), job(INTERNAL, None))
    rollout = reconcile(approved(), PLAN, run, at(6)).rollout
    failed = judged(rollout, "relay", "canary", relay_verdict(crash="0.0021", error="0"), at(36))
    assert failed.track("relay").state is TrackState.ABORTING
    done = snapshot(
        job(PREFLIGHT),
        job(CANARY, completed_at=at(5) - BEHIND),
        job(RELAY_ROLLBACK, completed_at=at(42) - BEHIND),
        job(INTERNAL, None),
    )

    relay = reconcile(failed, PLAN, done, at(43)).rollout.track("relay")

    assert (relay.state, relay.ended_at) == (TrackState.ROLLED_BACK, at(43))


@pytest.mark.story
async def test_github_an_hour_behind_the_bot_leaves_the_canary_its_whole_window(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the real clients: GitHub's job times an hour behind the bot's. The canary's
    10-minute window starts when the bot saw its job complete, not an hour before it (over
    before it began, its gate reading the hour before the deploy); the log names the skew."""
    caplog.set_level(logging.WARNING, logger="bot.services.clock_skew")
    plan = fast_plan(tmp_path / "figures.yml", window="10m", extension="10m")
    lag = timedelta(hours=1)
    async with Sandbox(
        workdir=tmp_path, database_url=database_url, plan_yaml=plan, github_lag=lag
    ) as box:
        every_gate_passes(box)
        rollout = await dispatched(box)
        deploying = (StageState.PENDING, StageState.APPROVING, StageState.DEPLOYING)
        seen = await box.wait_until(
            lambda r: r.track("relay").stage("canary").state not in deploying
        )

    canary = seen.track("relay").stage("canary")
    assert rollout.dispatched_at is not None and canary.window_started_at is not None
    assert canary.state is StageState.OBSERVING
    assert canary.window_started_at >= rollout.dispatched_at
    assert canary.window_ends_at == canary.window_started_at + timedelta(minutes=10)
    warned = [r.getMessage() for r in caplog.records if "GitHub's clock" in r.getMessage()]
    (warning,) = [w for w in warned if "stage canary of relay" in w]
    assert "GitHub's clock looks up to 1:00:0" in warning, warning
    assert f"rollout {rollout.id} (v1.4.2), stage canary of relay" in warning
