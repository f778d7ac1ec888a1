"""Metrics sources: where a gate's figures come from at the end of a window.

- `static`: the figures written in the plan (tests, the demo, dry runs);
- `manual`: the runbook's human flow: the bot asks the approvers in the thread;
- `prometheus`: PromQL templates read live (`bot.adapters.metrics.prometheus`);
- `sentry`: crash rates from Sentry release health (`bot.adapters.metrics.sentry`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import yaml
from pydantic import ValidationError

from bot.adapters.metrics.live import LiveSource, MetricsProblem
from bot.adapters.metrics.prometheus import PrometheusSource
from bot.adapters.metrics.sentry import SentryAccess, SentrySource
from bot.config import Settings
from bot.domain.metrics import Figures, QueryWindow, Reading, window_ending
from bot.domain.plan import Metrics, PrometheusMetrics, SentryMetrics, Stage, StaticMetrics
from bot.services.ports import MetricsSource
from bot.settings.metrics import READ_WITHIN

log = logging.getLogger(__name__)


class StaticSource:
    """Figures from the plan (or its figures file); a stage without figures reads as no data,
    which the gate turns into INCONCLUSIVE, never PASS."""

    def __init__(self, config: StaticMetrics) -> None:
        self._config = config

    def _current(self) -> StaticMetrics:
        if self._config.file is None:
            return self._config
        try:
            raw = yaml.safe_load(self._config.file.read_text(encoding="utf-8")) or {}
            return StaticMetrics.model_validate({**raw, "source": "static"})
        except (OSError, yaml.YAMLError, ValidationError, TypeError) as error:
            log.warning("figures file %s unreadable (%s): no data", self._config.file, error)
            return StaticMetrics(source="static", baseline_crash_rate=Decimal(0), stages={})

    async def read(self, window: QueryWindow) -> Reading | None:
        config = await asyncio.to_thread(self._current)
        figures = config.stages.get(window.stage)
        observed = (
            Figures(crash_rate=None)
            if figures is None
            else Figures(
                crash_rate=figures.crash_rate, error_rate=figures.error_rate, sample=figures.sample
            )
        )
        return Reading(baseline_crash=config.baseline_crash_rate, figures=observed, source="static")


class ManualSource:
    """No figures of its own: the service asks the approvers for them."""

    async def read(self, window: QueryWindow) -> Reading | None:
        return None


@dataclass(frozen=True)
class MetricsEndpoints:
    """Where the live sources read, from the settings (PROMETHEUS_URL, SENTRY_*), and how long
    a reading may take in all (GATE_METRICS_TIMEOUT)."""

    prometheus_url: str | None = None
    sentry: SentryAccess | None = None
    within: float = READ_WITHIN

    @classmethod
    def from_settings(cls, settings: Settings) -> MetricsEndpoints:
        sentry = None
        if settings.sentry_org and settings.sentry_project and settings.sentry_token:
            sentry = SentryAccess(
                url=str(settings.sentry_url),
                org=settings.sentry_org,
                project=settings.sentry_project,
                token=settings.sentry_token,
            )
        prometheus = settings.prometheus_url
        return cls(
            prometheus_url=None if prometheus is None else str(prometheus),
            sentry=sentry,
            within=settings.gate_metrics_timeout,
        )


def metrics_source(
    config: Metrics, endpoints: MetricsEndpoints | None = None, *, compare_clocks: bool = True
) -> MetricsSource:
    """The source a track's `metrics` section names (`compare_clocks`: Prometheus's clock
    with the bot's before each window, `PrometheusSource`)."""
    endpoints = endpoints or MetricsEndpoints()
    if isinstance(config, StaticMetrics):
        return StaticSource(config)
    if isinstance(config, PrometheusMetrics):
        return PrometheusSource(
            config,
            url=endpoints.prometheus_url,
            compare_clocks=compare_clocks,
            within=endpoints.within,
        )
    if isinstance(config, SentryMetrics):
        return SentrySource(config, access=endpoints.sentry, within=endpoints.within)
    return ManualSource()


NO_DATA = "no data:"
"""How a live source's problem starts when the query ran and matched nothing."""


async def unanswered(
    config: Metrics,
    endpoints: MetricsEndpoints,
    *,
    track: str,
    stage: Stage,
    tag: str,
    service: str,
) -> tuple[list[str], list[str]] | None:
    """What a track's live source could not answer, and what it answered no data for, when
    asked its queries once over a window of `stage`'s length ending now, for `tag` (for
    `rollout-bot doctor`: the first fails it, the second warns when `tag` is a release that
    runs). None: a static or manual source has nothing to ask.
    Prometheus's clock is not compared here: the doctor's line of its own says how far it is
    (off, it would leave every query unasked, said as unanswered)."""
    source = metrics_source(config, endpoints, compare_clocks=False)
    if not isinstance(source, LiveSource):
        return None
    length = stage.window or timedelta(minutes=5)
    window = window_ending(
        datetime.now(UTC), length, tag=tag, track=track, stage=stage.key, service=service
    )
    try:
        reading = await source.measure(window)
    except MetricsProblem as problem:
        return [str(problem)], []
    parts = [
        f"{metric.name} {part}"
        for metric in reading.metrics
        for part in (metric.problem or "").split("; ")
        if part
    ]
    return [part for part in parts if NO_DATA not in part], [p for p in parts if NO_DATA in p]
