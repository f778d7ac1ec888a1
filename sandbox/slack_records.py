"""What the sandbox Slack records and how it reads arguments: calls, channel and ephemeral
messages, response_url posts, uploaded files, Slack's error shapes, and how Slack describes
files."""

from __future__ import annotations

import json
import mimetypes
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from aiohttp import web

from sandbox.render import render_message

SANDBOX_BOT_ID = "B0ROLLBOT"
DEFAULT_SCOPES = (
    "chat:write",
    "commands",
    "usergroups:read",
    "users:read",
    "files:write",
    "channels:read",
    "groups:read",
    "channels:history",
    "groups:history",
)
# Arguments Slack accepts as a JSON string inside a form body; recorded decoded.
JSON_ARGS = frozenset({"blocks", "attachments", "view", "files", "metadata"})
# The methods Slack rate-limits per channel; `inject_faults` answers them 429.
RATE_LIMITED = frozenset({"chat.postMessage", "chat.update", "chat.postEphemeral"})
# What the server records for a request whose connection it dropped unanswered.
DROPPED = {"ok": False, "error": "connection_dropped"}

ApiResult = dict[str, Any]


@dataclass(frozen=True)
class SlackCall:
    """One Web API request as the server saw it: token removed, JSON-string arguments decoded."""

    method: str
    args: dict[str, Any]
    response: dict[str, Any]
    time: float

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))


@dataclass
class ChannelMessage:
    """A message as channel members see it; `chat.update` changes it in place."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    user: str
    bot_id: str
    app_id: str
    team: str
    thread_ts: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    replies: list[ChannelMessage] = field(default_factory=list)
    updates: int = 0
    metadata: dict[str, Any] | None = None
    """What chat.postMessage's `metadata` set: `event_type` and `event_payload`."""

    @property
    def rendered(self) -> str:
        """The message as plain text (blocks rendered, files listed)."""
        shown = render_message(self.text, self.blocks)
        names = [f"[file: {f.get('title') or f.get('name')}]" for f in self.files]
        return "\n".join(part for part in [shown, *names] if part)

    def to_json(self, *, with_metadata: bool = False) -> dict[str, Any]:
        """The message in Slack's JSON shape (as in API responses and interaction payloads);
        its metadata only `with_metadata` (`include_all_metadata` of the history methods)."""
        data: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": self.text,
            "ts": self.ts,
            "team": self.team,
        }
        if self.blocks:
            data["blocks"] = self.blocks
        if self.files:
            data["files"] = self.files
        if self.thread_ts is not None:
            data["thread_ts"] = self.thread_ts
        elif self.replies:
            data["thread_ts"] = self.ts
            data["reply_count"] = len(self.replies)
        if self.updates:
            data["edited"] = {"user": self.user, "ts": self.ts}
        if with_metadata and self.metadata is not None:
            data["metadata"] = self.metadata
        return data


@dataclass(frozen=True)
class EphemeralMessage:
    """A message only `user` sees, from chat.postEphemeral or a response_url post."""

    channel: str | None
    user: str | None
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    message_ts: str
    via: str

    @property
    def rendered(self) -> str:
        return render_message(self.text, self.blocks)


@dataclass(frozen=True)
class ResponseUrlPost:
    """One POST the app made to a response_url."""

    url: str
    body: dict[str, Any]
    time: float


@dataclass
class UploadedFile:
    """A file going through the upload v2 flow: reserved, then its bytes, then completed."""

    id: str
    filename: str
    length: int
    alt_txt: str | None = None
    data: bytes | None = None
    title: str | None = None
    completed: bool = False


@dataclass(frozen=True)
class ResponseTarget:
    url: str
    channel: str | None
    user: str | None
    message_ts: str | None


@dataclass(frozen=True)
class Failure:
    error: str
    status: int
    retry_after: int | str | None
    """Seconds, or an HTTP-date (RFC 9110 allows both)."""
    after: int = 0
    """Calls of the method answered as usual before this one fails."""


class PlannedFailures:
    """The failures a test plans for the next calls of a Web API method (`fail_next`)."""

    _failures: dict[str, deque[Failure]]

    def fail_next(
        self,
        method: str,
        *,
        error: str,
        status: int = 200,
        retry_after: int | str | None = None,
        after: int = 0,
    ) -> None:
        """Make the next call of `method` fail with `error` (and HTTP `status`, `Retry-After`);
        with `after`, the call after that many more answered as usual (a look's second page)."""
        failure = Failure(error, status, retry_after, after)
        self._failures.setdefault(method, deque()).append(failure)

    def planned_failure(self, method: str) -> Failure | None:
        """The failure this call of `method` answers with, if any (a failure waiting `after`
        more calls counts this one)."""
        waiting = self._failures.get(method)
        if not waiting:
            return None
        if waiting[0].after > 0:
            waiting[0] = replace(waiting[0], after=waiting[0].after - 1)
            return None
        return waiting.popleft()


def slack_error(code: str, *detail: str) -> ApiResult:
    result: ApiResult = {"ok": False, "error": code}
    if detail:
        result["response_metadata"] = {"messages": [f"[ERROR] {d}" for d in detail]}
    return result


