"""A `rollout-bot serve` replica's processes (`sandbox.replica`): killed, it takes every process
it started with it, as a node's death does; and a signal to its test's process group (Ctrl-C, a
job runner's stop) reaches it too, so that a stopped test leaves no replica running."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from test_chart_worker import running

from sandbox.harness import Sandbox
from sandbox.replica import descendants

ROOT = Path(__file__).resolve().parent.parent

# Started apart, in a process group of its own (as a test run is), until its group is signalled.
TEST_RUN = """
import asyncio, sys
from pathlib import Path
from sandbox.harness import Sandbox
from sandbox.replica import descendants

async def main() -> None:
    async with Sandbox(workdir=Path(sys.argv[1]), in_process=False) as box:
        pid = box.replicas[0].pid
        print(pid, *descendants(pid), flush=True)
        await asyncio.sleep(600)

asyncio.run(main())
"""


async def gone(pids: list[int]) -> None:
    """Until none of `pids` runs (a zombie has ended)."""
    async with asyncio.timeout(60):  # a replica draining on SIGTERM ends within seconds
        while any(running(pid) for pid in pids):  # noqa: ASYNC110 - looked at, not waited on
            await asyncio.sleep(0.05)


async def test_a_killed_replica_takes_every_process_it_started(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    async with Sandbox(workdir=tmp_path, database_url=sqlite_database_url, in_process=False) as box:
        pid = box.replicas[0].pid
        assert pid is not None
        started = descendants(pid)
        assert started  # its chart worker starts with it
        await box.kill_process()
        await gone(started)


async def test_a_replica_ends_with_its_test_s_process_group(tmp_path: Path) -> None:
    run = subprocess.Popen(  # noqa: ASYNC220, S603 - this interpreter, on a fixed script
        [sys.executable, "-c", TEST_RUN, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        assert run.stdout is not None
        line = await asyncio.to_thread(run.stdout.readline)
        pids = [int(pid) for pid in line.split()]
        assert pids, "the test run started no replica"
        os.killpg(run.pid, signal.SIGTERM)  # Python's default: it ends, no cleanup of its own
        assert await asyncio.to_thread(run.wait) == -signal.SIGTERM
        await gone(pids)
    finally:
        for pid in pids:  # a replica left running fails the test, and ends here
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        if run.poll() is None:
            run.kill()
            run.wait()
