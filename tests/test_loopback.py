"""The sandbox's lifecycle: a start that fails halfway leaves nothing running behind it."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from sandbox.loopback import Lifecycle, LoopbackServer


class _Hello(LoopbackServer):
    def build_app(self) -> web.Application:
        return web.Application()


class _FailsHalfway(Lifecycle):
    """Starts a server, then fails (as a chaos run whose second replica never answers)."""

    def __init__(self) -> None:
        self.server = _Hello()

    async def start(self) -> None:
        await self.server.start()
        raise TimeoutError("the next part never answered")

    async def stop(self) -> None:
        await self.server.stop()


async def test_a_start_that_fails_halfway_stops_what_it_started() -> None:
    whole = _FailsHalfway()
    with pytest.raises(TimeoutError, match="never answered"):
        async with whole:
            pass  # never reached

    assert whole.server.port  # it was started
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(whole.server.url)
