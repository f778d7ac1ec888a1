"""Scheduled starts: `/rollout start <tag> --at "tue 09:00"` read in the starter's time zone,
and the schedule a rollout keeps until its dispatch goes, is held, or is cancelled.

The time is read by `dateutil` (weekdays, ISO dates, `9am`, `dec 8 9:30pm`) against the clock
and zone the caller passes; `today` and `tomorrow` are read here. A time without a date is
its next occurrence: `09:00` at 10:00 is tomorrow's, `tue 09:00` on a Tuesday afternoon next
week's; a date without a year is its next occurrence too (`jan 2 09:00` on December 30 is
next year's). A time must be given, in the future, and at most `MAX_AHEAD` away. Numeric
day-and-month dates (`08/12`) are refused: whether the day or the month comes first is a
guess. A local time that happens twice (clocks going back) is its first occurrence, or its
second once the first is past; one the clocks skip is read an hour later (`zoneinfo`'s fold
0).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from dateutil import parser

from bot.domain.errors import InvalidCommand
from bot.domain.freeze import LaneRefusal
from bot.domain.reasons import Reason
from bot.domain.text import shown

MAX_AHEAD = timedelta(days=14)
"""How far ahead a start may be scheduled: a release plan, not a calendar."""

LATE_SAID = timedelta(minutes=1)
"""A scheduled dispatch that goes this long after its time (the bot was down) says so."""

EXAMPLES = (
    '`--at "tue 09:00"`, `--at 09:00`, `--at "tomorrow 09:00"`, `--at "2026-12-08 09:00"`, '
    '`--at "tue 09:00+01:00"`'
)

_DAY_WORDS = {"today": 0, "tomorrow": 1}
_UTC_NAMES = frozenset({"UTC", "GMT", "Z"})
_INFO = parser.parserinfo()
# Two numbers joined by `/`, `.` or `-` that are not an ISO date's or a time's parts (`08/12`).
_NUMERIC_DAY_MONTH = re.compile(r"(?<![0-9:/.-])[0-9]{1,2}[/.-][0-9]{1,2}(?![0-9:])")
_OFFSET_ZONE = re.compile(r"UTC[+-][0-9]{2}:[0-9]{2}")
# An offset after UTC or GMT (`UTC+01:00`, as a schedule's zone is written back, `GMT-5`):
# dateutil reads it the POSIX way (`GMT+1` is UTC-01:00), so it is given to it as `+01:00`.
_NAMED_OFFSET = re.compile(
    r"\b(?:UTC|GMT) ?([+-])([0-9]{1,2})(?::?([0-9]{2}))?(?![0-9])", re.IGNORECASE
)
# UTC or GMT in any case (`09:00 utc`): dateutil takes only capitals for a zone's name.
_UTC_WORD = re.compile(r"\b(?:UTC|GMT)\b", re.IGNORECASE)
# A duration (`2h`, `1h30m`, `90 min`), which `--at` would otherwise read as a clock time.
_DURATION = re.compile(
    r"(?<![A-Za-z0-9:])[0-9]+ ?(?:h|hrs?|hours?|m|mins?|minutes?|s|d|days?|w|weeks?)(?![A-Za-z])",
    re.IGNORECASE,
)
# A time of day (`09:00`, `9am`), not an offset's (`+01:00`) nor a time's seconds.
_CLOCK_TIME = re.compile(
    r"(?<![0-9:+-])[0-9]{1,2}:[0-9]{2}|(?<![0-9:])[0-9]{1,2} ?(?:am|pm)\b", re.IGNORECASE
)

# A time written with a dot (`9.30pm`, `21.30`: no day and month) or an h (`9h30`), which
# dateutil misreads (`9.30pm` as 21:00) or the duration and day/month checks would name.
_DOTTED_TIME = re.compile(
    r"(?<![0-9:/.-])([0-9]{1,2})\.([0-5][0-9])( ?(?:am|pm)\b)?(?![0-9:./-])", re.IGNORECASE
)
_H_TIME = re.compile(r"(?<![A-Za-z0-9:])([0-9]{1,2})h([0-5][0-9])(?![0-9A-Za-z])", re.IGNORECASE)
_FEBRUARY_29 = re.compile(r"\bfeb[a-z]*\.? *29\b|\b29 *feb|-02-29", re.IGNORECASE)
_YEAR = re.compile(r"(?<![0-9])[0-9]{4}(?![0-9])")


class ZoneNeeded(InvalidCommand):
    """The time names no offset, and no time zone was given to read it in."""


@dataclass(frozen=True)
class Held:
    """Why a scheduled dispatch did not go at its time (the rollout waits for a person): the
    preflight's blocking checks, the lane's refusal (a freeze, someone else's lock, the
    two-person rule on an override), the plan's two-person rule on dispatch, a starter who is
    no longer an approver, or an error (GitHub's refusal, the bot down at the time)."""

    blocking: tuple[str, ...] = ()
    lane: LaneRefusal | None = None
    two_person: bool = False
    error: Reason | None = None
    """What failed, in words and the ids they name (`bot.domain.reasons`)."""
    not_approver: str | None = None
    """The starter, no longer a release approver at the time."""

    def summary(self) -> str:
        """Why, in plain words (for the audit trail and the log)."""
        if self.not_approver is not None:
            return f"its starter {self.not_approver} is no longer a release approver"
        if self.lane is not None:
            return f"the release lane refused it ({type(self.lane).__name__})"
        if self.blocking:
            return "blocked: " + "; ".join(self.blocking)
        if self.two_person:
            return "the plan's two-person rule needs another approver to dispatch"
        if self.error is not None:
            return self.error.text
        return "not dispatched"


@dataclass(frozen=True)
class Schedule:
    """A rollout's dispatch scheduled by `by` for `at` (typed in their time zone `zone`);
    `held` once it did not go then."""

    at: datetime
    by: str
    zone: str = "UTC"
    held: Held | None = None
    tag_commit: str = ""
    """The commit the release tag was at when the start was scheduled: the dispatch is held
    if it moved since (`bot.services.scheduled_starts`); empty when not known (no such tag
    then, or a schedule saved by an older version)."""

    @property
    def pending(self) -> bool:
        """Whether the dispatch is still to go at `at`."""
        return self.held is None

    @property
    def offset_given(self) -> bool:
        """Whether the time was typed with its offset (`zone` is then `UTC+01:00`), not read
        in the starter's Slack time zone."""
        return _OFFSET_ZONE.fullmatch(self.zone) is not None


def offset_zone(when: datetime) -> str:
    """The zone of a time typed with its offset, as a schedule keeps it (`UTC+01:00`)."""
    offset = when.utcoffset() or timedelta(0)
    sign, size = ("-", -offset) if offset < timedelta(0) else ("+", offset)
    hours, rest = divmod(int(size.total_seconds()) // 60, 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def dispatch_timer_key(rollout_id: str, at: datetime) -> str:
    """The durable timer of one scheduled dispatch (a new schedule would be a new timer)."""
    return f"schedule:{rollout_id}:{at.astimezone(UTC).isoformat()}"


def start_schedule(text: str, *, now: datetime, zone: ZoneInfo | None, by: str) -> Schedule:
    """The schedule `by` asks for with `text` (`_typed_time`): its time in UTC, and the zone
    it was read in, or the offset typed (`UTC+01:00`)."""
    when = _typed_time(text, now=now, zone=zone)
    typed = zone.key if zone is not None and when.tzinfo is zone else offset_zone(when)
    return Schedule(at=when.astimezone(UTC), by=by, zone=typed)


def _typed_time(text: str, *, now: datetime, zone: tzinfo | None) -> datetime:
    """When `text` (as a person in `zone` means it at `now`) is, in that zone or the offset
    the text names. Raises InvalidCommand saying why for an unreadable text, a digit other
    than 0 to 9, a duration (`2h`), two times, a time without an hour, a numeric day and
    month, two weekdays, a past time, or one more than MAX_AHEAD away. A time that names an
    offset (`09:00+01:00`, `09:00 UTC`) keeps it; without `zone`, only such a time is read
    (else ZoneNeeded)."""
    typed = _NAMED_OFFSET.sub(lambda found: f"{found[1]}{found[2]:0>2}:{found[3] or '00'}", text)
    typed = _UTC_WORD.sub(lambda found: found.group().upper(), typed)
    words = typed.strip().split(maxsplit=1)
    if not words:
        raise InvalidCommand(f"--at needs a time: {EXAMPLES}.")
    other_digit = next((char for char in text if char.isdigit() and not char.isascii()), None)
    if other_digit is not None:  # dateutil reads `٣:00` as 03:00, which nobody checks
        raise InvalidCommand(
            f"`{shown(text)}` has a digit other than 0 to 9 (`{other_digit}`): write the time "
            f"with 0 to 9, {EXAMPLES}."
        )
    _refuse_time_without_colon(text)
    duration = _DURATION.search(text)
    if duration is not None:
        raise InvalidCommand(
            f"`{shown(duration.group())}` is a duration: --at takes the time the dispatch goes, "
            f"read in your time zone ({EXAMPLES}); to wait two hours, give the time two hours "
            "from now."
        )
    if len(_CLOCK_TIME.findall(text)) > 1:
        raise InvalidCommand(f"`{shown(text)}` names more than one time: give one, {EXAMPLES}.")
    if _NUMERIC_DAY_MONTH.search(text):
        raise InvalidCommand(
            f"`{shown(text)}` could be day/month or month/day: name the month "
            f'(`--at "dec 8 09:00"`) or give the whole date (`--at "2026-12-08 09:00"`).'
        )
    weekdays = [word for word in re.findall(r"[A-Za-z]+", text) if _INFO.weekday(word) is not None]
    if len(weekdays) > 1:
        raise InvalidCommand(f"`{shown(text)}` names more than one day: {EXAMPLES}.")
    day = _DAY_WORDS.get(words[0].lower())
    rest = words[1] if day is not None and len(words) > 1 else typed.strip()
    if day is not None and len(words) == 1:
        rest = ""  # `tomorrow` alone: no time given
    local_now = now.astimezone(zone or _named_offset(rest) or UTC)  # whose today it is
    base = local_now.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    base += timedelta(days=day or 0)
    when = _read(text, rest, base, zone)
    if day is not None and when.date() != base.date():  # `tomorrow tue 09:00`
        raise InvalidCommand(f"`{shown(text)}` names more than one day: {EXAMPLES}.")
    if when <= now < when.replace(fold=1):  # the clocks went back: its second occurrence
        when = when.replace(fold=1)
    if when <= now and day is None:
        later = _read(text, rest, base + timedelta(days=1), zone)
        if later == when:  # a date was given: next year's, unless the year was given too
            later = _read(text, rest, datetime(base.year + 1, 1, 1), zone)
        # Its next occurrence; too far ahead when nearer than the one past (`jan 15` typed
        # on December 30), else it was meant in the past (`dec 1`).
        if later != when and (later <= now + MAX_AHEAD or later - now < now - when):
            when = later
    if when <= now:
        raise InvalidCommand(f"`{shown(text)}` is in the past: a start is scheduled ahead.")
    if when > now + MAX_AHEAD:
        raise _too_far(text)
    return when


def _too_far(text: str) -> InvalidCommand:
    return InvalidCommand(
        f"`{shown(text)}` is too far ahead: a start is scheduled at most "
        f"{MAX_AHEAD.days} days ahead."
    )


def _day_and_month(first: int, second: int) -> bool:
    """Whether `first.second` could be read as a day and a month, either way round (`9.12`,
    `9.30`; not `10.45` nor `9.00`)."""
    return any(
        1 <= month <= 12 and 1 <= day <= 31 for month, day in ((first, second), (second, first))
    )


def _refuse_time_without_colon(text: str) -> None:
    """Raise InvalidCommand for a time of day written with a dot (`9.30pm`; `9.12` stays a
    day and month, refused as such) or an h (`9h30`, which is a duration too): say how to
    write it."""
    dotted = _DOTTED_TIME.search(text)
    if dotted is not None:
        hour, minute, half = int(dotted[1]), dotted[2], (dotted[3] or "").strip()
        if half or (hour <= 23 and not _day_and_month(hour, int(minute))):
            raise InvalidCommand(
                f"`{shown(dotted.group())}` is a time written with a dot: write it with a "
                f'colon, `--at "{hour}:{minute}{half}"` ({EXAMPLES}).'
            )
    written = _H_TIME.search(text)
    if written is not None and int(written[1]) <= 23:
        raise InvalidCommand(
            f"`{shown(written.group())}` could be a time of day or a duration: --at takes the "
            f"time the dispatch goes, written with a colon, `--at {int(written[1]):02d}:"
            f"{written[2]}` ({EXAMPLES})."
        )


def _read(text: str, rest: str, base: datetime, zone: tzinfo | None) -> datetime:
    """`rest` read on the date `base` (local, naive); an aware datetime in `zone` unless it
    named an offset. Raises InvalidCommand unless it names an hour (ZoneNeeded when it names
    no offset and there is no `zone`)."""
    unreadable = InvalidCommand(f"`{shown(text)}` is not a time I can read: {EXAMPLES}.")
    if not rest:
        raise InvalidCommand(f"`{shown(text)}` names no time of day: {EXAMPLES}.")
    try:
        first = parser.parse(rest, default=base, tzinfos=_offset)
        # Read again on another hour: an hour that moved with it was not given.
        second = parser.parse(rest, default=base.replace(hour=1), tzinfos=_offset)
        first.utcoffset()  # an offset of a day or more (`+25:00`) fails here
    except (ValueError, OverflowError) as error:
        if "day is out of range" in str(error):  # dateutil's words: `feb 30`, `apr 31`
            raise _no_such_day(text, base) from None
        raise unreadable from None
    if first.hour != second.hour:
        raise InvalidCommand(f"`{shown(text)}` names no time of day: {EXAMPLES}.")
    if first.tzinfo is not None:
        return first
    if zone is None:
        raise ZoneNeeded(f"`{shown(text)}` names no offset and no time zone was given.")
    return first.replace(tzinfo=zone)


def _no_such_day(text: str, base: datetime) -> InvalidCommand:
    """A date its month does not have; for February 29, the year that has none: the one typed,
    else the next February's (a leap year's is more than MAX_AHEAD away)."""
    if not _FEBRUARY_29.search(text):
        return InvalidCommand(f"`{shown(text)}` names a day its month does not have.")
    typed = _YEAR.search(text)
    year = int(typed[0]) if typed else base.year + (base.month > 2)
    if calendar.isleap(year):
        return _too_far(text)
    return InvalidCommand(
        f"`{shown(text)}`: February 29 does not exist in {year}, which is not a leap year."
    )


def _named_offset(rest: str) -> tzinfo | None:
    """The offset `rest` names (`09:00+01:00`), if any and readable."""
    try:
        return parser.parse(rest, default=datetime(2000, 1, 1), tzinfos=_offset).tzinfo
    except (ValueError, OverflowError, InvalidCommand):
        return None


def _offset(name: str | None, offset: int | None) -> int | None:
    """The offset dateutil found (`+01:00`) or UTC (None: no zone named); any other zone name
    is refused rather than guessed (`CET`, `EST` are ambiguous abbreviations; dateutil reads
    `CET+1` as UTC-01:00)."""
    if name is None:
        return offset
    if name.upper() in _UTC_NAMES:
        return offset or 0
    raise InvalidCommand(
        f"`{shown(name or '')}` is not a time zone I read: the time is read in your Slack "
        "time zone, or give an offset such as `+01:00`."
    )


def zone_named(name: str, *, example: str = '--at "tue 09:00+01:00"') -> ZoneInfo:
    """The IANA zone Slack gave for a person (`Europe/Berlin`). Raises InvalidCommand when
    this host's time zone database does not know it (never read as UTC instead), asking for
    the time with an offset, as in `example`."""
    try:
        return ZoneInfo(name)
    # ZoneInfoNotFoundError is a KeyError; a folder of the database (`America`) an OSError.
    except (ValueError, KeyError, OSError):
        raise InvalidCommand(
            f"Slack gives your time zone as `{shown(name)}`, which this bot's time zone "
            f"database does not know: give the time with an offset, `{example}`."
        ) from None
