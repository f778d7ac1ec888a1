"""The log lines of refused requests nobody authenticated: at most one per kind per interval.

Anyone on the internet can send the bot unsigned or forged requests, and a Slack app installed
in a second workspace can send it clicks by the thousand. Each is refused before it costs
anything, and its line would be the one thing left that grows with the flood. So the first
refusal of a kind is logged as before, and the next ones of that kind within `EVERY` are only
counted. Their count is a line of its own, in the words of the line logged, as the interval ends
(or as the app stops, or before the next refusal's line if that comes first). The metrics
count every refusal all the same (`rollout_bot_signature_refusals_total`,
`rollout_bot_refusals_total`): the log is for what happened, the metrics for how often.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from aiohttp import web

from bot.services.clock import Background, LoopClock

EVERY = timedelta(minutes=1)
"""How often a kind of refusal is logged at most."""


class Kind(StrEnum):
    """What a refused request was, for the log: each kind has its own interval."""

    SLACK_SIGNATURE = "slack_signature"
    SLACK_TOO_LARGE = "slack_too_large"
    GITHUB_SIGNATURE = "github_signature"
    GITHUB_TOO_LARGE = "github_too_large"
    OTHER_WORKSPACE = "other_workspace"
    OTHER_WORKSPACE_UNTOLD = "other_workspace_untold"
    METRICS_SCRAPE = "metrics_scrape"


@dataclass
class _Logged:
    """The line an interval began with (its count is logged with its words), and how many
    refusals of its kind were left out since."""

    at: datetime
    logger: logging.Logger
    message: str
    args: tuple[object, ...]
    left_out: int = 0

    def log_count(self) -> None:
        """The line of the refusals left out, in the words of the one logged, if any was."""
        if not self.left_out:
            return
        self.logger.warning(
            self.message + " (%d more like it in the minute since %s, not logged)",
            *self.args,
            self.left_out,
            f"{self.at:%Y-%m-%d %H:%M:%S %Z}".strip(),
        )
        self.left_out = 0


class RefusalLog:
    """One app's refusal lines, on the app's clock. While the app runs (`counting`, in its
    `cleanup_ctx`), a count nobody's refusal reported is logged as its interval ends."""

    def __init__(self, *, clock: LoopClock, every: timedelta = EVERY) -> None:
        self._clock = clock
        self._every = every
        self._kinds: dict[Kind, _Logged] = {}
        self._wake = asyncio.Event()
        self._flusher = Background("refusal counts", wake=self._wake)

    def warning(self, logger: logging.Logger, kind: Kind, message: str, *args: object) -> None:
        """Log `message % args` at WARNING on `logger`, unless a refusal of this kind was
        logged less than the interval ago (then it is counted for the next line)."""
        now = self._clock()
        last = self._kinds.get(kind)
        if last is not None and now - last.at < self._every:
            last.left_out += 1
            if last.left_out == 1:  # a count to log when the interval ends
                self._wake.set()
            return
        if last is not None:  # its count first, if the timer did not log it yet
            last.log_count()
        self._kinds[kind] = _Logged(at=now, logger=logger, message=message, args=args)
        logger.warning(message, *args, stacklevel=2)

    async def counting(self, _app: web.Application) -> AsyncIterator[None]:
        """For the app's `cleanup_ctx`: log each count as its interval ends, and the counts of
        the intervals still running as the app stops (after its requests)."""
        self._flusher.start(self._log_counts())
        try:
            yield
        finally:
            await self._flusher.stop(grace=timedelta(seconds=1))
            self._log_counts_due(None)

    async def _log_counts(self) -> None:
        """Sleep until the first interval with a count ends (a count begun wakes it)."""
        while not self._flusher.stopping.is_set():
            self._wake.clear()
            now = self._clock()
            self._log_counts_due(now)
            ends = [last.at + self._every for last in self._kinds.values() if last.left_out]
            await self._clock.sleep_until(min(ends, default=now + self._every), self._wake)

    def _log_counts_due(self, now: datetime | None) -> None:
        """Log the count of every interval ended by `now` (None: of every interval)."""
        for last in self._kinds.values():
            if now is None or now - last.at >= self._every:
                last.log_count()
