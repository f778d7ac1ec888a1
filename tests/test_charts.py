"""Charts of the gated metrics: what is drawn (pure) and the PNG itself (matplotlib)."""

from __future__ import annotations

import struct
import sys
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from cleared import cleared_rollout

from bot.adapters.charts import (
    PNG_SIGNATURE,
    ChartsOff,
    MetricChart,
    StageSpan,
    charts_enabled,
    gate_charts,
    render_png,
)
from bot.domain.gate import evaluate_relay
from bot.domain.metrics import Figures, MetricReading, Reading
from bot.domain.rollout import (
    Rollout,
    Stage,
    StageState,
)
from bot.plan_file import load_plan

NOW = datetime(2025, 6, 2, 11, 0, tzinfo=UTC)
PLAN = load_plan(None)
SERIES = tuple((NOW - timedelta(minutes=100 - i), 0.002 + i * 0.0001) for i in range(100))
CHART = MetricChart(
    metric="error_rate",
    title="Error rate: Hosted relay, v1.4.2",
    series=SERIES,
    limit=Decimal("0.01"),
    limit_label="threshold 1%",
    stages=(StageSpan("5% canary", SERIES[5][0], SERIES[35][0]),),
)
"""A relay canary's error rate over 100 minutes, under its limit."""


def rollout_with_two_windows() -> Rollout:
    rollout = cleared_rollout(PLAN, now=NOW - timedelta(hours=2))
    track = rollout.track("relay")
    canary = Stage(
        key="canary",
        state=StageState.PASSED,
        window_started_at=NOW - timedelta(minutes=95),
        window_ends_at=NOW - timedelta(minutes=65),
    )
    half = Stage(
        key="half",
        state=StageState.EVALUATING,
        window_started_at=NOW - timedelta(minutes=60),
        window_ends_at=NOW + timedelta(minutes=5),
    )
    return rollout.with_track(track.with_stage(canary).with_stage(half))


def reading(*metrics: MetricReading) -> Reading:
    return Reading(
        baseline_crash=Decimal("0.001"),
        figures=Figures(crash_rate=None),
        source="x",
        metrics=metrics,
    )


def test_a_chart_per_metric_with_a_series_with_stage_windows_and_limits() -> None:
    verdict = evaluate_relay(
        baseline_crash=Decimal("0.001"),
        current_crash=Decimal("0.001"),
        current_error=Decimal("0.02"),
    )
    charts = gate_charts(
        rollout_with_two_windows(),
        PLAN,
        track="relay",
        verdict=verdict,
        reading=reading(
            MetricReading(name="error_rate", value=Decimal("0.02"), series=SERIES),
            MetricReading(name="crash_rate", value=Decimal("0.001"), series=SERIES),
        ),
        now=NOW,
    )
    error, crash = charts
    assert (error.filename, error.limit, error.limit_label) == (
        "error-rate.png",
        Decimal("0.01"),
        "threshold 1%",
    )
    assert (crash.limit, crash.limit_label) == (Decimal("0.0020"), "2x baseline = 0.2%")
    assert error.stages == (
        StageSpan("5% canary", NOW - timedelta(minutes=95), NOW - timedelta(minutes=65)),
        StageSpan("50%", NOW - timedelta(minutes=60), NOW),  # the running window ends now
    )
    assert error.title == "Error rate: Hosted relay, v1.4.2"


def test_no_series_no_chart() -> None:
    verdict = evaluate_relay(
        baseline_crash=Decimal("0.001"), current_crash=None, current_error=Decimal("0.02")
    )
    rollout = rollout_with_two_windows()
    assert gate_charts(rollout, PLAN, track="relay", verdict=verdict, reading=None, now=NOW) == []
    empty = reading(MetricReading(name="error_rate", value=None, problem="no data"))
    assert gate_charts(rollout, PLAN, track="relay", verdict=verdict, reading=empty, now=NOW) == []


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the chunk's CRC."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16 : 16 + length]
    (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
    assert zlib.crc32(kind + body) == crc
    width, height = struct.unpack(">II", body[:8])
    return width, height


def test_render_png_draws_a_valid_png() -> None:
    data = render_png(CHART)
    assert png_size(data) == (800, 320)
    assert data.endswith(b"IEND\xaeB`\x82")
    flat = replace(CHART, series=tuple((t, 0.0) for t, _ in SERIES), limit=None, stages=())
    assert render_png(flat) != data


def test_without_matplotlib_charts_are_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert charts_enabled()
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.dates"):
        monkeypatch.setitem(sys.modules, module, None)
    assert not charts_enabled()
    chart = MetricChart("error_rate", "t", SERIES, None, "", ())
    with pytest.raises(ChartsOff, match=r"rollout-bot\[charts\]"):
        render_png(chart)
