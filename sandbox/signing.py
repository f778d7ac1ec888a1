"""Sign requests as Slack and GitHub do, and build the bodies Slack sends, for tests and the demo.

The bodies match Slack's wire format (form-encoded slash commands, `payload=<json>` for
interactivity) so the app under test parses exactly what production receives. The `*_payload`
builders give the same content as a dict, which is what a Socket Mode envelope carries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec
from urllib.parse import quote, urlencode

SANDBOX_TEAM_ID = "T0SANDBOX"
SANDBOX_TEAM_DOMAIN = "sandbox"
SANDBOX_APP_ID = "A0ROLLBOT"
SANDBOX_BOT_USER_ID = "U0ROLLBOT"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"
# Slack still sends the deprecated verification token in every body; Bolt ignores it.
_VERIFICATION = "sandbox-verification"
_P = ParamSpec("_P")
# Slack's formatting rules: in all text it sends, `&`, `<` and `>` are its control characters,
# so a person's own are escaped as HTML entities (a slash command's text included).
_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def slack_signature_headers(
    signing_secret: str,
    body: bytes | str,
    *,
    timestamp: int | None = None,
    content_type: str | None = FORM_CONTENT_TYPE,
) -> dict[str, str]:
    """Headers of a Slack request: `v0=` HMAC-SHA256 of `v0:{timestamp}:{body}` with the secret.

    `content_type=None` leaves Content-Type out (for a caller that sets its own).
    """
    raw = body.encode() if isinstance(body, str) else body
    ts = int(time.time()) if timestamp is None else timestamp
    base = f"v0:{ts}:".encode() + raw
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def github_signature_headers(
    secret: str, body: bytes, *, event: str, delivery: str | None = None
) -> dict[str, str]:
    """Headers of a GitHub webhook delivery: `X-Hub-Signature-256: sha256=<hex>` of the body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": JSON_CONTENT_TYPE,
        "User-Agent": "GitHub-Hookshot/sandbox",
    }


def new_trigger_id() -> str:
    """A trigger id shaped like Slack's (`<digits>.<digits>.<hex>`)."""
    return f"{secrets.randbelow(10**11)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def _action_ts() -> str:
    return f"{time.time():.6f}"


def _user(user_id: str, team_id: str) -> dict[str, str]:
    name = user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def slash_command_payload(
    *,
    text: str,
    user_id: str,
    channel_id: str,
    response_url: str,
    command: str = "/rollout",
    team_id: str = SANDBOX_TEAM_ID,
    trigger_id: str | None = None,
    user_name: str | None = None,
    channel_name: str = "releases",
) -> dict[str, str]:
    """The fields of a slash command invocation, in the order Slack sends them; `text` is what
    the person typed, escaped as Slack escapes it (`a & b` arrives as `a &amp; b`)."""
    return {
        "token": _VERIFICATION,
        "team_id": team_id,
        "team_domain": SANDBOX_TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text.translate(_SLACK_ESCAPES),
        "api_app_id": SANDBOX_APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or new_trigger_id(),
    }


def form_payload(payload: Mapping[str, Any]) -> str:
    """Interactivity bodies are one form field, `payload`, holding the JSON."""
    return "payload=" + quote(json.dumps(payload, separators=(",", ":")), safe="")


def block_actions_payload(
    *,
    user_id: str,
    channel_id: str,
    action_id: str,
    value: str,
    response_url: str,
    message_ts: str,
    message: Mapping[str, Any] | None = None,
    block_id: str | None = None,
    button_text: str | None = None,
    team_id: str = SANDBOX_TEAM_ID,
    trigger_id: str | None = None,
    is_ephemeral: bool = False,
) -> dict[str, Any]:
    """A `block_actions` payload for a button click on a message.

    `message` is the message clicked (for example from `SlackTestServer.message(...).to_json()`);
    without it a minimal bot message with that ts stands in.
    """
    clicked = dict(message) if message is not None else {}
    clicked.setdefault("type", "message")
    clicked.setdefault("ts", message_ts)
    clicked.setdefault("user", SANDBOX_BOT_USER_ID)
    clicked.setdefault("text", "")
    action = {
        "action_id": action_id,
        "block_id": block_id or secrets.token_hex(3),
        "text": {"type": "plain_text", "text": button_text or action_id, "emoji": True},
        "value": value,
        "type": "button",
        "action_ts": _action_ts(),
    }
    return {
        "type": "block_actions",
        "user": _user(user_id, team_id),
        "api_app_id": SANDBOX_APP_ID,
        "token": _VERIFICATION,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": SANDBOX_TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "releases"},
        "message": clicked,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }


def view_submission_payload(
    *,
    user_id: str,
    view: Mapping[str, Any],
    values: Mapping[str, Mapping[str, Mapping[str, Any]]],
    team_id: str = SANDBOX_TEAM_ID,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """A `view_submission` payload for a modal the bot opened, with the user's input.

    `view` is the view as Slack returned it (for example `SlackTestServer.views[view_id]`), so
    its id, callback_id and private_metadata are the ones the bot set. `values` is
    `{block_id: {action_id: {"type": ..., "value": ...}}}` as in Slack's `state.values`.
    """
    submitted = dict(view)
    submitted["state"] = {"values": {block: dict(actions) for block, actions in values.items()}}
    submitted.setdefault("private_metadata", "")
    submitted.setdefault("callback_id", "")
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": SANDBOX_TEAM_DOMAIN},
        "user": _user(user_id, team_id),
        "api_app_id": SANDBOX_APP_ID,
        "token": _VERIFICATION,
        "trigger_id": trigger_id or new_trigger_id(),
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def _body_of(
    payload: Callable[_P, Mapping[str, Any]], encode: Callable[[Mapping[str, Any]], str]
) -> Callable[_P, str]:
    """A `*_body` builder: takes what its `*_payload` takes, returns the fields `encode`d."""

    def body(*args: _P.args, **kwargs: _P.kwargs) -> str:
        return encode(payload(*args, **kwargs))

    return body


# A slash command request body, form-encoded exactly like Slack's.
slash_command_body = _body_of(slash_command_payload, urlencode)
# A button click or a modal submission request body, `payload=<json>` form-encoded like Slack's.
block_actions_body = _body_of(block_actions_payload, form_payload)
view_submission_body = _body_of(view_submission_payload, form_payload)


def event_callback_body(
    *, event: Mapping[str, Any], team_id: str = SANDBOX_TEAM_ID, event_id: str | None = None
) -> str:
    """An Events API request body (JSON), e.g. for `app_home_opened`; sign it as JSON."""
    now = int(time.time())
    return json.dumps(
        {
            "token": _VERIFICATION,
            "team_id": team_id,
            "api_app_id": SANDBOX_APP_ID,
            "event": {"event_ts": _action_ts(), **event},
            "type": "event_callback",
            "event_id": event_id or f"Ev{secrets.token_hex(5).upper()}",
            "event_time": now,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": team_id,
                    "user_id": SANDBOX_BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
    )
