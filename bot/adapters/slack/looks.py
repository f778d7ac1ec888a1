"""The look for an earlier post before a message is posted again, and where a look got to
when Slack stopped it, so that the retry reads on from that page.

A look reads `conversations.history` or `.replies` page by page. Installed as a distributed
non-Marketplace app, Slack allows those reads once a minute ("Rate limits"): a look that began
again from the first page after each 429 could never reach its end in a long thread. Slack's
cursors stay good for the same call, so the page reached is kept, in this process, for the
retry of the same look (another replica's retry starts from the first page).

A channel's history is newest first: what was posted after a look stopped (by another
replica, whose answer was lost) is above the page it reached, not after it. A look through
history that resumes therefore first reads what is newer than the newest message it read,
then goes on from its page (a thread, oldest first, brings newer replies after its page).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.adapters.slack.delivery import delivered
from bot.services.ports import DeliveryFailed

log = logging.getLogger(__name__)

LOOK_BACK = timedelta(minutes=10)
"""How far before a message was written a look for it starts (clocks differ)."""
LOOK_MESSAGES = 2000
"""Messages looked through at most (ten pages of 200); beyond them the message is posted again."""
LOOK_PAGES = 100
"""Pages looked through at most. Slack may answer fewer messages than `limit` asks while more
follow ("Pagination"), so the look counts messages, not pages of 200; this bounds its calls."""

LOOKS_KEPT = 256
"""Looks stopped midway kept at most (the oldest forgotten first: begun again from page one)."""


@dataclass(frozen=True)
class Look:
    """How far a look got: the cursor of its next page, the messages and pages read, and the
    ts of the newest message read."""

    cursor: str | None = None
    seen: int = 0
    pages: int = 0
    newest: str | None = None


class _Stopped(Exception):
    """Slack stopped a look midway (a rate limit, a 5xx): `look` is where it got."""

    def __init__(self, failure: DeliveryFailed, look: Look) -> None:
        super().__init__(failure.reason)
        self.failure = failure
        self.look = look


class Looks:
    """The looks Slack stopped midway, by what they look for and where."""

    def __init__(self, size: int = LOOKS_KEPT) -> None:
        self._size = size
        self._stopped: dict[Hashable, Look] = {}

    def resume(self, key: Hashable) -> Look:
        """Where the look `key` goes on from (the first page when it was never stopped); a
        look is resumed once, and kept again if stopped again."""
        return self._stopped.pop(key, Look())

    def keep(self, key: Hashable, look: Look) -> None:
        if not look.pages:
            return  # stopped on its first page: nothing to go on from
        self._stopped[key] = look
        while len(self._stopped) > self._size:
            del self._stopped[next(iter(self._stopped))]  # the oldest


class EarlierPosts:
    """Looks for a post an earlier attempt may have made, by the marker in its metadata."""

    def __init__(self) -> None:
        self._stopped_looks = Looks()

    async def find(
        self,
        read: Callable[..., Awaitable[AsyncSlackResponse]],
        wanted: Callable[[Mapping[str, Any]], bool],
        *,
        event_type: str,
        since: datetime,
        looking_for: Hashable,
        newest_first: bool = False,
        **args: Any,
    ) -> dict[str, Any] | None:
        """Look through the pages `read` answers (history, `newest_first`, or a thread) for a
        message with our `event_type` whose metadata payload is `wanted` (`looking_for` names
        it). A look Slack refuses (a missing `channels:history` scope) finds nothing, so the
        message is posted again. A look Slack stops midway (a rate limit, a 5xx) is tried
        again from the page it reached (`Looks`), not from the first; through history, after
        reading what was posted since."""
        oldest = f"{(since - LOOK_BACK).timestamp():.6f}"
        key = (read.__name__, event_type, looking_for, oldest, *sorted(args.items()))
        look = self._stopped_looks.resume(key)
        pages = _Pages(read, wanted, event_type, args)
        try:
            if newest_first and look.newest is not None:
                try:
                    found, since_stop = await pages.through(Look(), oldest=look.newest)
                except _Stopped as stopped:
                    raise _Stopped(stopped.failure, look) from None
                if found is not None:
                    return found
                look = replace(look, newest=_newer(look.newest, since_stop.newest))
            try:
                found, _ = await pages.through(look, oldest=oldest)
            except DeliveryFailed:
                if look.cursor is None:
                    raise
                # A kept cursor Slack no longer takes (`invalid_cursor`, "not valid or no
                # longer valid"): from page one, rather than post again without a look.
                found, _ = await pages.through(Look(), oldest=oldest)
            return found
        except _Stopped as stopped:
            self._stopped_looks.keep(key, stopped.look)
            raise stopped.failure from None
        except DeliveryFailed as failure:
            log.warning("could not look for an earlier post (%s)", failure.reason)
            return None


class _Pages:
    """The pages of one look: what `read` answers (with `args`), searched for `wanted`."""

    def __init__(
        self,
        read: Callable[..., Awaitable[AsyncSlackResponse]],
        wanted: Callable[[Mapping[str, Any]], bool],
        event_type: str,
        args: Mapping[str, Any],
    ) -> None:
        self._read = read
        self._wanted = wanted
        self._event_type = event_type
        self._args = args

    async def through(self, look: Look, *, oldest: str) -> tuple[dict[str, Any] | None, Look]:
        """The message found from `look` on (messages after `oldest`), or None, and where the
        look ended. Raises `_Stopped` when Slack stops it, DeliveryFailed when it refuses."""
        while look.pages < LOOK_PAGES:
            try:
                page = await delivered(
                    self._read(
                        **self._args,
                        oldest=oldest,
                        limit=200,
                        include_all_metadata=True,
                        cursor=look.cursor,
                    )
                )
            except DeliveryFailed as failure:
                if failure.permanent:
                    raise
                raise _Stopped(failure, look) from None
            messages = page.get("messages") or []
            newest = look.newest
            for message in messages:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == self._event_type and self._wanted(payload):
                    return dict(message), look
                newest = _newer(newest, message.get("ts"))
            look = Look(
                cursor=(page.get("response_metadata") or {}).get("next_cursor") or None,
                seen=look.seen + len(messages),
                pages=look.pages + 1,
                newest=newest,
            )
            if look.cursor is None or look.seen >= LOOK_MESSAGES:
                break
        return None, look


def _newer(ts: str | None, other: object) -> str | None:
    """The later of two message ts (Slack's `seconds.micros` strings); None when neither."""
    if not isinstance(other, str) or not other:
        return ts
    return other if ts is None or float(other) > float(ts) else ts
