"""The freeze calendar and the lane's rules (pure): weekly windows across DST changes and the
week's wrap, dated windows, the plan's errors, the ad hoc freeze's end, and the commands; and
the lane's store on both databases (one lock holder among replicas)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from cleared import cleared_rollout
from hypothesis import given, settings
from hypothesis import strategies as st
from replicas import replica_sessions

from bot.adapters.slack import lane_words
from bot.domain.errors import InvalidCommand, PlanError
from bot.domain.freeze import (
    LANE_FREEZE,
    LANE_LOCK,
    ROLL_BACK_LASTS,
    Frozen,
    LaneHold,
    Locked,
    SecondApproverNeeded,
    StaleRollBack,
    TrackCompletion,
    freeze_in_force,
    freezes_in_force,
    lane_refusal,
    override_kind,
    roll_back_kind,
    stale_roll_back,
)
from bot.domain.freeze_until import freeze_end
from bot.domain.plan.freezes import CalendarFreeze
from bot.domain.rollout import (
    Check,
    CheckState,
    Phase,
    Preflight,
    Rollout,
    Track,
    TrackState,
    cancel_preflight,
)
from bot.domain.rollout_command import Freeze, Lock, Start, Unlock, parse_command
from bot.domain.schedule import ZoneNeeded
from bot.plan_file import load_plan, parse_plan
from bot.services.lane import ReleaseLane
from bot.services.retention import Retention
from storage.claims import ClaimStore
from storage.deliveries import DeliveryLog
from storage.lane_holds import LaneHoldStore
from storage.rollout_store import RolloutStore

BERLIN = ZoneInfo("Europe/Berlin")

WEEKEND = CalendarFreeze.model_validate(
    {
        "name": "weekend",
        "timezone": "Europe/Berlin",
        "weekly": {"from": "fri 16:00", "until": "mon 08:00"},
    }
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "until"),
    [
        ("2026-12-04 14:59", None),  # Friday 15:59 in Berlin (UTC+1): not yet
        ("2026-12-04 15:00", "2026-12-07 07:00"),  # Friday 16:00 Berlin: frozen until Monday 08:00
        ("2026-12-06 23:00", "2026-12-07 07:00"),  # Sunday night, across the week's wrap
        ("2026-12-07 06:59", "2026-12-07 07:00"),
        ("2026-12-07 07:00", None),  # Monday 08:00 Berlin: open again
        ("2026-12-09 12:00", None),  # Wednesday
    ],
)
def test_the_weekend_window_wraps_the_week_in_its_zone(now: str, until: str | None) -> None:
    assert WEEKEND.covering(utc(now)) == (utc(until) if until else None)


def test_a_weekend_across_the_spring_dst_change_ends_at_local_eight() -> None:
    # Europe/Berlin moves to UTC+2 on Sunday 2027-03-28: Friday 16:00 is 15:00 UTC, but
    # Monday 08:00 is 06:00 UTC.
    assert WEEKEND.covering(utc("2027-03-26 15:00")) == utc("2027-03-29 06:00")
    assert WEEKEND.covering(utc("2027-03-26 14:59")) is None
    assert WEEKEND.covering(utc("2027-03-29 06:00")) is None


def test_a_weekend_across_the_autumn_dst_change_starts_at_local_four_pm() -> None:
    # Back to UTC+1 on Sunday 2026-10-25: Friday 16:00 is 14:00 UTC, Monday 08:00 is 07:00 UTC.
    assert WEEKEND.covering(utc("2026-10-23 13:59")) is None
    assert WEEKEND.covering(utc("2026-10-23 14:00")) == utc("2026-10-26 07:00")


def test_a_window_starting_in_the_skipped_hour_starts_an_hour_later() -> None:
    night = CalendarFreeze.model_validate(
        {
            "name": "night",
            "timezone": "Europe/Berlin",
            "weekly": {"from": "sun 02:30", "until": "sun 05:00"},
        }
    )
    # 02:30 does not exist on 2027-03-28 in Berlin: read as 03:30 CEST, 01:30 UTC.
    assert night.covering(utc("2027-03-28 00:45")) is None
    assert night.covering(utc("2027-03-28 01:30")) == utc("2027-03-28 03:00")


def test_a_dated_window_covers_its_days_only() -> None:
    holidays = CalendarFreeze.model_validate(
        {
            "name": "holidays",
            "reason": "holiday week",
            "timezone": "America/New_York",
            "dates": {"from": "2026-12-21 00:00", "until": "2027-01-04 08:00"},
        }
    )
    assert holidays.covering(utc("2026-12-21 04:59")) is None
    assert holidays.covering(utc("2026-12-21 05:00")) == utc("2027-01-04 13:00")
    assert holidays.covering(utc("2027-01-04 13:00")) is None


def _plan_with(freezes: object) -> str:
    default = load_plan(None).model_dump(mode="json", by_alias=True, exclude_defaults=True)
    default["freezes"] = freezes
    return yaml.safe_dump(default)


def test_the_plan_names_each_bad_freeze_by_its_dotted_path() -> None:
    bad = [
        {
            "name": "weekend",
            "timezone": "Mars/Olympus",
            "weekly": {"from": "fri 16:00", "until": "mon 08:00"},
        },
        {
            "name": "holidays",
            "timezone": "UTC",
            "dates": {"from": "2026-12-21 00:00", "until": "2026-12-20 00:00"},
        },
        {"name": "both", "timezone": "UTC"},
        {"name": "typo", "timezone": "UTC", "weekly": {"from": "fry 16:00", "until": "mon 08:00"}},
        {
            "name": "same",
            "timezone": "UTC",
            "weekly": {"from": "Fri 16:00", "until": "friday 16:00"},
        },
    ]
    with pytest.raises(PlanError) as raised:
        parse_plan(_plan_with(bad), "plan.yml")
    text = str(raised.value)
    assert "freezes[0].timezone: 'Mars/Olympus' is not an IANA time zone" in text
    assert "freezes[1].dates.until: must be after dates.from" in text
    assert "freezes[2]: needs exactly one of weekly or dates" in text
    assert "freezes[3].weekly.from: 'fry 16:00' is not a weekday and time" in text
    assert "freezes[4].weekly.until: must differ from weekly.from" in text


@pytest.mark.parametrize(
    ("zone", "place"), [("EST", "America/New_York"), ("MST", "America/Denver")]
)
def test_a_zone_fixed_all_year_under_a_seasons_name_is_refused(zone: str, place: str) -> None:
    # tzdata's `EST` is UTC-05:00 in July too: a New York team's Friday 17:00 freeze would
    # begin at 18:00 their time all summer.
    entry = {
        "name": "weekend",
        "timezone": zone,
        "weekly": {"from": "fri 17:00", "until": "mon 08:00"},
    }
    with pytest.raises(PlanError) as raised:
        parse_plan(_plan_with([entry]), "plan.yml")
    assert f"freezes[0].timezone: '{zone}' keeps standard time all year" in str(raised.value)
    assert place in str(raised.value)


def test_a_good_calendar_loads() -> None:
    good = [
        {
            "name": "weekend",
            "timezone": "Europe/Berlin",
            "weekly": {"from": "fri 16:00", "until": "mon 08:00"},
        }
    ]
    plan = parse_plan(_plan_with(good), "plan.yml")
    assert plan.freezes[0].covering(utc("2026-12-05 12:00")) == utc("2026-12-07 07:00")


NOW = utc("2026-12-04 12:00")
BERLIN = ZoneInfo("Europe/Berlin")


def test_an_ad_hoc_freeze_ends() -> None:
    hold = LaneHold(LANE_FREEZE, "U1", "incident", NOW, NOW + timedelta(hours=2))
    frozen = freeze_in_force([WEEKEND], [hold], NOW)
    assert frozen is not None and (frozen.actor, frozen.reason) == ("U1", "incident")
    assert freeze_in_force([], [hold], NOW + timedelta(hours=2)) is None
    weekend = freeze_in_force([WEEKEND], [hold], utc("2026-12-05 12:00"))
    assert weekend is not None and weekend.calendar == "weekend"


def test_of_two_freezes_in_force_the_one_ending_latest_is_shown() -> None:
    saturday = utc("2026-12-05 12:00")  # the weekend freezes until Monday 07:00 UTC
    short = LaneHold(LANE_FREEZE, "U1", "incident", saturday, saturday + timedelta(hours=2))
    weekend = freeze_in_force([WEEKEND], [short], saturday)
    assert weekend is not None and weekend.calendar == "weekend"
    long = LaneHold(LANE_FREEZE, "U1", "incident", saturday, utc("2026-12-08 00:00"))
    frozen = freeze_in_force([WEEKEND], [long], saturday)
    assert frozen is not None and (frozen.actor, frozen.until) == ("U1", long.until)


def test_the_lane_refuses_others_under_a_lock_and_everyone_under_a_freeze() -> None:
    lock = LaneHold(LANE_LOCK, "U1", "", NOW)
    assert lane_refusal(
        actor="U2", freeze=None, holds=[lock], rollout_id=None, two_person=False, now=NOW
    ) == Locked(lock)
    assert (
        lane_refusal(
            actor="U1", freeze=None, holds=[lock], rollout_id=None, two_person=False, now=NOW
        )
        is None
    )
    freeze = freeze_in_force([WEEKEND], [], utc("2026-12-05 12:00"))
    assert freeze is not None
    assert isinstance(
        lane_refusal(
            actor="U1", freeze=freeze, holds=[], rollout_id="r1", two_person=False, now=NOW
        ),
        Frozen,
    )
    override = LaneHold(override_kind("r1"), "U1", "hotfix", NOW, freeze.until, freeze.key)
    args = {"freeze": freeze, "holds": [override], "rollout_id": "r1", "now": NOW}
    assert lane_refusal(actor="U1", two_person=False, **args) is None  # type: ignore[arg-type]
    assert isinstance(lane_refusal(actor="U1", two_person=True, **args), SecondApproverNeeded)  # type: ignore[arg-type]
    assert lane_refusal(actor="U2", two_person=True, **args) is None  # type: ignore[arg-type]


def test_an_override_counts_only_until_it_ends() -> None:
    freeze = freeze_in_force([WEEKEND], [], utc("2026-12-05 12:00"))
    assert freeze is not None
    override = LaneHold(
        override_kind("r1"), "U1", "hotfix", NOW, NOW + timedelta(hours=1), freeze.key
    )
    args = {"actor": "U2", "freeze": freeze, "holds": [override], "rollout_id": "r1"}
    assert lane_refusal(now=NOW, two_person=False, **args) is None  # type: ignore[arg-type]
    ended = lane_refusal(now=NOW + timedelta(hours=1), two_person=False, **args)  # type: ignore[arg-type]
    assert ended == Frozen(freeze, dispatch=True)


def test_an_override_passes_only_the_freeze_it_overrode_not_a_later_one() -> None:
    maintenance = LaneHold(LANE_FREEZE, "UBOB", "maintenance", NOW, NOW + timedelta(hours=6))
    overridden = freeze_in_force([], [maintenance], NOW)
    assert overridden is not None
    override = LaneHold(
        override_kind("r1"), "UANN", "hotfix", NOW, overridden.until, overridden.key
    )
    args = {"actor": "UANN", "rollout_id": "r1", "two_person": False}
    assert lane_refusal(freeze=overridden, holds=[maintenance, override], now=NOW, **args) is None  # type: ignore[arg-type]
    # The maintenance freeze was lifted; an hour later an incident freeze is declared.
    incident = LaneHold(
        LANE_FREEZE, "UBOB", "INC-9 outage", NOW + timedelta(hours=1), NOW + timedelta(hours=3)
    )
    later = NOW + timedelta(hours=1, minutes=5)
    freeze = freeze_in_force([], [override, incident], later)
    assert freeze is not None and freeze.reason == "INC-9 outage"
    refused = lane_refusal(freeze=freeze, holds=[override, incident], now=later, **args)  # type: ignore[arg-type]
    assert refused == Frozen(freeze, dispatch=True), "the incident freeze was never overridden"
    # Nor does it pass the calendar's freeze, whose window is another freeze.
    weekend = freeze_in_force([WEEKEND], [override], utc("2026-12-05 12:00"))
    assert weekend is not None
    refused = lane_refusal(freeze=weekend, holds=[override], now=NOW, **args)  # type: ignore[arg-type]
    assert refused == Frozen(weekend, dispatch=True)


def test_an_override_of_one_freeze_does_not_pass_another_in_force_alongside() -> None:
    saturday = utc("2026-12-05 12:00")  # the weekend freezes until Monday 07:00 UTC
    weekend = freeze_in_force([WEEKEND], [], saturday)
    assert weekend is not None
    override = LaneHold(override_kind("r1"), "UANN", "hotfix", saturday, weekend.until, weekend.key)
    incident = LaneHold(LANE_FREEZE, "UBOB", "INC-9", saturday, saturday + timedelta(hours=2))
    holds = [override, incident]
    assert freeze_in_force([WEEKEND], holds, saturday) == weekend  # the one ending latest
    judged = freeze_in_force([WEEKEND], holds, saturday, rollout_id="r1")
    assert judged is not None and judged.reason == "INC-9"  # the one r1 did not override
    refused = lane_refusal(
        actor="UANN", freeze=judged, holds=holds, rollout_id="r1", two_person=False, now=saturday
    )
    assert refused == Frozen(judged, dispatch=True)
    both = replace(
        override, overrides="\n".join(f.key for f in freezes_in_force([WEEKEND], holds, saturday))
    )
    judged = freeze_in_force([WEEKEND], [both, incident], saturday, rollout_id="r1")
    assert judged == weekend  # an override given while both were in force covers both
    assert (
        lane_refusal(
            actor="UANN",
            freeze=judged,
            holds=[both],
            rollout_id="r1",
            two_person=False,
            now=saturday,
        )
        is None
    )
    after = saturday + timedelta(hours=2)  # the incident freeze ended: the override passes
    alone = freeze_in_force([WEEKEND], holds, after, rollout_id="r1")
    assert alone == weekend
    assert (
        lane_refusal(
            actor="UANN", freeze=alone, holds=holds, rollout_id="r1", two_person=False, now=after
        )
        is None
    )


@pytest.mark.parametrize(
    ("text", "until"),
    [
        ("2h", NOW + timedelta(hours=2)),
        ("2026-12-24 18:00", utc("2026-12-24 17:00")),  # in the asker's zone: Berlin
        ("2026-12-24 18:00Z", utc("2026-12-24 18:00")),  # `UTC` typed after it
        ("2026-12-24T18:00+01:00", utc("2026-12-24 17:00")),
        ("2026-12-24T18:00-05:00", utc("2026-12-24 23:00")),  # its offset, not Berlin's
        ("2027-01-03 13:00", NOW + timedelta(days=30)),
        ("2026-12-24 9:00", utc("2026-12-24 08:00")),  # an hour of one digit
        ("2026-12-24T9:30+01:00", utc("2026-12-24 08:30")),
    ],
)
def test_a_freeze_ends_after_a_duration_or_at_a_time(text: str, until: datetime) -> None:
    assert freeze_end(text, NOW, BERLIN) == until


def test_a_freeze_end_with_no_offset_needs_the_askers_zone() -> None:
    with pytest.raises(ZoneNeeded):
        freeze_end("2026-12-24 18:00", NOW)
    assert freeze_end("2h", NOW) == NOW + timedelta(hours=2)  # a duration needs none
    assert freeze_end("2026-12-24 18:00", NOW, ZoneInfo("Asia/Tokyo")) == utc("2026-12-24 09:00")


@pytest.mark.parametrize(
    ("text", "now", "says"),
    [
        # Berlin's clocks go from 02:00 to 03:00 on 2027-03-28: 02:30 never happens.
        ("2027-03-28 02:30", utc("2027-03-20 12:00"), "does not exist in your time zone"),
        # ... and from 03:00 back to 02:00 on 2026-10-25: 02:30 happens twice.
        ("2026-10-25 02:30", utc("2026-10-20 12:00"), "happens twice in your time zone"),
    ],
)
def test_a_local_end_the_clocks_skip_or_pass_twice_is_refused(
    text: str, now: datetime, says: str
) -> None:
    with pytest.raises(InvalidCommand, match=says) as refused:
        freeze_end(text, now, BERLIN)
    assert "Europe/Berlin" in refused.value.message
    if "twice" in says:  # both offsets offered, each read as the one meant
        assert "`2026-10-25T02:30+02:00` for the first" in refused.value.message
        assert "`2026-10-25T02:30+01:00` for the second" in refused.value.message
        assert freeze_end("2026-10-25T02:30+01:00", now) == utc("2026-10-25 01:30")
    else:  # the offset offered reads it after the skip (03:30), never before it (01:30)
        assert "`2027-03-28T02:30+01:00` (the clocks' offset" in refused.value.message
        assert "03:30 there, after it" in refused.value.message
        assert freeze_end("2027-03-28T02:30+01:00", now) == utc("2027-03-28 01:30")
    # An hour after the change is read as usual: CEST in March, CET in October.
    day = text[:10]
    after = {"2027-03-28": utc("2027-03-28 02:00"), "2026-10-25": utc("2026-10-25 03:00")}
    assert freeze_end(f"{day} 04:00", now, BERLIN) == after[day]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("soon", "is not a duration"),
        ("2026-12-01 09:00", "is in the past"),
        ("2026-13-40 09:00", "not a date and time"),
        ("0s", "not longer than zero"),
        ("9999-12-31 23:00-05:00", "too far ahead: a freeze lasts at most 30 days"),
        ("2027-01-03 13:01", "too far ahead: a freeze lasts at most 30 days"),
    ],
)
def test_a_bad_freeze_end_is_one_clear_line(text: str, says: str) -> None:
    with pytest.raises(InvalidCommand, match=says):
        freeze_end(text, NOW, BERLIN)


def test_the_commands_parse() -> None:
    assert parse_command("freeze 2h INC-123 investigation") == Freeze("2h", "INC-123 investigation")
    assert parse_command("freeze 2026-12-24 18:00 holidays") == Freeze(
        "2026-12-24 18:00", "holidays"
    )
    assert parse_command("lock") == Lock()
    assert parse_command("unlock he left") == Unlock("he left")
    assert parse_command('start v1.4.2 --override-freeze "hotfix for INC-123"') == Start(
        "v1.4.2", override_freeze="hotfix for INC-123"
    )
    assert parse_command(
        "start v1.4.2 --flags-ready \N{EM DASH}override-freeze "
        "\N{LEFT DOUBLE QUOTATION MARK}hotfix\N{RIGHT DOUBLE QUOTATION MARK}"
    ) == Start("v1.4.2", flags_ready=True, override_freeze="hotfix")
    for order in (
        "--override-freeze hotfix --flags-ready",
        "--flags-ready --override-freeze hotfix",
    ):
        assert parse_command(f"start v1.4.2 {order}") == Start(
            "v1.4.2", flags_ready=True, override_freeze="hotfix"
        )
    with pytest.raises(InvalidCommand) as unknown:
        parse_command("start v1.4.2 --fast")
    said = str(unknown.value)
    assert said.count("--flags-ready") == said.count("--override-freeze") == 1, said
    for bad, says in [
        ("freeze 2h", "needs a reason"),
        ("freeze", "needs an end"),
        ("start v1 --override-freeze", "needs a reason"),
    ]:
        with pytest.raises(InvalidCommand, match=says):
            parse_command(bad)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("freeze 2026-12-24 18:00 CET holiday freeze", "`CET` is not a time zone I read"),
        ("freeze 2026-12-24 18:00 EST holiday freeze", "`EST` is not a time zone I read"),
        ("freeze 2026-12-24 18:00 America/New_York holidays", "`America/New_York` is not a"),
        # An offset after a space, or after UTC/GMT, would be read as UTC all the same.
        ("freeze 2026-12-24 18:00 GMT-5 holidays", "`GMT-5` is not a time zone I read"),
        ("freeze 2026-12-24 18:00 UTC+01:00 holidays", "`UTC\\+01:00` is not a time zone"),
        ("freeze 2026-12-24 18:00 +0100 holidays", "`\\+0100` is not a time zone I read"),
        # Typed in lower case, as people type in Slack: `pst` would end it eight hours early.
        ("freeze 2026-12-24 18:00 pst holiday freeze", "`pst` is not a time zone I read"),
        ("freeze 2026-12-24 18:00 cet holiday freeze", "`cet` is not a time zone I read"),
        ("freeze 2026-12-24 18:00 Est holidays", "`Est` is not a time zone I read"),
    ],
)
def test_a_zone_typed_after_a_freeze_end_is_refused_not_read_as_utc(text: str, says: str) -> None:
    # Read as UTC with the zone taken for the reason, `18:00 EST` would end five hours early.
    with pytest.raises(InvalidCommand, match=says) as refused:
        parse_command(text)
    assert "2026-12-24T18:00+01:00" in refused.value.message


def test_utc_typed_after_a_freeze_end_is_not_part_of_the_reason() -> None:
    # ... and makes the end UTC, not the asker's zone.
    assert parse_command("freeze 2026-12-24 18:00 UTC holidays") == Freeze(
        "2026-12-24 18:00Z", "holidays"
    )
    # A reason that merely starts in capitals, and a zone after a duration, stay the reason.
    assert parse_command("freeze 2026-12-24 18:00 DB migration") == Freeze(
        "2026-12-24 18:00", "DB migration"
    )
    assert parse_command("freeze 2h CET office move") == Freeze("2h", "CET office move")
    assert parse_command("freeze 2026-12-24 18:00 utc holidays") == Freeze(
        "2026-12-24 18:00Z", "holidays"
    )
    # Zone abbreviations that are English words begin a reason, unless in capitals.
    assert parse_command("freeze 2026-12-24 18:00 west region move") == Freeze(
        "2026-12-24 18:00", "west region move"
    )
    assert parse_command("freeze 2026-12-24 18:00 West region move") == Freeze(
        "2026-12-24 18:00", "West region move"
    )
    with pytest.raises(InvalidCommand, match="`WEST` is not a time zone I read"):
        parse_command("freeze 2026-12-24 18:00 WEST region move")


async def test_of_many_replicas_locking_at_once_one_holds_the_lane(database_url: str) -> None:
    async with replica_sessions(database_url, 3) as sessions:
        stores = [LaneHoldStore(factory) for factory in sessions]
        held = await asyncio.gather(
            *(stores[i % 3].take(LaneHold(LANE_LOCK, f"U{i:02d}", "", NOW)) for i in range(12))
        )
        assert len({hold.actor for hold in held}) == 1  # every taker is told the one holder
        assert await stores[1].current() == [held[0]]
        other = "U99" if held[0].actor != "U99" else "U98"
        assert await stores[2].release(LANE_LOCK, actor=other) is None  # not theirs: kept
        assert await stores[0].current() == [held[0]]
        assert await stores[2].release(LANE_LOCK, actor=held[0].actor) == held[0]
        assert await stores[0].release(LANE_LOCK) is None


async def test_releasing_the_freeze_keeps_its_overrides_and_the_lock(
    database_url: str,
) -> None:
    async with replica_sessions(database_url, 1) as (sessions,):
        store = LaneHoldStore(sessions)
        until = NOW + timedelta(hours=1)
        lock = LaneHold(LANE_LOCK, "U1", "db work", NOW)
        override = LaneHold(override_kind("r1"), "U2", "hotfix", NOW, until)
        for hold in (
            LaneHold(LANE_FREEZE, "U1", "incident", NOW, until),
            override,
            lock,
        ):
            await store.take(hold)
        assert (await store.release(LANE_FREEZE) or lock).reason == "incident"
        assert await store.current() == [lock, override]  # the override ends at its until


async def test_a_roll_backs_pass_lets_its_dispatch_through_freeze_and_lock_only(
    database_url: str,
) -> None:
    # Every path that judges a dispatch asks `refusal` with the rollout: the Dispatch click,
    # a scheduled dispatch, a run linked by hand.
    async with replica_sessions(database_url, 1) as (sessions,):
        store = LaneHoldStore(sessions)
        lane = ReleaseLane(
            holds=store,
            plan=load_plan(None),
            clock=lambda: NOW,
            words=lane_words,
            rollouts=Recent(),
        )
        await store.take(LaneHold(LANE_FREEZE, "U1", "holidays", NOW, NOW + timedelta(days=9)))
        await store.take(LaneHold(LANE_LOCK, "U1", "INC-7", NOW))
        assert isinstance(await lane.refusal(actor="U2", rollout_id="r-back"), Locked)

        await lane.roll_back_for(rollout_id="r-back", actor="U2", replaced="v1.4.2")

        assert await lane.refusal(actor="U2", rollout_id="r-back") is None
        assert await lane.refusal(actor="U3", rollout_id="r-back") is None  # anyone's dispatch
        assert isinstance(await lane.refusal(actor="U2", rollout_id="r-other"), Locked)
        assert isinstance(await lane.refusal(actor="U2"), Locked)  # a start is not a roll back
        await store.release(LANE_LOCK)
        assert isinstance(await lane.refusal(actor="U2"), Frozen)
        at = NOW + timedelta(days=1)
        assert isinstance(await lane.refusal(actor="U2", at=at), Frozen)  # nor a scheduled one
        assert await lane.refusal(actor="U2", rollout_id="r-back") is None


async def test_the_holds_of_ended_rollouts_go_with_the_retention_once_on_two_replicas(
    database_url: str,
) -> None:
    # Every judgement of the lane reads every hold: an override or roll-back pass is of no use
    # once its rollout ended, and goes at the next prune (both replicas prune hourly).
    async with replica_sessions(database_url, 2) as (first, second):
        plan = load_plan(None)
        rollouts = RolloutStore(first, clock=lambda: NOW)
        ended = cleared_rollout(plan, now=NOW, rollout_id="r-ended")
        ended = await rollouts.create(rollout=ended, plan=plan)
        await rollouts.save(cancel_preflight(ended, actor="U1", now=NOW))
        live = cleared_rollout(plan, now=NOW, rollout_id="r-live")
        await rollouts.create(rollout=live, plan=plan)
        store = LaneHoldStore(first)
        until = NOW + timedelta(hours=1)
        kept = [
            LaneHold(LANE_FREEZE, "U1", "incident", NOW, until),
            LaneHold(LANE_LOCK, "U1", "db work", NOW),
            LaneHold(override_kind("r-live"), "U2", "hotfix", NOW, until),
            LaneHold(roll_back_kind("r-live"), "U2", "a roll back of `v1.4.1`", NOW),
        ]
        gone = [
            LaneHold(override_kind("r-ended"), "U2", "hotfix", NOW, until),
            LaneHold(roll_back_kind("r-ended"), "U2", "a roll back of `v1.4.1`", NOW),
        ]
        for hold in kept + gone:
            await store.take(hold)

        removed = await asyncio.gather(*(LaneHoldStore(s).forget_ended() for s in (first, second)))

        assert sorted(removed) == [0, 2]  # each row once
        assert sorted(await store.current(), key=lambda h: h.kind) == sorted(
            kept, key=lambda h: h.kind
        )
        retention = Retention(
            claims=ClaimStore(second), deliveries=DeliveryLog(second), holds=LaneHoldStore(second)
        )
        await store.take(gone[0])
        await retention.prune(now=NOW)
        assert len(await store.current()) == len(kept)


class Recent:
    """The service's latest rollouts (the lane's `RecentRollouts`), as the test sets them."""

    def __init__(self, *rollouts: Rollout) -> None:
        self.rollouts = list(rollouts)

    async def recent(self, limit: int = 10) -> list[Rollout]:
        return self.rollouts[:limit]


def released(rollout_id: str, tag: str, *, relay_at: datetime | None) -> Rollout:
    """A rollout whose relay track completed at `relay_at` (still running without one)."""
    clear = Check(CheckState.PASS, "ok")
    relay = Track("relay", TrackState.COMPLETED, ended_at=relay_at) if relay_at else Track("relay")
    return Rollout(
        id=rollout_id,
        tag=tag,
        channel_id="C1",
        started_by="U1",
        phase=Phase.RUNNING,
        tracks=(relay, Track("desktop")),
        preflight=Preflight(clear, clear, clear),
        created_at=NOW - timedelta(days=1),
    )


def test_a_roll_backs_pass_holds_until_a_newer_release_completes_a_track_or_a_day() -> None:
    clicked = LaneHold(roll_back_kind("r-back"), "U2", "a roll back of `v1.4.2`", NOW)
    clicked = replace(clicked, overrides="v1.4.2")
    later = NOW + timedelta(hours=1)
    newer = TrackCompletion("r-new", "v1.5.0", "Relay", later)
    before = TrackCompletion("r-old", "v1.4.0", "Relay", NOW - timedelta(hours=1))
    replaced = TrackCompletion("r-2", "v1.4.2", "Desktop", later)  # the release it replaces
    itself = TrackCompletion("r-back", "v1.4.1", "Relay", later)
    assert stale_roll_back(clicked, [before, replaced, itself], later) is None
    assert stale_roll_back(clicked, [before, newer], later) == StaleRollBack(
        NOW, ROLL_BACK_LASTS, newer=newer
    )
    assert stale_roll_back(clicked, [], NOW + ROLL_BACK_LASTS - timedelta(seconds=1)) is None
    assert stale_roll_back(clicked, [], NOW + ROLL_BACK_LASTS) == StaleRollBack(
        NOW, ROLL_BACK_LASTS
    )


async def test_a_stale_roll_back_is_judged_as_any_dispatch_and_says_why(
    database_url: str,
) -> None:
    # A roll back left in its preflight while a newer release went out would put back an older
    # release than the one live: its pass no longer holds, and the refusal says why.
    async with replica_sessions(database_url, 1) as (sessions,):
        store = LaneHoldStore(sessions)
        recent = Recent(released("r-2", "v1.4.2", relay_at=NOW - timedelta(hours=2)))
        now = [NOW]
        plan = load_plan(None)
        lane = ReleaseLane(
            holds=store, plan=plan, clock=lambda: now[0], words=lane_words, rollouts=recent
        )
        await store.take(LaneHold(LANE_FREEZE, "U1", "holidays", NOW, NOW + timedelta(days=9)))
        await lane.roll_back_for(rollout_id="r-back", actor="U2", replaced="v1.4.2")
        assert await lane.refusal(actor="U2", rollout_id="r-back") is None

        recent.rollouts.insert(0, released("r-new", "v1.5.0", relay_at=NOW + timedelta(hours=1)))
        now[0] = NOW + timedelta(hours=2)
        refused = await lane.refusal(actor="U2", rollout_id="r-back")
        assert isinstance(refused, Frozen) and refused.stale is not None
        said = lane_words.lane_refusal_text(refused)
        label = plan.track("relay").label
        assert said.startswith(f"This roll back is stale: `v1.5.0` (r-new) completed {label}")
        assert "older release than the one live" in said and "Deploys are frozen" in said

        recent.rollouts.pop(0)  # a day after the click, with no newer release
        assert await lane.refusal(actor="U2", rollout_id="r-back") is None
        now[0] = NOW + ROLL_BACK_LASTS
        await store.release(LANE_FREEZE)
        await store.take(LaneHold(LANE_LOCK, "U1", "INC-7", NOW))
        refused = await lane.refusal(actor="U2", rollout_id="r-back")
        assert isinstance(refused, Locked) and refused.stale is not None
        assert lane_words.lane_refusal_text(refused).startswith(
            "This roll back is stale: it was clicked at"
        )
        assert "more than 24h ago" in lane_words.lane_refusal_text(refused)


@settings(max_examples=300)
@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)))
def test_any_instant_in_the_weekend_window_ends_on_the_next_monday_at_eight_in_berlin(
    instant: datetime,
) -> None:
    now = instant.replace(tzinfo=UTC)
    local = now.astimezone(BERLIN)
    until = WEEKEND.covering(now)
    in_window = (
        (local.weekday() == 4 and local.hour >= 16)
        or local.weekday() in (5, 6)
        or (local.weekday() == 0 and local.hour < 8)
    )
    assert (until is not None) == in_window
    if until is not None:
        ends = until.astimezone(BERLIN)
        assert (ends.weekday(), ends.hour, ends.minute) == (0, 8, 0)
        assert timedelta(0) < until - now <= timedelta(days=2, hours=17)
