"""The Prometheus metrics source: a gate's figures read live with the plan's PromQL templates.

Each metric is an instant query at the end of the stage's window (`$window` is its length),
its sample another, and its baseline a query or the plan's fixed number. Anything short of
one finite, non-negative number (no series, several series, NaN, an HTTP or PromQL error, an
answer Prometheus warns may be partial) leaves that figure missing with the reason, so the
gate says INCONCLUSIVE, never PASS.

Before a window is read, Prometheus's own clock is asked (`time()` with no `time`): a window
ending more than `MAX_CLOCK_SKEW` after it lies partly in Prometheus's future, its last
seconds not scraped yet, and every figure is missing with that reason.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from bot.adapters.metrics.live import LiveSource, MetricsProblem, request_json, utc_now
from bot.domain.gate import format_rate
from bot.domain.metrics import Figures, MetricReading, QueryWindow, Reading
from bot.domain.plan import PrometheusMetrics, PrometheusQuery, fill
from bot.services.ports import Clock

log = logging.getLogger(__name__)

CHART_POINTS = 240
"""About this many points per chart, whatever the rollout's length."""
MIN_CHART_WINDOW = timedelta(seconds=60)
"""A chart point's rate covers at least this much (four scrapes at Prometheus's default 15s)."""
MAX_CLOCK_SKEW = timedelta(seconds=30)
"""How far a window's end may lie ahead of Prometheus's clock (the bot's clock running ahead
of it) before the window's figures are not read: their last seconds are not in Prometheus yet,
so a canary failing in them would pass. Two scrapes at Prometheus's default 15s."""
_MAX_WARNING = 200
"""A warning's text is cut to this many characters in a figure's problem."""


def graph_url(base_url: str, expr: str, *, window: timedelta, end: datetime) -> str:
    """Prometheus's graph page showing `expr` over `window` up to `end`."""
    params = {
        "g0.expr": expr,
        "g0.tab": "0",
        "g0.range_input": f"{max(1, int(window.total_seconds()))}s",
        "g0.end_input": end.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
    }
    return f"{public_url(base_url)}/graph?{urlencode(params)}"


def public_url(base_url: str) -> str:
    """The base URL without credentials or a trailing slash: safe to show and to log."""
    url = URL(base_url)
    if url.user is not None or url.password is not None:
        url = url.with_user(None)
    return str(url).rstrip("/")


