"""A gate's reading of its live source ends by one deadline (GATE_METRICS_TIMEOUT), shared by
every request, retry and wait of it: a Prometheus or a Sentry that never answers, or answers
503 again and again, held a gate's verdict (a closing window's, a Re-evaluate's) about 12 s a
window, 23 s a late gate's two; now the gate says INCONCLUSIVE, the source "did
not answer within N s", never PASS. A source slow but answering within it still decides.

Against loopback servers: the waits a failure asks for (`Retry-After`) on the injected clock
(`Paced`: waited none), a request's own time real I/O (each request allowed 30 s here, so only
the deadline ends it).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr
from test_prometheus_answers import NOW, WINDOW, Paced

from bot.adapters.metrics.prometheus import PrometheusSource
from bot.adapters.metrics.sentry import SentryAccess, SentrySource
from bot.adapters.metrics.sources import MetricsEndpoints
from bot.config import ConfigError, Settings, load_settings
from bot.domain.gate import GateReason, Verdict
from bot.domain.metrics import Reading, judge
from bot.domain.plan import PrometheusMetrics, SentryMetrics
from bot.plan_file import load_plan
from bot.services.gate_reads import read_gate
from sandbox.config import bot_environment
from sandbox.loopback import LoopbackServer
from sandbox.plans import SENTRY_RINGS

FIGURES = {"rate": "0.0001", "count": "100000", "base": "0.0001", "base_count": "100000"}
"""What each query of a metric answers (a healthy canary), by the query's own name."""
METRICS = PrometheusMetrics.model_validate(
    {
        "source": "prometheus",
        "baseline_crash_rate": "0.001",
        **{
            metric: {
                field: f"{metric}_{name}"
                for field, name in (
                    ("query", "rate"),
                    ("sample", "count"),
                    ("baseline", "base"),
                    ("baseline_sample", "base_count"),
                )
            }
            for metric in ("error_rate", "crash_rate")
        },
    }
)
RELAY = load_plan(None).track("relay").model_copy(update={"metrics": METRICS})
EACH = 30.0
"""Seconds one request may take here: longer than any test waits, so only the deadline ends
one that gets no answer."""


class Stalling(LoopbackServer):
    """Prometheus's query API (and Sentry's sessions endpoint, for `hang`): `time()` asked at no
    `time` gives NOW after `clock_failures` answers of HTTP 503; each other query answers its
    figure after `failures` answers of HTTP 503 (`Retry-After: 1`), each answer taking `took`
    real seconds. `hang`: no request ("all") or no query but the clock's ("queries") is ever
    answered (until the server stops). Counts what each query was asked and how many requests
    were in flight at once at most."""

    def __init__(
        self, *, failures: int = 0, clock_failures: int = 0, took: float = 0.0, hang: str = ""
    ) -> None:
        self.failures, self.clock_failures, self.took, self.hang = (
            failures,
            clock_failures,
            took,
            hang,
        )
        self.asked: Counter[str] = Counter()
        self.in_flight = self.most_in_flight = 0
        self._released = asyncio.Event()

    async def stop(self) -> None:
        self._released.set()
        await super().stop()

    async def _ask(self, request: web.Request) -> web.Response:
        form = await request.post()
        query = str(form.get("query", request.path))
        self.asked[query] += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        clock = query == "time()" and "time" not in form
        try:
            if self.hang == "all" or (self.hang == "queries" and not clock):
                await self._released.wait()
            await asyncio.sleep(self.took)
            if self.asked[query] <= (self.clock_failures if clock else self.failures):
                return web.Response(status=503, headers={"Retry-After": "1"}, text="down")
        finally:
            self.in_flight -= 1
        stamp = NOW.timestamp()
        if clock:
            scalar = {"resultType": "scalar", "result": [stamp, f"{stamp:.3f}"]}
            return web.json_response({"status": "success", "data": scalar})
        value = [stamp, FIGURES[query.split("_", 2)[-1]]]
        vector = {"resultType": "vector", "result": [{"metric": {}, "value": value}]}
        return web.json_response({"status": "success", "data": vector})

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._ask)
        return app


def prometheus(server: Stalling, *, within: float, paced: Paced | None = None) -> PrometheusSource:
    paced = paced or Paced()
    return PrometheusSource(
        METRICS,
        url=server.url,
        clock=paced,
        sleep=paced.sleep,
        charts=False,
        timeout=EACH,
        within=within,
    )


def problems(reading: Reading) -> Iterator[str]:
    for metric in reading.metrics:
        assert metric.problem is not None
        yield from metric.problem.split("; ")


async def timed(reading: Any) -> tuple[Any, float]:
    loop = asyncio.get_running_loop()
    began = loop.time()
    return await reading, loop.time() - began


