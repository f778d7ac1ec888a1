"""`/rollout report [period]`: the rollouts that ended in a period, summed up.

A period is `<n>d` (the last n days, up to now) or a calendar month `YYYY-MM` (its days in the
asker's time zone, `Period.zone`; UTC when it is not known). The
figures come from each rollout's summary (`bot.domain.rollout_summary`): a rollout succeeded
when every track completed and none was rolled back after it completed; its lead time runs
from its dispatch to 100% (the end of a rollout whose every track completed; a scheduled
start's wait for its time and the preflight before the dispatch are not counted); time held
is what its stages waited for a person.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.domain.errors import InvalidCommand
from bot.domain.rollout.state import StopReason, TrackState
from bot.domain.rollout_summary import PersonAct, RolloutSummary

DEFAULT_PERIOD = "30d"
MAX_DAYS = 366
HINT = "use 7d, 30d (up to 366d) or a month such as 2026-11"


class InvalidPeriod(InvalidCommand):
    """A period `/rollout report` cannot read, or one that has not begun: the message says
    which and how to write one (no help after it)."""

    code = "invalid_period"
    with_help = False


_DAYS = re.compile(r"([0-9]{1,6})d")
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


@dataclass(frozen=True)
class Period:
    """The last `days` days, or the calendar month `month` (year, month); `text` as typed."""

    text: str
    days: int | None = None
    month: tuple[int, int] | None = None
    zone: str | None = None
    """The IANA time zone a month's days are read in (the asker's, as Slack says it); None:
    not known, so UTC."""

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """[start, end) of the period as of `now`; a month that has not begun is refused."""
        if self.month is None:
            return now - timedelta(days=self.days or 0), now
        year, month = self.month
        zone = ZoneInfo(self.zone) if self.zone is not None else UTC
        start = datetime(year, month, 1, tzinfo=zone).astimezone(UTC)
        if start > now:
            raise InvalidPeriod(f"`{self.text}` has not begun yet: {HINT}.")
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone).astimezone(UTC)
        return start, min(end, now)


def parse_period(text: str) -> Period:
    """A period as typed after `/rollout report`; raises InvalidPeriod saying what is wrong."""
    shown = text.replace("`", "'")[:40]
    if days := _DAYS.fullmatch(text.lower()):
        count = int(days.group(1))
        if not 1 <= count <= MAX_DAYS:
            raise InvalidPeriod(f"`{shown}` is not a period of 1 to {MAX_DAYS} days: {HINT}.")
        return Period(text=text, days=count)
    if month := _MONTH.fullmatch(text):
        year, number = int(month.group(1)), int(month.group(2))
        if not (1 <= number <= 12 and year >= 2000):
            raise InvalidPeriod(f"`{shown}` is not a month: {HINT}.")
        return Period(text=text, month=(year, number))
    raise InvalidPeriod(f"`{shown}` is not a period: {HINT}.")


@dataclass(frozen=True)
class StoppedTrack:
    """A track that did not complete (rolled back, killed, failed, cancelled) and why, or one
    rolled back after it completed (`redeployed`: who put the previous release back, when)."""

    tag: str
    track: str
    state: TrackState
    reason: StopReason | None
    redeployed: PersonAct | None = None


@dataclass(frozen=True)
class PeriodReport:
    period: Period
    start: datetime
    end: datetime
    rollouts: int
    reached_the_end: int
    """Rollouts whose every track completed, whether or not one was rolled back afterwards."""
    succeeded: int
    """... and none of whose tracks was rolled back after it completed."""
    stopped: tuple[StoppedTrack, ...]
    lead_median: timedelta | None
    lead_p90: timedelta | None
    """Dispatch to 100%, over the rollouts that reached it (nearest rank for the 90th)."""
    held_median: timedelta | None
    """Time held waiting for a person, per rollout, over every rollout of the period."""

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.rollouts if self.rollouts else None


def period_report(
    period: Period, start: datetime, end: datetime, summaries: Sequence[RolloutSummary]
) -> PeriodReport:
    """The report of `summaries`, the rollouts that ended in [start, end)."""
    leads = sorted(s.lead_time for s in summaries if s.reached_the_end)
    return PeriodReport(
        period=period,
        start=start,
        end=end,
        rollouts=len(summaries),
        reached_the_end=sum(s.reached_the_end for s in summaries),
        succeeded=sum(s.succeeded for s in summaries),
        stopped=tuple(
            StoppedTrack(s.tag, o.track, o.state, o.reason, o.redeployed)
            for s in summaries
            for o in s.outcomes
            if o.state is not TrackState.COMPLETED or o.redeployed is not None
        ),
        lead_median=_median(leads),
        lead_p90=leads[math.ceil(0.9 * len(leads)) - 1] if leads else None,
        held_median=_median([s.held for s in summaries]),
    )


def _median(durations: Sequence[timedelta]) -> timedelta | None:
    if not durations:
        return None
    return timedelta(seconds=statistics.median(d.total_seconds() for d in durations))
