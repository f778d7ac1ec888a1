"""A review the bot made on its own path that GitHub keeps failing without refusing it (a 502,
no answer), read back as not applied each time. A failed gate's rejection is saved, with its
thread line "Rejected 50%", before GitHub is asked: while GitHub holds the stage, the rollback
job cannot start. The bot asks again at each look; once GitHub has not taken it for
GITHUB_UNREADABLE_SECONDS, the thread is told once, truthfully (not as a refusal), and the card
says GitHub holds the stage. The same for an approval the thread was told of ("Approved …
deploying"). Through the whole bot, the real PyGithub against the GitHub simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from figures import CANARY_CRASHING, HALF_OK, passing_sandbox
from sandbox_views import RELAY_ROLLED_BACK_AT_CANARY, dispatched, reviews, stage_state
from test_desktop_track import DESKTOP, card_shows, ga_held_by_github, ga_plan
from test_github_faults import REVIEWS
from test_protection_rules import app_box
from test_refused_lanes import refused
from test_rollout_views import PLAN

from bot.domain.rollout import (
    Announce,
    Review,
    StageState,
    TrackState,
    approval_refused,
    review_failed,
)
from bot.domain.rollout.events import ApprovalRefused, ReviewUnanswered
from sandbox.github_json import error
from sandbox.harness import Sandbox, write_figures

CANARY_JOB = "Relay rollout 5% canary (30m)"
UNANSWERED = {"GITHUB_UNREADABLE_SECONDS": "600"}
RULE = "/repos/*/actions/runs/*/deployment_protection_rule"


AT = datetime(2025, 6, 2, 9, 30, tzinfo=UTC)
REJECT = Review("relay", "relay-rollout-50", approve=False, comment="gate failed")
AFTER = timedelta(minutes=5)


def test_a_failed_rejection_is_told_once_after_a_while_and_a_refusal_after_it_too() -> None:
    rollout = refused()  # the relay's gate failed, its 50% saved rejected
    first = review_failed(rollout, PLAN, REJECT, "GitHub answered 502", now=AT, after=AFTER)
    assert first.effects == ()
    assert first.rollout.unreviewed_since == (("relay-rollout-50", AT),)
    almost = AT + AFTER - timedelta(seconds=1)
    kept = review_failed(first.rollout, PLAN, REJECT, "no answer", now=almost, after=AFTER)
    assert kept.effects == () and kept.rollout == first.rollout

    told = review_failed(first.rollout, PLAN, REJECT, "no answer", now=AT + AFTER, after=AFTER)
    run = rollout.run_url
    assert told.effects == (
        Announce(ReviewUnanswered("Hosted relay", "50%", "no answer", AT, run, True), True),
    )
    assert told.rollout.refused_approvals == ("relay-rollout-50",)
    again = review_failed(told.rollout, PLAN, REJECT, "no answer", now=AT + 2 * AFTER, after=AFTER)
    assert again.effects == () and again.rollout == told.rollout

    # GitHub then refuses it (a 403): someone must act, told; its failures are no more kept.
    no = approval_refused(told.rollout, PLAN, REJECT, "GitHub refused (403: no)")
    assert [type(e.event) for e in no.effects if isinstance(e, Announce)] == [ApprovalRefused]
    assert no.rollout.unreviewed_since == ()
    assert no.rollout.refused_approvals == ("relay-rollout-50",)
    assert approval_refused(no.rollout, PLAN, REJECT, "GitHub refused").effects == ()
    # Told refused first: GitHub's later failures add nothing.
    assert review_failed(no.rollout, PLAN, REJECT, "x", now=AT, after=AFTER).rollout == no.rollout


def failed(box: Sandbox) -> int:
    """How many reviews GitHub has failed the bot so far (a 502, or a 422)."""
    return sum(
        r.method == "POST" and r.path.endswith("/pending_deployments") and r.status in (422, 502)
        for r in box.github.requests
    )


def failing(box: Sandbox, status: int) -> None:
    """GitHub answers every review the bot posts from now on with `status`, never applied:
    a 502, or a 422 while the deployment still waits for the bot (not GitHub's "nothing waits
    here": that a look at the run tells apart)."""
    if status == 502:
        box.github.fault_next("POST", REVIEWS, "server_error", times=10_000)
    else:
        box.github.fail_next("POST", REVIEWS, status, error("Validation Failed", 422), times=10_000)


@pytest.mark.story
@pytest.mark.parametrize("status", [502, 422])
async def test_a_rejection_github_keeps_failing_is_told_once_after_a_while(
    tmp_path: Path, database_url: str, status: int
) -> None:
    async with passing_sandbox(tmp_path, database_url=database_url, extra_env=UNANSWERED) as box:
        write_figures(box.figures, "relay", {"canary": CANARY_CRASHING, "half": HALF_OK})
        box.github.set_job_duration(CANARY_JOB, timedelta(minutes=10))
        run = (await dispatched(box)).run_id or 0
        canary = box.github.run(run).job("relay-canary-5")
        await box.wait_until(lambda _: canary.status == "in_progress")
        failing(box, status)
        await box.pass_time(timedelta(minutes=10))  # the canary deploys; its gate fails
        await box.wait_for_thread("Rejected *50%*")
        asked = failed(box)
        await box.wait_until(lambda _: failed(box) >= asked + 2)
        assert not any("has not taken" in line for line in box.thread()), box.thread()

        # Past GITHUB_UNREADABLE_SECONDS, still failing: told once, not as GitHub's refusal.
        for _ in range(3):
            await box.pass_time(timedelta(minutes=5))
        told = await box.wait_for_thread("GitHub has not taken the bot's rejection of *50%*")
        assert "Hosted relay" in told and str(status) in told, told
        assert "refused" not in told, told
        assert "rollback" in told and "reject it on the run's page" in told, told
        await card_shows(box, "`relay-rollout-50` · held by GitHub")
        asked = failed(box)
        await box.wait_until(lambda _: failed(box) >= asked + 3)
        said = [line for line in box.thread() if "has not taken the bot's rejection" in line]
        assert len(said) == 1, box.thread()
        assert box.github.run(run).job("relay-rollback").status != "completed"

        # GitHub takes the rejection again: the relay rolls back, the card forgets it.
        box.github.clear_faults()
        box.github.clear_failures()
        done = await box.wait_until(lambda r: r.track("relay").state is TrackState.ROLLED_BACK)
        assert stage_state(done, "relay", "half") is StageState.REJECTED
        assert done.refused_approvals == () and done.unreviewed_since == ()
        assert reviews(box, "relay") == RELAY_ROLLED_BACK_AT_CANARY
        await box.slack.wait_for(lambda: "held by GitHub" not in box.card_message().rendered)


@pytest.mark.story
async def test_an_approval_github_keeps_failing_is_told_once_after_a_while(
    tmp_path: Path, database_url: str
) -> None:
    async with Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        plan_yaml=ga_plan(tmp_path),
        extra_env=UNANSWERED,
    ) as box:
        await ga_held_by_github(box, REVIEWS)
        await box.wait_for_thread("Approved *GA ring*")
        # GA's first failure saved (relay's 100% may fail first: the faults fail every review).
        await box.wait_until(lambda r: "desktop-ga" in dict(r.unreviewed_since))
        for _ in range(3):
            await box.pass_time(timedelta(minutes=5))
        told = await box.wait_for_thread("GitHub has not taken the bot's approval of *GA ring*")
        assert DESKTOP in told and "refused" not in told, told
        await card_shows(box, "`desktop-ga` · held by GitHub")

        box.github.clear_faults()
        done = await box.wait_until(
            lambda r: all(t.state is TrackState.COMPLETED for t in r.tracks)
        )
        assert done.refused_approvals == () and done.unreviewed_since == ()


