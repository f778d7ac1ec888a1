"""`GET /healthz`: 200 while the process answers; `GET /readyz`: 200 while this replica should
be sent work, 503 with the reason otherwise."""

from __future__ import annotations

from aiohttp import web

from bot.version import build
from handlers.app_keys import READINESS, SERVICES


async def readyz(request: web.Request) -> web.Response:
    problem = await request.app[READINESS].problem()
    if problem is None:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready", "reason": problem}, status=503)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: 200 while the process answers, whatever the database does (a database
    outage is `/readyz`'s to report: restarting every replica would not end it)."""
    running = build()
    database = "ok" if await request.app[SERVICES].database.ping() else "unavailable"
    return web.json_response(
        {"status": "ok", "database": database, "version": running.version, "commit": running.commit}
    )
