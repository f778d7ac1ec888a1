"""Charts of the gated metrics over the rollout so far: stage windows shaded, the limit drawn.

Plotting is an optional extra (`pip install 'rollout-bot[charts]'`, which brings matplotlib).
Without it `charts_enabled()` is False, the gate card says charts are off, and nothing else
changes. What to draw (`gate_charts`) is decided without matplotlib; only `render_png` needs it.
"""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bot.domain.gate import GateVerdict, format_rate
from bot.domain.metrics import Reading
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHARTS_OFF = "Charts are off: install `rollout-bot[charts]` (matplotlib) to get them."
METRIC_NAMES = {"error_rate": "Error rate", "crash_rate": "Crash rate"}


class ChartsOff(RuntimeError):
    """matplotlib is not installed."""


@dataclass(frozen=True)
class StageSpan:
    """A stage's observation window, shaded on the chart."""

    label: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class MetricChart:
    """One gated metric over the rollout: what `render_png` draws."""

    metric: str
    title: str
    series: tuple[tuple[datetime, float], ...]
    limit: Decimal | None
    limit_label: str
    stages: tuple[StageSpan, ...]

    @property
    def filename(self) -> str:
        return f"{self.metric.replace('_', '-')}.png"


def charts_enabled() -> bool:
    """Whether matplotlib can be imported (the `charts` extra is installed)."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return False
    return True


def gate_charts(
    rollout: Rollout,
    plan: RolloutPlan,
    *,
    track: str,
    verdict: GateVerdict,
    reading: Reading | None,
    now: datetime,
) -> list[MetricChart]:
    """A chart per gated metric that has a series (live sources only)."""
    if reading is None:
        return []
    plan_track = plan.track(track)
    spans = tuple(
        StageSpan(
            label=plan_track.stage(stage.key).label,
            start=stage.window_started_at,
            end=min(stage.window_ends_at or now, now),
        )
        for stage in rollout.track(track).stages
        if stage.window_started_at is not None
    )
    charts = []
    for metric in reading.metrics:
        if not metric.series:
            continue
        name = METRIC_NAMES.get(metric.name, metric.name)
        if metric.name == "error_rate":
            limit = verdict.error_threshold
            label = f"threshold {_percent(limit)}"
        else:
            limit = verdict.crash_limit
            label = (
                f"{format_rate(verdict.crash_multiplier)}x baseline = {_percent(limit)}"
                if limit is not None
                else "no baseline"
            )
        charts.append(
            MetricChart(
                metric=metric.name,
                title=f"{name}: {plan_track.label}, {rollout.tag}",
                series=metric.series,
                limit=limit,
                limit_label=label,
                stages=spans,
            )
        )
    return charts


def render_png(chart: MetricChart) -> bytes:
    """The chart as PNG bytes. Raises ChartsOff without matplotlib. Thread-safe: it uses
    matplotlib's object API (no pyplot state), so charts render off the event loop."""
    try:
        dates = importlib.import_module("matplotlib.dates")
        figure_module = importlib.import_module("matplotlib.figure")
        agg = importlib.import_module("matplotlib.backends.backend_agg")
    except ImportError:
        raise ChartsOff(CHARTS_OFF) from None
    figure = figure_module.Figure(figsize=(8, 3.2), dpi=100)
    agg.FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, span in enumerate(chart.stages):
        axes.axvspan(span.start, span.end, color="#4a90d9", alpha=0.10 + 0.06 * (index % 2))
        axes.annotate(
            span.label,
            xy=(span.start, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
            color="#2b5f8f",
        )
    times = [moment for moment, _ in chart.series]
    values = [value * 100 for _, value in chart.series]
    axes.plot(times, values, color="#1d1c1d", linewidth=1.6, label=METRIC_NAMES.get(chart.metric))
    if chart.limit is not None:
        axes.axhline(
            float(chart.limit) * 100,
            color="#e01e5a",
            linestyle="--",
            linewidth=1.2,
            label=chart.limit_label,
        )
    axes.set_title(chart.title, fontsize=10, loc="left")
    axes.set_ylabel("%")
    axes.set_ylim(bottom=0)
    axes.xaxis.set_major_formatter(dates.DateFormatter("%H:%M"))
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _percent(rate: Decimal | None) -> str:
    if rate is None:
        return "missing"
    return f"{format_rate(rate * 100)}%"
