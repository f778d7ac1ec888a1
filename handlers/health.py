"""`GET /readyz`: 200 while this replica should be sent work, 503 with the reason otherwise."""

from __future__ import annotations

from aiohttp import web

from handlers.app_keys import READINESS


async def readyz(request: web.Request) -> web.Response:
    problem = await request.app[READINESS].problem()
    if problem is None:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready", "reason": problem}, status=503)
