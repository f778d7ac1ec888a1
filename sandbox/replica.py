"""One `rollout-bot serve` process, run as an operator runs it: the restart test, the
two-replica tests and the chaos test start, SIGTERM or SIGKILL and start again the real
command line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import aiohttp

from sandbox.bounds import bounded

_INHERITED = ("PATH", "HOME", "LANG")
"""The only variables a replica takes from the test's own environment."""


class ServeProcess:
    """A `rollout-bot serve` replica on a fresh loopback port at every start; its stderr is
    appended to `log`, so a restarted replica keeps one log across its lives."""

    def __init__(
        self,
        *,
        environment: Callable[[int], Mapping[str, str]],
        workdir: Path,
        log: Path,
        http: aiohttp.ClientSession,
    ) -> None:
        self._environment = environment
        self._workdir = workdir
        self.log = log
        self._http = http
        self._process: asyncio.subprocess.Process | None = None
        self.url = ""
        self.starts = 0
        self.profile: Path | None = None
        """A directory: each later start runs under cProfile, whose statistics are written
        to `<log name>-<start>.prof` there when the process stops (`stop`, not `kill`)."""

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, *, timeout: float = 120.0) -> str:  # noqa: ASYNC109
        """Start the process and wait until `/healthz` answers; returns its base URL. The
        port is free when chosen; another process may take it before `serve` binds it: then
        once more on another port. The wait ends as soon as it answers or exits: `timeout`
        only bounds a start that hangs: one that fails, hangs or is cancelled is killed.
        Importing the bot alone costs about 1.8 CPU-seconds, 15 to 22 s of wall time at a
        load of 16 on 2 cores, so 30 s was too short."""
        try:
            return await self._start(timeout)
        except PortTaken:
            return await self._start(timeout)

    async def _start(self, timeout: float) -> str:  # noqa: ASYNC109
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        env = {k: v for k, v in os.environ.items() if k in _INHERITED}
        with self.log.open("ab") as stderr:
            profiled = (
                [
                    "-m",
                    "cProfile",
                    "-o",
                    str(self.profile / f"{self.log.stem}-{self.starts + 1}.prof"),
                ]
                if self.profile is not None
                else []
            )
            self._process = process = await asyncio.create_subprocess_exec(
                sys.executable,
                *profiled,
                "-m",
                "bot.cli",
                "serve",
                env=env | dict(self._environment(port)),
                cwd=self._workdir,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        self.starts += 1
        try:
            self.url = await self._healthy(process, port, timeout)
        except BaseException:
            await self.kill()  # a start that hangs or is cancelled leaves no process behind
            raise
        return self.url

    async def _healthy(
        self,
        process: asyncio.subprocess.Process,
        port: int,
        timeout: float,  # noqa: ASYNC109
    ) -> str:
        """The base URL once `/healthz` answers on `port`; an error once `process` exited or
        `timeout` seconds passed."""
        url = f"http://127.0.0.1:{port}"

        def missing() -> str:
            return f"rollout-bot serve does not answer GET {url}/healthz; see {self.log}"

        async with bounded(timeout, missing):
            while process.returncode is None:
                try:
                    async with self._http.get(f"{url}/healthz") as health:
                        if health.status == 200:
                            return url
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
        if process.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in self.log.read_text():
            raise PortTaken(port)
        raise RuntimeError(f"rollout-bot serve exited with {process.returncode}; see {self.log}")

    async def stop(self, *, timeout: float = 60.0) -> int:  # noqa: ASYNC109
        """SIGTERM, as an orchestrator stops a replica in a rolling restart: it drains and
        exits; returns its exit status. One still running after `timeout` seconds is killed
        (`TimeoutError`)."""
        process = self._process
        assert process is not None and process.returncode is None, "not running"
        process.terminate()
        try:
            async with bounded(
                timeout,
                lambda: f"rollout-bot serve did not exit on SIGTERM (killed); see {self.log}",
            ):
                return await process.wait()
        finally:
            await self.kill()  # one that did not exit is not left running for the rest of the run

    async def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, as when a node dies: every process of the replica
        at once (its chart worker, orphaned, would go on starting for up to 0.4 CPU-seconds
        before it noticed). The replica stays in the test's process group, so that a signal
        to the group (Ctrl-C, a job runner's SIGTERM) reaches it too."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                # Stopped, it starts no process, and reaps none: its children's ids stay theirs.
                process.send_signal(signal.SIGSTOP)
                for pid in (*descendants(process.pid), process.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            await process.wait()
        self._process = None


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs (Linux's /proc; none once it has ended)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return found
    for task in tasks:
        with contextlib.suppress(FileNotFoundError):
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


class PortTaken(Exception):
    """`serve` could not listen on the port chosen for it: another process took it first."""
