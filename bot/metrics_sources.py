"""Metrics sources: where a gate's figures come from at the end of a window.

- `static`: the figures written in the plan (tests, the demo, dry runs);
- `manual`: the runbook's human flow: the bot asks the approvers in the thread.
"""

from __future__ import annotations

from bot.domain.metrics import Figures, Reading
from bot.domain.plan import ManualMetrics, StaticMetrics
from bot.domain.rollout import Rollout
from bot.ports import MetricsSource


class StaticSource:
    """Figures from the plan; a stage the plan gives no figures for reads as no data."""

    def __init__(self, config: StaticMetrics) -> None:
        self._config = config

    async def read(self, *, rollout: Rollout, track: str, stage: str) -> Reading | None:
        figures = self._config.stages.get(stage)
        observed = (
            Figures(crash_rate=None)
            if figures is None
            else Figures(
                crash_rate=figures.crash_rate, error_rate=figures.error_rate, sample=figures.sample
            )
        )
        return Reading(
            baseline_crash=self._config.baseline_crash_rate, figures=observed, source="static"
        )


class ManualSource:
    """No figures of its own: the service asks the approvers for them."""

    async def read(self, *, rollout: Rollout, track: str, stage: str) -> Reading | None:
        return None


def metrics_source(config: StaticMetrics | ManualMetrics) -> MetricsSource:
    """The source a track's `metrics` section names."""
    if isinstance(config, StaticMetrics):
        return StaticSource(config)
    return ManualSource()
