"""`Retry-After` in both forms RFC 9110 §10.2.3 allows, as every client of the bot reads it
(Slack, GitHub, the metrics backends)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.domain.retry_after import retry_after_seconds

ANSWERED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("said", "wait"),
    [
        ("120", 120.0),
        ("Mon, 02 Mar 2026 09:02:00 GMT", 120.0),
        ("Monday, 02-Mar-26 09:00:30 GMT", 30.0),  # RFC 850's obsolete form
        ("Mon Mar  2 09:00:05 2026", 5.0),  # asctime's, GMT
        ("Mon, 02 Mar 2026 08:59:00 GMT", 0.0),  # past: at once
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_as_a_date_from_the_answer(
    said: str, wait: float | None
) -> None:
    assert retry_after_seconds(said, now=ANSWERED) == wait
