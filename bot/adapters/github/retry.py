"""PyGithub's retry for reads, within what GitHub's rate limits allow."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from github import GithubRetry
from github.GithubException import RateLimitExceededExceedsMaxWait
from urllib3.connectionpool import ConnectionPool
from urllib3.response import HTTPResponse
from urllib3.util.retry import Retry

from bot.adapters.github.budget import UNSAID_WAIT
from bot.domain.retry_after import http_date, retry_after_seconds


class ReadRetry(GithubRetry):
    """`GithubRetry` that never asks again before a rate limit's `Retry-After` longer than it
    may wait: urllib3 would sleep `retry_after_max` seconds and ask again, long before GitHub's
    REST docs allow ("you should not retry your request until after that many seconds has
    elapsed"). Such an answer fails at once, as a longer wait for a reset does."""

    def increment(  # type: ignore[override]
        self,
        method: str | None = None,
        url: str | None = None,
        response: HTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Retry:
        if response is not None and response.status in (403, 429):
            said = retry_after_wait(response.headers)
            if said is not None and said > self.retry_after_max:
                raise RateLimitExceededExceedsMaxWait(
                    response.status, _body(response), dict(response.headers), wait=said
                )
        return super().increment(method, url, response, error, _pool, _stacktrace)


def retry_after_wait(headers: Mapping[str, Any]) -> float | None:
    """Seconds GitHub's `Retry-After` asks to wait (`headers` read whatever the case of their
    names): its seconds, or until its date by the answer's `Date` (the bot's clock when
    unreadable); None when it says neither."""
    named = {name.lower(): str(value) for name, value in headers.items()}
    answered = http_date(named.get("date", "")) or datetime.now(UTC)
    return retry_after_seconds(named.get("retry-after", ""), now=answered)


def _body(response: HTTPResponse) -> Any:
    """GitHub's JSON answer (its `message` tells the refusal), else its text."""
    text = response.data.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return {"data": text}


def read_retry(*, total: int, backoff: float, rate_limit_wait: float) -> GithubRetry:
    """PyGithub's retry, for reads only (GET, HEAD): up to `total` more attempts on 5xx,
    rate limits, timeouts and resets, with exponential backoff and jitter. It waits as GitHub
    asks (`Retry-After`, `X-RateLimit-Reset`) up to `rate_limit_wait` seconds; a longer wait,
    or a rate limit that says neither (GitHub's docs: then wait at least a minute), fails at
    once (the poller paces itself by it). An exhausted retry's last answer is returned as is."""
    return ReadRetry(
        total=total,
        backoff_factor=backoff,
        backoff_jitter=backoff,
        backoff_max=rate_limit_wait,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=list(range(500, 600)),  # and 403/429 as rate limits (see above)
        raise_on_status=False,
        secondary_rate_wait=max(UNSAID_WAIT, rate_limit_wait),
        max_rate_limit_wait=rate_limit_wait,
        retry_after_max=max(int(rate_limit_wait), 1),
    )
