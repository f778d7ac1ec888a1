"""The sandbox Slack's variation mode: answers Slack's Web API documentation allows, shaped
unlike the sandbox's regular ones, so a bot that leans on that regularity fails a test.

Off by default (`slack.variation = SlackVariation()` turns it on). When on:
- the first call of each Web API method (but those `spared`) is answered as Slack's rate
  limit does (HTTP 429, `{"ok": false, "error": "ratelimited"}`, `Retry-After`), and nothing
  happens ("Rate limits": a client waits that long and calls again);
- a page of `conversations.history`, `.replies` or `.members` holds at most `page_size`
  items whatever `limit` asks, the rest named by `next_cursor` ("Pagination": "it's possible
  to receive fewer results than your specified limit, even when there are additional
  results to retrieve");
- every successful answer carries a `warning` and `response_metadata.warnings` and
  `messages` (the Web API's "Warnings" section), beside a `next_cursor` a page already had;
- a posted or updated `message` carries fields the bot never sent (`app_id`, `team`,
  `bot_profile`, and in each block a `block_id` Slack made up when the block had none);
- `users.info` leaves out `tz`, `tz_label` and `tz_offset` for a person without a time
  zone of their own in the workspace (`time_zones`);
- a click's or a submitted form's payload (`interaction`) has its keys in another order,
  a field the bot never heard of in every object, and leaves out what Slack sends only at
  times: `enterprise` and `is_enterprise_install` outside Enterprise Grid, `state` (a
  message's inputs, or a view's), `response_urls` of a form without a conversation picker
  ("block_actions payload", "view_submission payload": properties "may differ based on the
  source"; Bolt's own types mark them optional).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WARNING = "superfluous_charset"
"""A warning Slack documents (a charset in `Content-Type` it ignores)."""

_UNTIMED = ("tz", "tz_label", "tz_offset")

_PAGED = frozenset({"conversations.history", "conversations.replies", "conversations.members"})
"""The cursor-paginated methods the bot reads page by page."""

UNKNOWN_FIELD = "sandbox_variation_unknown"
"""The field added to every object of an interaction payload: a name Slack never sent (yet)."""

_SOMETIMES = ("enterprise", "is_enterprise_install", "state", "response_urls")
"""Top-level fields of an interaction payload that Slack leaves out at times."""


@dataclass
class SlackVariation:
    """What the sandbox Slack varies (see the module's docstring)."""

    retry_after: int = 1
    page_size: int = 2
    """Items a page of a paginated method holds at most, whatever `limit` asks."""
    spared: frozenset[str] = frozenset()
    """Methods whose first call is answered as any other."""
    limited: set[str] = field(default_factory=set)
    """The methods whose first call was answered 429 already."""

    @property
    def limit(self) -> dict[str, Any]:
        """`SlackTestServer.fail_next`'s arguments for a 429 as Slack answers it."""
        return {"error": "ratelimited", "status": 429, "retry_after": self.retry_after}

    def rate_limited(self, method: str) -> bool:
        """Whether this call of `method` is answered 429 (its first call is)."""
        if method in self.limited or method in self.spared:
            return False
        self.limited.add(method)
        return True

    def paged(self, method: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """`args` of a call of `method` as the variation answers it: a paginated method's
        `limit` at most `page_size` (its cursor is the offset of the next page)."""
        asked = str(args.get("limit") or 100)
        if method not in _PAGED or not asked.isdigit():
            return dict(args)  # a limit Slack refuses is refused as it is
        return {**args, "limit": str(min(int(asked), self.page_size))}

    def answer(
        self,
        method: str,
        args: Mapping[str, Any],
        response: dict[str, Any],
        time_zones: Mapping[str, str],
    ) -> dict[str, Any]:
        """A successful answer to `method` (called with `args`) as the variation gives it;
        `time_zones`: the workspace's people who have one of their own."""
        if not response.get("ok"):
            return response
        varied = dict(response)
        metadata = dict(varied.get("response_metadata") or {})
        metadata["warnings"] = [WARNING]
        metadata["messages"] = [f"[WARN] {WARNING}"]
        varied["response_metadata"] = metadata
        varied["warning"] = WARNING
        if isinstance(varied.get("message"), dict):
            varied["message"] = _as_slack_stores(varied["message"])
        if method == "users.info" and isinstance(varied.get("user"), dict):
            varied["user"] = _person(varied["user"], zoned=str(args.get("user")) in time_zones)
        return varied


def interaction(payload: Mapping[str, Any]) -> dict[str, Any]:
    """An interaction payload as the variation sends it (see the module's docstring)."""
    varied: dict[str, Any] = _reordered(
        {key: value for key, value in payload.items() if key not in _SOMETIMES}
    )
    return varied


def _reordered(value: Any, *, maps: int = 0) -> Any:
    """`value` with every object's keys in reverse order and an unknown field added; the
    `maps` outermost levels are maps keyed by ids (`state.values`: block id, then action id),
    which get no field but their ids."""
    if isinstance(value, list):
        return [_reordered(item) for item in value]
    if not isinstance(value, Mapping):
        return value
    varied = {} if maps else {UNKNOWN_FIELD: {"added": "by Slack after the bot was written"}}
    for key in reversed(list(value)):
        inner = maps - 1 if maps else (2 if key == "values" else 0)
        varied[key] = _reordered(value[key], maps=inner)
    return varied


def _as_slack_stores(message: dict[str, Any]) -> dict[str, Any]:
    stored = {
        **message,
        "app_id": "A0SANDBOX",
        "team": "T0SANDBOX",
        "bot_profile": {"id": "B0SANDBOX", "app_id": "A0SANDBOX", "name": "rollout-bot"},
    }
    blocks = message.get("blocks")
    if isinstance(blocks, list):
        stored["blocks"] = [
            {"block_id": f"v{number}", **block} if isinstance(block, dict) else block
            for number, block in enumerate(blocks)
        ]
    return stored


def _person(user: dict[str, Any], *, zoned: bool) -> dict[str, Any]:
    return {key: value for key, value in user.items() if zoned or key not in _UNTIMED}
