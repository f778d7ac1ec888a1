"""When GitHub does not let the bot read a followed run: the thread is told once, after a
while, and once again when a read succeeds (the rollout remembers both, so replicas and
restarts do not repeat them)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from bot.domain.rollout.effects import Announce, Decision
from bot.domain.rollout.events import RunReadable, RunUnreadable
from bot.domain.rollout.state import Rollout

UNREAD_AFTER = timedelta(minutes=5)
"""How long GitHub may fail every read of a followed run before its thread is told
(`GITHUB_UNREADABLE_SECONDS`'s default)."""


def read_failed(
    rollout: Rollout,
    *,
    now: datetime,
    cause: str,
    after: timedelta,
    rate_limited: bool = False,
    until: datetime | None = None,
) -> Decision:
    """A read of the run failed at `now` (`cause`: GitHub's answer in words). The thread is
    told once the run has been unreadable for `after`, or at once when GitHub said to wait
    (a rate limit, `until`) beyond that; until then only the start is remembered."""
    since = rollout.unread_since or now
    unread = replace(rollout, unread_since=since)
    if rollout.told_unread or max(now, until or now) - since < after:
        return Decision(unread)
    told = RunUnreadable(since, cause, rollout.run_url, rate_limited=rate_limited)
    return Decision(replace(unread, told_unread=True), (Announce(told, failure=True),))


def read_again(rollout: Rollout, *, now: datetime) -> Decision:
    """A read of the run succeeded at `now`: the thread told it was unreadable is told it is
    read again."""
    if rollout.unread_since is None:
        return Decision(rollout)
    back = replace(rollout, unread_since=None, told_unread=False)
    if not rollout.told_unread:
        return Decision(back)
    return Decision(back, (Announce(RunReadable(rollout.unread_since, now), failure=True),))
