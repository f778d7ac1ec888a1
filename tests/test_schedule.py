"""The scheduled start's time, read as a person in their Slack time zone means it (pure: the
clock and the zone are passed in), and `--at` taken out of the start command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.errors import InvalidCommand
from bot.domain.rollout_command import Start, parse_command
from bot.domain.schedule import MAX_AHEAD, Held, ZoneNeeded, start_schedule, zone_named

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 12, 4, 14, 30, tzinfo=UTC)
"""A Friday, 15:30 in Berlin (UTC+1 in December)."""


def parse_start_time(text: str, *, now: datetime, zone: ZoneInfo | None) -> datetime:
    """The time a schedule typed as `text` is for, in UTC."""
    return start_schedule(text, now=now, zone=zone, by="U0RELMGR01").at


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tue 09:00", utc(2026, 12, 8, 8, 0)),
        ("Tuesday 9am", utc(2026, 12, 8, 8, 0)),
        ("09:00", utc(2026, 12, 5, 8, 0)),  # past today: tomorrow's
        ("16:00", utc(2026, 12, 4, 15, 0)),  # still ahead today
        ("fri 09:00", utc(2026, 12, 11, 8, 0)),  # today is Friday, 09:00 is past: next week
        ("fri 16:00", utc(2026, 12, 4, 15, 0)),
        ("tomorrow 09:00", utc(2026, 12, 5, 8, 0)),
        ("TOMORROW 9:30pm", utc(2026, 12, 5, 20, 30)),
        ("today 16:00", utc(2026, 12, 4, 15, 0)),
        ("2026-12-08 09:00", utc(2026, 12, 8, 8, 0)),
        ("dec 8 9:30pm", utc(2026, 12, 8, 20, 30)),
        ("2026-12-18 15:00", utc(2026, 12, 18, 14, 0)),  # 13 days 23.5 hours ahead
        ("09:00 UTC", utc(2026, 12, 5, 9, 0)),  # an offset named is kept
        ("09:00 utc", utc(2026, 12, 5, 9, 0)),  # in any case, as a freeze's end reads it
        ("tue 9am gmt", utc(2026, 12, 8, 9, 0)),
        ("2026-12-08T09:00-05:00", utc(2026, 12, 8, 14, 0)),
    ],
)
def test_a_time_is_read_in_the_starters_zone(text: str, expected: datetime) -> None:
    assert parse_start_time(text, now=NOW, zone=BERLIN) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("today 09:00", "`today 09:00` is in the past: a start is scheduled ahead."),
        ("2026-12-01 09:00", "`2026-12-01 09:00` is in the past"),
        ("2026-12-04 15:00", "is in the past"),  # 14:00 UTC, half an hour ago
        ("2026-12-19 09:00", "is too far ahead: a start is scheduled at most 14 days ahead."),
        ("2027-06-01 09:00", "too far ahead"),
        ("banana", "`banana` is not a time I can read"),
        ("next tue 09:00", "is not a time I can read"),
        ("25:00", "is not a time I can read"),
        ("2026-02-30 09:00", "`2026-02-30 09:00` names a day its month does not have."),
        ("apr 31 09:00", "names a day its month does not have"),
        ("tue", "`tue` names no time of day"),
        ("tomorrow", "`tomorrow` names no time of day"),
        ("2026-12-08", "names no time of day"),
        ("9", "names no time of day"),  # dateutil reads a day of the month
        ("09:00 CET", "`CET` is not a time zone I read"),
        ("", "--at needs a time"),
        ("\u0663:00", "`\u0663:00` has a digit other than 0 to 9 (`\u0663`)"),  # Arabic-Indic 3
        ("tue \uff10\uff19:00", "has a digit other than 0 to 9"),  # fullwidth 09
        ("tue 09:00\u00b2", "has a digit other than 0 to 9"),
    ],
)
def test_a_time_that_cannot_be_scheduled_says_why(text: str, message: str) -> None:
    with pytest.raises(InvalidCommand) as caught:
        parse_start_time(text, now=NOW, zone=BERLIN)
    assert message in caught.value.message


def test_daylight_saving_time_is_the_zones_on_that_day() -> None:
    saturday = utc(2027, 3, 13, 12, 0)  # 07:00 EST; clocks go forward on Sunday at 02:00
    assert parse_start_time("tomorrow 09:00", now=saturday, zone=NEW_YORK) == utc(
        2027, 3, 14, 13, 0
    )  # EDT, UTC-4
    assert parse_start_time("08:00", now=saturday, zone=NEW_YORK) == utc(2027, 3, 13, 13, 0)
    # A time the clocks skip reads as an hour later (zoneinfo, fold=0): 03:30 EDT.
    assert parse_start_time("tomorrow 02:30", now=saturday, zone=NEW_YORK) == utc(
        2027, 3, 14, 7, 30
    )


@given(
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    now=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
)
def test_a_time_of_day_is_its_next_occurrence(hour: int, minute: int, now: datetime) -> None:
    when = parse_start_time(f"{hour:02d}:{minute:02d}", now=now, zone=BERLIN)
    local = when.astimezone(BERLIN)
    assert now < when <= now + timedelta(hours=25)  # a day, give or take a DST change
    assert when <= now + MAX_AHEAD
    assert (local.hour, local.minute) == (hour, minute) or local.hour == hour + 1  # skipped


def test_a_date_without_a_year_is_its_next_occurrence() -> None:
    december_30 = utc(2026, 12, 30, 10, 0)
    assert parse_start_time("jan 2 09:00", now=december_30, zone=BERLIN) == utc(2027, 1, 2, 8, 0)
    assert parse_start_time("dec 31 09:00", now=december_30, zone=BERLIN) == utc(2026, 12, 31, 8, 0)
    with pytest.raises(InvalidCommand, match="is in the past"):  # a year given is kept
        parse_start_time("2026-01-02 09:00", now=december_30, zone=BERLIN)
    with pytest.raises(InvalidCommand, match="is in the past"):  # next year's is too far
        parse_start_time("dec 1 09:00", now=december_30, zone=BERLIN)
    # Next year's is nearer than this year's: meant ahead, and too far ahead, not in the past.
    with pytest.raises(InvalidCommand, match="`jan 15 09:00` is too far ahead"):
        parse_start_time("jan 15 09:00", now=december_30, zone=BERLIN)


@given(
    now=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
    ahead=st.timedeltas(min_value=timedelta(hours=1), max_value=MAX_AHEAD - timedelta(hours=2)),
)
def test_a_month_and_day_typed_is_that_day_within_the_next_two_weeks(
    now: datetime, ahead: timedelta
) -> None:
    target = (now + ahead).astimezone(BERLIN)
    text = f"{target:%b} {target.day} {target:%H:%M}"  # `jan 2 09:00`: no year
    when = parse_start_time(text, now=now, zone=BERLIN).astimezone(BERLIN)
    assert (when.year, when.month, when.day) == (target.year, target.month, target.day)
    assert now < when <= now + MAX_AHEAD


@pytest.mark.parametrize("text", ["08/12 09:00", "8.12. 09:00", "12-08 09:00", "08/12/2026 9am"])
def test_a_numeric_day_and_month_is_refused_naming_the_forms_read(text: str) -> None:
    with pytest.raises(InvalidCommand) as caught:
        parse_start_time(text, now=NOW, zone=BERLIN)
    assert "could be day/month or month/day" in caught.value.message
    assert '`--at "dec 8 09:00"`' in caught.value.message


@pytest.mark.parametrize(
    "typed", ["wed 09:00 tue", "tomorrow tue 09:00", "today dec 8 09:00", "tomorrow 2026-12-10 9am"]
)
def test_two_days_named_are_refused(typed: str) -> None:
    with pytest.raises(InvalidCommand, match="names more than one day"):
        when = parse_start_time(typed, now=NOW, zone=BERLIN)
        pytest.fail(f"--at {typed!r} was scheduled for {when.astimezone(BERLIN)}")
    # The same day named twice is one day (NOW is a Friday).
    assert parse_start_time("tomorrow sat 09:00", now=NOW, zone=BERLIN) == utc(2026, 12, 5, 8, 0)


def test_a_time_with_its_offset_needs_no_zone_and_keeps_it() -> None:
    typed = start_schedule("tue 09:00+01:00", now=NOW, zone=None, by="U1")
    assert typed.at == utc(2026, 12, 8, 8, 0) and typed.zone == "UTC+01:00" and typed.offset_given
    behind = start_schedule("2026-12-08 09:00 -05:30", now=NOW, zone=None, by="U1")
    assert behind.at == utc(2026, 12, 8, 14, 30) and behind.zone == "UTC-05:30"
    late = utc(2026, 12, 4, 23, 30)  # already the 5th at +01:00: its tomorrow is the 6th
    assert start_schedule("tomorrow 09:00+01:00", now=late, zone=None, by="U1").at == utc(
        2026, 12, 6, 8, 0
    )
    read = start_schedule("tue 09:00", now=NOW, zone=BERLIN, by="U1")
    assert read.zone == "Europe/Berlin" and not read.offset_given
    with pytest.raises(ZoneNeeded):
        start_schedule("tue 09:00", now=NOW, zone=None, by="U1")


@pytest.mark.parametrize(
    ("typed", "expected", "zone"),
    [
        # As the answer writes the offset back (`UTC+01:00`): ahead of UTC, never behind it
        # (dateutil reads `GMT+1` the POSIX way, as UTC-01:00).
        ("tue 09:00 UTC+01:00", utc(2026, 12, 8, 8, 0), "UTC+01:00"),
        ("tue 09:00 UTC+1", utc(2026, 12, 8, 8, 0), "UTC+01:00"),
        ("tue 09:00 GMT-5", utc(2026, 12, 8, 14, 0), "UTC-05:00"),
        ("tue 09:00 UTC -05:00", utc(2026, 12, 8, 14, 0), "UTC-05:00"),
        ("tue 09:00 utc+5:30", utc(2026, 12, 8, 3, 30), "UTC+05:30"),
    ],
)
def test_an_offset_after_utc_or_gmt_is_ahead_of_utc_by_it(
    typed: str, expected: datetime, zone: str
) -> None:
    schedule = start_schedule(typed, now=NOW, zone=None, by="U1")
    assert (schedule.at, schedule.zone) == (expected, zone)


@given(
    ahead=st.timedeltas(min_value=timedelta(days=1), max_value=timedelta(days=12)),
    minutes=st.integers(-12 * 60, 14 * 60).map(lambda m: m - m % 15),
    name=st.sampled_from(["UTC", "GMT", "utc"]),
    space=st.sampled_from(["", " "]),
)
def test_a_time_with_an_offset_after_utc_is_the_iso_time_with_that_offset(
    ahead: timedelta, minutes: int, name: str, space: str
) -> None:
    offset = timezone(timedelta(minutes=minutes))
    meant = (NOW + ahead).astimezone(offset).replace(second=0, microsecond=0)
    iso = meant.isoformat()  # 2026-12-08T09:00:00+05:30
    typed = f"{meant:%Y-%m-%d %H:%M} {name}{space}{iso[-6:]}"
    assert start_schedule(typed, now=NOW, zone=BERLIN, by="U1").at == meant


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("tue 09:00 CET+1", "`CET` is not a time zone I read"),
        ("tue 09:00+25:00", "`tue 09:00+25:00` is not a time I can read"),
        ("tue 09:00 UTC-24", "`tue 09:00 UTC-24` is not a time I can read"),
    ],
)
def test_an_offset_that_cannot_be_read_is_refused(typed: str, says: str) -> None:
    with pytest.raises(InvalidCommand) as refused:
        schedule = start_schedule(typed, now=NOW, zone=BERLIN, by="U1")
        pytest.fail(f"--at {typed!r} was scheduled for {schedule.at} ({schedule.zone})")
    assert says in refused.value.message


def test_a_time_the_clocks_go_back_over_is_its_first_occurrence() -> None:
    saturday = utc(2026, 10, 24, 12, 0)  # Berlin goes back from 03:00 CEST to 02:00 CET Sunday
    assert parse_start_time("tomorrow 02:30", now=saturday, zone=BERLIN) == utc(
        2026, 10, 25, 0, 30
    )  # 02:30 CEST (UTC+2), not 02:30 CET an hour later


def test_a_time_the_clocks_pass_twice_is_its_second_occurrence_once_the_first_is_past() -> None:
    first_pass = utc(2026, 10, 25, 0, 45)  # 02:45 CEST, before the clocks go back at 03:00
    second_pass = utc(2026, 10, 25, 1, 45)  # 02:45 CET, an hour later on the wall: again 02:45
    assert parse_start_time("02:50", now=first_pass, zone=BERLIN) == utc(2026, 10, 25, 0, 50)
    # Five minutes ahead on the wall, not tomorrow's 02:50, nor refused as past.
    assert parse_start_time("02:50", now=second_pass, zone=BERLIN) == utc(2026, 10, 25, 1, 50)
    assert parse_start_time("today 02:50", now=second_pass, zone=BERLIN) == utc(2026, 10, 25, 1, 50)
    assert parse_start_time("02:30", now=second_pass, zone=BERLIN) == utc(2026, 10, 26, 1, 30)


def test_a_slack_time_zone_is_read_by_its_name() -> None:
    assert zone_named("Europe/Berlin") == BERLIN


@pytest.mark.parametrize("name", ["Europe/Atlantis", "America"])
def test_a_slack_time_zone_unknown_here_is_refused_not_read_as_utc(name: str) -> None:
    """`America` is a folder of the time zone database, not a zone."""
    with pytest.raises(InvalidCommand, match=rf"`{name}`.*offset"):
        zone = zone_named(name)
        pytest.fail(f"read in {zone.key}")


@pytest.mark.parametrize("typed", ["2h", "1h30m", "09:00 2h", "90 min", "tue 09:00 3d"])
def test_at_refuses_a_duration_saying_how_to_write_a_time(typed: str) -> None:
    with pytest.raises(InvalidCommand, match="is a duration: --at takes the time") as refused:
        schedule = start_schedule(typed, now=NOW, zone=BERLIN, by="UANN")
        pytest.fail(f"--at {typed!r} was scheduled for {schedule.at.astimezone(BERLIN)}")
    assert '`--at "tue 09:00"`' in refused.value.message


@pytest.mark.parametrize("typed", ["09:00 10:00", "9am 10:30", "tomorrow 9am 09:00"])
def test_at_refuses_text_naming_two_times(typed: str) -> None:
    with pytest.raises(InvalidCommand, match="names more than one time"):
        start_schedule(typed, now=NOW, zone=BERLIN, by="UANN")


@pytest.mark.parametrize(
    "typed", ["9:30pm", "2026-12-08T09:00:00+01:00", "tue 09:00+01:00", "dec 8 9am"]
)
def test_a_time_with_minutes_seconds_or_an_offset_is_one_time(typed: str) -> None:
    assert start_schedule(typed, now=NOW, zone=BERLIN, by="UANN").at > NOW


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ('start v1.4.2 --at "tue 09:00"', Start("v1.4.2", at="tue 09:00")),
        ('start --at "tue 09:00" v1.4.2 --flags-ready', Start("v1.4.2", True, at="tue 09:00")),
        ("start v1.4.2 --at tue 09:00 --flags-ready", Start("v1.4.2", True, at="tue 09:00")),
        ("start --at tomorrow 9am v1.4.2", Start("v1.4.2", at="tomorrow 9am")),
        ("start v1.4.2 --at 09:00", Start("v1.4.2", at="09:00")),
        (
            "start v1.4.2 --at=\N{LEFT DOUBLE QUOTATION MARK}tue 09:00"
            "\N{RIGHT DOUBLE QUOTATION MARK}",
            Start("v1.4.2", at="tue 09:00"),
        ),
        (
            'start v1.4.2 --at 09:00 --override-freeze "hotfix for INC-1"',
            Start("v1.4.2", override_freeze="hotfix for INC-1", at="09:00"),
        ),
        (
            'start v1.4.2 --override-freeze "hotfix" --at "tue 09:00"',
            Start("v1.4.2", override_freeze="hotfix", at="tue 09:00"),
        ),
    ],
)
def test_at_is_taken_out_of_the_start_wherever_it_stands(text: str, start: Start) -> None:
    assert parse_command(text) == start


def test_at_without_a_time_is_refused() -> None:
    with pytest.raises(InvalidCommand, match="--at needs a time"):
        parse_command("start v1.4.2 --at")


def test_a_quoted_value_is_taken_as_typed() -> None:
    assert parse_command(
        'start v1.4.2 --override-freeze "revert --at 9 --flags-ready" --at 09:00'
    ) == (Start("v1.4.2", override_freeze="revert --at 9 --flags-ready", at="09:00"))
    assert parse_command("start v1.4.2 --override-freeze it's urgent --flags-ready") == Start(
        "v1.4.2", True, override_freeze="it's urgent"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("start v1.4.2 --at 09:00 --at 10:00", "`--at` is given twice: give it once."),
        ('start v1.4.2 --override-freeze "a" --override-freeze "b"', "is given twice"),
        ('start v1.4.2 --at "tue 09:00', "The quote after `--at` is not closed."),
        ("start v1.4.2 --flags-ready=yes", "`--flags-ready` takes no value"),
        ("start v1.4.2 --when 09:00", "`--when` is not an option of start"),
        ("start --at tue 09:00 UTC v1", 'quote the whole time, `--at "tue 09:00 UTC"`.'),
        ("start v1 --at tue 09:00 UTC", 'quote the whole time, `--at "tue 09:00 UTC"`.'),
        ("start v1 --at 09:00 +01:00", 'quote the whole time, `--at "09:00 +01:00"`.'),
        ("start --at 9 pm v1", 'quote the whole time, `--at "9 pm"`.'),
        ("start --at tue 09:00 Europe/Berlin v1", '`--at "tue 09:00 Europe/Berlin"`'),
        ("start --at tue 09:00 v1 v2", "Unexpected `v2`"),  # a second tag, not the time's
    ],
)
def test_an_option_given_wrongly_is_refused_saying_how(text: str, message: str) -> None:
    with pytest.raises(InvalidCommand) as caught:
        parse_command(text)
    assert message in caught.value.message


def test_a_held_schedule_says_why_in_plain_words() -> None:
    assert Held(blocking=("Image tag: not published",)).summary() == (
        "blocked: Image tag: not published"
    )
    assert "two-person" in Held(two_person=True).summary()


@given(hour=st.integers(1, 12), minute=st.integers(0, 59), half=st.sampled_from(["am", "pm"]))
def test_a_time_written_with_a_dot_is_refused_saying_to_write_a_colon(
    hour: int, minute: int, half: str
) -> None:
    typed = f"{hour}.{minute:02d}{half}"  # dateutil would read `9.30pm` as 21:00
    with pytest.raises(InvalidCommand) as caught:
        parse_start_time(f"tomorrow {typed}", now=NOW, zone=BERLIN)
    message = caught.value.message
    assert f"`{typed}` is a time written with a dot: write it with a colon" in message
    assert f'`--at "{hour}:{minute:02d}{half}"`' in message and "day/month" not in message


def test_a_dotted_time_no_date_could_be_is_a_time_and_one_that_could_is_a_date() -> None:
    with pytest.raises(InvalidCommand, match=r"`21\.30` is a time written with a dot"):
        parse_start_time("21.30", now=NOW, zone=BERLIN)
    with pytest.raises(InvalidCommand, match="could be day/month or month/day"):
        parse_start_time("9.12 09:00", now=NOW, zone=BERLIN)


@pytest.mark.parametrize(
    ("typed", "date"),
    [
        ("10.45", False),  # no month 45, no day 45
        ("9.00", False),  # no day 0
        ("0.30", False),
        ("11.59", False),
        ("23.00", False),
        ("9.12", True),  # September 12 or December 9
        ("9.30", True),  # September 30
        ("12.31", True),
        ("23.11", True),  # November 23
    ],
)
def test_a_dotted_time_is_a_date_only_when_a_day_and_month_could_be_read_in_it(
    typed: str, date: bool
) -> None:
    with pytest.raises(InvalidCommand) as caught:
        parse_start_time(typed, now=NOW, zone=BERLIN)
    says = "could be day/month or month/day" if date else f"`{typed}` is a time written with a dot"
    assert says in caught.value.message


@given(hour=st.integers(0, 23), minute=st.integers(0, 59))
def test_a_time_written_with_an_h_is_refused_as_a_time_or_a_duration(
    hour: int, minute: int
) -> None:
    typed = f"{hour}h{minute:02d}"
    with pytest.raises(InvalidCommand) as caught:
        parse_start_time(typed, now=NOW, zone=BERLIN)
    message = caught.value.message
    assert f"`{typed}` could be a time of day or a duration" in message
    assert f"`--at {hour:02d}:{minute:02d}`" in message


@given(year=st.integers(2027, 2099).filter(lambda year: year % 4 != 0))
def test_february_29_of_a_year_without_one_says_so(year: int) -> None:
    with pytest.raises(InvalidCommand) as caught:
        parse_start_time(f"{year}-02-29 09:00", now=NOW, zone=BERLIN)
    assert f"February 29 does not exist in {year}, which is not a leap year" in (
        caught.value.message
    )


@pytest.mark.parametrize(
    ("now", "says"),
    [
        (utc(2027, 2, 20, 9), "February 29 does not exist in 2027"),
        (NOW, "February 29 does not exist in 2027"),  # the next February's
        (utc(2027, 12, 20), "too far ahead"),  # 2028's, more than two weeks away
        (utc(2028, 2, 20), None),  # a leap year's, read
    ],
)
def test_february_29_without_a_year_is_the_next_februarys(now: datetime, says: str | None) -> None:
    if says is None:
        assert parse_start_time("feb 29 09:00", now=now, zone=BERLIN) == utc(2028, 2, 29, 8)
        return
    with pytest.raises(InvalidCommand, match=says):
        parse_start_time("feb 29 09:00", now=now, zone=BERLIN)
