"""Review of issue 15 (review15 branch): each test reproduces one defect found and FAILS on
main as it is; the assertion states what a release engineer would expect. Not to be merged
as is: the fixes make them pass."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from test_freeze_sandbox import OTHER
from test_rollout_summary import MINUTE, PERSON, PLAN, T0, ended, event, gate

from bot.adapters.slack.contents_view import summary
from bot.domain.release_contents import (
    ComparedCommit,
    Comparison,
    LastRelease,
    Since,
    release_contents,
)
from bot.domain.rollout_summary import summarize
from bot.services.records import is_machine

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)  # a Saturday


def test_review15_the_lead_time_of_a_scheduled_start_is_not_its_wait_for_the_time() -> None:
    rollout = ended(120)  # dispatched at T0, 100% two hours later
    typed = T0 - timedelta(days=3)  # `/rollout start v1.4.2 --at "mon 09:00"` on Friday
    scheduled_start = replace(rollout, created_at=typed, dispatched_at=T0)
    trail = [event(-3 * 24 * 60, PERSON, "start"), gate(30, "canary", "0.001")]
    summary = summarize(scheduled_start, PLAN, trail, machine=is_machine)
    assert summary.lead_time == 120 * MINUTE, f"lead time reads {summary.lead_time}"


def test_review15_the_summary_names_who_overrode_a_freeze() -> None:
    trail = [
        event(0, PERSON, "start"),
        event(1, OTHER, "form:override_freeze", override_freeze="hotfix", freeze="weekend"),
        event(2, OTHER, "dispatch"),
        gate(30, "canary", "0.001"),
    ]
    summary = summarize(ended(120), PLAN, trail, machine=is_machine)
    whats = [(a.actor, a.what) for a in summary.acts]
    assert any(actor == OTHER and "freeze" in what for actor, what in whats), whats


def test_review15_rebase_merged_pull_requests_are_not_reported_as_none() -> None:
    commits = tuple(
        ComparedCommit(sha=f"{n:040x}", message=subject, author="dev")
        for n, subject in enumerate(["Add billing export", "Fix export rounding", "Docs"])
    )
    comparison = Comparison(
        total_commits=3,
        commits=commits,
        files=("src/export.py",),
        html_url="https://github.com/o/r/compare/v1.4.1...v1.4.2",
    )
    contents = release_contents(
        tag="v1.4.2",
        since=LastRelease("v1.4.1", Since.ROLLOUT),
        comparison=comparison,
        plan=PLAN,
    )
    line = summary(contents)
    assert "0 pull requests" not in line, line
