"""Counting the Slack Web API calls: a retry handler that never retries, only looks.

slack_sdk offers no response hook, but it hands every attempt's answer (or failure) to each
of a client's retry handlers in turn until one retries. Placed first, `CallCounter` sees every
attempt of every call (429s included, before the rate-limit handler waits and retries) and
tells `Telemetry` the method, the HTTP status and Slack's error code.

Not every request is a Web API method: `files_upload_v2` posts the file to the one-time
`upload_url` Slack hands out, whose path ends in a key (unbounded, and the upload's credential
until it expires). Only an `/api/<method>` path names the method; any other is `file_upload`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.services.telemetry import Telemetry

OTHER_REQUEST = "file_upload"
"""The `method` label of a request to a URL Slack handed out (an upload), not a method."""


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
