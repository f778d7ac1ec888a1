"""A real Prometheus as it answers when its clock is off the host's by a given offset.

Prometheus has no setting for its clock, and libfaketime cannot move a Go program's (Go reads
the time from the kernel's vDSO, not through libc), so `SkewedClock` stands in front of a real
Prometheus on the host's clock and answers as that Prometheus would with its clock `offset`
ahead (negative: behind): a server whose clock is ahead stamps every scrape and evaluates every
query at its own time, so each time a query names (`time`, `start`, `end`) is moved back by
the offset on its way in, and each timestamp of the answer forward on its way out, as is the
value of `time()` (Prometheus's now). The query API's other answers pass through unchanged.
No other PromQL function of the clock (`timestamp`, `hour`, ...) is moved: the bot asks none.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.loopback import LoopbackServer

_TIMES = ("time", "start", "end")


class SkewedClock(LoopbackServer):
    """`upstream`'s query API (`/api/v1/...`) with its clock `offset` from the host's."""

    def __init__(self, upstream: str, offset: timedelta) -> None:
        self._upstream = upstream.rstrip("/")
        self._offset = offset.total_seconds()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/v1/{endpoint:.*}", self._forward)
        return app

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        form = dict(await request.post()) if request.method == "POST" else {}
        params = dict(request.query)
        for fields in (form, params):
            for key in _TIMES:
                if key in fields:
                    fields[key] = f"{float(str(fields[key])) - self._offset:.3f}"
        async with self._session.request(
            request.method,
            f"{self._upstream}{request.path}",
            params=params,
            data=form or None,
        ) as answer:
            status = answer.status
            body = await answer.json(content_type=None)
        query = str(form.get("query", params.get("query", "")))
        if isinstance(body, dict) and isinstance(body.get("data"), dict):
            self._shift(body["data"], clock=query.strip() == "time()")
        return web.json_response(body, status=status)

    def _shift(self, data: dict[str, Any], *, clock: bool) -> None:
        """The answer's timestamps (and `time()`'s value) on the skewed clock."""
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar" and isinstance(result, list):
            data["result"] = self._point(result, clock=clock)
        elif kind == "vector" and isinstance(result, list):
            for item in result:
                item["value"] = self._point(item["value"], clock=clock)
        elif kind == "matrix" and isinstance(result, list):
            for item in result:
                item["values"] = [self._point(pair, clock=clock) for pair in item["values"]]

    def _point(self, pair: list[Any], *, clock: bool) -> list[Any]:
        stamp, value = pair
        moved = float(stamp) + self._offset
        return [moved, f"{float(value) + self._offset:.3f}" if clock else value]
