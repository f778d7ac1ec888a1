"""The process charts are drawn in, so matplotlib never runs on the bot's own CPU time.

Drawing a chart holds the GIL for a good part of a second: in a thread of the bot, its event
loop (window ends, webhooks, clicks) would wait behind it. One worker process draws instead,
spawned (never forked from the threaded bot) at the first chart, at a lower CPU priority so
that on a busy machine the bot's own work goes first. Only the worker imports matplotlib. A
worker that died is replaced at the next chart, and so is one whose drawing took longer than
`DRAW_TIMEOUT_S` (it is killed: a hung drawing would hold every later chart). The app ends
the worker when it closes, for good (a chart asked for afterwards fails: nothing would end a
worker started then), and a bot that was killed (closing nothing) takes its worker with it.
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

DRAW_TIMEOUT_S = 30.0
"""Seconds a chart may take, the worker's start (matplotlib's import) included: a chart takes
under a second, a few on a loaded machine at the worker's lower priority."""

R = TypeVar("R")


class ChartFailed(RuntimeError):
    """A chart was not drawn: its drawing raised or took too long, the worker died while
    drawing it, or the worker was closed."""


class ChartWorker:
    """One worker process, started at the first chart and again after it died or hung. It
    draws one chart at a time: a chart's time limit counts its wait behind the others too."""

    def __init__(self, *, niceness: int = NICENESS, draw_timeout: float = DRAW_TIMEOUT_S) -> None:
        self._niceness = niceness
        self.draw_timeout = draw_timeout
        """Seconds a chart may take (`DRAW_TIMEOUT_S`); a test shortens it."""
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    async def run(self, draw: Callable[..., R], *args: object) -> R:
        """`draw(*args)` in the worker; what it returns, or ChartFailed. `draw` and `args`
        cross to the worker pickled (module-level functions, frozen dataclasses)."""
        return await self._run(draw, args, again=True)

    async def _run(self, draw: Callable[..., R], args: tuple[object, ...], *, again: bool) -> R:
        if self._closed:
            raise ChartFailed("the chart worker was closed (the bot is shutting down)")
        pool = self._started()
        try:
            future = pool.submit(draw, *args)
        except BrokenProcessPool:
            # The worker died between two charts: this one never reached it, a fresh one draws.
            self._discard(pool)
            pool = self._started()
            future = pool.submit(draw, *args)
        try:
            async with asyncio.timeout(self.draw_timeout):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            # Hung (or far too slow): killed, so the next chart gets a fresh worker.
            self._discard(pool, kill=True)
            raise ChartFailed(
                f"not drawn within {self.draw_timeout:g}s; the worker was killed, the next "
                "chart gets a new one"
            ) from None
        except (BrokenProcessPool, asyncio.CancelledError) as error:
            if isinstance(error, asyncio.CancelledError) and _cancelled_here():
                raise  # the caller's own cancellation (a shutdown)
            if self._pool is not pool and again:
                # Waiting behind a chart whose time ran out: its worker was killed with this
                # one queued (cancelled, or broken under it). Drawn once more, on the new one.
                return await self._run(draw, args, again=False)
            # Died while drawing, maybe because of this chart: it fails, the next gets a worker.
            self._discard(pool)
            raise ChartFailed("the chart worker died while drawing") from None
        except Exception as error:
            raise ChartFailed(f"{type(error).__name__}: {error}") from None

    async def close(self) -> None:
        """Wait for the charts in hand (one drawing's time limit at most: a hung one is
        killed), then end the worker (if one was started), for good."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return
        ended = asyncio.ensure_future(asyncio.to_thread(pool.shutdown))
        done, _ = await asyncio.wait([ended], timeout=self.draw_timeout)
        if not done:
            self._discard(pool, kill=True)
            await ended

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_starts,
                initargs=(self._niceness,),
            )
        return self._pool

    def _discard(self, pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
        """Forget a pool whose worker died, or `kill` its hung worker first (unless a fresh
        one already replaced it)."""
        if self._pool is pool:
            self._pool = None
        if kill:
            # The pool's own processes (None once it shut down): ProcessPoolExecutor kills
            # its workers itself only from Python 3.14 on.
            for process in list((pool._processes or {}).values()):
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)


def _cancelled_here() -> bool:
    """Whether the running task itself is being cancelled (not a future it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


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
