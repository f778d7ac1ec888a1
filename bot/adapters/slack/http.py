"""The HTTP session every call to Slack goes through."""

from __future__ import annotations

import aiohttp

SLACK_TIMEOUT_S = 30
"""Seconds a call to Slack may take: slack_sdk's default for its clients."""

SLACK_KEEPALIVE_S = 4.0
"""Seconds an idle connection to Slack stays open: well below the idle timeout of Slack's
edge (aiohttp's default, 15 s, is not)."""

SLACK_CONNECTIONS = 50
"""Connections to Slack open at once, at most (aiohttp's default is 100): more calls wait
for one to be free."""


def slack_session(timeout_s: float = SLACK_TIMEOUT_S) -> aiohttp.ClientSession:
    """One HTTP session (its connection pool) for every call to Slack, the Web API's and the
    answers on response_urls alike: without it slack_sdk opens a session, and a new
    connection, for each call. slack_sdk applies its timeout only to a session it opens: a
    call through this one may take `timeout_s`.

    An idle connection is closed after `SLACK_KEEPALIVE_S`, before Slack's edge drops it (a
    request on a connection the server is closing fails); at most `SLACK_CONNECTIONS` are open.
    """
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        connector=aiohttp.TCPConnector(
            keepalive_timeout=SLACK_KEEPALIVE_S, limit=SLACK_CONNECTIONS
        ),
    )
