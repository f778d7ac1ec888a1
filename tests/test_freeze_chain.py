"""Freezes that follow one another with no gap: the end shown is when the lane is next free,
naming each freeze of the span, and `frozen beyond` past the horizon (FOLLOWED_FOR)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_controls import sandbox_for
from test_freeze import utc

from bot.adapters.slack.lane_words import freeze_text
from bot.adapters.slack.mrkdwn import slack_time
from bot.adapters.slack.schedule_words import held_then_text
from bot.domain.freeze import (
    FOLLOWED_FOR,
    LANE_FREEZE,
    Freeze,
    Frozen,
    LaneHold,
    freeze_in_force,
    freezes_in_force,
    override_kind,
)
from bot.domain.plan.freezes import CalendarFreeze
from sandbox.config import RELEASE_MANAGER


def weekly(name: str, start: str, until: str, zone: str = "Europe/Berlin") -> CalendarFreeze:
    return CalendarFreeze.model_validate(
        {"name": name, "timezone": zone, "weekly": {"from": start, "until": until}}
    )


def dated(name: str, start: str, until: str, zone: str = "Europe/Berlin") -> CalendarFreeze:
    return CalendarFreeze.model_validate(
        {"name": name, "timezone": zone, "dates": {"from": start, "until": until}}
    )


WEEKEND = weekly("weekend", "fri 16:00", "mon 08:00")
HOLIDAYS = dated("holidays", "2026-12-21 00:00", "2027-01-04 08:00")
FRIDAY = utc("2026-12-18 17:00")  # 18:00 in Berlin: the weekend before the holidays


def test_a_weekend_running_into_the_holidays_is_frozen_until_the_holidays_end() -> None:
    frozen = freeze_in_force([WEEKEND, HOLIDAYS], [], FRIDAY)
    assert frozen is not None
    assert (frozen.calendar, frozen.until) == ("weekend", utc("2026-12-21 07:00"))
    assert [each.calendar for each in frozen.then] == ["holidays"]
    assert frozen.free_at == utc("2027-01-04 07:00") and not frozen.beyond


def test_a_freeze_that_starts_as_another_ends_is_followed_declared_or_calendar() -> None:
    now = utc("2026-12-18 10:00")  # Friday morning: the weekend starts at 15:00 UTC
    incident = LaneHold(LANE_FREEZE, "U1", "incident", now, utc("2026-12-18 15:00"))
    frozen = freeze_in_force([WEEKEND], [incident], now)
    assert frozen is not None and frozen.actor == "U1"
    assert [each.calendar for each in frozen.then] == ["weekend"]
    assert frozen.free_at == utc("2026-12-21 07:00")
    gap = LaneHold(LANE_FREEZE, "U1", "incident", now, utc("2026-12-18 14:59"))
    alone = freeze_in_force([WEEKEND], [gap], now)  # a minute free before the weekend
    assert alone is not None and alone.then == () and alone.free_at == gap.until


def test_freezes_that_never_leave_a_gap_are_frozen_beyond_the_horizon() -> None:
    week = [WEEKEND, weekly("weekdays", "mon 08:00", "fri 16:00")]
    frozen = freeze_in_force(week, [], FRIDAY)
    assert frozen is not None and frozen.beyond
    assert FRIDAY + FOLLOWED_FOR <= frozen.free_at < FRIDAY + FOLLOWED_FOR + timedelta(days=7)
    assert freezes_in_force(week, [], frozen.free_at)  # still frozen there
    text = freeze_text(frozen)
    assert text.startswith(f"Deploys are frozen beyond {slack_time(frozen.free_at)}: ")
    assert "the plan's `weekend` freeze (weekend) until" in text
    assert "then the plan's `weekdays` freeze (weekdays) until" in text


def test_an_override_carries_its_rollout_through_the_freezes_it_covers_not_the_next() -> None:
    now = utc("2026-12-18 10:00")
    long = LaneHold(LANE_FREEZE, "U2", "db move", now, utc("2026-12-19 00:00"))
    covered = freeze_in_force([], [long], now)
    assert covered is not None
    override = LaneHold(override_kind("r1"), "U1", "hotfix", now, long.until, covered.key)
    incident = LaneHold(LANE_FREEZE, "U1", "incident", now, utc("2026-12-18 15:00"))
    holds = [incident, long, override]
    # The incident, which r1's override does not cover, holds r1 until it ends: the freeze
    # its override covers, in force after it, does not.
    frozen = freeze_in_force([], holds, now, rollout_id="r1")
    assert frozen is not None and frozen.actor == "U1" and frozen.reason == "incident"
    assert frozen.then == () and frozen.free_at == incident.until
    other = freeze_in_force([], holds, now, rollout_id="r2")  # no override: until it ends
    assert other is not None and other.free_at == long.until
    # A freeze that follows holds it as any rollout.
    weekend = freeze_in_force([WEEKEND], [incident, long, override], now, rollout_id="r1")
    assert weekend is not None and [each.calendar for each in weekend.then] == ["weekend"]


def test_the_end_shown_is_when_the_lane_is_free_naming_each_freeze() -> None:
    frozen = freeze_in_force([WEEKEND, HOLIDAYS], [], FRIDAY)
    assert frozen is not None
    assert freeze_text(frozen) == (
        f"Deploys are frozen until {slack_time(utc('2027-01-04 07:00'))}: the plan's "
        f"`weekend` freeze (weekend) until {slack_time(utc('2026-12-21 07:00'))}, then the "
        f"plan's `holidays` freeze (holidays) until {slack_time(utc('2027-01-04 07:00'))}"
    )


def test_a_scheduled_dispatch_held_by_the_plans_freeze_is_not_told_to_unfreeze() -> None:
    calendar = Freeze("no deploys over the weekend", FRIDAY, calendar="weekend")
    said = held_then_text(Frozen(calendar, at=FRIDAY))
    assert "`/rollout unfreeze` does not lift a freeze of the plan" in said
    assert "It goes only if the plan's `weekend` freeze is changed" in said
    assert "Override freeze…" in said
    declared = Freeze("INC-123", FRIDAY, actor="U1")
    assert "It goes only if that freeze is lifted (`/rollout unfreeze`)" in held_then_text(
        Frozen(declared, at=FRIDAY)
    )


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKLY = st.builds(
    lambda name, start, hours, zone: weekly(
        name,
        f"{_WEEKDAYS[start // 24]} {start % 24:02d}:00",
        f"{_WEEKDAYS[(start + hours) % 168 // 24]} {(start + hours) % 24:02d}:00",
        zone,
    ),
    st.sampled_from(["a", "b", "c"]),
    st.integers(0, 167),
    st.integers(1, 167),  # a window of an hour to a week less an hour
    st.sampled_from(["Europe/Berlin", "America/New_York", "UTC"]),
)


@settings(max_examples=150, deadline=None)
@given(
    calendar=st.lists(_WEEKLY, max_size=4),
    hours=st.lists(st.integers(1, 24 * 20), max_size=2),
    now=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 1, 1)),
    where=st.floats(0, 1),
)
def test_the_lane_is_frozen_all_along_the_span_shown_and_free_at_its_end(
    calendar: list[CalendarFreeze], hours: list[int], now: datetime, where: float
) -> None:
    now = now.replace(tzinfo=UTC)
    holds = [LaneHold(LANE_FREEZE, "U1", "x", now, now + timedelta(hours=h)) for h in hours]
    frozen = freeze_in_force(calendar, holds, now)
    if frozen is None:
        assert not freezes_in_force(calendar, holds, now)
        return
    inside = now + (frozen.free_at - now) * where
    if inside < frozen.free_at:
        assert freezes_in_force(calendar, holds, inside)  # no gap before the end shown
    if frozen.beyond:
        assert frozen.free_at >= now + FOLLOWED_FOR
        assert freezes_in_force(calendar, holds, frozen.free_at)
    else:
        assert not freezes_in_force(calendar, holds, frozen.free_at)


@pytest.mark.story
async def test_the_refusal_and_the_status_say_when_back_to_back_freezes_end(
    tmp_path: Path, database_url: str
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)  # the sandbox's clock starts now
    soon, later = now + timedelta(hours=2), now + timedelta(days=3)
    freezes = [
        {"name": "incident", "timezone": "UTC", "dates": {"from": "2000-01-01 00:00"}},
        {"name": "migration", "timezone": "UTC", "dates": {"from": f"{soon:%Y-%m-%d %H:%M}"}},
    ]
    freezes[0]["dates"]["until"] = freezes[1]["dates"]["from"]  # type: ignore[index]
    freezes[1]["dates"]["until"] = f"{later:%Y-%m-%d %H:%M}"  # type: ignore[index]
    changes: dict[str, object] = {"freezes": freezes}
    async with sandbox_for(
        tmp_path, database_url, approvers=RELEASE_MANAGER, plan_changes=changes
    ) as box:
        until = f"Deploys are frozen until <!date^{int(later.timestamp())}^"
        refused = await box.command("start v1.4.2 --flags-ready")
        assert until in refused and "then the plan's `migration` freeze" in refused
        status = await box.command("status")
        assert until in status and "the plan's `incident` freeze" in status
        froze = await box.command("freeze 1h db check")  # ends within the calendar's span
        assert "froze deploys until" in froze and until in froze
        lifted = await box.command("unfreeze")
        assert "lifted the freeze" in lifted and until in lifted  # the calendar's stays
