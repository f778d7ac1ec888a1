"""`Retry-After` in both its forms (RFC 9110 §10.2.3): a number of seconds, or an HTTP-date."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from bot.domain.text import whole_number


def http_date(text: str) -> datetime | None:
    """`text` as an HTTP-date (a `Date`, a `Retry-After`; always GMT), or None."""
    try:
        at = parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError):
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def retry_after_seconds(text: str, *, now: datetime) -> float | None:
    """Seconds a `Retry-After` asks to wait: its seconds, or from `now` until its date (none
    once past); None when it says neither. `now` is the answer's own `Date` when readable
    (the server's clock, which its date is on), else the bot's clock."""
    if (seconds := whole_number(text)) is not None:
        return float(seconds)
    if (until := http_date(text)) is None:
        return None
    return max(0.0, (until - now).total_seconds())
