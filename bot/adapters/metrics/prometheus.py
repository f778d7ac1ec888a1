"""The Prometheus metrics source: a gate's figures read live with the plan's PromQL templates.

Each metric is an instant query at the end of the stage's window (`$window` is its length),
its sample another, and its baseline a query or the plan's fixed number. Anything short of
one finite, non-negative number (no series, several series, NaN, an HTTP or PromQL error, an
answer warned or marked partial) leaves that figure missing with the reason, so the
gate says INCONCLUSIVE, never PASS.

Before a window is read, Prometheus's own clock is asked (`time()` with no `time`) and compared
with the bot's at the request and at the answer (`bot.domain.clocks`): more than
`MAX_CLOCK_SKEW` apart either way, Prometheus's figures for the window are those of other
seconds, and none is read (the reading carries the offset: the gate says INCONCLUSIVE for the
clocks); answers too slow to tell leave every figure missing with that reason.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from urllib.parse import urlencode

from bot.adapters.metrics.live import (
    Asking,
    LiveSource,
    MetricsProblem,
    Sleep,
    utc_now,
)
from bot.adapters.metrics.prometheus_api import (
    NoSeries,
    PrometheusClient,
    public_url,
    unclear,
)
from bot.domain.clocks import clocks_apart
from bot.domain.gate import format_rate
from bot.domain.metrics import Figures, MetricReading, QueryWindow, Reading
from bot.domain.plan import PrometheusMetrics, PrometheusQuery, fill
from bot.services.ports import Clock
from bot.settings.metrics import READ_WITHIN

log = logging.getLogger(__name__)

CHART_POINTS = 240
"""About this many points per chart, whatever the rollout's length."""
MIN_CHART_WINDOW = timedelta(seconds=60)
"""A chart point's rate covers at least this much (four scrapes at Prometheus's default 15s)."""


def graph_url(base_url: str, expr: str, *, window: timedelta, end: datetime) -> str:
    """Prometheus's graph page showing `expr` over `window` up to `end`."""
    params = {
        "g0.expr": expr,
        "g0.tab": "0",
        "g0.range_input": f"{max(1, int(window.total_seconds()))}s",
        "g0.end_input": end.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
    }
    return f"{public_url(base_url)}/graph?{urlencode(params)}"


@dataclass(frozen=True)
class _Read:
    value: Decimal | None
    problem: str | None
    no_series: bool = False


