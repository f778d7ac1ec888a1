"""Counting the Slack Web API calls (a retry handler that never retries, only looks), and
which calls are tried again after a network error.

slack_sdk offers no response hook, but it hands every attempt's answer (or failure) to each
of a client's retry handlers in turn until one retries. Placed first, `CallCounter` sees every
attempt of every call (429s included, before the rate-limit handler waits and retries) and
tells `Telemetry` the method, the HTTP status and Slack's error code.

Not every request is a Web API method: `files_upload_v2` posts the file to the one-time
`upload_url` Slack hands out, whose path ends in a key (unbounded, and the upload's credential
until it expires). Only an `/api/<method>` path names the method; any other is `file_upload`.

slack_sdk tries a call again once after a dropped or reset connection, whatever the call.
A post takes no idempotency key, and Slack may have taken it before the connection dropped:
`PostsOnce` tries a post again only when its connection was never made.

Slack answers a rate limit two ways: HTTP 429 with `Retry-After` ("Rate limits"), and, for
chat.postMessage, HTTP 200 with `{"ok": false, "error": "rate_limited"}` ("Application has
posted too many messages", in its errors; chat.postEphemeral lists `ratelimited`, the 429's).
slack_sdk's `AsyncRateLimitErrorRetryHandler` looks at the status only, so a refused ephemeral
answer or "Enter figures" prompt failed at once; `RateLimitWaits` waits out both. Both mean
Slack took nothing, so trying a post again cannot show it twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientConnectorError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.adapters.slack.delivery import RATE_LIMITED, retry_after
from bot.services.telemetry import UNTRACKED, Telemetry

OTHER_REQUEST = "file_upload"
"""The `method` label of a request to a URL Slack handed out (an upload), not a method."""

LONGEST_WAIT = 30.0
"""Seconds a call waits for Slack's rate limit at most (the timeout of one call): a longer
Retry-After is not waited out, the caller is told (a person's answer should not hang)."""

POSTS = frozenset({"chat.postMessage", "chat.postEphemeral", "files.completeUploadExternal"})
"""The calls that show something new each time they are made (a message, a file shared)."""


def method_of(url: str) -> str:
    """The Web API method `url` calls (`.../api/chat.postMessage`), else `OTHER_REQUEST`."""
    parent, _, method = urlsplit(url).path.rpartition("/")
    return method if parent.endswith("/api") and method else OTHER_REQUEST


class CallCounter(AsyncRetryHandler):
    """Reports each attempt of a Slack Web API call; never asks for a retry."""

    def __init__(self, telemetry: Telemetry) -> None:
        super().__init__(max_retry_count=0)
        self._telemetry = telemetry

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = method_of(request.url)
        if error is not None or response is None:
            self._telemetry.slack_call(method=method, status="no_answer", error="")
            return False
        body = response.body or {}
        error_code = "" if body.get("ok", True) else str(body.get("error", "unknown"))
        self._telemetry.slack_call(
            method=method, status=str(response.status_code), error=error_code
        )
        return False


class PostsOnce(AsyncConnectionErrorRetryHandler):
    """slack_sdk's retry after a network error, except of a post whose request may have
    reached Slack: a post that was taken, then lost its answer, would appear twice. The
    caller is told of the failure instead (an outbox message looks before posting again)."""

    async def _can_retry_async(
        self, *, request: HttpRequest, error: Exception | None = None, **attempt: Any
    ) -> bool:
        if method_of(request.url) in POSTS and not isinstance(error, ClientConnectorError):
            return False
        return await super()._can_retry_async(request=request, error=error, **attempt)


class RateLimitWaits(AsyncRetryHandler):
    """Waits out Slack's rate limit, the 429 and the 200 `ratelimited`/`rate_limited` alike,
    for its Retry-After (1 s when Slack gives none, as it does with a 200), then tries again."""

    def __init__(
        self,
        max_retry_count: int = 2,
        *,
        longest_wait: float = LONGEST_WAIT,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._longest_wait = longest_wait
        self._sleep = sleep

    async def _can_retry_async(
        self, *, response: HttpResponse | None = None, **attempt: Any
    ) -> bool:
        return response is not None and _wait(response) <= self._longest_wait

    async def prepare_for_next_attempt_async(
        self, *, state: RetryState, response: HttpResponse | None = None, **attempt: Any
    ) -> None:
        state.next_attempt_requested = True
        await self._sleep(0.0 if response is None else _wait(response))
        state.increment_current_attempt()


def _wait(response: HttpResponse) -> float:
    """Seconds to wait before trying again, or infinity when `response` is no rate limit."""
    body = response.body or {}
    limited = response.status_code == 429 or (
        not body.get("ok", True) and body.get("error") in RATE_LIMITED
    )
    return retry_after(response.headers) if limited else float("inf")


def web_api_retries(
    telemetry: Telemetry = UNTRACKED,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> list[AsyncRetryHandler]:
    """The retry handlers of every Slack client but the outbox's (which retries on its own):
    the counter first (it sees every attempt), a network error tried again once (not a post
    that may have reached Slack), a rate limit waited out, twice."""
    return [CallCounter(telemetry), PostsOnce(), RateLimitWaits(sleep=sleep)]
