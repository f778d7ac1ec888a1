"""The bot's clock against a metrics source's (`bot.domain.clocks`), and the gate's verdict when
they are too far apart: INCONCLUSIVE whatever the figures, saying so and what to do (NTP).

A reading of another clock happens at some moment between the request and its answer: the
offset is a range as wide as the round trip, and only a range wholly beyond the tolerance is
a skew, only one wholly within it agreement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.adapters.slack.messages import render
from bot.domain.clocks import MAX_CLOCK_SKEW, ClockOffset
from bot.domain.gate import GateReason, Verdict
from bot.domain.gate_report import metric_rows, verdict_reason
from bot.domain.metrics import Figures, Reading, judge
from bot.domain.rollout import verdict_from_json, verdict_to_json
from bot.domain.rollout.events import GateInconclusive
from bot.plan_file import load_plan

NOW = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def offset(*, took: float, theirs: float) -> ClockOffset:
    """Their clock `theirs` seconds past NOW, read by a request sent at NOW taking `took`."""
    return ClockOffset.read(sent=NOW, theirs=NOW + theirs * S, received=NOW + took * S)


@pytest.mark.parametrize(
    ("took", "theirs", "agree", "apart", "seconds"),
    [
        (0, 0, True, False, 0),
        (0, 5, True, False, 5),  # at the tolerance: agreement
        (0, -5, True, False, -5),
        (0, 5.5, False, True, 6),
        (0, -120, False, True, -120),
        (2, 6, False, False, 5),  # +4s to +6s: cannot tell, though its middle is within
        (2, 9, False, True, 8),  # +7s to +9s: apart, however long the request took
        (4, 7, False, False, 5),  # +3s to +7s: cannot tell
        (4, 2, True, False, 0),  # -2s to +2s
    ],
)
def test_an_offset_is_a_range_as_wide_as_the_round_trip(
    took: float, theirs: float, agree: bool, apart: bool, seconds: int
) -> None:
    found = offset(took=took, theirs=theirs)
    assert (found.agree, found.apart, found.seconds) == (agree, apart, seconds)
    assert found.uncertainty == took * S


@given(
    true=st.floats(-300, 300),
    before=st.floats(0, 20),
    after=st.floats(0, 20),
)
def test_agreement_and_skew_are_never_said_wrongly(
    true: float, before: float, after: float
) -> None:
    """Whatever the round trip and wherever in it their clock was read, a skew is said only
    when the true offset is beyond the tolerance, agreement only when it is within."""
    read_at = NOW + before * S
    found = ClockOffset.read(sent=NOW, theirs=read_at + true * S, received=read_at + after * S)
    assert found.low <= true * S <= found.high
    if found.apart:
        assert abs(true * S) > MAX_CLOCK_SKEW
    if found.agree:
        assert abs(true * S) <= MAX_CLOCK_SKEW


def test_a_second_reading_narrows_the_range_and_a_step_leaves_the_later_one() -> None:
    slow = offset(took=8, theirs=7)  # -1s to +7s
    quick = offset(took=0.5, theirs=3.2)  # +2.7s to +3.2s
    assert slow.narrowed(quick) == quick.narrowed(slow) == ClockOffset(2.7 * S, 3.2 * S)
    stepped = offset(took=0.5, theirs=60)  # the clock stepped between the two readings
    assert quick.narrowed(stepped) == stepped


RELAY = load_plan(None).track("relay")
PASSING = Reading(
    baseline_crash=Decimal("0.001"),
    figures=Figures(crash_rate=Decimal("0.001"), error_rate=Decimal("0.001"), sample=5000),
    source="prometheus",
)


def test_clocks_apart_is_inconclusive_whatever_the_figures() -> None:
    assert judge(RELAY, PASSING).verdict is Verdict.PASS
    skewed = Reading(
        baseline_crash=None, figures=Figures(crash_rate=None), source="prometheus", clock_offset=42
    )
    verdict = judge(RELAY, skewed)
    assert (verdict.verdict, verdict.reason, verdict.clock_offset) == (
        Verdict.INCONCLUSIVE,
        GateReason.CLOCK_SKEW,
        42,
    )
    said = (
        "the metrics source's clock is 42s ahead of the bot's, more than 5s apart: the figures "
        "it gives for a window are those of 42s before it, so none is read; sync both hosts' "
        "clocks with NTP"
    )
    assert verdict.summary == said
    assert verdict_reason(verdict, metric_rows(verdict, skewed)) == f"No verdict: {said}."
    assert verdict_from_json(verdict_to_json(verdict)) == verdict
    assert "clock_offset" not in verdict_to_json(judge(RELAY, PASSING))  # stored as before


def test_a_stage_held_for_the_clocks_says_what_to_do() -> None:
    held = GateInconclusive("5% canary", "the clocks", reason=GateReason.CLOCK_SKEW)
    assert "Holding for a human: sync the clocks, then Re-evaluate" in render(held)