@pytest.mark.story
async def test_a_rejection_the_apps_rule_keeps_answering_422_is_told_as_not_taken(
    tmp_path: Path, database_url: str
) -> None:
    """App mode: the App's answer to its rule (`deployment_protection_rule`) answered 422 while
    the job still waits, each time: told once it lasts as GitHub's failure, in its own words,
    neither as a refusal nor asking the thread to try again (the bot does, at each look)."""
    async with app_box(tmp_path, database_url, extra_env=UNANSWERED) as box:
        write_figures(box.figures, "relay", {"canary": CANARY_CRASHING, "half": HALF_OK})
        box.github.set_job_duration(CANARY_JOB, timedelta(minutes=10))
        run = (await dispatched(box)).run_id or 0
        canary = box.github.run(run).job("relay-canary-5")
        await box.wait_until(lambda _: canary.status == "in_progress")
        box.github.fail_next("POST", RULE, 422, error("Validation Failed", 422), times=10_000)
        await box.pass_time(timedelta(minutes=10))  # the canary deploys; its gate fails
        await box.wait_for_thread("Rejected *50%*")
        await box.wait_until(lambda r: "relay-rollout-50" in dict(r.unreviewed_since))
        for _ in range(3):
            await box.pass_time(timedelta(minutes=5))
        told = await box.wait_for_thread("GitHub has not taken the bot's rejection of *50%*")
        assert "(last: GitHub answered 422 (Validation failed))" in told, told
        assert "refused" not in told and "Try again" not in told, told
