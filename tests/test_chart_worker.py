"""The chart worker: charts drawn in a process of their own at a lower CPU priority, never in
the bot's (which does not even import matplotlib); a drawing that raises, or a worker that
dies, fails that chart alone, and the next chart gets a worker again; so does a drawing that
hangs (its worker is killed; the charts queued behind it are drawn on the next worker). The
worker imports matplotlib as it starts, and a chart's time limit does not count the start; a
start that hangs or dies is logged once, the charts meanwhile fail at once, and a chart starts
a worker again later. A worker closed with its app starts no process again, and closing ends a
hung drawing.

The tests share the session's worker (`chart_worker`, tests/conftest.py): each fresh one
imports matplotlib, about a second. It draws at the session's own priority
(`sandbox.harness.CHARTS`: at the lower one, a loaded machine starved it past its time limit);
the lower priority is tested on a worker started as the bot starts it. The tests of a worker of
their own that draw no chart start it without matplotlib (`NO_WARM_UP`).
"""

from __future__ import annotations

import ast
import asyncio
import functools
import logging
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from test_charts import CHART, NOW

from bot.adapters.chart_worker import NICENESS, ChartFailed, ChartWorker
from bot.adapters.charts import (
    PNG_SIGNATURE,
    Band,
    Figure,
    TimelineChart,
    charts_enabled,
    render_png,
    render_timeline_png,
)

NO_WARM_UP = os.getpid
"""A warm-up that imports nothing, for a worker of the bot's kind (its priority, its time
limits) asked no chart: the bot's own, matplotlib's import, costs a CPU-second or more at each
start, and such a test starts up to two workers (the session's draws the charts)."""

TIMELINE = TimelineChart(
    title="Rollout v1.4.2",
    bands=(Band("relay", "canary", NOW - timedelta(minutes=30), NOW),),
    figures=(Figure("crash rate", "relay canary", NOW, Decimal("0.001"), Decimal("0.002")),),
)


def test_both_kinds_of_chart_cross_to_the_worker_unchanged() -> None:
    for chart in (CHART, TIMELINE):
        assert pickle.loads(pickle.dumps(chart)) == chart  # noqa: S301 - our own charts


async def test_the_worker_draws_both_kinds_in_its_own_process(chart_worker: ChartWorker) -> None:
    assert await chart_worker.run(os.getpid) != os.getpid()
    assert (await chart_worker.run(render_png, CHART)).startswith(PNG_SIGNATURE)
    assert (await chart_worker.run(render_timeline_png, TIMELINE)).startswith(PNG_SIGNATURE)


async def test_the_bots_worker_runs_at_a_lower_priority() -> None:
    # A worker as the bot starts it (the session's draws at the sandbox's priority), its
    # priority lowered before the warm-up; asked nothing that imports matplotlib.
    charts = ChartWorker(warm_up=NO_WARM_UP)
    try:
        assert await charts.run(os.nice, 0) == min(os.nice(0) + NICENESS, 19)
    finally:
        await charts.close()


async def test_a_charts_time_limit_counts_its_drawing_not_the_workers_start() -> None:
    # A start longer than the limit (on a loaded machine, at the lower priority, the spawn
    # and the imports took longer than DRAW_TIMEOUT_S): the chart is drawn all the same.
    slow = functools.partial(time.sleep, 1.0)
    charts = ChartWorker(niceness=0, draw_timeout=0.5, warm_up=slow)
    try:
        assert await charts.run(os.getpid) != os.getpid()
    finally:
        await charts.close()


async def test_the_worker_imports_matplotlib_as_it_starts_before_the_first_chart() -> None:
    charts = ChartWorker(niceness=0)
    try:
        assert await charts.run(holds, "matplotlib.backends.backend_agg")
    finally:
        await charts.close()


def holds(module: str) -> bool:
    """Whether the process has imported `module`."""
    return module in sys.modules


