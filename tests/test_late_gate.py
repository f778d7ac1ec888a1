"""A gate run late (the bot was down, its timers behind) reads its window and the latest stretch
of the same length, and the worse verdict decides: judged on its window's old figures alone, a
canary failing since the window ended passed (and a `promote: auto` stage was promoted).

Against a real Prometheus holding the known week of `sandbox.relay_history` (an error spike on
day 1, 14:00-14:30), read as the gate reads it (`read_gate` over `gate_windows`); Prometheus's
own query log says which windows were read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from services import missing
from test_rollout_machine import PLAN, canary_observing

from bot.adapters.metrics.prometheus import PrometheusSource
from bot.adapters.slack.gate_views import gate_card
from bot.domain.gate import Verdict
from bot.domain.metrics import LATE_GATE, gate_windows
from bot.domain.plan import PrometheusMetrics
from bot.domain.rollout import Rollout, window_ended
from bot.services.gate_reads import read_gate
from bot.services.outbox_messages import gate_card as outbox_gate_card
from bot.services.outbox_messages import gate_reading
from sandbox.prometheus_exporter import PrometheusProcess, prometheus_binary, promtool_binary
from sandbox.relay_history import RELAY_METRICS, known_week
from sandbox.slack_markup import problems_in

pytestmark = pytest.mark.asyncio(loop_scope="module")

WEEK_START = datetime.combine(
    datetime.now(UTC).date() - timedelta(days=9), datetime.min.time(), UTC
)
SPIKE = WEEK_START + timedelta(days=1, hours=14)
"""The error spike (5% errors) runs from here for 30 minutes; steady 0.2% around it."""
HALF_HOUR = timedelta(minutes=30)
METRICS = PrometheusMetrics.model_validate(RELAY_METRICS)
TRACK = PLAN.track("relay").model_copy(update={"metrics": METRICS})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus() -> AsyncIterator[PrometheusProcess]:
    if prometheus_binary() is None or promtool_binary() is None:
        missing("the prometheus or promtool binary is missing (apt-get install prometheus)")
    process = PrometheusProcess({}, history=known_week(WEEK_START))
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


def canary_closing(start: datetime) -> Rollout:
    """The canary's 30m window from `start`, its timer fired (the gate reads its figures)."""
    rollout = canary_observing()
    canary = replace(
        rollout.track("relay").stage("canary"),
        window_started_at=start,
        window_ends_at=start + HALF_HOUR,
    )
    rollout = replace(
        rollout.with_track(rollout.track("relay").with_stage(canary)), dispatched_at=start
    )
    return window_ended(rollout, track="relay", stage="canary", due_at=start + HALF_HOUR).rollout


async def gate(
    prometheus: PrometheusProcess, start: datetime, now: datetime
) -> tuple[Verdict, set[datetime], str]:
    """The verdict of the canary's gate (window from `start`) run at `now`, the ends of the
    windows Prometheus was asked, and the gate card's text."""
    before = len(prometheus.queries())
    # The bot's clock is days after the known week: its clock is not compared here.
    source = PrometheusSource(METRICS, url=prometheus.url, charts=False, compare_clocks=False)
    windows = gate_windows(canary_closing(start), track="relay", stage="canary", now=now)
    judged = await read_gate(source, TRACK, windows)
    assert judged is not None
    verdict, reading = judged
    # As the outbox keeps it until the card is posted.
    kept = outbox_gate_card(
        canary_closing(start), track="relay", stage="canary", verdict=verdict, reading=reading
    )
    reading = gate_reading(kept.payload)
    assert reading is not None
    asked = {datetime.fromisoformat(q["end"]) for q in prometheus.queries()[before:]}
    card = gate_card(
        verdict=verdict,
        reading=reading,
        stage_label="5% canary",
        track_label="Hosted relay",
        window=reading.window,
    )
    assert problems_in({"blocks": card}) == []  # as Slack parses its mrkdwn
    return verdict.verdict, asked, str(card)


async def test_a_late_gate_rolls_back_a_canary_failing_since_its_window_ended(
    prometheus: PrometheusProcess,
) -> None:
    """Its window (13:30-14:00) is healthy; the timer fires half an hour late, at 14:30, and
    the last half hour failed: read alone, the window passed it. ROLLBACK, on the latest
    figures, and the card says the gate ran late and which stretch decided."""
    verdict, asked, card = await gate(prometheus, SPIKE - HALF_HOUR, SPIKE + HALF_HOUR)
    assert verdict is Verdict.ROLLBACK
    assert asked == {SPIKE, SPIKE + HALF_HOUR}
    assert "Judged 30m after its window ended" in card
    assert "gave PASS, the latest 30m" in card and "gave ROLLBACK" in card
    assert "the figures below are the latest stretch's" in card


async def test_a_late_gate_still_rolls_back_a_canary_that_failed_in_its_window(
    prometheus: PrometheusProcess,
) -> None:
    verdict, asked, card = await gate(prometheus, SPIKE, SPIKE + 2 * HALF_HOUR)
    assert verdict is Verdict.ROLLBACK
    assert asked == {SPIKE + HALF_HOUR, SPIKE + 2 * HALF_HOUR}
    assert "gave ROLLBACK, the latest 30m" in card
    assert "the figures below are its window's" in card


async def test_a_late_gate_passes_when_both_stretches_are_healthy(
    prometheus: PrometheusProcess,
) -> None:
    start = SPIKE - 3 * HALF_HOUR
    verdict, asked, _ = await gate(prometheus, start, start + 2 * HALF_HOUR)
    assert verdict is Verdict.PASS
    assert asked == {start + HALF_HOUR, start + 2 * HALF_HOUR}


@pytest.mark.parametrize("late", [timedelta(0), LATE_GATE])
async def test_a_gate_on_time_reads_its_window_once(
    prometheus: PrometheusProcess, late: timedelta
) -> None:
    """Within `LATE_GATE` of its end, a gate reads its own window alone: no extra query."""
    start = SPIKE - 3 * HALF_HOUR
    verdict, asked, card = await gate(prometheus, start, start + HALF_HOUR + late)
    assert verdict is Verdict.PASS
    assert asked == {start + HALF_HOUR}
    assert "Judged" not in card