async def test_retries_of_several_queries_end_by_the_reading_s_deadline() -> None:
    """Prometheus's clock asked twice more (two waits of 1 s), then its eight queries each
    asked again after 1 s while each still had time of its own (RETRY_WAIT): 5 s of waits in
    turn. Within 4.9 s, each query is asked a third time (its answer, a 503, or none within
    the 0.9 s left) and not a fourth, and the gate says INCONCLUSIVE."""
    async with Stalling(failures=10, clock_failures=2) as server:
        reading = await prometheus(server, within=4.9).measure(WINDOW)
    queries = {query: asked for query, asked in server.asked.items() if query != "time()"}
    assert len(queries) == 8 and set(queries.values()) == {3}, server.asked
    assert server.asked["time()"] == 3
    said = f"Prometheus at {server.url} did not answer within 4.9 s (GATE_METRICS_TIMEOUT, "
    for problem in problems(reading):
        what, reason = problem.split(": ", 1)
        assert what in {"value", "sample", "baseline", "baseline sample"}
        assert reason in {f"{said}last: HTTP 503)", f"{said}last: no answer)"}, reason
    verdict = judge(RELAY, reading)
    assert verdict.verdict is Verdict.INCONCLUSIVE and verdict.reason is GateReason.NO_DATA


@pytest.mark.parametrize(
    ("hang", "what"), [("all", ""), ("queries", "value: ")], ids=["clock", "queries"]
)
async def test_a_prometheus_that_never_answers_is_inconclusive_by_the_deadline(
    hang: str, what: str
) -> None:
    """A Prometheus that takes the requests and never answers (its clock, or its queries):
    each request waited its whole timeout; the reading ends by its deadline instead."""
    async with Stalling(hang=hang) as server:
        reading, took = await timed(prometheus(server, within=1).measure(WINDOW))
    assert took < EACH / 3, took
    said = f"Prometheus at {server.url} did not answer within 1 s (GATE_METRICS_TIMEOUT, last: "
    assert f"{what}{said}no answer)" in list(problems(reading)), list(problems(reading))
    assert judge(RELAY, reading).verdict is Verdict.INCONCLUSIVE


async def test_a_sentry_that_never_answers_is_inconclusive_by_the_deadline() -> None:
    async with Stalling(hang="all") as server:
        access = SentryAccess(url=server.url, org="scriptum", project="4505", token=SecretStr("t"))
        source = SentrySource(
            SentryMetrics.model_validate(SENTRY_RINGS), access=access, timeout=EACH, within=1
        )
        reading, took = await timed(source.measure(WINDOW))
    assert took < EACH / 3, took
    assert reading.metrics[0].problem == (
        "value: Sentry did not answer within 1 s (GATE_METRICS_TIMEOUT, last: no answer)"
    )
    assert reading.figures.crash_rate is None


async def test_a_late_gate_reads_its_two_windows_within_one_deadline() -> None:
    """A late gate reads its window and the latest stretch: one after the other, a dead
    Prometheus held it two deadlines; both are asked at once. (3 s: both requests reach the
    server within it even on a loaded machine.)"""
    latest = replace(WINDOW, start=WINDOW.start + timedelta(hours=1), end=NOW + timedelta(hours=1))
    async with Stalling(hang="all") as server:
        judged, took = await timed(read_gate(prometheus(server, within=3), RELAY, (WINDOW, latest)))
    assert server.most_in_flight == 2
    assert took < EACH / 3, took
    assert judged is not None and judged[0].verdict is Verdict.INCONCLUSIVE


async def test_a_slow_source_answering_within_the_deadline_still_decides() -> None:
    """Every answer takes 0.2 s, and each query is asked again once after a 503 (a 1 s wait):
    well within 5 s, the figures are read and the canary passes."""
    async with Stalling(failures=1, took=0.2) as server:
        paced = Paced()
        reading = await prometheus(server, within=5, paced=paced).measure(WINDOW)
    assert server.asked.pop("time()") == 1 and set(server.asked.values()) == {2}
    assert all(metric.problem is None for metric in reading.metrics)
    assert judge(RELAY, reading).verdict is Verdict.PASS
    assert paced.waits == [1.0] * 8


def test_the_deadline_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = bot_environment(
        slack_api_url="http://127.0.0.1:1/api/",
        github_api_url="http://127.0.0.1:1",
        database_url=f"sqlite:///{tmp_path}/bot.db",
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert MetricsEndpoints.from_settings(load_settings(Settings, env_file=None)).within == 10
    monkeypatch.setenv("GATE_METRICS_TIMEOUT", "0")
    with pytest.raises(ConfigError) as refused:
        load_settings(Settings, env_file=None)
    assert refused.value.problems == ["GATE_METRICS_TIMEOUT: Input should be greater than 0"]
    monkeypatch.setenv("GATE_METRICS_TIMEOUT", "2.5")
    assert MetricsEndpoints.from_settings(load_settings(Settings, env_file=None)).within == 2.5
