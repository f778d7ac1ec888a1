"""How a Slack Web API call that did not go through is said: `DeliveryFailed`, with Slack's
429 and its Retry-After, network errors, timeouts and 5xx as worth retrying, and Slack's
refusals (a channel the bot is not in, a message Slack will not take) as permanent."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.domain.retry_after import http_date, retry_after_seconds
from bot.domain.text import clean_text
from bot.services.ports import DeliveryFailed

T = TypeVar("T")

# Slack's 429, and chat.postMessage's documented `rate_limited` ("Application has posted too many
# messages"), which comes with HTTP 200: both wait, neither is a refusal of the message.
RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
# chat.update of a deleted message, and a reply to the thread of one.
_GONE = frozenset({"message_not_found", "thread_not_found"})
# The channel refuses the bot: nothing can be posted there until someone acts. chat.postMessage's
# documented errors (docs.slack.dev/reference/methods/chat.postMessage): the bot was removed (a
# private channel it left answers channel_not_found; `no_permission`: "make sure your app is a
# member of the conversation"), the channel is archived, a workspace preference keeps the bot
# from posting there (`restricted_action`: who may post), the channel is read-only, or the
# administrators suspended posting (`ekm_access_denied`, Enterprise Key Management). Not the
# other `restricted_action_*`: a thread-only channel takes replies, a non-threadable one cards.
# `restricted_action` answers one kind of message: a channel's posting permissions say who may
# post and, apart, who may reply in threads; answered to a reply, the cards still go
# (`REPLIES_REFUSAL`).
CHANNEL_REFUSALS = frozenset(
    {
        "not_in_channel",
        "is_archived",
        "channel_not_found",
        "no_permission",
        "restricted_action",
        "restricted_action_read_only_channel",
        "ekm_access_denied",
    }
)
# Slack's own troubles: its documented "try again" errors (with HTTP 5xx, the same).
SLACK_TROUBLE = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# Slack's troubles, and a refusal of the bot's token, which an operator may be fixing (a token
# rotated, an IP allow-list): retried with backoff (for about half an hour, `Outbox`), not given
# up at the first answer. Any other error is a refusal of the message.
_TRANSIENT = SLACK_TROUBLE | frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
    }
)


REPLIES_REFUSAL = "restricted_action"
"""The refusal that, answered to a thread reply, refuses the bot's replies only."""


async def delivered(call: Awaitable[T], *, reply: bool = False) -> T:
    """Await a Web API call (`reply`: a post in a thread); whatever keeps Slack from taking it
    raises DeliveryFailed."""
    try:
        return await call
    except SlackApiError as error:
        raise _failure(error, reply=reply) from None
    except (aiohttp.ClientError, TimeoutError) as error:
        raise DeliveryFailed(f"network error: {type(error).__name__}") from None


async def uploaded(call: Awaitable[T]) -> T:
    """`delivered` for `files_upload_v2`, whose upload step raises SlackRequestError when the
    file's upload_url answers other than 200 (slack_sdk raises it for a call made wrong too,
    which stays a bug everywhere else)."""
    try:
        return await delivered(call)
    except SlackRequestError as error:
        said = clean_text(str(error))[:200]
        raise DeliveryFailed(f"Slack did not take the upload: {said}") from None


def _failure(error: SlackApiError, *, reply: bool) -> DeliveryFailed:
    response = error.response
    code = str(response.get("error") or "unknown")
    status = int(response.status_code)
    if status == 429 or code in RATE_LIMITED:
        wait = retry_after(response.headers)
        return DeliveryFailed(f"Slack rate limit ({code})", retry_after=wait)
    transient = status >= 500 or code in _TRANSIENT
    return DeliveryFailed(
        f"Slack answered {status} {code}",
        permanent=not transient,
        card_gone=code in _GONE,
        channel_refused=code if code in CHANNEL_REFUSALS else None,
        replies_only=reply and code == REPLIES_REFUSAL,
    )


def retry_after(headers: Any) -> float:
    """Seconds Slack asked to wait (Retry-After: seconds, or an HTTP-date, which is read
    against the answer's `Date`); 1 s, Slack's usual answer, when unreadable."""
    said = _header(headers, "Retry-After")
    try:
        return max(0.0, float(said))
    except ValueError:
        pass
    answered = http_date(_header(headers, "Date")) or datetime.now(UTC)
    wait = retry_after_seconds(said, now=answered)
    return 1.0 if wait is None else wait


def _header(headers: Any, name: str) -> str:
    """One header of a Slack answer (its client gives a dict, names as sent, values as lists
    or strings), "" when absent."""
    for each in (name, name.lower()):
        value = headers.get(each) if headers is not None else None
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            return str(value)
    return ""
