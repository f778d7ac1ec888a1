"""The process charts are drawn in, so matplotlib never runs on the bot's own CPU time.

Drawing a chart holds the GIL for a good part of a second: in a thread of the bot, its event
loop (window ends, webhooks, clicks) would wait behind it. One worker process draws instead,
spawned (never forked from the threaded bot) at a lower CPU priority so that on a busy machine
the bot's own work goes first. Only the worker imports matplotlib.

The app starts the worker ahead, as it starts, in the background (`start`): the worker's start
(the spawn, the bot's modules and matplotlib imported: about 1.6 CPU-seconds, far longer at
the lower priority on a loaded machine) has a bound of its own (`START_TIMEOUT_S`), and a
chart's time limit (`DRAW_TIMEOUT_S`) counts its drawing only. A chart asked for while the
worker starts waits for the start. A start that hangs past its bound (killed) or dies is
logged in one line, and the charts fail at once until `RETRY_START_S` later, when the next
chart starts a worker again. A worker that died, or whose drawing took longer than its limit
(killed: a hung drawing would hold every later chart), is replaced at once. The app ends the
worker when it closes, for good (a chart asked for afterwards fails: nothing would end a
worker started then), and a bot that was killed (closing nothing) takes its worker with it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from bot.adapters.charts import plotting

log = logging.getLogger(__name__)

NICENESS = 10
"""Added to the worker's nice value: the bot's own work goes first on a busy machine."""

DRAW_TIMEOUT_S = 30.0
"""Seconds a chart's drawing may take (not its wait for the worker's start or behind the charts
asked before it): a chart takes under a second, a few on a loaded machine at the lower
priority."""

START_TIMEOUT_S = 120.0
"""Seconds the worker may take to start: about 1.6 CPU-seconds, which at the lower priority
took more than 30 s on a machine with a load of 15 on two cores."""

RETRY_START_S = 60.0
"""Seconds after a start that failed before a chart starts a worker again (the charts
meanwhile fail at once)."""

R = TypeVar("R")


class ChartFailed(RuntimeError):
    """A chart was not drawn: its drawing raised or took too long, the worker died while
    drawing it, or the worker was closed."""


class ChartWorker:
    """One worker process, started ahead and again after it died or hung. It draws one chart
    at a time, in the order they were asked for: a chart waits its turn before it is handed to
    the worker, so its time limit counts its own drawing only, and a chart whose time ran out
    is the one the worker was drawing (never one drawn within its limit behind a slow one)."""

    def __init__(
        self,
        *,
        niceness: int = NICENESS,
        draw_timeout: float = DRAW_TIMEOUT_S,
        start_timeout: float = START_TIMEOUT_S,
        retry_start: float = RETRY_START_S,
        warm_up: Callable[[], object] = plotting,
    ) -> None:
        self._niceness = niceness
        self.draw_timeout = draw_timeout
        """Seconds a chart may take (`DRAW_TIMEOUT_S`); a test shortens it."""
        self._start_timeout = start_timeout
        self._retry_start = retry_start
        self._warm_up = warm_up
        """Run in the worker as it starts (matplotlib's import); a test brings one that hangs."""
        self._lock = threading.Lock()
        """The worker's state is also changed by the thread that watches its start."""
        self._pool: ProcessPoolExecutor | None = None
        self._ready: Future[None] = Future()
        """Settled once the worker is up, or with ChartFailed once its start failed."""
        self._failed: tuple[str, float] | None = None
        """Why the last start failed, and from when (`time.monotonic`) a chart starts again."""
        self._closed = False
        self._turn: Future[None] = Future()
        """Settled once the chart asked for last has been drawn or given up: the next waits
        for it. A concurrent future, not an asyncio one: one worker may serve several loops
        (the sandbox's tests)."""
        self._turn.set_result(None)

    def start(self) -> None:
        """Start the worker in the background, unless it is up or starting, or its last start
        failed less than `RETRY_START_S` ago. The app calls it as it starts."""
        with self._lock:
            if self._closed or self._pool is not None:
                return
            if self._failed is not None and time.monotonic() < self._failed[1]:
                return
            pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_starts,
                initargs=(self._niceness, self._warm_up),
            )
            up = pool.submit(os.getpid)  # spawns the worker; answered once it has started
            ready: Future[None] = Future()
            ready.set_running_or_notify_cancel()  # a waiter cancelled cannot cancel it
            self._pool, self._ready, self._failed = pool, ready, None
        watch = threading.Thread(
            target=self._watch_start, args=(pool, up, ready), name="chart-worker-start", daemon=True
        )
        watch.start()

    async def run(self, draw: Callable[..., R], *args: object) -> R:
        """`draw(*args)` in the worker; what it returns, or ChartFailed. `draw` and `args`
        cross to the worker pickled (module-level functions, frozen dataclasses)."""
        before, mine = self._turn, Future[None]()
        self._turn = mine
        try:
            # Shielded: a chart cancelled while it waits leaves the one before it alone.
            await asyncio.shield(asyncio.wrap_future(before))
            return await self._run(draw, args, again=True)
        finally:
            # The next chart's turn comes once this one is done, and not before the one before
            # it (this one may have been cancelled while it waited).
            before.add_done_callback(lambda _: mine.set_result(None))

    async def _run(self, draw: Callable[..., R], args: tuple[object, ...], *, again: bool) -> R:
        pool = await self._up()
        try:
            future = pool.submit(draw, *args)
        except BrokenProcessPool:
            # The worker died between two charts: this one never reached it, a fresh one draws.
            self._replace(pool)
            pool = await self._up()
            future = pool.submit(draw, *args)
        try:
            async with asyncio.timeout(self.draw_timeout):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            # Hung (or far too slow): killed, so the next chart gets a fresh worker.
            self._replace(pool, kill=True)
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
            self._replace(pool)
            raise ChartFailed("the chart worker died while drawing") from None
        except Exception as error:
            raise ChartFailed(f"{type(error).__name__}: {error}") from None

    async def close(self) -> None:
        """Wait for the charts in hand (one drawing's time limit at most: a hung one is
        killed; none on a worker still starting), then end the worker, for good."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            up = self._ready.done() and self._ready.exception() is None
        if pool is None:
            return
        if not up:
            self._discard(pool, kill=True)
            return
        ended = asyncio.ensure_future(asyncio.to_thread(pool.shutdown))
        done, _ = await asyncio.wait([ended], timeout=self.draw_timeout)
        if not done:
            self._discard(pool, kill=True)
            await ended

    async def _up(self) -> ProcessPoolExecutor:
        """The worker once it is up (started now if there is none); ChartFailed at once after
        a start that failed, until a chart may start one again."""
        if self._closed:
            raise ChartFailed("the chart worker was closed (the bot is shutting down)")
        self.start()
        with self._lock:
            pool, ready, failed = self._pool, self._ready, self._failed
        if pool is None:
            if failed is None:  # closed meanwhile
                raise ChartFailed("the chart worker was closed (the bot is shutting down)")
            why, again_at = failed
            left = max(again_at - time.monotonic(), 0)
            raise ChartFailed(
                f"the chart worker {why}; the first chart {left:.0f}s from now starts it again"
            )
        await asyncio.wrap_future(ready)
        return pool

    def _watch_start(self, pool: ProcessPoolExecutor, up: Future[int], ready: Future[None]) -> None:
        """In a thread of its own: settle `ready` once the worker is up, or kill it when its
        start hangs past `START_TIMEOUT_S` (or died), and say so once."""
        try:
            up.result(timeout=self._start_timeout)
        except TimeoutError:
            why = f"did not start within {self._start_timeout:g}s"
        except Exception as error:  # BrokenProcessPool: its warm-up raised, it was killed
            why = f"died while starting ({type(error).__name__})"
        else:
            ready.set_result(None)
            return
        with self._lock:
            closed = self._closed
            if not closed:
                self._failed = (why, time.monotonic() + self._retry_start)
        self._discard(pool, kill=True)
        if closed:
            why = "was closed (the bot is shutting down)"
        else:
            log.warning(
                "the chart worker %s: charts fail until the first chart %gs from now starts it "
                "again",
                why,
                self._retry_start,
            )
        ready.set_exception(ChartFailed(f"the chart worker {why}"))

    def _replace(self, pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
        """Discard a worker that died or hung, and start the next one at once."""
        self._discard(pool, kill=kill)
        self.start()

    def _discard(self, pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
        """Forget a pool whose worker died, or `kill` its hung worker first (unless a fresh
        one already replaced it)."""
        with self._lock:
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


def _worker_starts(niceness: int, warm_up: Callable[[], object]) -> None:
    """In the worker, as it starts: lower its priority, watch the bot, then `warm_up` (import
    matplotlib) before the first chart, so that no chart's time limit pays for it."""
    os.nice(niceness)
    threading.Thread(target=_end_with_the_bot, name="end-with-the-bot", daemon=True).start()
    warm_up()


def _end_with_the_bot() -> None:
    """Wait for the bot's process to end, then end too: a pool's worker would otherwise wait
    for work forever after a SIGKILL of the bot (it holds its own queue's writing end)."""
    bot = multiprocessing.parent_process()
    if bot is not None:
        bot.join()
        os._exit(0)
