"""The process charts are drawn in, so matplotlib never runs on the bot's own CPU time.

Drawing a chart holds the GIL for a good part of a second: in a thread of the bot, its event
loop (window ends, webhooks, clicks) would wait behind it. One worker process draws instead,
spawned (never forked from the threaded bot) at the first chart, at a lower CPU priority so
that on a busy machine the bot's own work goes first. Only the worker imports matplotlib. A
worker that died is replaced at the next chart; the app ends it when it closes, and a bot
that was killed (closing nothing) takes its worker with it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

NICENESS = 10
"""Added to the worker's nice value: the bot's own work goes first on a busy machine."""

R = TypeVar("R")


class ChartFailed(RuntimeError):
    """A chart was not drawn: its drawing raised, or the worker died while drawing it."""


class ChartWorker:
    """One worker process, started at the first chart and again after it died."""

    def __init__(self, *, niceness: int = NICENESS) -> None:
        self._niceness = niceness
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, draw: Callable[..., R], *args: object) -> R:
        """`draw(*args)` in the worker; what it returns, or ChartFailed. `draw` and `args`
        cross to the worker pickled (module-level functions, frozen dataclasses)."""
        pool = self._started()
        try:
            future = pool.submit(draw, *args)
        except BrokenProcessPool:
            # The worker died between two charts: this one never reached it, a fresh one draws.
            self._discard(pool)
            pool = self._started()
            future = pool.submit(draw, *args)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            # Died while drawing, maybe because of this chart: it fails, the next gets a worker.
            self._discard(pool)
            raise ChartFailed("the chart worker died while drawing") from None
        except Exception as error:
            raise ChartFailed(f"{type(error).__name__}: {error}") from None

    async def close(self) -> None:
        """Wait for the charts in hand, then end the worker (if one was started)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown)

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_starts,
                initargs=(self._niceness,),
            )
        return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        """Forget a pool whose worker died (unless a fresh one already replaced it)."""
        if self._pool is pool:
            self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)


def _worker_starts(niceness: int) -> None:
    """In the worker, before its first chart: lower its priority, and watch the bot."""
    os.nice(niceness)
    threading.Thread(target=_end_with_the_bot, name="end-with-the-bot", daemon=True).start()


def _end_with_the_bot() -> None:
    """Wait for the bot's process to end, then end too: a pool's worker would otherwise wait
    for work forever after a SIGKILL of the bot (it holds its own queue's writing end)."""
    bot = multiprocessing.parent_process()
    if bot is not None:
        bot.join()
        os._exit(0)
