"""`GET /healthz`: 200 while the process answers; `GET /readyz`: 200 while this replica should
be sent work, 503 with the reason otherwise.

Neither says which build runs: `/healthz` is on the public port (`ops/haproxy.cfg`), where the
version and commit would tell anyone which known bug to try. An operator asks the replica
itself (`rollout-bot --version` in its container, `rollout_bot_build_info` on `/metrics`)."""

from __future__ import annotations

from aiohttp import web

from handlers.app_keys import READINESS, SERVICES


async def readyz(request: web.Request) -> web.Response:
    problem = await request.app[READINESS].problem()
    if problem is None:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not ready", "reason": problem}, status=503)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: 200 while the process answers, whatever the database does (a database
    outage is `/readyz`'s to report: restarting every replica would not end it)."""
    database = "ok" if await request.app[SERVICES].database.ping() else "unavailable"
    return web.json_response({"status": "ok", "database": database})
