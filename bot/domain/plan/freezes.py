"""The plan's freeze calendar: weekly windows (Friday 16:00 to Monday 08:00) and dated ones (a
holiday week), each in a named IANA time zone. `covering(now)` answers until when a window
freezes the release lane; the rules that apply it are in `bot.domain.freeze`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, model_validator

from bot.domain.plan.fields import Key, PlanModel, Problems, Text

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKLY = re.compile(r"(mon|tue|wed|thu|fri|sat|sun)[a-z]*\s+([0-9]{1,2}):([0-9]{2})")
_DATED = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})[ T]([0-9]{1,2}):([0-9]{2})")


_STANDARD_ALL_YEAR = {"EST": "America/New_York", "MST": "America/Denver"}
"""tzdata's zones named like a season that never change to daylight saving time (`EST` is
UTC-05:00 in July too): a team writing them means the place, whose clocks do change."""


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not an IANA time zone (such as Europe/Berlin, America/New_York or UTC)"
        ) from None
    if (place := _STANDARD_ALL_YEAR.get(value)) is not None:
        raise ValueError(
            f"{value!r} keeps standard time all year, with no daylight saving time: name the "
            f"place, such as {place}"
        )
    return value


def _weekly(value: str) -> str:
    found = _WEEKLY.fullmatch(value.strip().lower())
    if found is None or int(found[2]) > 23 or int(found[3]) > 59:
        raise ValueError(f"{value!r} is not a weekday and time (such as 'fri 16:00')")
    return value


def _dated(value: str) -> str:
    found = _DATED.fullmatch(value.strip())
    try:
        if found is None:
            raise ValueError
        date.fromisoformat(found[1])
        time(int(found[2]), int(found[3]))
    except ValueError:
        raise ValueError(f"{value!r} is not a date and time (such as '2026-12-21 00:00')") from None
    return value


Zone = Annotated[str, AfterValidator(_zone)]
WeeklyTime = Annotated[str, AfterValidator(_weekly)]
DatedTime = Annotated[str, AfterValidator(_dated)]


def _weekday_time(text: str) -> tuple[int, time]:
    found = _WEEKLY.fullmatch(text.strip().lower())
    assert found is not None  # validated
    return _DAYS.index(found[1]), time(int(found[2]), int(found[3]))


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) of a wall-clock time in `zone`. A time skipped by a DST change reads
    as if the clock had not changed (zoneinfo's fold=0), so it lands an hour later."""
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


class WeeklyWindow(PlanModel):
    start: WeeklyTime = Field(alias="from")
    until: WeeklyTime


class DatedWindow(PlanModel):
    start: DatedTime = Field(alias="from")
    until: DatedTime


class CalendarFreeze(PlanModel):
    """One entry of `freezes:` in the plan: a weekly window or a dated one, in `timezone`."""

    name: Key
    reason: Text | None = None
    timezone: Zone
    weekly: WeeklyWindow | None = None
    dates: DatedWindow | None = None

    @model_validator(mode="after")
    def _one_window(self) -> CalendarFreeze:
        if (self.weekly is None) == (self.dates is None):
            raise Problems([((), "needs exactly one of weekly or dates")])
        if self.dates is not None:
            start, until = self._dated(self.dates.start), self._dated(self.dates.until)
            if until <= start:
                raise Problems([(("dates", "until"), "must be after dates.from")])
        weekly = self.weekly
        if weekly is not None and _weekday_time(weekly.start) == _weekday_time(weekly.until):
            raise Problems([(("weekly", "until"), "must differ from weekly.from")])
        return self

    def _dated(self, text: str) -> datetime:
        found = _DATED.fullmatch(text.strip())
        assert found is not None  # validated
        clock = time(int(found[2]), int(found[3]))
        return _at(date.fromisoformat(found[1]), clock, ZoneInfo(self.timezone))

    def covering(self, now: datetime) -> datetime | None:
        """The end (UTC) of this entry's window in force at `now`, or None when none is."""
        if self.dates is not None:
            start, until = self._dated(self.dates.start), self._dated(self.dates.until)
            return until if start <= now < until else None
        assert self.weekly is not None
        zone = ZoneInfo(self.timezone)
        start_day, start_time = _weekday_time(self.weekly.start)
        end_day, end_time = _weekday_time(self.weekly.until)
        today = now.astimezone(zone).date()
        # The latest start at or before now: this week's, or the one a week before.
        starts = [
            today - timedelta(days=back)
            for back in range(8)
            if (today - timedelta(days=back)).weekday() == start_day
        ]
        begun = [day for day in starts if _at(day, start_time, zone) <= now]
        if not begun:
            return None
        first = max(begun)
        ahead = (end_day - start_day) % 7
        if ahead == 0 and end_time <= start_time:
            ahead = 7  # until the same weekday next week
        until = _at(first + timedelta(days=ahead), end_time, zone)
        return until if now < until else None
