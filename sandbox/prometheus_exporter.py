"""Scriptum's relay counters at known rates, and a real Prometheus scraping them.

`RelayExporter` serves `/metrics` in Prometheus's text format with the four counters SPEC
section 1 names (`relay_request_rate_total`, `relay_request_errors_total`,
`relay_ws_rate_total`, `relay_ws_errors_total`, labels `endpoint` and `method`), growing at
the rates it is given, so a test knows the error rate and the request count a window must
show. `PrometheusProcess` runs Debian's `prometheus` binary on a loopback port, scraping
exporters every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import yaml
from aiohttp import web

from sandbox.loopback import Lifecycle, LoopbackServer

# Each family's traffic is spread over these (endpoint, method) pairs by these shares.
HTTP_ROUTES = ((("/documents", "GET"), 0.6), (("/documents", "PUT"), 0.3), (("/auth", "POST"), 0.1))
WS_ROUTES = ((("/ws/sync", "GET"), 0.8), (("/ws/presence", "GET"), 0.2))

_FAMILIES = (
    ("relay_request_rate_total", "HTTP requests served by the relay.", HTTP_ROUTES),
    ("relay_request_errors_total", "HTTP requests that failed.", HTTP_ROUTES),
    ("relay_ws_rate_total", "WebSocket messages handled by the relay.", WS_ROUTES),
    ("relay_ws_errors_total", "WebSocket messages that failed.", WS_ROUTES),
)


@dataclass(frozen=True)
class RelayTraffic:
    """Per-second rates of each counter family."""

    requests: float
    request_errors: float
    ws: float
    ws_errors: float

    @property
    def error_rate(self) -> float:
        """errors / requests over HTTP and WebSocket together: what the gate must read."""
        total = self.requests + self.ws
        return (self.request_errors + self.ws_errors) / total if total else math.nan

    @property
    def per_second(self) -> float:
        """Requests and messages per second: a window of N seconds samples about N x this."""
        return self.requests + self.ws

    def rates(self) -> tuple[float, ...]:
        return (self.requests, self.request_errors, self.ws, self.ws_errors)


class RelayExporter(LoopbackServer):
    """A `/metrics` endpoint on 127.0.0.1 whose counters grow at the configured rates."""

    def __init__(
        self,
        traffic: RelayTraffic,
        *,
        clock: Callable[[], float] = time.monotonic,
        lazy: bool = False,
    ) -> None:
        self._clock = clock
        self._lazy = lazy
        """A series appears at its first count, as a client library creates a labelled
        counter's child when first used: a relay that never failed exports no errors series."""
        self._traffic = traffic
        self._since = clock()
        self._base = (0.0, 0.0, 0.0, 0.0)

    @property
    def traffic(self) -> RelayTraffic:
        return self._traffic

    @property
    def target(self) -> str:
        """`host:port`, as a Prometheus scrape config names it."""
        return f"127.0.0.1:{self.port}"

    def set_traffic(self, traffic: RelayTraffic) -> None:
        """Change the rates from now on; the counters keep what they have counted."""
        self._base = self._totals()
        self._since = self._clock()
        self._traffic = traffic

    def _totals(self) -> tuple[float, float, float, float]:
        elapsed = self._clock() - self._since
        a, b, c, d = (
            base + rate * elapsed
            for base, rate in zip(self._base, self._traffic.rates(), strict=True)
        )
        return (a, b, c, d)

    def exposition(self) -> str:
        """The counters in Prometheus's text exposition format (whole counts)."""
        lines: list[str] = []
        for (name, help_text, routes), total in zip(_FAMILIES, self._totals(), strict=True):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            for (endpoint, method), share in routes:
                count = math.floor(total * share)
                if self._lazy and count == 0:
                    continue
                lines.append(f'{name}{{endpoint="{endpoint}",method="{method}"}} {count}')
        return "\n".join(lines) + "\n"

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            text=self.exposition(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        return app


def prometheus_binary() -> str | None:
    """The `prometheus` executable (Debian's package installs /usr/bin/prometheus), if any."""
    return shutil.which("prometheus")


def promtool_binary() -> str | None:
    """Debian's `promtool` (in the `prometheus` package): it backfills past data into blocks."""
    return shutil.which("promtool")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrometheusProcess(Lifecycle):
    """A real Prometheus on a random loopback port scraping each job's target every second.

    Its data lives in a temporary directory removed on exit; the process is always stopped.
    `history` is past data in OpenMetrics text (`name{labels} value unix-seconds` lines, then
    `# EOF`), written into the database with `promtool tsdb create-blocks-from openmetrics`
    before Prometheus starts; retention is unlimited, so old blocks are kept. `tokens` gives a
    job the bearer token its scrape sends; `rules` are rule files it loads (and evaluates every
    second); `remote_read` are remote-read endpoints every query also reads (one that fails
    makes Prometheus answer `success` with a warning: a partial answer); `labels` are the target
    labels a job's series get (as Kubernetes pod discovery relabels a pod's version onto the
    series of the release it runs). A `sandbox.prometheus_clock.SkewedClock` in front of `url`
    answers as this Prometheus would with its clock off the host's.
    """

    def __init__(
        self,
        jobs: Mapping[str, str],
        *,
        binary: str | None = None,
        history: str | None = None,
        tokens: Mapping[str, str] | None = None,
        rules: Sequence[Path] = (),
        remote_read: Sequence[str] = (),
        labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        found = binary or prometheus_binary()
        if found is None:
            raise FileNotFoundError("no prometheus binary on PATH (apt-get install prometheus)")
        self._binary = found
        self._jobs = dict(jobs)
        self._tokens = dict(tokens or {})
        self._rules = [str(path) for path in rules]
        self._remote_read = list(remote_read)
        self._labels = {job: dict(given) for job, given in (labels or {}).items()}
        self._history = history
        self._process: asyncio.subprocess.Process | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self.url = ""
        """Where to query it."""

    def _config(self) -> str:
        return yaml.safe_dump(
            {
                "global": {
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "evaluation_interval": "1s",
                    "query_log_file": str(self._query_log()),
                },
                "rule_files": self._rules,
                "scrape_configs": [self._scrape(job, target) for job, target in self._jobs.items()],
                "remote_read": [{"url": url, "read_recent": True} for url in self._remote_read],
            }
        )

    def _query_log(self) -> Path:
        assert self._directory is not None
        return Path(self._directory.name) / "queries.log"

    def queries(self) -> list[dict[str, Any]]:
        """Every query this Prometheus answered so far, as its query log records them
        (`params`: `query`, `start`, `end`, `step`; an instant query's start is its end)."""
        log = self._query_log()
        if not log.exists():
            return []
        lines = log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["params"] for line in lines if line.strip()]

    def _scrape(self, job: str, target: str) -> dict[str, Any]:
        targets: dict[str, Any] = {"targets": [target]}
        if job in self._labels:
            targets["labels"] = self._labels[job]
        scrape: dict[str, Any] = {"job_name": job, "static_configs": [targets]}
        if job in self._tokens:
            scrape["authorization"] = {"type": "Bearer", "credentials": self._tokens[job]}
        return scrape

    async def start(self, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        self._directory = tempfile.TemporaryDirectory(prefix="rollout-bot-prometheus-")
        root = Path(self._directory.name)
        (root / "prometheus.yml").write_text(self._config(), encoding="utf-8")
        if self._history is not None:
            await self._backfill(root, self._history)
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        with (root / "prometheus.log").open("wb") as log:
            self._process = await self._spawn(root, port, log)
        try:
            await self._wait_ready(timeout)
        except BaseException:
            await self.stop()
            raise

    @staticmethod
    async def _backfill(root: Path, history: str) -> None:
        promtool = promtool_binary()
        if promtool is None:
            raise FileNotFoundError("no promtool binary on PATH (apt-get install prometheus)")
        source = root / "history.om"
        source.write_text(history, encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=24h",
            str(source),
            str(root / "data"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"promtool failed: {output.decode(errors='replace')[-2000:]}")

    async def _spawn(self, root: Path, port: int, log: IO[bytes]) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            self._binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            "--storage.tsdb.retention.time=100y",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )

    async def _wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109
        assert self._process is not None
        async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
            while True:
                if self._process.returncode is not None:
                    raise RuntimeError(f"prometheus exited: {self._log_tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.url}/-/ready") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)

    async def wait_for_scrapes(self, count: int, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until every job has `count` successful scrapes stored (a window needs data)."""
        query = f"count_over_time(up[{count + 5}s])"
        async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
            while True:
                async with session.post(f"{self.url}/api/v1/query", data={"query": query}) as r:
                    body = await r.json()
                counts = {
                    item["metric"].get("job"): int(float(item["value"][1]))
                    for item in body.get("data", {}).get("result", [])
                }
                if all(counts.get(job, 0) >= count for job in self._jobs):
                    return
                await asyncio.sleep(0.25)

    def _log_tail(self) -> str:
        assert self._directory is not None
        log = Path(self._directory.name) / "prometheus.log"
        return log.read_text(encoding="utf-8", errors="replace")[-2000:] if log.exists() else ""

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), timeout=10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._process = None
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None