class SlackRefusal(Exception):
    """Slack's `ok: false` answer to a Web API call, raised where the method finds its
    arguments unusable (`sandbox.slack` answers it)."""

    def __init__(self, code: str, *detail: str) -> None:
        super().__init__(code)
        self.answer = slack_error(code, *detail)


def history_page(messages: list[ChannelMessage], args: Mapping[str, Any]) -> ApiResult:
    """One page of `messages` as conversations.history and .replies answer: those after
    `oldest` and before `latest` (exclusive), `limit` at most (default 100; the cursor is
    the offset of the next page), metadata only with `include_all_metadata`."""

    def arg(name: str, default: str) -> str:
        # A query string's value, or a JSON body's number or boolean.
        value = args.get(name)
        return default if value is None or value == "" else str(value).lower()

    oldest, latest = float(arg("oldest", "0")), float(arg("latest", "inf"))
    limit, start = int(arg("limit", "100")), int(arg("cursor", "0"))
    with_metadata = arg("include_all_metadata", "false") in ("1", "true")
    shown = [m for m in messages if oldest < float(m.ts) < latest]
    page = shown[start : start + limit]
    more = start + limit < len(shown)
    return {
        "ok": True,
        "messages": [m.to_json(with_metadata=with_metadata) for m in page],
        "has_more": more,
        "response_metadata": {"next_cursor": str(start + limit) if more else ""},
    }


def str_arg(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    return value if isinstance(value, str) else ""


def required_arg(args: Mapping[str, Any], name: str, code: str, *detail: str) -> str:
    """The string argument `name`; refused with Slack's error `code` when it is missing."""
    value = str_arg(args, name)
    if not value:
        raise SlackRefusal(code, *detail)
    return value


MESSAGE_BLOCKS = 50
"""Blocks a message may hold: Slack refuses more (`invalid_blocks`)."""
VIEW_BLOCKS = 100
"""Blocks a modal or a Home tab may hold."""
MESSAGE_TEXT = 40_000
"""Characters a message's text may hold (`msg_too_long` beyond)."""


def blocks_arg(args: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The blocks argument, or None when it is not a list of block objects or holds more
    than a message may."""
    blocks = args.get("blocks", [])
    if (
        isinstance(blocks, list)
        and len(blocks) <= MESSAGE_BLOCKS
        and all(isinstance(b, dict) and "type" in b for b in blocks)
    ):
        return blocks
    return None


@dataclass(frozen=True)
class MessageContent:
    """What a message says: its text and its blocks (either may be empty, not both)."""

    text: str
    blocks: list[dict[str, Any]]


def message_content(args: Mapping[str, Any]) -> MessageContent:
    """The text and blocks of a message to post or update; refused when they are unusable:
    `invalid_blocks`, `no_text` when there is no text, blocks or attachments, `msg_too_long`."""
    blocks = blocks_arg(args)
    if blocks is None:
        raise SlackRefusal("invalid_blocks")
    text = str_arg(args, "text")
    if not text and not blocks and not args.get("attachments"):
        raise SlackRefusal("no_text")
    if len(text) > MESSAGE_TEXT:
        raise SlackRefusal("msg_too_long")
    return MessageContent(text, blocks)


def decode_json_args(args: dict[str, Any]) -> None:
    for name in JSON_ARGS & args.keys():
        value = args[name]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                args[name] = json.loads(value)
            except ValueError:
                continue


async def read_args(request: web.Request) -> tuple[dict[str, Any], str | None]:
    """Arguments from the query, a form or a JSON body; the token from either or the header."""
    args: dict[str, Any] = dict(request.query)
    if request.body_exists:
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("JSON body is not an object")
            args.update(body)
        else:
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
    token = args.pop("token", None)
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        token = authorization.removeprefix("Bearer ")
    decode_json_args(args)
    return args, token if isinstance(token, str) and token else None


class Identity(Protocol):
    """Who the workspace and its bot are, as views and files name them."""

    team_id: str
    app_id: str
    bot_id: str
    bot_user_id: str

    @property
    def base_url(self) -> str: ...


# -- how Slack describes files -------------------------------------------------------------


def file_object(workspace: Identity, upload: UploadedFile, channels: list[str]) -> dict[str, Any]:
    """A shared file as Slack describes it."""
    now = int(time.time())
    mimetype = mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"
    extension = upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else ""
    return {
        "id": upload.id,
        "created": now,
        "timestamp": now,
        "name": upload.filename,
        "title": upload.title or upload.filename,
        "mimetype": mimetype,
        "filetype": extension,
        "user": workspace.bot_user_id,
        "size": len(upload.data or b""),
        "mode": "hosted",
        "is_external": False,
        "is_public": bool(channels),
        "url_private": f"{workspace.base_url}/files-pri/{workspace.team_id}-{upload.id}/",
        "permalink": f"https://sandbox.slack.com/files/{workspace.bot_user_id}/{upload.id}",
        "channels": channels,
    }
