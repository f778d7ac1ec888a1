"""The lifecycle every sandbox server shares: started and stopped explicitly or as
`async with`, and (`LoopbackServer`) an aiohttp app on 127.0.0.1 at a free port."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import web


class Lifecycle:
    """`async with` for what has `start()` and `stop()`."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            # What started before the failure is stopped: no server, process or database is
            # left behind by a start that timed out halfway (`stop` copes with a part-start).
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class LoopbackServer(Lifecycle):
    """Subclasses build their app in `build_app`; `port` is known once started."""

    _runner: web.AppRunner | None = None
    port: int = 0

    def build_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(self.build_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
