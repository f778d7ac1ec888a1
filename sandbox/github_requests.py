"""The GitHub simulator's request pipeline: auth, forced failures, faults, ETags, rate limits."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox import github_json as shapes
from sandbox.github_app import SandboxApp, authenticate_app
from sandbox.github_app_paths import is_app_path
from sandbox.github_faults import (
    SECONDARY_RATE_LIMIT_MESSAGE,
    FaultKind,
    FaultPlan,
    request_id,
)
from sandbox.github_json import Json
from sandbox.github_routes import ACTOR, BODY, DOWNLOAD_PREFIX, json_response
from sandbox.github_runs import ActionsError
from sandbox.github_variation import GitHubVariation

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RATE_LIMIT = 5000
_REDIRECTS_DOC = "https://docs.github.com/rest/using-the-rest-api/getting-started-with-the-rest-api"


@dataclass(frozen=True)
class RecordedRequest:
    """A request the simulator received (never its Authorization header)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    if_none_match: str | None = None
    """The ETag a conditional GET sent (`If-None-Match`)."""
    fault: str | None = None
    """The fault injected into the answer (`github_faults.FaultKind`), if any; a dropped
    connection is recorded with the status of the answer that was never sent."""
    installation: int | None = None
    """The id of the App installation whose token the request carried (refused, faulted or
    not: read from its `Authorization` header before anything is answered)."""


@dataclass
class ForcedFailure:
    """An error answer `fail_next` queued for requests matching (method, path glob)."""

    method: str
    pattern: str
    status: int
    body: Json | str
    """GitHub's JSON error, or a text body (an error page that is not JSON)."""
    remaining: int
    redirect: bool = False
    """A temporary redirection (`redirect_next`): `Location` is the request's own URL."""


@dataclass
class HeldRequests:
    """Requests `hold` keeps waiting (method, path glob) until `released` is set."""

    method: str
    pattern: str
    released: asyncio.Event