async def check_reachable(url: str) -> datetime:
    """Prometheus's clock at `url`; raises MetricsProblem when it cannot answer a query within
    10 s (unreachable, refusing, not Prometheus)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        return await PrometheusClient(url).now(session)


def behind(end: datetime, prometheus_now: datetime) -> str | None:
    """Why a window ending at `end` cannot be read yet when Prometheus's clock says
    `prometheus_now` (None: it can, within `MAX_CLOCK_SKEW`)."""
    ahead = end - prometheus_now
    if ahead <= MAX_CLOCK_SKEW:
        return None
    seconds = int(ahead.total_seconds())
    return (
        f"Prometheus's clock is {seconds}s behind the bot's: the window's last {seconds}s "
        "are not in its figures yet (sync both clocks with NTP)"
    )


class NoSeries(MetricsProblem):
    """The query matched no series."""


@dataclass(frozen=True)
class _Read:
    value: Decimal | None
    problem: str | None
    no_series: bool = False


class PrometheusClient:
    """Prometheus's HTTP query API (`/api/v1/query`, `/api/v1/query_range`)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    async def instant(
        self, session: aiohttp.ClientSession, query: str, at: datetime | None
    ) -> Decimal:
        """The one number `query` gives at `at` (None: at Prometheus's own now); raises
        MetricsProblem with the reason otherwise."""
        form = {"query": query} if at is None else {"query": query, "time": _epoch(at)}
        data = await self._call(session, "query", form)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar" and isinstance(result, list):
            return _number(result)
        if kind != "vector" or not isinstance(result, list):
            raise MetricsProblem(f"the query gave a {kind}, not one number")
        if not result:
            raise NoSeries("no data: the query matched no series")
        if len(result) > 1:
            raise MetricsProblem(
                f"the query gave {len(result)} series, not one: aggregate them (sum, max)"
            )
        return _number(result[0].get("value"))

    async def now(self, session: aiohttp.ClientSession) -> datetime:
        """Prometheus's clock: `time()` asked without a `time` is evaluated at the server's
        now (with one, it would only give that `time` back)."""
        return datetime.fromtimestamp(float(await self.instant(session, "time()", None)), UTC)

    async def series(
        self,
        session: aiohttp.ClientSession,
        query: str,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> tuple[tuple[datetime, float], ...]:
        """`query` over time (the first series; NaN and infinite points left out)."""
        data = await self._call(
            session,
            "query_range",
            {
                "query": query,
                "start": _epoch(start),
                "end": _epoch(end),
                "step": f"{max(1, int(step.total_seconds()))}s",
            },
        )
        result = data.get("result")
        if data.get("resultType") != "matrix" or not isinstance(result, list) or not result:
            return ()
        points: list[tuple[datetime, float]] = []
        for stamp, text in result[0].get("values", []):
            value = float(text)
            if math.isfinite(value):
                points.append((datetime.fromtimestamp(float(stamp), UTC), value))
        return tuple(points)

    async def _call(
        self, session: aiohttp.ClientSession, endpoint: str, form: Mapping[str, str]
    ) -> dict[str, Any]:
        status, body = await request_json(
            session,
            "POST",
            f"{self.base_url}/api/v1/{endpoint}",
            service=f"Prometheus at {public_url(self.base_url)}",
            data=dict(form),
        )
        if body is None:
            raise MetricsProblem(f"Prometheus answered HTTP {status} without JSON")
        if not isinstance(body, dict):
            raise MetricsProblem("Prometheus answered with something other than a JSON object")
        if body.get("status") != "success":
            detail = body.get("error") or f"HTTP {status}"
            raise MetricsProblem(f"Prometheus refused the query: {detail}")
        warning = _first_warning(body.get("warnings"))
        if warning is not None:
            raise MetricsProblem(
                f"Prometheus warned that its answer may be partial or wrong: {warning}"
            )
        data = body.get("data")
        if not isinstance(data, dict):
            raise MetricsProblem("Prometheus answered without data")
        return data


class PrometheusSource(LiveSource):
    """Reads a stage's figures from Prometheus at the end of its window.

    `charts=False` leaves out each metric's series since the rollout started (the backtest
    reads thousands of windows and shows no chart)."""

    def __init__(
        self,
        config: PrometheusMetrics,
        *,
        url: str | None,
        clock: Clock = utc_now,
        timeout: float = 10.0,
        charts: bool = True,
    ) -> None:
        super().__init__(clock=clock, timeout=timeout)
        self._config = config
        self._client = PrometheusClient(url) if url else None
        self._charts = charts

    async def measure(self, window: QueryWindow) -> Reading:
        config = self._config
        named = [("error_rate", config.error_rate), ("crash_rate", config.crash_rate)]
        metrics = [(name, query) for name, query in named if query is not None]
        if self._client is None:
            return _missing(config, metrics, window, "PROMETHEUS_URL is not set")
        async with self.session() as session:
            try:
                late = behind(window.end, await self._client.now(session))
            except MetricsProblem as problem:
                late = str(problem)
            if late is not None:
                log.warning("prometheus window ending %s: %s", window.end.isoformat(), late)
                return _missing(config, metrics, window, late)
            read = await asyncio.gather(
                *(self._metric(session, self._client, name, q, window) for name, q in metrics)
            )
        return _reading(config, tuple(read), window)

    async def _metric(
        self,
        session: aiohttp.ClientSession,
        client: PrometheusClient,
        name: str,
        query: PrometheusQuery,
        window: QueryWindow,
    ) -> MetricReading:
        values = window.placeholders()
        expr = fill(query.query, values)
        sample_expr = fill(query.sample, values) if query.sample else None
        baseline_expr = fill(query.baseline, values) if query.baseline else None
        fixed_baseline = (
            self._config.baseline_crash_rate
            if name == "crash_rate" and baseline_expr is None
            else None
        )
        value, sample, baseline, series = await asyncio.gather(
            self._instant(session, client, expr, window.end),
            self._instant(session, client, sample_expr, window.end),
            self._instant(session, client, baseline_expr, window.end),
            self._chart(session, client, query, window),
        )
        if sample.problem is not None and not sample.no_series:
            # A rate whose count could not be read is not judged: its sample unknown, a
            # `min_sample` of 0 would let it PASS on a window that may have tested nothing.
            value = _Read(None, value.problem)
        if baseline.value is not None and baseline.value > 1:
            # A rate is a fraction: a baseline in percent would set a limit nothing reaches.
            shown = format_rate(baseline.value)
            problem = f"{shown} is above 1 (100%): rates are fractions (0.01 = 1%)"
            baseline = _Read(None, problem)
        problems = [
            f"{what}: {read.problem}"
            for what, read in (("value", value), ("sample", sample), ("baseline", baseline))
            if read.problem
        ]
        return MetricReading(
            name=name,
            value=value.value,
            sample=_count(sample),
            baseline=fixed_baseline if fixed_baseline is not None else baseline.value,
            problem="; ".join(problems) or None,
            link=graph_url(client.base_url, expr, window=window.length, end=window.end),
            series=series,
        )

    @staticmethod
    async def _instant(
        session: aiohttp.ClientSession, client: PrometheusClient, expr: str | None, at: datetime
    ) -> _Read:
        if expr is None:
            return _Read(None, None)
        try:
            return _Read(await client.instant(session, expr, at), None)
        except MetricsProblem as problem:
            log.warning("prometheus query %r: %s", expr, problem)
            return _Read(None, str(problem), no_series=isinstance(problem, NoSeries))

    async def _chart(
        self,
        session: aiohttp.ClientSession,
        client: PrometheusClient,
        query: PrometheusQuery,
        window: QueryWindow,
    ) -> tuple[tuple[datetime, float], ...]:
        """The metric since the rollout started, for the chart (none with `charts=False`)."""
        if not self._charts:
            return ()
        step = max((window.end - window.rollout_start) / CHART_POINTS, timedelta(seconds=1))
        chart_window = max(step * 4, MIN_CHART_WINDOW)
        values = {**window.placeholders(), "window": f"{int(chart_window.total_seconds())}s"}
        expr = fill(query.query, values)
        try:
            return await client.series(
                session, expr, start=window.rollout_start, end=window.end, step=step
            )
        except (MetricsProblem, ValueError, TypeError) as problem:
            log.info("no chart series for %r: %s", expr, problem)
            return ()


def _missing(
    config: PrometheusMetrics,
    metrics: list[tuple[str, PrometheusQuery]],
    window: QueryWindow,
    problem: str,
) -> Reading:
    """Every metric missing for one reason: none of the window's figures can be read."""
    read = tuple(MetricReading(name=name, value=None, problem=problem) for name, _ in metrics)
    return _reading(config, read, window)


def _reading(
    config: PrometheusMetrics, metrics: tuple[MetricReading, ...], window: QueryWindow
) -> Reading:
    by_name = {metric.name: metric for metric in metrics}
    crash = by_name["crash_rate"]
    error = by_name.get("error_rate")
    sampled = [metric for metric in metrics if _has_sample(config, metric.name)]
    samples = [metric.sample for metric in sampled]
    # The smallest sample decides; an unreadable one leaves the sample unknown.
    sample = None if not samples or None in samples else min(s for s in samples if s is not None)
    return Reading(
        baseline_crash=crash.baseline,
        figures=Figures(
            crash_rate=crash.value,
            error_rate=None if error is None else error.value,
            sample=sample,
        ),
        source="prometheus",
        metrics=metrics,
        window=(window.start, window.end),
    )


def _has_sample(config: PrometheusMetrics, name: str) -> bool:
    query = config.error_rate if name == "error_rate" else config.crash_rate
    return query is not None and query.sample is not None


def _number(pair: object) -> Decimal:
    """The value of a `[timestamp, "text"]` pair: finite and not negative, or MetricsProblem."""
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
        raise MetricsProblem("Prometheus answered a value of an unknown shape")
    text = pair[1]
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise MetricsProblem(f"the query gave {text!r}, not a number") from None
    if value.is_nan():
        raise MetricsProblem("the query gave NaN (0/0: nothing counted in the window?)")
    if value.is_infinite():
        raise MetricsProblem(f"the query gave {text} (a division by zero?)")
    if value.is_signed() and value != 0:
        raise MetricsProblem(f"the query gave a negative number ({text})")
    return abs(value)


def _count(sample: _Read) -> int | None:
    """Whole requests seen, rounded down: 99.6 is fewer than a minimum of 100. A count that
    matched no series counted nothing: 0, so a window no request reached never passes (read as
    unknown, it passed beside a rate guarded with `or vector(0)` when `min_sample` is 0)."""
    if sample.no_series:
        return 0
    return None if sample.value is None else int(sample.value.to_integral_value(ROUND_FLOOR))


def _first_warning(warnings: object) -> str | None:
    """The first warning of a `success` answer that makes its number untrustworthy: part of the
    data could not be read (a remote-read store or a Thanos store down: the number may leave out
    the very series that fail) or a `PromQL warning:`. A `PromQL info:` annotation, which
    Thanos and Prometheus before it had an `infos` list put among the warnings, may be a false
    positive (a counter not named `_total`) and is not."""
    listed = warnings if isinstance(warnings, list) else [warnings] if warnings else []
    for warning in map(str, listed):
        if not warning.startswith("PromQL info:"):
            return warning[:_MAX_WARNING]
    return None


def _epoch(moment: datetime) -> str:
    return f"{moment.timestamp():.3f}"