class PrometheusSource(LiveSource):
    """Reads a stage's figures from Prometheus at the end of its window.

    `charts=False` leaves out each metric's series since the rollout started, and
    `compare_clocks=False` the comparison of Prometheus's clock with `clock` before each window
    (the backtest reads thousands of windows of the past, on a clock of its own, and shows no
    chart)."""

    def __init__(
        self,
        config: PrometheusMetrics,
        *,
        url: str | None,
        clock: Clock = utc_now,
        timeout: float = 10.0,
        within: float = READ_WITHIN,
        charts: bool = True,
        compare_clocks: bool = True,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(clock=clock, timeout=timeout, within=within)
        self._config = config
        self._client = PrometheusClient(url, clock=clock, sleep=sleep) if url else None
        self._charts = charts
        self._compare_clocks = compare_clocks

    async def measure(self, window: QueryWindow) -> Reading:
        config = self._config
        named = [("error_rate", config.error_rate), ("crash_rate", config.crash_rate)]
        metrics = [(name, query) for name, query in named if query is not None]
        if self._client is None:
            return _missing(config, metrics, window, "PROMETHEUS_URL is not set")
        async with self.session() as session:
            unread = await self._clocks(session, self._client) if self._compare_clocks else None
            if unread is not None:
                problem, offset = unread
                log.warning("prometheus window ending %s: %s", window.end.isoformat(), problem)
                return _missing(config, metrics, window, problem, clock_offset=offset)
            read = await asyncio.gather(
                *(self._metric(session, self._client, name, q, window) for name, q in metrics)
            )
        return _reading(config, tuple(read), window)

    async def _clocks(
        self, session: Asking, client: PrometheusClient
    ) -> tuple[str, int | None] | None:
        """Why no figure can be read for the clocks, and the offset when they are apart (None:
        they agree)."""
        try:
            offset = await client.offset(session, self._clock)
        except MetricsProblem as problem:
            return str(problem), None
        if offset.apart:
            return clocks_apart(offset.seconds, whose="Prometheus's"), offset.seconds
        return None if offset.agree else (unclear(offset), None)

    async def _metric(
        self,
        session: Asking,
        client: PrometheusClient,
        name: str,
        query: PrometheusQuery,
        window: QueryWindow,
    ) -> MetricReading:
        values = window.placeholders()
        expr = fill(query.query, values)
        sample_expr = fill(query.sample, values) if query.sample else None
        baseline_expr = fill(query.baseline, values) if query.baseline else None
        counted_expr = fill(query.baseline_sample, values) if query.baseline_sample else None
        fixed_baseline = (
            self._config.baseline_crash_rate
            if name == "crash_rate" and baseline_expr is None
            else None
        )
        value, sample, baseline, counted, series = await asyncio.gather(
            self._instant(session, client, expr, window.end),
            self._instant(session, client, sample_expr, window.end),
            self._instant(session, client, baseline_expr, window.end),
            self._instant(session, client, counted_expr, window.end),
            self._chart(session, client, query, window),
        )
        if sample.problem is not None and not sample.no_series:
            # A rate whose count could not be read is not judged: its sample unknown, a
            # `min_sample` of 0 would let it PASS on a window that may have tested nothing.
            value = _Read(None, value.problem)
        if counted.problem is not None and not counted.no_series:
            baseline = _Read(None, baseline.problem)  # the same, for the baseline's own count
        if baseline.value is not None and baseline.value > 1:
            # A rate is a fraction: a baseline in percent would set a limit nothing reaches.
            shown = format_rate(baseline.value)
            problem = f"{shown} is above 1 (100%): rates are fractions (0.01 = 1%)"
            baseline = _Read(None, problem)
        reads = [("value", value), ("sample", sample), ("baseline", baseline)]
        problems = [
            f"{what}: {read.problem}"
            for what, read in [*reads, ("baseline sample", counted)]
            if read.problem
        ]
        # The baseline's count is a sample too: its rate is one of its own requests.
        counts = [_count(read) for e, read in ((sample_expr, sample), (counted_expr, counted)) if e]
        return MetricReading(
            name=name,
            value=value.value,
            sample=_smallest(counts),
            baseline=fixed_baseline if fixed_baseline is not None else baseline.value,
            baseline_live=baseline_expr is not None,
            baseline_sample=_count(counted) if counted_expr is not None else None,
            baseline_counted=counted_expr is not None,
            value_counted=sample_expr is not None,
            problem="; ".join(problems) or None,
            link=graph_url(client.base_url, expr, window=window.length, end=window.end),
            series=series,
        )

    @staticmethod
    async def _instant(
        session: Asking, client: PrometheusClient, expr: str | None, at: datetime
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
        session: Asking,
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
    *,
    clock_offset: int | None = None,
) -> Reading:
    """Every metric missing for one reason: none of the window's figures can be read."""
    read = tuple(MetricReading(name=name, value=None, problem=problem) for name, _ in metrics)
    return replace(_reading(config, read, window), clock_offset=clock_offset)


def _reading(
    config: PrometheusMetrics, metrics: tuple[MetricReading, ...], window: QueryWindow
) -> Reading:
    by_name = {metric.name: metric for metric in metrics}
    crash = by_name["crash_rate"]
    error = by_name.get("error_rate")
    sampled = [metric for metric in metrics if _has_sample(config, metric.name)]
    sample = _smallest([metric.sample for metric in sampled])
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
    return query is not None and (query.sample or query.baseline_sample) is not None


def _smallest(samples: list[int | None]) -> int | None:
    """The smallest sample decides; an unreadable one (None) leaves the sample unknown."""
    return None if not samples or None in samples else min(s for s in samples if s is not None)


def _count(sample: _Read) -> int | None:
    """Whole requests seen, rounded down: 99.6 is fewer than a minimum of 100. A count that
    matched no series counted nothing: 0, so a window no request reached never passes (read as
    unknown, it passed beside a rate guarded with `or vector(0)` when `min_sample` is 0)."""
    if sample.no_series:
        return 0
    return None if sample.value is None else int(sample.value.to_integral_value(ROUND_FLOOR))
