"""Reading a request's body within a bound, announced or chunked."""

from __future__ import annotations

from aiohttp import web

CHUNK = 64 * 1024


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
