"""Reading a request's body within a bound, announced or chunked, and what becomes of the rest
of a body the bot answered without reading."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

CHUNK = 64 * 1024

LINGER_S = 2.0
"""How long the server still takes in (and drops) the rest of a body it answered without
reading (a refusal) before it closes the connection: aiohttp's `lingering_time`, 10 s by
default, which a forger's slow body held open. Not 0: a sender that writes its whole body
before reading the answer (urllib, many webhook clients) would then meet a connection reset
instead of its 401 or 413; a body already on its way arrives well within this."""

HANDLER_ARGS: Mapping[str, float] = {"lingering_time": LINGER_S}
"""The server's settings for each of the app's connections (`web.Application(handler_args=)`)."""


async def read_at_most(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is over `limit` bytes: then it is not read further. A body
    that announces more is not read at all; a chunked one (no length) is read one chunk past
    the limit at most."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
