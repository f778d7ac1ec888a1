"""A loopback TCP proxy between the bot's engine and PostgreSQL, for faults of the network
that no statement can cause: a server that hangs, an answer that never comes back."""

from __future__ import annotations

import asyncio


class DatabaseProxy:
    """Passes bytes between the engine and PostgreSQL until told otherwise.

    `freeze` stops passing them on (a server or a network that hangs without closing
    anything; new connections wait too), `thaw` lets them flow again. `lose_the_next_commit`
    lets the next COMMIT reach the server, which commits, and drops the connection before
    its answer reaches the engine (a connection lost at its commit)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._losing = False
        self._pipes: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def lose_the_next_commit(self) -> None:
        self._losing = True

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        server, to_server = await asyncio.open_connection("127.0.0.1", self._port)
        committing = asyncio.Event()
        for pipe in (
            self._pipe(client, to_server, committing=committing, asks=True),
            self._pipe(server, to_client, committing=committing, asks=False),
        ):
            task = asyncio.create_task(pipe)
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        committing: asyncio.Event,
        asks: bool,
    ) -> None:
        """One direction of a connection: the engine's requests (`asks`) or the answers."""
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if asks and self._losing and b"COMMIT" in data:  # asyncpg's simple query
                    self._losing = False
                    committing.set()
                elif not asks and committing.is_set():
                    return  # the answer to the COMMIT, lost with the connection
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
