"""What Sentry's sessions API answers for a range: its buckets, and the window's figures in them.

Sentry rounds a range out to whole buckets of the `interval` (to whole hours on a self-hosted
Sentry, whatever the interval). Only the buckets of the window are the window's: their totals
when Sentry read no more than the window, their sum (a session crash rate) when its buckets are
fine enough to tell the window apart, none otherwise (said why, never diluted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

_INTERVALS = tuple(
    timedelta(seconds=seconds)
    for seconds in (10, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
)
"""Sentry's intervals (each divides a day), finest first: 10s on sentry.io, a minute or an hour
on a self-hosted Sentry."""
_MAX_POINTS = 1000
"""The most buckets Sentry answers for one query (`MAX_POINTS`); more is an HTTP 400."""
HOUR = timedelta(hours=1)
_MINUTE = timedelta(minutes=1)
SLACK = _MINUTE
"""How far Sentry's buckets may reach past the window at either end and still be the window's:
the finest bucket a self-hosted Sentry has (sessions started in the window's last minute
dilute it as little as the window's own would). Hour-rounded buckets reach much further."""


@dataclass(frozen=True)
class Totals:
    rate: Decimal | None
    count: int | None
    series: tuple[tuple[datetime, float], ...]
    wider: str | None = None
    """Why no figure is the window's: Sentry's buckets reach past it (then no rate or count)."""


def totals_of(
    body: dict[str, Any],
    field: str,
    count_field: str,
    window: tuple[datetime, datetime],
    slack: timedelta,
) -> Totals:
    groups = body.get("groups")
    if not isinstance(groups, list) or not groups:
        return Totals(rate=None, count=0, series=())
    group = groups[0] if isinstance(groups[0], dict) else {}
    buckets = _buckets(body)
    series = (group.get("series") or {}).get(field) or []
    chart = tuple(
        (moment, float(value))
        for (moment, _), value in zip(buckets, series, strict=False)
        if isinstance(value, int | float) and math.isfinite(value)
    )
    start, end = window
    read = (buckets[0][0], buckets[-1][1])
    if read[0] > start - slack and read[1] < end + slack:
        totals = group.get("totals") or {}
        rate, count = _rate(totals.get(field)), _count(totals.get(count_field))
    else:
        # Sentry read more than the window (a self-hosted Sentry rounds out to whole hours):
        # only its buckets inside the window are the window's, when its buckets are that fine.
        inside = [
            index for index, (first, last) in enumerate(buckets) if first < end and last > start
        ]
        reach = (buckets[inside[0]][0], buckets[inside[-1]][1]) if inside else read
        if field != "crash_rate(session)" or reach[0] <= start - slack or reach[1] >= end + slack:
            return Totals(rate=None, count=None, series=chart, wider=_wider(read, window, field))
        counts = (group.get("series") or {})[count_field]
        rate, count = _summed([(series[index], counts[index]) for index in inside])
    # A rate without its count (null, NaN, infinite, negative, fractional) is not judged: with
    # `min_sample` 0 an unknown count would let it PASS on sessions no one can tell were there.
    return Totals(rate=None if not count else rate, count=count, series=chart)


def _buckets(body: dict[str, Any]) -> list[tuple[datetime, datetime]]:
    """Sentry's buckets, each from its moment in `intervals` to the next (the last to the
    answer's `end`, or one bucket's length on a Sentry that does not answer it)."""
    moments = [_parse_time(stamp) for stamp in body["intervals"]]
    if "end" in body:
        ends = [*moments[1:], _parse_time(body["end"])]
    else:
        ends = [*moments[1:], moments[-1] + (moments[1] - moments[0])]
    return list(zip(moments, ends, strict=True))


def _summed(points: list[tuple[object, object]]) -> tuple[Decimal | None, int | None]:
    """The crash rate and sessions of buckets summed: each bucket's crashed sessions (its
    rate times its sessions) over all their sessions."""
    crashed = Decimal(0)
    sessions = 0
    for rate, count in points:
        counted = _count(count)
        if counted is None:
            return None, None
        if counted:
            share = _rate(rate)
            if share is None:
                return None, sessions + counted
            crashed += (share * counted).to_integral_value()
            sessions += counted
    return (crashed / sessions if sessions else None), sessions


def _wider(read: tuple[datetime, datetime], window: tuple[datetime, datetime], field: str) -> str:
    told = (
        f"no data: Sentry read {_clock(read[0])} to {_clock(read[1])} UTC for the window "
        f"{_clock(window[0])} to {_clock(window[1])} UTC: the sessions started outside the "
        "window would dilute its crash rate, so it is not judged. "
    )
    if field != "crash_rate(session)":
        # sentry.io too rounds a range asked by the minute or more out to whole hours.
        return told + (
            "Sentry counts users once over the whole hours it reads (for a window over about "
            "2¾ h on sentry.io, any window on a self-hosted Sentry): only a window from one "
            "whole hour to another is judged; crash_rate(session) is counted by its buckets"
        )
    return told + (
        "A self-hosted Sentry rounds a range to whole hours: with its minute-resolution feature "
        "(ranges up to 6 h) the bot counts a session crash rate by the minute; without it, only "
        "a window from one whole hour to another is judged"
    )


def fine_interval(start: datetime, end: datetime) -> timedelta:
    """The finest interval whose buckets over the range Sentry reads are no more than it
    answers: the range aligned to the interval under a minute, else rounded out to whole hours
    (by sentry.io too), each end reaching up to a bucket, or an hour, past the window."""
    for interval in _INTERVALS:
        reach = interval if interval < _MINUTE else max(interval, HOUR)
        if (end - start + 2 * reach) / interval <= _MAX_POINTS:
            return interval
    return _INTERVALS[-1]


def period(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % length == 0:
            return f"{seconds // length}{unit}"
    return f"{seconds}s"


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S")


def _count(value: object) -> int | None:
    """Sessions or users counted: a whole, finite, non-negative number (None otherwise)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not math.isfinite(value) or value < 0 or value != int(value):
        return None
    return int(value)


def _rate(value: object) -> Decimal | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return Decimal(str(value))


def _parse_time(stamp: object) -> datetime:
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
