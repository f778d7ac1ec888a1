"""`GET /metrics`: the bot's own series for Prometheus (docs/observability.md).

With METRICS_TOKEN set, a scrape must carry `Authorization: Bearer <token>`; anything else is
answered 401 without a word about the token. The gauges read from the database are refreshed
first, so every replica reports the database as it is now (when it does not answer, they are
unknown, `rollout_bot_database_up` is 0 and the log says so: the counters are served all the
same), and `rollout_bot_ready` says what `/readyz` answers now.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from handlers.app_keys import READINESS, REFUSALS, SERVICES, SETTINGS, TELEMETRY
from handlers.refusals import Kind

log = logging.getLogger(__name__)


def bearer_matches(expected: str, header: str | None) -> bool:
    """Whether `Authorization` carries the bearer token (compared in constant time). The header
    is compared as the bytes it came in: one that is not UTF-8 (aiohttp keeps those bytes as
    surrogates) matches nothing, rather than fail to encode."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    sent = given.strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(sent, expected.encode())


async def scrape(request: web.Request) -> web.Response:
    token = request.app[SETTINGS].metrics_token
    if token is not None and not bearer_matches(
        token.get_secret_value(), request.headers.get("Authorization")
    ):
        request.app[REFUSALS].warning(
            log, Kind.METRICS_SCRAPE, "metrics scrape refused: missing or wrong bearer token"
        )
        return web.Response(
            status=401,
            text="a bearer token is required (METRICS_TOKEN)\n",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    telemetry = request.app[TELEMETRY]
    telemetry.readiness(ready=await request.app[READINESS].problem() is None)
    await request.app[SERVICES].backlog.refresh()
    body, content_type = telemetry.exposition(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})