async def test_a_start_that_hangs_is_said_once_and_the_charts_meanwhile_fail_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hangs = functools.partial(time.sleep, 3600)
    charts = ChartWorker(niceness=0, start_timeout=0.5, retry_start=3600, warm_up=hangs)
    before = set(multiprocessing.active_children())
    try:
        charts.start()  # as the app starts
        (worker,) = set(multiprocessing.active_children()) - before
        with pytest.raises(ChartFailed, match=r"did not start within 0\.5s"):
            await charts.run(os.getpid)  # asked while it starts: waits for the start's bound
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(ChartFailed, match=r"did not start within 0\.5s; the first chart"):
                await charts.run(os.getpid)
        assert time.monotonic() - started < 0.5  # not a time limit each
        (said,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert "the chart worker did not start within 0.5s" in said.getMessage()
        while running(worker.pid):  # noqa: ASYNC110 - killed (SIGKILL), then reaped by the pool
            await asyncio.sleep(0.01)
        assert set(multiprocessing.active_children()) - before <= {worker}  # no start again yet
    finally:
        await charts.close()


async def test_a_start_that_failed_is_tried_again_by_a_chart_later(tmp_path: Path) -> None:
    dying = tmp_path / "dying"
    dying.touch()
    charts = ChartWorker(
        niceness=0, retry_start=1.0, warm_up=functools.partial(die_while_there, dying)
    )
    try:
        with pytest.raises(ChartFailed, match="died while starting"):
            await charts.run(os.getpid)
        dying.unlink()
        with pytest.raises(ChartFailed, match=r"the first chart [01]s from now starts it again"):
            await charts.run(os.getpid)
        await asyncio.sleep(1.0)
        assert await charts.run(os.getpid) != os.getpid()
    finally:
        await charts.close()


def die_while_there(path: Path) -> None:
    """A worker's warm-up that ends its process while `path` exists."""
    if path.exists():
        os._exit(1)


async def test_a_killed_worker_is_replaced_at_the_next_chart(chart_worker: ChartWorker) -> None:
    killed = await chart_worker.run(os.getpid)
    os.kill(killed, signal.SIGKILL)
    # Until the pool's own thread has seen it die and reaped it (nothing to await for that).
    while Path(f"/proc/{killed}").exists():  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.01)
    assert (await chart_worker.run(render_png, CHART)).startswith(PNG_SIGNATURE)
    assert await chart_worker.run(os.getpid) != killed


async def test_a_worker_that_dies_while_drawing_fails_that_chart_only(
    chart_worker: ChartWorker,
) -> None:
    with pytest.raises(ChartFailed, match="died while drawing"):
        await chart_worker.run(os._exit, 1)
    assert (await chart_worker.run(render_png, CHART)).startswith(PNG_SIGNATURE)


async def test_a_drawing_that_raises_fails_that_chart_only(chart_worker: ChartWorker) -> None:
    drawing = await chart_worker.run(os.getpid)
    with pytest.raises(ChartFailed, match="AttributeError"):
        await chart_worker.run(render_png, "not a chart")
    assert await chart_worker.run(os.getpid) == drawing  # the same worker draws on


