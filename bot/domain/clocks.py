"""How far a metrics source's clock is from the bot's, and when that is too far for a gate.

A gate reads its window, from its start to its end on the bot's clock, and Prometheus stamps
every sample it scrapes with its own clock. When the two clocks differ by N seconds, the
figures Prometheus gives for the window are those of the window shifted by N seconds: with
Prometheus ahead, they end N seconds before the window does and begin N seconds before the
stage did (with N longer than the window, wholly before the canary's traffic: a failing canary
passes on the old release's figures); with it behind, the window's last N seconds are not
scraped yet. Neither shows in the figures themselves, so the clocks are compared first.

A clock is read by a request (Prometheus's `time()`): the moment it was read lies somewhere
between the request's start and the answer's arrival on the bot's clock, so one reading gives
a range for the difference, as wide as the round trip, never a single number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_CLOCK_SKEW = timedelta(seconds=5)
"""How far apart the bot's and the metrics source's clocks may be for a gate to read figures.
Clocks kept by NTP agree within milliseconds, so seconds apart means one host is not synced
(and drifts further); 5 s is a third of Prometheus's default 15 s scrape interval, so a window
shifted by less moves each of its edges past at most one scrape, as the scrapes' own timing
already does; and a few seconds is far above what a loaded host's scheduling adds to a reading
(the round trip is allowed for, see `ClockOffset`)."""


@dataclass(frozen=True)
class ClockOffset:
    """Their clock minus the bot's, known to lie between `low` and `high` (the request that
    read their clock started at `high`'s and answered at `low`'s moment)."""

    low: timedelta
    high: timedelta

    @classmethod
    def read(cls, *, sent: datetime, theirs: datetime, received: datetime) -> ClockOffset:
        """The offset from their clock `theirs`, read between the bot's `sent` and `received`."""
        return cls(low=theirs - received, high=theirs - sent)

    def narrowed(self, other: ClockOffset) -> ClockOffset:
        """What both readings say together: an offset that did not change lies in both ranges.
        Ranges that do not meet (a clock stepped between them) leave the later reading."""
        low, high = max(self.low, other.low), min(self.high, other.high)
        return ClockOffset(low, high) if low <= high else other

    @property
    def middle(self) -> timedelta:
        """The middle of its range: the offset's one figure (ahead is positive)."""
        return (self.low + self.high) / 2

    @property
    def seconds(self) -> int:
        """The offset in whole seconds, the middle of its range (ahead is positive)."""
        return round(self.middle.total_seconds())

    @property
    def uncertainty(self) -> timedelta:
        """The round trip of the reading: how wide the range is."""
        return self.high - self.low

    @property
    def apart(self) -> bool:
        """Certainly more than `MAX_CLOCK_SKEW` apart, however long the reading took."""
        return self.low > MAX_CLOCK_SKEW or self.high < -MAX_CLOCK_SKEW

    @property
    def agree(self) -> bool:
        """Certainly within `MAX_CLOCK_SKEW` of each other."""
        return self.low >= -MAX_CLOCK_SKEW and self.high <= MAX_CLOCK_SKEW


def clocks_apart(seconds: int, *, whose: str) -> str:
    """Why no figure was read when `whose` clock is `seconds` ahead of the bot's (negative:
    behind), and what to do: plain text, for the gate's verdict and card."""
    limit = int(MAX_CLOCK_SKEW.total_seconds())
    return (
        f"{whose} clock is {offset_words(seconds)}, more than {limit}s apart: "
        f"{shifted_words(seconds)}, so none is read; sync both hosts' clocks with NTP"
    )


def offset_words(seconds: int) -> str:
    """`42s ahead of the bot's`, `42s behind the bot's`."""
    return f"{abs(seconds)}s {'ahead of' if seconds > 0 else 'behind'} the bot's"


def shifted_words(seconds: int) -> str:
    """What a clock `seconds` ahead of the bot's (negative: behind) does to a window's figures."""
    if seconds > 0:
        return f"the figures it gives for a window are those of {seconds}s before it"
    return f"a window's last {-seconds}s are not in its figures yet"
