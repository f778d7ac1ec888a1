"""Durations as people write them in a plan or a modal: `90s`, `30m`, `1h`, `1h30m`."""

from __future__ import annotations

import re
from datetime import timedelta

from bot.domain.text import NOT_REPEATED, TOKEN_SHAPE

MAX_DURATION = timedelta(days=30)
"""Longer than any observation window; keeps `now + duration` far from datetime's limits."""

HINT = "use 90s, 30m or 1h"

# Hours, minutes, seconds in that order, each at most once; ASCII digits only.
_DURATION = re.compile(r"(?:([0-9]{1,12})h)?\s*(?:([0-9]{1,12})m)?\s*(?:([0-9]{1,12})s)?")


def parse_duration(text: str) -> timedelta:
    """A positive duration of at most 30 days; raises ValueError saying what is wrong."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None:
        raise ValueError(f"{_shown(text)} is not a duration ({HINT})")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"{_shown(text)} is not longer than zero ({HINT})")
    if total > MAX_DURATION.total_seconds():
        raise ValueError(f"{_shown(text)} is longer than {format_duration(MAX_DURATION)}")
    return timedelta(seconds=total)


def format_duration(duration: timedelta) -> str:
    """The compact form `parse_duration` reads back: `30m`, `1h30m`, `0s`; whole seconds only."""
    if duration < timedelta(0) or duration.microseconds:
        raise ValueError(f"{duration} is not a whole, non-negative number of seconds")
    total = int(duration.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (seconds, "s")]
    return "".join(f"{amount}{unit}" for amount, unit in parts if amount) or "0s"


def _shown(text: str) -> str:
    """What was typed, quoted in the refusal: short, and not a token pasted in it."""
    text = TOKEN_SHAPE.sub(NOT_REPEATED, text)
    return repr(text if len(text) <= 40 else text[:40] + "...")