async def test_a_hung_drawing_fails_its_chart_and_the_next_gets_a_new_worker(
    chart_worker: ChartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    hung = await chart_worker.run(os.getpid)  # started before the time limit is shortened
    monkeypatch.setattr(chart_worker, "draw_timeout", 0.5)

    with pytest.raises(ChartFailed, match=r"not drawn within 0\.5s; the worker was killed"):
        await chart_worker.run(time.sleep, 3600)

    while running(hung):  # noqa: ASYNC110 - killed (SIGKILL), then reaped by the pool
        await asyncio.sleep(0.01)
    monkeypatch.undo()
    assert (await chart_worker.run(render_png, CHART)).startswith(PNG_SIGNATURE)
    assert await chart_worker.run(os.getpid) != hung


async def test_charts_queued_behind_a_hung_one_are_drawn_on_the_new_worker() -> None:
    # Another channel's gate card asks for its charts while one hangs: killing the hung
    # worker must not fail them as if their caller had been cancelled (a CancelledError would
    # end the outbox loop that awaits them).
    # The queued charts' second try waits for a new worker's start, which their time limit
    # does not count; 3 s leaves room for their drawing at the lower priority on a loaded
    # machine.
    charts = ChartWorker(draw_timeout=3.0, warm_up=NO_WARM_UP)
    try:
        await charts.run(os.getpid)  # the worker is up
        hung = asyncio.create_task(charts.run(time.sleep, 60))
        await asyncio.sleep(0.3)
        queued = [asyncio.create_task(charts.run(os.getpid)) for _ in range(3)]
        outcomes = await asyncio.gather(hung, *queued, return_exceptions=True)
        assert isinstance(outcomes[0], ChartFailed)
        assert all(isinstance(pid, int) and pid != os.getpid() for pid in outcomes[1:]), outcomes
    finally:
        await charts.close()


async def test_a_chart_behind_a_slow_one_has_its_whole_limit_for_its_own_drawing() -> None:
    # Two drawings of 2 s each under a 3 s limit, asked for at once: the second waits its turn,
    # and its limit starts when its drawing does (it would run out 1 s into it otherwise, and
    # the worker would be killed under a chart drawn within its limit).
    charts = ChartWorker(niceness=0, draw_timeout=3.0, warm_up=NO_WARM_UP)
    try:
        worker = await charts.run(os.getpid)
        done = await asyncio.gather(charts.run(time.sleep, 2.0), charts.run(time.sleep, 2.0))
        assert done == [None, None]
        assert await charts.run(os.getpid) == worker  # never killed
    finally:
        await charts.close()


async def test_a_chart_cancelled_while_it_waits_its_turn_passes_it_on_in_order() -> None:
    # The third chart's turn comes when the first's drawing ends, not when the second is
    # cancelled: its limit (2.5 s) would run out 0.5 s before its drawing (1 s) ended otherwise.
    charts = ChartWorker(niceness=0, draw_timeout=2.5, warm_up=NO_WARM_UP)
    try:
        await charts.run(os.getpid)
        first = asyncio.create_task(charts.run(time.sleep, 2.0))
        waiting = asyncio.create_task(charts.run(os.getpid))
        third = asyncio.create_task(charts.run(time.sleep, 1.0))
        await asyncio.sleep(0.2)
        waiting.cancel()
        assert await asyncio.gather(first, third) == [None, None]
        assert waiting.cancelled()
    finally:
        await charts.close()


async def test_closing_kills_a_drawing_that_hangs_once_its_time_is_up() -> None:
    # The outbox's stop cancels its delivery while the chart hangs; closing then waits for the
    # drawing one time limit at most, not until it ends.
    charts = ChartWorker(warm_up=NO_WARM_UP)
    await charts.run(os.getpid)  # the worker is up, on the default time limit
    charts.draw_timeout = 1.0
    drawing = asyncio.create_task(charts.run(time.sleep, 30))
    await asyncio.sleep(0.3)
    drawing.cancel()
    started = time.monotonic()
    await charts.close()
    assert time.monotonic() - started < 10
    with pytest.raises(asyncio.CancelledError):
        await drawing


async def test_a_closed_worker_refuses_charts_and_starts_no_process() -> None:
    charts = ChartWorker(warm_up=NO_WARM_UP)
    assert await charts.run(os.getpid) != os.getpid()
    await charts.close()
    before = multiprocessing.active_children()

    with pytest.raises(ChartFailed, match="closed"):
        await charts.run(render_png, CHART)

    assert multiprocessing.active_children() == before


async def drawn_for_a_bot() -> tuple[list[str], int]:
    """What a bot's process does for a chart (asks whether charts are on, has a worker of its
    own draw it): the matplotlib modules the process then holds, and the worker's pid. Its
    worker draws at the test's priority (not starved on a loaded machine: `CHARTS`)."""
    charts = ChartWorker(niceness=0)
    assert charts_enabled()
    assert (await charts.run(render_png, CHART)).startswith(PNG_SIGNATURE)
    held = sorted(name for name in sys.modules if name.partition(".")[0] == "matplotlib")
    return held, await charts.run(os.getpid)


def test_the_bots_process_never_imports_matplotlib_and_a_killed_bot_takes_its_worker() -> None:
    script = (
        "import asyncio, os, signal, bot.bootstrap, bot.wiring, bot.cli.main, bot.cli.serve\n"
        "import test_chart_worker\n"
        "print(asyncio.run(test_chart_worker.drawn_for_a_bot()), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)  # as a node dies: nothing is closed\n"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, on a fixed script
        [sys.executable, "-c", script],
        env=os.environ | {"PYTHONPATH": str(Path(__file__).parent)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    held, worker = ast.literal_eval(done.stdout)
    try:
        assert held == []
        while running(worker):  # the worker sees its bot gone and ends
            time.sleep(0.01)
    finally:
        if running(worker):
            os.kill(worker, signal.SIGKILL)


def running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: reaped while it was read
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
