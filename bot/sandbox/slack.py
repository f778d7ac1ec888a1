"""A local Slack for tests and the demo: the Web API methods the bot calls, response URLs and
Socket Mode on 127.0.0.1, answering with Slack's JSON so the real slack_sdk/Bolt clients run as is.

Everything the bot does is recorded (`calls`, `messages(channel)`, `ephemerals()`, `views`,
`responses(url)`), and tests wait on it with `wait_for(...)` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import random
import secrets
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import BodyPartReader, WSCloseCode, WSMsgType, web

from bot.sandbox.render import render_message
from bot.sandbox.signing import SANDBOX_APP_ID, SANDBOX_BOT_USER_ID, SANDBOX_TEAM_ID

SANDBOX_BOT_ID = "B0ROLLBOT"
DEFAULT_SCOPES = (
    "chat:write",
    "commands",
    "usergroups:read",
    "files:write",
    "channels:read",
    "groups:read",
)
# Arguments Slack accepts as a JSON string inside a form body; recorded decoded.
_JSON_ARGS = frozenset({"blocks", "attachments", "view", "files", "metadata"})
# The methods Slack rate-limits per channel; `inject_faults` answers them 429.
_RATE_LIMITED = frozenset({"chat.postMessage", "chat.update", "chat.postEphemeral"})
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

    @property
    def rendered(self) -> str:
        """The message as plain text (blocks rendered, files listed)."""
        shown = render_message(self.text, self.blocks)
        names = [f"[file: {f.get('title') or f.get('name')}]" for f in self.files]
        return "\n".join(part for part in [shown, *names] if part)

    def to_json(self) -> dict[str, Any]:
        """The message in Slack's JSON shape (as in API responses and interaction payloads)."""
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
class _ResponseTarget:
    url: str
    channel: str | None
    user: str | None
    message_ts: str | None


@dataclass(frozen=True)
class _Failure:
    error: str
    status: int
    retry_after: int | None


def _error(code: str, *detail: str) -> ApiResult:
    result: ApiResult = {"ok": False, "error": code}
    if detail:
        result["response_metadata"] = {"messages": [f"[ERROR] {d}" for d in detail]}
    return result


