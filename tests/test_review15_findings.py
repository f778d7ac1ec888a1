"""Review of issue 15 (review15 branch): each test reproduces one defect found and FAILS on
main as it is; the assertion states what a release engineer would expect. Not to be merged
as is: the fixes make them pass."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_freeze_sandbox import OTHER, card
from test_rollout_summary import MINUTE, PERSON, PLAN, T0, ended, event, gate
from test_scheduled_corners import fired
from test_scheduled_starts import berlin_sandbox, scheduled, told_in_thread

from bot.adapters.slack.contents_view import summary
from bot.domain.errors import InvalidCommand
from bot.domain.freeze import LANE_FREEZE, LaneHold, freeze_in_force, lane_refusal, override_kind
from bot.domain.release_contents import (
    ComparedCommit,
    Comparison,
    LastRelease,
    Since,
    release_contents,
)
from bot.domain.rollout import Phase
from bot.domain.rollout_summary import summarize
from bot.domain.schedule import start_schedule, zone_named
from bot.services.records import is_machine
from sandbox.config import RELEASE_MANAGER
from sandbox.harness import Sandbox
from storage.timers import TimerStore

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)  # a Saturday


@pytest.fixture
async def sandbox(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with berlin_sandbox(tmp_path, database_url) as box:
        yield box


# 1. An override outlives the freeze it overrode and passes a freeze declared after it.


def test_review15_an_override_does_not_carry_a_dispatch_through_a_later_incident_freeze() -> None:
    maintenance_end = NOW + timedelta(hours=6)
    override = LaneHold(override_kind("r1"), "UANN", "hotfix", NOW, until=maintenance_end)
    # The maintenance freeze was lifted; an hour later an incident freeze is declared.
    incident = LaneHold(
        LANE_FREEZE, "UBOB", "INC-9 outage", NOW + timedelta(hours=1), NOW + timedelta(hours=3)
    )
    later = NOW + timedelta(hours=1, minutes=5)
    freeze = freeze_in_force([], [override, incident], later)
    assert freeze is not None and freeze.reason == "INC-9 outage"
    refused = lane_refusal(
        actor="UANN",
        freeze=freeze,
        holds=[override, incident],
        rollout_id="r1",
        two_person=False,
        now=later,
    )
    assert refused is not None, "the incident freeze was never overridden, yet it lets r1 through"


async def test_review15_an_override_of_a_lifted_freeze_dispatches_through_an_incident_freeze(
    sandbox: Sandbox,
) -> None:
    await sandbox.command("freeze 6h planned maintenance", user=OTHER)
    await sandbox.command('start v1.4.2 --flags-ready --override-freeze "hotfix"')
    await sandbox.slack.wait_for(lambda: card(sandbox) is not None, timeout=30)
    await sandbox.command("unfreeze", user=OTHER)
    said = await sandbox.command("freeze 2h INC-9 outage, hands off", user=OTHER)
    assert "INC-9" in said
    refused = await sandbox.click("dispatch", message=card(sandbox))
    assert sandbox.github.dispatches == [], "dispatched through a freeze nobody overrode"
    assert refused is not None and "INC-9" in refused


# 2. A second `/rollout freeze` replaces the first: it can shorten a colleague's freeze.


async def test_review15_a_second_freeze_does_not_silently_shorten_the_first(
    sandbox: Sandbox,
) -> None:
    await sandbox.command("freeze 72h holiday freeze", user=OTHER)
    holiday = (await sandbox.services.lane.state()).freeze
    assert holiday is not None
    said = await sandbox.command("freeze 1h quick db check")
    assert "quick db check" in said  # said in the channel, with no word of the holiday freeze
    await sandbox.pass_time(timedelta(hours=2))
    refused = await sandbox.command("start v1.4.2 --flags-ready")
    assert "holiday freeze" in refused, f"the 72h holiday freeze ended after 1 hour: {refused}"


# 3. A scheduled dispatch whose firing was cut short (the replica died holding its timer) goes
#    however late the bot comes back: the late check runs only on a timer's first attempt.


async def test_review15_a_crash_while_firing_does_not_dispatch_hours_late(
    sandbox: Sandbox,
) -> None:
    at = await scheduled(sandbox)
    timers = TimerStore(sandbox.services.database.sessions)
    await sandbox.stop_bot()
    # A replica claims the due timer at the time, then is killed (deploy, OOM) before it ends.
    claimed = await timers.claim_due(
        now=at + timedelta(seconds=1), owner="killed-replica", lease=timedelta(minutes=2)
    )
    assert "scheduled_dispatch" in [t.kind for t in claimed], claimed
    sandbox.clock.advance(at - sandbox.clock() + timedelta(hours=3))  # back three hours later
    await sandbox.start_bot()
    await sandbox.pass_time(timedelta(seconds=5))
    await fired(sandbox, await sandbox.rollout(), at)  # the scheduler fired it again
    assert sandbox.github.dispatches == [], "dispatched three hours after the time chosen"
    said = await told_in_thread(sandbox, "did not go")
    assert "not running" in said
    assert (await sandbox.rollout()).phase is Phase.PREFLIGHT


# 4. `--at` reads duration-like words as clock times: `--at 2h` (as `freeze 2h` means two hours)
#    schedules 02:00, and a contradictory `--at "09:00 2h"` is 02:00 too, without a word.


@pytest.mark.parametrize("typed", ["2h", "1h30m", "09:00 2h"])
def test_review15_at_refuses_a_duration_instead_of_reading_a_clock_time(typed: str) -> None:
    with pytest.raises(InvalidCommand):
        schedule = start_schedule(typed, now=NOW, zone=BERLIN, by="UANN")
        pytest.fail(f"--at {typed!r} was scheduled for {schedule.at.astimezone(BERLIN)}")


# 5. The report's lead time ("start to 100%") counts the days a scheduled start waited for its
#    time: a start typed on Friday for Monday 09:00 that reaches 100% by 11:00 reads 3 days.


def test_review15_the_lead_time_of_a_scheduled_start_is_not_its_wait_for_the_time() -> None:
    rollout = ended(120)  # dispatched at T0, 100% two hours later
    typed = T0 - timedelta(days=3)  # `/rollout start v1.4.2 --at "mon 09:00"` on Friday
    scheduled_start = replace(rollout, created_at=typed, dispatched_at=T0)
    trail = [event(-3 * 24 * 60, PERSON, "start"), gate(30, "canary", "0.001")]
    summary = summarize(scheduled_start, PLAN, trail, machine=is_machine)
    assert summary.lead_time == 120 * MINUTE, f"lead time reads {summary.lead_time}"


# 6. A Slack time zone this host's tz database does not know (a zone newer than its tzdata,
#    such as `Europe/Kyiv` on an old image) is read as UTC without a word (`zone_named`): 09:00
#    in Kyiv becomes 09:00 UTC, two hours late. The docs say a time is "never read as UTC".


def test_review15_a_slack_time_zone_unknown_here_is_refused_not_read_as_utc() -> None:
    with pytest.raises(InvalidCommand):
        zone = zone_named("Europe/Atlantis")
        pytest.fail(f"read in {zone.key}")


# 7. `users.info` failing with a body that is not JSON (a 5xx from Slack's edge) makes
#    `/rollout start --at` answer "Something went wrong": `members.time_zone` logs
#    `error.response.get("error")`, which raises on a non-JSON body. (The sandbox's users.info
#    answers such a 500 for a zone it cannot load, which is used here to produce one.)


async def test_review15_users_info_5xx_gets_the_no_time_zone_line_not_an_internal_error(
    sandbox: Sandbox,
) -> None:
    sandbox.slack.time_zones[RELEASE_MANAGER] = "Europe/Atlantis"  # the sandbox answers 500
    said = await sandbox.command('start v1.4.2 --flags-ready --at "tomorrow 09:00"')
    assert await sandbox.services.rollouts.active() == []
    assert "Something went wrong" not in said and "give it with an offset" in said, said


# 8. The summary's "who did what" leaves out a freeze override (from the card, or with
#    `--override-freeze` on start): the one act a release engineer most wants in the record.


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


# 9. Pull requests are read from commit subjects only: a repository that rebase-merges (GitHub's
#    "Rebase and merge" writes no merge commit and no `(#n)`) gets "3 commits, 0 pull requests"
#    on its card, which is untrue; the modal says "No merged pull request among these commits".


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


# 10. The audit trail of the lane's commands leaves out what a later reader needs: the reason
#     of a freeze and of a lock, and which freeze (whose, why) an unfreeze lifted.


async def test_review15_the_audit_says_why_deploys_were_frozen_and_what_was_lifted(
    sandbox: Sandbox,
) -> None:
    await sandbox.command("freeze 2h INC-123 investigation", user=OTHER)
    await sandbox.command("lock migrating the billing db", user=OTHER)
    await sandbox.command("unfreeze")
    trail = await sandbox.audit.list_for_actor(OTHER) + await sandbox.audit.list_for_actor(
        RELEASE_MANAGER
    )
    details = {e.action: json.dumps(e.detail or {}) for e in trail}
    assert "INC-123" in details["command:freeze"], details
    assert "billing db" in details["command:lock"], details
    assert "INC-123" in details["command:unfreeze"] and OTHER in details["command:unfreeze"], (
        details
    )
