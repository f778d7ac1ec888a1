"""A local Slack for tests and the demo: the Web API methods the bot calls, response URLs and
Socket Mode on 127.0.0.1, answering with Slack's JSON so the real slack_sdk/Bolt clients run as is.

Everything the bot does is recorded (`calls`, `messages(channel)`, `ephemerals()`, `views`,
`responses(url)`), and tests wait on it with `wait_for(...)` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn

from aiohttp import BodyPartReader, WSCloseCode, web

from sandbox import slack_markup
from sandbox.loopback import LoopbackServer
from sandbox.slack_records import (
    DROPPED,
    RATE_LIMITED,
    ChannelMessage,
    EphemeralMessage,
    Failure,
    PlannedFailures,
    ResponseTarget,
    ResponseUrlPost,
    SlackCall,
    SlackRefusal,
    UploadedFile,
    blocks_arg,
    decode_json_args,
    read_args,
    slack_error,
)
from sandbox.slack_socket import SocketMode
from sandbox.slack_variation import SlackVariation
from sandbox.slack_workspace import SlackWorkspace

__all__ = [
    "ChannelMessage",
    "EphemeralMessage",
    "ResponseUrlPost",
    "SlackCall",
    "SlackTestServer",
    "UploadedFile",
]


class SlackTestServer(PlannedFailures, SocketMode, SlackWorkspace, LoopbackServer):
    """Slack's Web API, response URLs and Socket Mode on a random 127.0.0.1 port.

    Use as `async with SlackTestServer(bot_token=...) as slack:` and point the app's
    `AsyncWebClient(base_url=slack.api_url)` at it. `app_token` enables Socket Mode.
    """

    def __init__(self, *, bot_token: str, app_token: str | None = None) -> None:
        super().__init__()
        self.variation: SlackVariation | None = None  # on: answers as `slack_variation` says
        self._bot_token = bot_token
        self._app_token = app_token
        self.app_token_revoked = False
        """Set by `socket_revoke_app_token`: `apps.connections.open` answers `token_revoked`."""
        self._response_targets: dict[str, ResponseTarget] = {}
        self._failures: dict[str, deque[Failure]] = {}
        self._drops: dict[str, int] = {}
        self._lost_answers: dict[str, int] = {}
        self._response_statuses: deque[int] = deque()
        self._responses_released: asyncio.Event | None = None
        self.responses_held = 0
        """Posts to response_urls waiting, unanswered, for `hold_responses`' release."""
        self._failed_uploads = 0
        self._fault_rate = 0.0
        self._fault_random = random.Random(0)
        self.faults_injected = 0
        """How many calls `inject_faults` answered 429."""
        self._sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Condition()

    # -- lifecycle ----------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/v1/{key}", self._upload)
        app.router.add_post(r"/{kind:commands|actions}/{team}/{hook}/{key}", self._response_url)
        app.router.add_get("/link/", self._socket)
        return app

    async def stop(self) -> None:
        if self._responses_released is not None:  # a held post would hold the server's stop
            self._responses_released.set()
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        await super().stop()

    # -- faults -------------------------------------------------------------------------------

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
        self._response_targets[path] = ResponseTarget(url, channel, user, message_ts)
        return url

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

    def fail_next_upload(self, count: int = 1) -> None:
        """The next `count` uploads to a file's `upload_url` are answered 500."""
        self._failed_uploads += count

    def fail_next_response(self, status: int) -> None:
        """The next post to a response_url takes effect, then is answered `status` (a 5xx
        Slack gave after posting it: whether it was posted cannot be told from the answer)."""
        self._response_statuses.append(status)

    def hold_responses(self) -> asyncio.Event:
        """Keep the posts to response_urls from now on waiting, unanswered and not yet posted
        (Slack slow to take them), until the event returned is set or the server stops."""
        self._responses_released = asyncio.Event()
        return self._responses_released

    def lose_next_answer(self, method: str, *, count: int = 1) -> None:
        """Do the next `count` calls of `method` (a Web API method, or `response_url` for the
        answers posted to any response_url), then drop their connections before the answer:
        the client sees a network error for a call that took effect."""
        self._lost_answers[method] = self._lost_answers.get(method, 0) + count

    def ack_received(self, body: str) -> None:
        """Look at the body of an acknowledgement over HTTP as Slack shows it (the harness,
        which posts the requests Slack would, hands their answers here)."""
        slack_markup.record(self.markup_errors, "ack", slack_markup.acknowledged(body))

    # -- waiting --------------------------------------------------------------------------------

    # The waits take `timeout=` (not asyncio.timeout) so a failing test names what it waited for.

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until `predicate()` holds; re-checked each time the server records something."""
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
        except TimeoutError:
            seen = ", ".join(call.method for call in self.calls) or "none"
            message = f"condition not met within {timeout}s; Web API calls: {seen}"
            raise TimeoutError(message) from None

    async def changed(self, timeout: float) -> None:  # noqa: ASYNC109
        """Return once the server records something new, or after `timeout` seconds."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def wait_for_call(
        self,
        method: str,
        count: int = 1,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> list[SlackCall]:
        """Wait until `method` has been called `count` times; returns its calls."""
        await self.wait_for(lambda: len(self.calls_to(method)) >= count, timeout)
        return self.calls_to(method)

    async def wait_for_response(
        self,
        url: str | None = None,
        count: int = 1,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> list[ResponseUrlPost]:
        """Wait for `count` posts to `url` (to any response_url when None)."""

        def posts() -> list[ResponseUrlPost]:
            return self.all_responses if url is None else self.responses(url)

        await self.wait_for(lambda: len(posts()) >= count, timeout)
        return posts()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

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
            args, token = await read_args(request)
        except ValueError:
            response = slack_error("invalid_json")
        else:
            handler = self._methods.get(method)
            auth_error = self._auth_error(method, token)
            if self.variation is not None and self.variation.rate_limited(method):
                self.fail_next(method, **self.variation.limit)
            failure = self.planned_failure(method)
            if handler is None:
                response, status = {**slack_error("unknown_method"), "req_method": method}, 404
            elif auth_error is not None:
                response = slack_error(auth_error)
            elif failure is not None:
                response, status = slack_error(failure.error), failure.status
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(failure.retry_after)
            elif method in RATE_LIMITED and self._fault_random.random() < self._fault_rate:
                self.faults_injected += 1
                response, status = slack_error("ratelimited"), 429
                headers["Retry-After"] = "1"
            else:
                slack_markup.record(self.markup_errors, method, slack_markup.shown(method, args))
                paged = args if self.variation is None else self.variation.paged(method, args)
                try:
                    response = handler(paged)
                except SlackRefusal as refusal:
                    response = refusal.answer
                if self.variation is not None:
                    response = self.variation.answer(method, args, response, self.time_zones)
                headers["X-OAuth-Scopes"] = ",".join(self.scopes)
        self.calls.append(SlackCall(method, args, response, time.time()))
        await self._notify()
        if self._lost_answers.get(method):
            return self._lose_answer(request, method)
        return web.json_response(response, status=status, headers=headers)

    def _lose_answer(self, request: web.Request, method: str) -> NoReturn:
        """Close the connection of a call that took effect, before its answer."""
        self._lost_answers[method] -= 1
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError  # aiohttp ends the handler of a closed connection

    async def _drop(self, request: web.Request, method: str) -> web.StreamResponse:
        """Close the connection before any answer: the client sees a network error."""
        self._drops[method] -= 1
        args, _ = await read_args(request)
        self.calls.append(SlackCall(method, args, dict(DROPPED), time.time()))
        await self._notify()
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError  # aiohttp ends the handler of a closed connection

    def _auth_error(self, method: str, token: str | None) -> str | None:
        if token is None:
            return "not_authed"
        expected = self._app_token if method == "apps.connections.open" else self._bot_token
        if token == expected and self.app_token_revoked and token == self._app_token:
            return "token_revoked"
        if token == expected:
            return None
        if token in (self._bot_token, self._app_token):
            return "not_allowed_token_type"
        return "invalid_auth"

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = self._upload_paths.get(request.match_info["key"])
        if file_id is None:
            return web.Response(status=404, text="not found")
        if self._failed_uploads > 0:
            self._failed_uploads -= 1
            return web.Response(status=500, text="internal error")
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

    # -- response_url -----------------------------------------------------------------------------

    async def _response_url(self, request: web.Request) -> web.Response:
        if self._responses_released is not None and not self._responses_released.is_set():
            self.responses_held += 1
            await self._notify()
            try:
                await self._responses_released.wait()
            finally:
                self.responses_held -= 1
        target = self._response_targets.get(request.path)
        if target is None:
            return web.Response(status=404, text="expired_url")
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(body, dict):
            return web.Response(status=400, text="invalid_payload")
        decode_json_args(body)
        slack_markup.record(self.markup_errors, "response_url", body)
        self.all_responses.append(ResponseUrlPost(target.url, body, time.time()))
        deleting = bool(body.get("delete_original"))
        has_content = body.get("text") or body.get("blocks") or body.get("attachments")
        if not deleting and not has_content:
            await self._notify()
            return web.Response(status=400, text="no_text")
        if "blocks" in body and blocks_arg(body) is None:
            await self._notify()
            return web.Response(status=400, text="invalid_blocks")
        self._apply_response(target, body)
        await self._notify()
        if self._lost_answers.get("response_url"):
            return self._lose_answer(request, "response_url")
        if self._response_statuses:
            return web.Response(status=self._response_statuses.popleft(), text="internal_error")
        return web.Response(text="ok")