class RequestPipeline:
    """What `GitHubSimulator` does to every request around its route handler (a mixin)."""

    tokens: dict[str, str]
    app: SandboxApp | None
    requests: list[RecordedRequest]
    rate_limit_remaining: int
    fault_delay: float
    retry_after: int | str
    variation: GitHubVariation | None
    _api_path: str
    _forced: list[ForcedFailure]
    _faults: FaultPlan
    _holds: list[HeldRequests]
    holding: int
    """How many requests `hold` keeps waiting now."""
    held_bodies: list[Any]
    """The bodies of the requests `hold` keeps waiting now, in their order of arrival."""
    renamed: Mapping[str, Any]
    """Former names of renamed repositories (lower-cased) to their handles (`repository`)."""
    repositories: Mapping[str, Any]
    """The repositories served, by name (lower-cased), to their handles."""
    schedule_flush: Callable[[], None]
    run_actions: Callable[[], bool]

    # -- failures and faults on request ---------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int,
        body: Json | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests matching (method, glob on the path) with an error.

        The path is relative to the API base, for example `/repos/*/actions/runs/*/jobs`.
        A 403 without a body is GitHub's primary rate limit answer.
        """
        if body is None:
            if status == 403:
                body = shapes.error("API rate limit exceeded for user ID 1.", status)
            else:
                body = shapes.error("Server Error" if status >= 500 else "Error", status)
        self._forced.append(ForcedFailure(method.upper(), path_pattern, status, body, times))

    def fail_next_with_text(
        self, method: str, path_pattern: str, status: int, text: str, *, times: int = 1
    ) -> None:
        """Answer the next `times` matching requests `status` with a body that is not JSON
        (an HTML error page from a proxy or load balancer in front of the API); `{authorization}`
        in `text` is the request's Authorization header, as a proxy echoing the request has it."""
        self._forced.append(ForcedFailure(method.upper(), path_pattern, status, text, times))

    def clear_failures(self) -> None:
        """Forget the failures `fail_next` queued that have not happened yet (GitHub answers
        again)."""
        self._forced = []

    def redirect_next(
        self, method: str, path_pattern: str, status: int = 307, *, times: int = 1
    ) -> None:
        """Answer the next `times` matching requests with a temporary redirection (302 or
        307) to their own URL. GitHub's REST docs, "HTTP redirects": "302, 307: Temporary
        redirection. The request should be repeated verbatim to the URI specified in the
        Location header field but clients should continue to use the original URI for future
        requests." """
        body = {"message": "Temporary Redirect", "documentation_url": _REDIRECTS_DOC}
        self._forced.append(
            ForcedFailure(method.upper(), path_pattern, status, body, times, redirect=True)
        )

    def fault_next(self, method: str, path_pattern: str, kind: str, *, times: int = 1) -> None:
        """Inject the fault `kind` (`github_faults.FaultKind`) into the next `times` requests
        matching (method or `*`, glob on the path relative to the API base)."""
        self._faults.next(method, path_pattern, kind, times=times)

    def clear_faults(self) -> None:
        """Forget the faults `fault_next` queued and that have not happened yet."""
        self._faults.clear()

    def hold(self, method: str, path_pattern: str) -> asyncio.Event:
        """Keep every request matching (method or `*`, glob on the path relative to the API
        base) from now on waiting, unanswered and not yet carried out (GitHub slow to answer),
        until the event returned is set or the server stops."""
        held = HeldRequests(method.upper(), path_pattern, asyncio.Event())
        self._holds.append(held)
        return held.released

    async def _held(self, method: str, path: str, body: Any) -> None:
        """Wait while a `hold` matches the request (its body among `held_bodies` meanwhile)."""
        for held in self._holds:
            if held.released.is_set() or held.method not in ("*", method):
                continue
            if fnmatch.fnmatchcase(path, held.pattern):
                self.holding += 1
                self.held_bodies.append(body)
                try:
                    await held.released.wait()
                finally:
                    self.holding -= 1
                    self.held_bodies.remove(body)

    def inject_faults(self, *, rate: float, seed: int, kinds: Sequence[str] | None = None) -> None:
        """Fault about `rate` of all API requests from now on, drawn from `kinds` (default: every
        kind) by a generator seeded with `seed`; rate 0 turns it off. See `github_faults`."""
        self._faults.random(rate=rate, seed=seed, kinds=kinds)

    @property
    def faults_injected(self) -> Counter[str]:
        """How many faults of each kind were injected so far."""
        return self._faults.injected

    # -- the pipeline ---------------------------------------------------------------------------

    def _rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": str(self.rate_limit_remaining),
            "X-RateLimit-Used": str(RATE_LIMIT - self.rate_limit_remaining),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Resource": "core",
        }

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        request[BODY] = body
        path = request.path.removeprefix(self._api_path) or "/"
        fault = None
        if request.path.startswith(f"{self._api_path}/") and not path.startswith(
            f"{DOWNLOAD_PREFIX}/"
        ):
            await self._held(request.method, path, body)
            fault = self._faults.draw(request.method, path)
        response = await self._faulty(request, handler, path, body, fault)
        authorization = request.headers.get("Authorization", "")
        self.requests.append(
            RecordedRequest(
                request.method,
                path,
                dict(request.query),
                body,
                response.status,
                request.headers.get("If-None-Match"),
                fault.value if fault is not None else None,
                None if self.app is None else self.app.carried(authorization),
            )
        )
        self.schedule_flush()
        if self.variation is not None:
            self.variation.lower_header_names(response)
        if fault is FaultKind.ACCEPT_THEN_DROP and request.transport is not None:
            request.transport.abort()  # the request took effect; its answer is never sent
        return response

    async def _faulty(
        self,
        request: web.Request,
        handler: Handler,
        path: str,
        body: Any,
        fault: FaultKind | None,
    ) -> web.StreamResponse:
        """The answer to the request, with `fault` injected (see `github_faults`)."""
        if fault is FaultKind.SERVER_ERROR:
            return json_response(shapes.error("Server Error", 502), 502, self._rate_headers())
        if fault is FaultKind.SECONDARY_RATE_LIMIT:
            status = self._faults.rate_limit_status()
            message = SECONDARY_RATE_LIMIT_MESSAGE.format(request_id=request_id())
            headers = {**self._rate_headers(), "Retry-After": str(self.retry_after)}
            return json_response(shapes.error(message, status), status, headers)
        if fault is FaultKind.TIMEOUT:
            await asyncio.sleep(self.fault_delay)
        response = await self._respond(request, handler, path, body)
        if fault is FaultKind.APPLY_THEN_502:
            return json_response(shapes.error("Server Error", 502), 502, self._rate_headers())
        return response

    async def _respond(
        self, request: web.Request, handler: Handler, path: str, body: Any
    ) -> web.StreamResponse:
        if not request.path.startswith(f"{self._api_path}/"):
            return json_response(shapes.error("Not Found", 404), 404)
        if not path.startswith(f"{DOWNLOAD_PREFIX}/"):
            denied = self._authenticate(request)
            if denied is not None:
                return denied
        moved = self._moved(request, path)
        if moved is not None:
            return moved
        for forced in self._forced:
            if forced.method in ("*", request.method) and fnmatch.fnmatchcase(path, forced.pattern):
                forced.remaining -= 1
                self._forced = [f for f in self._forced if f.remaining > 0]
                headers = self._rate_headers()
                if isinstance(forced.body, str):
                    echoed = request.headers.get("Authorization", "")
                    return web.Response(
                        text=forced.body.replace("{authorization}", echoed),
                        status=forced.status,
                        content_type="text/html",
                    )
                if forced.status == 403 and str(forced.body.get("message", "")).startswith(
                    "API rate limit exceeded"
                ):
                    # The primary limit; a secondary one leaves requests (GitHub's REST docs,
                    # "Rate limits for the REST API": only the primary's remaining is 0).
                    headers["X-RateLimit-Remaining"] = "0"
                if forced.redirect:
                    headers["Location"] = str(request.url)
                return json_response(forced.body, forced.status, headers)
        if isinstance(body, str):
            return json_response(shapes.error("Problems parsing JSON", 400), 400)
        self.run_actions()
        try:
            response = await handler(request)
        except web.HTTPException:
            # aiohttp's own 404/405 for unknown paths: GitHub answers 404 for both.
            response = json_response(shapes.error("Not Found", 404), 404)
        except ActionsError as exc:
            response = json_response(shapes.error(exc.message, exc.status), exc.status)
        if self.variation is not None and isinstance(response, web.Response):
            response = self._varied(request.method, path, response)
        if (
            request.method == "GET"
            and response.status == 200
            and isinstance(response, web.Response)
        ):
            payload = response.body if isinstance(response.body, bytes) else b""
            etag = 'W/"' + hashlib.sha256(payload).hexdigest()[:40] + '"'
            response.headers["ETag"] = etag
            if etag in request.headers.get("If-None-Match", ""):
                return web.Response(status=304, headers={"ETag": etag, **self._rate_headers()})
        self.rate_limit_remaining = max(self.rate_limit_remaining - 1, 0)
        response.headers.update(self._rate_headers())
        return response

    def _varied(self, method: str, path: str, response: web.Response) -> web.Response:
        """A JSON answer as the variation mode gives it (`github_variation`)."""
        if response.content_type != "application/json" or not isinstance(response.body, bytes):
            return response
        assert self.variation is not None
        data = self.variation.answer(method, path, json.loads(response.body))
        kept = {k: v for k, v in response.headers.items() if not k.lower().startswith("content-")}
        return json_response(data, response.status, kept)

    def _moved(self, request: web.Request, path: str) -> web.Response | None:
        """A renamed repository's former path (`SimRepository.rename`): GitHub redirects it,
        301 Moved Permanently to a GET or HEAD and 307 Temporary Redirect to any other method
        (the request is to be repeated verbatim at `Location`), with a JSON body naming it."""
        parts = path.split("/", 4)
        if len(parts) < 4 or parts[1] != "repos":
            return None
        handle = self.renamed.get(f"{parts[2]}/{parts[3]}".lower())
        if handle is None:
            return None
        rest = f"/{parts[4]}" if len(parts) > 4 else ""
        location = f"{request.url.origin()}{self._api_path}/repos/{handle.repository}{rest}"
        if request.query_string:
            location += f"?{request.query_string}"
        status = 301 if request.method in ("GET", "HEAD") else 307
        body = {
            "message": "Moved Permanently",
            "url": location,
            "documentation_url": "https://docs.github.com/v3/#http-redirects",
        }
        return json_response(body, status, {**self._rate_headers(), "Location": location})

    def _authenticate(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if not header:
            return json_response(shapes.error("Requires authentication", 401), 401)
        path = request.path.removeprefix(self._api_path)
        if self.app is not None and (is_app_path(path) or self.app.owns(credential)):
            named = "/".join(path.split("/")[2:4]).lower()
            found = self.repositories.get(named) or self.renamed.get(named)
            return authenticate_app(
                self.app, request, path, scheme, credential, found.id if found else None
            )
        if scheme.lower() not in ("token", "bearer") or credential not in self.tokens:
            return json_response(shapes.error("Bad credentials", 401), 401)
        request[ACTOR] = self.tokens[credential]
        return None
