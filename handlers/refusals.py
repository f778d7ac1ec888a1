"""The log lines of refused requests nobody authenticated: at most one per kind per interval.

Anyone on the internet can send the bot unsigned or forged requests, and a Slack app installed
in a second workspace can send it clicks by the thousand. Each is refused before it costs
anything, and its line would be the one thing left that grows with the flood. So the first
refusal of a kind is logged as before, and the next ones of that kind within `EVERY` are only
counted; the first line after the interval says how many were left out and since when. The
metrics count every refusal all the same (`rollout_bot_signature_refusals_total`,
`rollout_bot_refusals_total`): the log is for what happened, the metrics for how often.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bot.services.ports import Clock

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
    at: datetime
    left_out: int = 0


class RefusalLog:
    """One app's refusal lines, on the app's clock."""

    def __init__(self, *, clock: Clock, every: timedelta = EVERY) -> None:
        self._clock = clock
        self._every = every
        self._kinds: dict[Kind, _Logged] = {}

    def warning(self, logger: logging.Logger, kind: Kind, message: str, *args: object) -> None:
        """Log `message % args` at WARNING on `logger`, unless a refusal of this kind was
        logged less than the interval ago (then it is counted for the next line)."""
        now = self._clock()
        last = self._kinds.get(kind)
        if last is not None and now - last.at < self._every:
            last.left_out += 1
            return
        if last is not None and last.left_out:
            message += " (and %d more like it since %s, not logged)"
            args = (*args, last.left_out, f"{last.at:%Y-%m-%d %H:%M:%S %Z}".strip())
        self._kinds[kind] = _Logged(at=now)
        logger.warning(message, *args, stacklevel=2)
