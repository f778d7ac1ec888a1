"""Charts of the gated metrics over the rollout so far: stage windows shaded, the limit drawn.

Plotting is an optional extra (`pip install 'rollout-bot[charts]'`, which brings matplotlib).
Without it `charts_enabled()` is False, the gate card says charts are off, and nothing else
changes. What to draw (`gate_charts`) is decided without matplotlib; only `render_png` and
`render_timeline_png` need it, and they run in the chart worker's process
(`bot.adapters.chart_worker`): the bot's own process never imports matplotlib.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bot.domain.gate import GateVerdict, format_rate
from bot.domain.gate_report import metric_name
from bot.domain.metrics import Reading
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout
from bot.domain.rollout_summary import RolloutSummary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHARTS_OFF = "Charts are off: install `rollout-bot[charts]` (matplotlib) to get them."


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
    """Whether matplotlib is installed (the `charts` extra), found without importing it."""
    return importlib.util.find_spec("matplotlib") is not None


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
        name = metric_name(metric.name)
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
    """The chart as PNG bytes (in the chart worker). Raises ChartsOff without matplotlib.
    It uses matplotlib's object API: no pyplot state is left behind between charts."""
    figure, dates = _canvas((8, 3.2))
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
    axes.plot(times, values, color="#1d1c1d", linewidth=1.6, label=metric_name(chart.metric))
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
    return _png(figure)


def plotting() -> tuple[Any, Any, Any]:
    """matplotlib's modules the charts draw with (`dates`, `figure`, the Agg backend),
    imported: the chart worker imports them as it starts, before its first chart."""
    try:
        return (
            importlib.import_module("matplotlib.dates"),
            importlib.import_module("matplotlib.figure"),
            importlib.import_module("matplotlib.backends.backend_agg"),
        )
    except ImportError:
        raise ChartsOff(CHARTS_OFF) from None


def _canvas(size: tuple[float, float]) -> tuple[Any, Any]:
    """A new figure on its own Agg canvas (no pyplot state), and `matplotlib.dates`."""
    dates, figure_module, agg = plotting()
    figure = figure_module.Figure(figsize=size, dpi=100)
    agg.FigureCanvasAgg(figure)
    return figure, dates


def _png(figure: Any) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _percent(rate: Decimal | None) -> str:
    if rate is None:
        return "missing"
    return f"{format_rate(rate * 100)}%"


@dataclass(frozen=True)
class Band:
    """A stage on the timeline: from its deploy to its promotion (or its track's end)."""

    track: str
    stage: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Figure:
    """A gated metric's figure at a verdict, beside its limit (rates as fractions)."""

    metric: str
    stage: str
    at: datetime
    value: Decimal
    limit: Decimal | None


@dataclass(frozen=True)
class TimelineChart:
    """The whole rollout in one image (`render_timeline_png`)."""

    title: str
    bands: tuple[Band, ...]
    figures: tuple[Figure, ...]
    filename: str = "timeline.png"


def timeline_chart(summary: RolloutSummary) -> TimelineChart:
    """What the summary's timeline image draws: every reached stage as a band, every
    verdict's crash and error figures against their limits."""
    bands = tuple(
        Band(s.track, s.stage, s.deployed_at, s.promoted_at or summary.ended_at)
        for s in summary.stages
    )
    figures = []
    for v in summary.verdicts:
        stage = f"{v.track} {v.stage}"
        if v.verdict.current_crash is not None:
            crash = Figure(
                "crash rate", stage, v.at, v.verdict.current_crash, v.verdict.crash_limit
            )
            figures.append(crash)
        if v.verdict.current_error is not None:
            error = v.verdict.current_error
            figures.append(Figure("error rate", stage, v.at, error, v.verdict.error_threshold))
    return TimelineChart(f"Rollout {summary.tag}", bands, tuple(figures))


def render_timeline_png(chart: TimelineChart) -> bytes:
    """The timeline as PNG bytes: the stages as bands per track above, each gated figure (a
    dot) and its limit (a dash) below (in the chart worker). Raises ChartsOff without
    matplotlib."""
    figure, dates = _canvas((9, 4.5))
    lanes, metrics = figure.subplots(2, 1, sharex=True, height_ratios=(1, 1.3))
    tracks = list(dict.fromkeys(band.track for band in chart.bands))
    for index, band in enumerate(chart.bands):
        row = tracks.index(band.track)
        width = dates.date2num(band.end) - dates.date2num(band.start)
        shade = "#4a90d9" if index % 2 else "#7fb3e6"
        lanes.broken_barh([(dates.date2num(band.start), width)], (row - 0.4, 0.8), color=shade)
        lanes.annotate(
            band.stage, (band.start, row), xytext=(3, -3), fontsize=8, textcoords="offset points"
        )
    lanes.set_yticks(range(len(tracks)), tracks, fontsize=8)
    lanes.set_title(chart.title, fontsize=10, loc="left")
    for metric, color in (("crash rate", "#1d1c1d"), ("error rate", "#2eb67d")):
        shown = [f for f in chart.figures if f.metric == metric]
        if not shown:
            continue
        times = [f.at for f in shown]
        metrics.scatter(times, [float(f.value) * 100 for f in shown], color=color, label=metric)
        limited = [f for f in shown if f.limit is not None]
        metrics.scatter(
            [f.at for f in limited],
            [float(f.limit or 0) * 100 for f in limited],
            color=color,
            marker="_",
            s=400,
            label=f"{metric} limit",
        )
    metrics.set_ylabel("%")
    metrics.set_ylim(bottom=0)
    metrics.grid(True, alpha=0.3)
    if chart.figures:
        metrics.legend(loc="upper right", fontsize=8)
    metrics.xaxis.set_major_formatter(dates.DateFormatter("%H:%M"))
    return _png(figure)
