"""The sandbox Slack's variation mode: answers Slack's Web API documentation allows, shaped
unlike the sandbox's regular ones, so a bot that leans on that regularity fails a test.

Off by default (`slack.variation = SlackVariation()` turns it on). When on:
- the first call of each Web API method (but those `spared`) is answered as Slack's rate
  limit does (HTTP 429, `{"ok": false, "error": "ratelimited"}`, `Retry-After`), and nothing
  happens ("Rate limits": a client waits that long and calls again);
- every successful answer carries a `warning` and `response_metadata.warnings` and
  `messages` (the Web API's "Warnings" section), beside a `next_cursor` a page already had;
- a posted or updated `message` carries fields the bot never sent (`app_id`, `team`,
  `bot_profile`, and in each block a `block_id` Slack made up when the block had none);
- `users.info` leaves out `tz`, `tz_label` and `tz_offset` for a person without a time
  zone of their own in the workspace (`time_zones`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WARNING = "superfluous_charset"
"""A warning Slack documents (a charset in `Content-Type` it ignores)."""

_UNTIMED = ("tz", "tz_label", "tz_offset")


@dataclass
class SlackVariation:
    """What the sandbox Slack varies (see the module's docstring)."""

    retry_after: int = 1
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