def _str_arg(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    return value if isinstance(value, str) else ""


def _blocks_arg(args: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The blocks argument, or None when it is not a list of block objects."""
    blocks = args.get("blocks", [])
    if isinstance(blocks, list) and all(isinstance(b, dict) and "type" in b for b in blocks):
        return blocks
    return None


def _decode_json_args(args: dict[str, Any]) -> None:
    for name in _JSON_ARGS & args.keys():
        value = args[name]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                args[name] = json.loads(value)
            except ValueError:
                continue


class SlackTestServer:
    """Slack's Web API, response URLs and Socket Mode on a random 127.0.0.1 port.

    Use as `async with SlackTestServer(bot_token=...) as slack:` and point the app's
    `AsyncWebClient(base_url=slack.api_url)` at it. `app_token` enables Socket Mode.
    """

    def __init__(
        self,
        *,
        bot_token: str,
        app_token: str | None = None,
        team_id: str = SANDBOX_TEAM_ID,
        bot_user_id: str = SANDBOX_BOT_USER_ID,
        bot_id: str = SANDBOX_BOT_ID,
        app_id: str = SANDBOX_APP_ID,
        scopes: Sequence[str] = DEFAULT_SCOPES,
    ) -> None:
        self._bot_token = bot_token
        self._app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.scopes = tuple(scopes)
        self.calls: list[SlackCall] = []
        self.usergroups: dict[str, list[str]] = {}
        self.channel_members: dict[str, list[str]] = {}
        """Members of each channel, for `conversations.members` (unknown: channel_not_found)."""
        self.views: dict[str, dict[str, Any]] = {}
        self.home_tabs: dict[str, dict[str, Any]] = {}
        self.files: dict[str, UploadedFile] = {}
        self.all_responses: list[ResponseUrlPost] = []
        self._channels: dict[str, list[ChannelMessage]] = {}
        self._messages: dict[tuple[str, str], ChannelMessage] = {}
        self._ephemerals: list[EphemeralMessage] = []
        self._response_targets: dict[str, _ResponseTarget] = {}
        self._upload_paths: dict[str, str] = {}
        self._failures: dict[str, deque[_Failure]] = {}
        self._drops: dict[str, int] = {}
        self._fault_rate = 0.0
        self._fault_random = random.Random(0)
        self.faults_injected = 0
        """How many calls `inject_faults` answered 429."""
        self._tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Condition()
        self._last_ts_us = 0
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._methods: dict[str, Callable[[dict[str, Any]], ApiResult]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.members": self._conversations_members,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "apps.connections.open": self._apps_connections_open,
        }

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/v1/{key}", self._upload)
        app.router.add_post(r"/{kind:commands|actions}/{team}/{hook}/{key}", self._response_url)
        app.router.add_get("/link/", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """The Web API base to pass as `AsyncWebClient(base_url=...)` / `SLACK_API_URL`."""
        return f"{self.base_url}/api/"

    # -- what tests look at -------------------------------------------------------------------

    def calls_to(self, method: str) -> list[SlackCall]:
        return [call for call in self.calls if call.method == method]

    def messages(self, channel: str) -> list[ChannelMessage]:
        """Top-level messages of a channel, oldest first; each carries its thread replies."""
        return list(self._channels.get(channel, []))

    def message(self, channel: str, ts: str) -> ChannelMessage:
        """One message (top-level or reply) by its ts; KeyError when there is none."""
        return self._messages[(channel, ts)]

    def ephemerals(
        self, *, user: str | None = None, channel: str | None = None
    ) -> list[EphemeralMessage]:
        """Ephemeral messages (chat.postEphemeral, ephemeral response_url posts), oldest first."""
        return [
            e
            for e in self._ephemerals
            if (user is None or e.user == user) and (channel is None or e.channel == channel)
        ]

    def responses(self, url: str) -> list[ResponseUrlPost]:
        return [r for r in self.all_responses if r.url == url]

    def new_response_url(
        self,
        *,
        channel: str | None = None,
        user: str | None = None,
        message_ts: str | None = None,
        kind: str = "commands",
    ) -> str:
        """A fresh response_url on this server, as Slack puts in a command or click payload.

        With `channel`/`user`/`message_ts` its posts show up in `messages()`/`ephemerals()`:
        `response_type: in_channel` posts to the channel, otherwise ephemerally to the user;
        `replace_original` / `delete_original` act on the message at `message_ts`.
        """
        if kind not in ("commands", "actions"):
            raise ValueError("kind is 'commands' or 'actions'")
        path = f"/{kind}/{self.team_id}/{secrets.randbelow(10**12)}/{secrets.token_hex(12)}"
        url = f"{self.base_url}{path}"
        self._response_targets[path] = _ResponseTarget(url, channel, user, message_ts)
        return url

    def fail_next(
        self, method: str, *, error: str, status: int = 200, retry_after: int | None = None
    ) -> None:
        """Make the next call of `method` fail with `error` (and HTTP `status`, `Retry-After`)."""
        self._failures.setdefault(method, deque()).append(_Failure(error, status, retry_after))

    def inject_faults(self, *, rate: float, seed: int) -> None:
        """Answer about `rate` of chat.postMessage/chat.update/chat.postEphemeral calls as
        Slack's rate limit does: HTTP 429, `{"ok": false, "error": "ratelimited"}` and
        `Retry-After: 1`, chosen by a random generator seeded with `seed` (so a run can be
        repeated). Nothing is posted by such a call; `rate=0` turns it off."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate is a fraction between 0 and 1")
        self._fault_rate = rate
        self._fault_random = random.Random(seed)

    def drop_next(self, method: str, *, count: int = 1) -> None:
        """Drop the connection of the next `count` calls of `method` without answering (a
        network error for the client); nothing is done for them."""
        self._drops[method] = self._drops.get(method, 0) + count

    # -- waiting --------------------------------------------------------------------------------

    # The waits take `timeout=` (not asyncio.timeout) so a failing test names what it waited for.
    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until `predicate()` holds; re-checked each time the server records something."""
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
        except TimeoutError:
            seen = ", ".join(call.method for call in self.calls) or "none"
            message = f"condition not met within {timeout}s; Web API calls: {seen}"
            raise TimeoutError(message) from None

    async def wait_for_call(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[SlackCall]:
        """Wait until `method` has been called `count` times; returns its calls."""
        await self.wait_for(lambda: len(self.calls_to(method)) >= count, timeout)
        return self.calls_to(method)

    async def wait_for_response(
        self,
        url: str | None = None,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[ResponseUrlPost]:
        """Wait for `count` posts to `url` (to any response_url when None)."""

        def posts() -> list[ResponseUrlPost]:
            return self.all_responses if url is None else self.responses(url)

        await self.wait_for(lambda: len(posts()) >= count, timeout)
        return posts()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- Socket Mode ----------------------------------------------------------------------------

    @property
    def socket_connected(self) -> bool:
        return bool(self._sockets)

    async def socket_send_envelope(
        self,
        *,
        type: str,
        payload: Mapping[str, Any],
        accepts_response_payload: bool | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> str:
        """Push an envelope (`slash_commands`, `interactive`, `events_api`) to the connected app.

        Waits up to `timeout` for a connection; returns the envelope id to await the ack with.
        """
        await self.wait_for(lambda: self.socket_connected, timeout)
        envelope_id = str(uuid.uuid4())
        if accepts_response_payload is None:
            accepts_response_payload = type != "events_api"
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "payload": dict(payload),
            "type": type,
            "accepts_response_payload": accepts_response_payload,
        }
        if type == "events_api":
            envelope["retry_attempt"] = 0
            envelope["retry_reason"] = ""
        await self._sockets[-1].send_str(json.dumps(envelope))
        return envelope_id

    async def wait_for_socket_ack(
        self,
        envelope_id: str,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """The app's acknowledgement of an envelope (`{"envelope_id", "payload"?}`)."""
        await self.wait_for(lambda: envelope_id in self._acks, timeout)
        return self._acks[envelope_id]

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            raise web.HTTPUnauthorized(text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)  # answers the SDK's pings with its own data
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self._sockets),
                    "debug_info": {
                        "host": "applink-sandbox",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": self.app_id},
                }
            )
        )
        await self._notify()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and isinstance(data.get("envelope_id"), str):
                    self._acks[data["envelope_id"]] = data
                    await self._notify()
        finally:
            self._sockets.remove(ws)
            await self._notify()
        return ws

    # -- Web API --------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if self._drops.get(method):
            return await self._drop(request, method)
        headers: dict[str, str] = {}
        status = 200
        token: str | None = None
        args: dict[str, Any] = {}
        try:
            args, token = await self._read_args(request)
        except ValueError:
            response = _error("invalid_json")
        else:
            handler = self._methods.get(method)
            auth_error = self._auth_error(method, token)
            failures = self._failures.get(method)
            if handler is None:
                response, status = {**_error("unknown_method"), "req_method": method}, 404
            elif auth_error is not None:
                response = _error(auth_error)
            elif failures:
                failure = failures.popleft()
                response, status = _error(failure.error), failure.status
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(failure.retry_after)
            elif method in _RATE_LIMITED and self._fault_random.random() < self._fault_rate:
                self.faults_injected += 1
                response, status = _error("ratelimited"), 429
                headers["Retry-After"] = "1"
            else:
                response = handler(args)
                headers["X-OAuth-Scopes"] = ",".join(self.scopes)
        self.calls.append(SlackCall(method, args, response, time.time()))
        await self._notify()
        return web.json_response(response, status=status, headers=headers)

    async def _drop(self, request: web.Request, method: str) -> web.StreamResponse:
        """Close the connection before any answer: the client sees a network error."""
        self._drops[method] -= 1
        args, _ = await self._read_args(request)
        self.calls.append(SlackCall(method, args, dict(DROPPED), time.time()))
        await self._notify()
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError  # aiohttp ends the handler of a closed connection

    @staticmethod
    async def _read_args(request: web.Request) -> tuple[dict[str, Any], str | None]:
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
        _decode_json_args(args)
        return args, token if isinstance(token, str) and token else None

    def _auth_error(self, method: str, token: str | None) -> str | None:
        if token is None:
            return "not_authed"
        expected = self._app_token if method == "apps.connections.open" else self._bot_token
        if token == expected:
            return None
        if token in (self._bot_token, self._app_token):
            return "not_allowed_token_type"
        return "invalid_auth"

    def _next_ts(self) -> str:
        """Message timestamps like Slack's: unique, increasing, `<seconds>.<6 digits>`."""
        now_us = time.time_ns() // 1000
        self._last_ts_us = max(now_us, self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _post(
        self,
        channel: str,
        *,
        text: str,
        blocks: list[dict[str, Any]],
        parent: ChannelMessage | None,
        files: list[dict[str, Any]] | None = None,
    ) -> ChannelMessage:
        message = ChannelMessage(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            blocks=blocks,
            user=self.bot_user_id,
            bot_id=self.bot_id,
            app_id=self.app_id,
            team=self.team_id,
            thread_ts=parent.ts if parent else None,
            files=files or [],
        )
        if parent is None:
            self._channels.setdefault(channel, []).append(message)
        else:
            parent.replies.append(message)
        self._messages[(channel, message.ts)] = message
        return message

    def _thread_parent(self, channel: str, thread_ts: str) -> ChannelMessage | None:
        """The top-level message of the thread `thread_ts` belongs to (a reply's ts works too)."""
        parent = self._messages.get((channel, thread_ts))
        if parent is not None and parent.thread_ts is not None:
            return self._messages.get((channel, parent.thread_ts))
        return parent

    def _auth_test(self, args: dict[str, Any]) -> ApiResult:
        return {
            "ok": True,
            "url": "https://sandbox.slack.com/",
            "team": "Sandbox",
            "user": "rollout-bot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: dict[str, Any]) -> ApiResult:
        channel = _str_arg(args, "channel")
        if not channel:
            return _error("channel_not_found")
        blocks = _blocks_arg(args)
        if blocks is None:
            return _error("invalid_blocks")
        text = _str_arg(args, "text")
        if not text and not blocks and not args.get("attachments"):
            return _error("no_text")
        parent = None
        thread_ts = _str_arg(args, "thread_ts")
        if thread_ts:
            parent = self._thread_parent(channel, thread_ts)
            if parent is None:
                return _error("thread_not_found")
        message = self._post(channel, text=text, blocks=blocks, parent=parent)
        return {"ok": True, "channel": channel, "ts": message.ts, "message": message.to_json()}

    def _chat_update(self, args: dict[str, Any]) -> ApiResult:
        channel = _str_arg(args, "channel")
        if not channel:
            return _error("channel_not_found")
        message = self._messages.get((channel, _str_arg(args, "ts")))
        if message is None:
            return _error("message_not_found")
        blocks = _blocks_arg(args)
        if blocks is None:
            return _error("invalid_blocks")
        text = _str_arg(args, "text")
        if not text and not blocks and not args.get("attachments"):
            return _error("no_text")
        message.text = text
        # Slack keeps the previous blocks unless the update passes `blocks` (empty removes them).
        if "blocks" in args:
            message.blocks = blocks
        message.updates += 1
        return {
            "ok": True,
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": message.to_json(),
        }

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> ApiResult:
        channel = _str_arg(args, "channel")
        if not channel:
            return _error("channel_not_found")
        user = _str_arg(args, "user")
        if not user:
            return _error("user_not_in_channel")
        blocks = _blocks_arg(args)
        if blocks is None:
            return _error("invalid_blocks")
        text = _str_arg(args, "text")
        if not text and not blocks and not args.get("attachments"):
            return _error("no_text")
        message_ts = self._next_ts()
        self._ephemerals.append(
            EphemeralMessage(
                channel=channel,
                user=user,
                text=text,
                blocks=blocks,
                thread_ts=_str_arg(args, "thread_ts") or None,
                message_ts=message_ts,
                via="chat.postEphemeral",
            )
        )
        return {"ok": True, "message_ts": message_ts}

    def _view_object(
        self, view: dict[str, Any], *, view_id: str, previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The view as Slack returns and stores it: the app's fields plus Slack's own."""
        return {
            "id": view_id,
            "team_id": self.team_id,
            "type": view["type"],
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "title": view.get("title"),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "external_id": view.get("external_id", ""),
            "root_view_id": previous["root_view_id"] if previous else view_id,
            "previous_view_id": None,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }

    @staticmethod
    def _view_problem(view: Any, expected_type: str) -> str | None:
        if not isinstance(view, dict):
            return "missing required field: view"
        if view.get("type") != expected_type:
            return f"view type must be {expected_type}"
        if not isinstance(view.get("blocks", []), list):
            return "blocks must be a list"
        if expected_type == "modal" and not isinstance(view.get("title"), dict):
            return "missing required field: title"
        return None

    @staticmethod
    def _new_view_id() -> str:
        return "V" + secrets.token_hex(5).upper()

    def _views_open(self, args: dict[str, Any]) -> ApiResult:
        if not _str_arg(args, "trigger_id"):
            return _error("invalid_arguments", "missing required field: trigger_id")
        problem = self._view_problem(args.get("view"), "modal")
        if problem is not None:
            return _error("invalid_arguments", problem)
        view_id = self._new_view_id()
        self.views[view_id] = self._view_object(args["view"], view_id=view_id, previous=None)
        return {"ok": True, "view": self.views[view_id]}

    def _views_update(self, args: dict[str, Any]) -> ApiResult:
        view_id, external_id = _str_arg(args, "view_id"), _str_arg(args, "external_id")
        if not view_id and not external_id:
            return _error("invalid_arguments", "view_id or external_id is required")
        current = self.views.get(view_id) or next(
            (v for v in self.views.values() if external_id and v["external_id"] == external_id),
            None,
        )
        if current is None:
            return _error("not_found")
        problem = self._view_problem(args.get("view"), current["type"])
        if problem is not None:
            return _error("invalid_arguments", problem)
        if _str_arg(args, "hash") and args["hash"] != current["hash"]:
            return _error("hash_conflict")
        updated = self._view_object(args["view"], view_id=current["id"], previous=current)
        self.views[current["id"]] = updated
        return {"ok": True, "view": updated}

    def _views_publish(self, args: dict[str, Any]) -> ApiResult:
        user_id = _str_arg(args, "user_id")
        if not user_id:
            return _error("invalid_arguments", "missing required field: user_id")
        problem = self._view_problem(args.get("view"), "home")
        if problem is not None:
            return _error("invalid_arguments", problem)
        current = self.home_tabs.get(user_id)
        if current is not None and _str_arg(args, "hash") and args["hash"] != current["hash"]:
            return _error("hash_conflict")
        view_id = current["id"] if current else self._new_view_id()
        view = self._view_object(args["view"], view_id=view_id, previous=current)
        self.home_tabs[user_id] = self.views[view_id] = view
        return {"ok": True, "view": view}

    def _usergroups_users_list(self, args: dict[str, Any]) -> ApiResult:
        group = _str_arg(args, "usergroup")
        if not group:
            return _error("invalid_arguments", "missing required field: usergroup")
        if group not in self.usergroups:
            return _error("no_such_subteam")
        return {"ok": True, "users": list(self.usergroups[group])}

    def _conversations_members(self, args: dict[str, Any]) -> ApiResult:
        channel = _str_arg(args, "channel")
        if not channel:
            return _error("invalid_arguments", "missing required field: channel")
        if channel not in self.channel_members:
            return _error("channel_not_found")
        members = list(self.channel_members[channel])
        return {"ok": True, "members": members, "response_metadata": {"next_cursor": ""}}

    def _files_get_upload_url(self, args: dict[str, Any]) -> ApiResult:
        filename = _str_arg(args, "filename")
        try:
            length = int(args.get("length", ""))
        except ValueError:
            return _error("invalid_arguments", "length must be an integer")
        if not filename:
            return _error("invalid_arguments", "missing required field: filename")
        file_id = "F" + secrets.token_hex(5).upper()
        key = secrets.token_urlsafe(24)
        self._upload_paths[key] = file_id
        self.files[file_id] = UploadedFile(
            id=file_id, filename=filename, length=length, alt_txt=args.get("alt_txt")
        )
        return {"ok": True, "upload_url": f"{self.base_url}/upload/v1/{key}", "file_id": file_id}

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = self._upload_paths.get(request.match_info["key"])
        if file_id is None:
            return web.Response(status=404, text="not found")
        if request.content_type == "multipart/form-data":
            data = b""
            async for part in await request.multipart():
                if isinstance(part, BodyPartReader) and part.filename is not None:
                    data = await part.read()
                    break
        else:
            data = await request.read()
        self.files[file_id].data = data
        await self._notify()
        return web.Response(text=f"OK - {len(data)}")

    def _file_object(self, upload: UploadedFile, channels: list[str]) -> dict[str, Any]:
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
            "user": self.bot_user_id,
            "size": len(upload.data or b""),
            "mode": "hosted",
            "is_external": False,
            "is_public": bool(channels),
            "url_private": f"{self.base_url}/files-pri/{self.team_id}-{upload.id}/",
            "permalink": f"https://sandbox.slack.com/files/{self.bot_user_id}/{upload.id}",
            "channels": channels,
        }

    def _files_complete_upload(self, args: dict[str, Any]) -> ApiResult:
        items = args.get("files")
        if not isinstance(items, list) or not items:
            return _error("invalid_arguments", "missing required field: files")
        uploads: list[UploadedFile] = []
        for item in items:
            upload = self.files.get(item.get("id", "")) if isinstance(item, dict) else None
            if upload is None or upload.data is None:
                return _error("file_not_found")
            upload.title = item.get("title") or upload.title
            uploads.append(upload)
        channel = _str_arg(args, "channel_id")
        channels = [channel] if channel else [c for c in _str_arg(args, "channels").split(",") if c]
        thread_ts = _str_arg(args, "thread_ts")
        parent = None
        if thread_ts:
            if len(channels) != 1:
                return _error("invalid_arguments", "thread_ts needs exactly one channel")
            parent = self._thread_parent(channels[0], thread_ts)
            if parent is None:
                return _error("thread_not_found")
        objects = []
        for upload in uploads:
            upload.completed = True
            objects.append(self._file_object(upload, channels))
        for shared_to in channels:
            self._post(
                shared_to,
                text=_str_arg(args, "initial_comment"),
                blocks=[],
                parent=parent,
                files=objects,
            )
        return {"ok": True, "files": objects}

    def _apps_connections_open(self, args: dict[str, Any]) -> ApiResult:
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        url = f"ws://127.0.0.1:{self._port}/link/?ticket={ticket}&app_id={self.app_id}"
        return {"ok": True, "url": url}

    # -- response_url -----------------------------------------------------------------------------

    async def _response_url(self, request: web.Request) -> web.Response:
        target = self._response_targets.get(request.path)
        if target is None:
            return web.Response(status=404, text="expired_url")
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(body, dict):
            return web.Response(status=400, text="invalid_payload")
        _decode_json_args(body)
        self.all_responses.append(ResponseUrlPost(target.url, body, time.time()))
        deleting = bool(body.get("delete_original"))
        has_content = body.get("text") or body.get("blocks") or body.get("attachments")
        if not deleting and not has_content:
            await self._notify()
            return web.Response(status=400, text="no_text")
        self._apply_response(target, body)
        await self._notify()
        return web.Response(text="ok")

    def _apply_response(self, target: _ResponseTarget, body: dict[str, Any]) -> None:
        """What Slack shows for a response_url post: replace/delete, in_channel or ephemeral."""
        original = (
            self._messages.get((target.channel, target.message_ts))
            if target.channel and target.message_ts
            else None
        )
        text = _str_arg(body, "text")
        blocks = _blocks_arg(body) or []
        if body.get("delete_original"):
            if original is not None:
                self._delete(original)
            return
        if body.get("replace_original") and original is not None:
            original.text, original.blocks = text, blocks
            original.updates += 1
            return
        if body.get("response_type") == "in_channel" and target.channel:
            thread_ts = _str_arg(body, "thread_ts")
            parent = self._thread_parent(target.channel, thread_ts) if thread_ts else None
            self._post(target.channel, text=text, blocks=blocks, parent=parent)
            return
        self._ephemerals.append(
            EphemeralMessage(
                channel=target.channel,
                user=target.user,
                text=text,
                blocks=blocks,
                thread_ts=_str_arg(body, "thread_ts") or None,
                message_ts=self._next_ts(),
                via=target.url,
            )
        )

    def _delete(self, message: ChannelMessage) -> None:
        del self._messages[(message.channel, message.ts)]
        if message.thread_ts is None:
            self._channels[message.channel].remove(message)
        else:
            self._messages[(message.channel, message.thread_ts)].replies.remove(message)
