"""A baseline read live (Prometheus's `crash_rate.baseline`, Sentry's `baseline_query`) whose
limit is 100% or more: no crash rate exceeds it, so the crash rule could never fail.

Plan files refuse such a fixed baseline (`0.5` meant as 0.5%, times 2); a live one is only known
when it is read. The gate never PASSes on it: it holds, INCONCLUSIVE for the unreachable limit,
naming the baseline read, unless a rule it can apply fails (the error rate, or a crash rate
above even that limit).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.adapters.slack.messages import render
from bot.domain.gate import GateReason, Verdict, gate_reason_words
from bot.domain.gate_report import metric_rows, verdict_reason
from bot.domain.plan import RolloutPlan, Track
from bot.domain.rollout.events import GateInconclusive
from bot.plan_file import load_plan

D = Decimal


def live_track(track: str, **thresholds: Any) -> Track:
    """The built-in plan's `track` reading its baseline live (relay: Prometheus's
    `crash_rate.baseline`; desktop: Sentry's `baseline_query`)."""
    data: dict[str, Any] = load_plan(None).model_dump(mode="json", by_alias=True)
    if track == "relay":
        data["tracks"]["relay"]["metrics"] = {
            "source": "prometheus",
            "baseline_crash_rate": "0.001",
            "error_rate": {"query": "errors", "sample": "requests"},
            "crash_rate": {"query": "crashes", "baseline": "crashes offset $since_start"},
        }
    else:
        data["tracks"]["desktop"]["metrics"] = {
            "source": "sentry",
            "baseline_crash_rate": "0.001",
            "baseline_query": "!release:scriptum-desktop@$tag",
        }
    data["tracks"][track]["thresholds"].update(thresholds)
    return RolloutPlan.model_validate(data).track(track)


def gate(track: str, baseline: str, crash: str, error: str = "0", **thresholds: Any) -> Any:
    return live_track(track, **thresholds).evaluate_gate(
        baseline_crash=D(baseline), current_crash=D(crash), current_error=D(error), sample=5000
    )


@pytest.mark.parametrize("track", ["relay", "desktop"])
@pytest.mark.parametrize(
    ("baseline", "multiplier", "limit"),
    [("0.6", "2", "120%"), ("0.5", "2", "100%"), ("0.3", "4", "120%")],
)
def test_a_live_baseline_whose_limit_no_crash_rate_exceeds_holds_the_gate(
    track: str, baseline: str, multiplier: str, limit: str
) -> None:
    """60% of the control's sessions crash: twice that is a limit of 120%, so a release whose
    every session crashes used to PASS."""
    verdict = gate(track, baseline, "1", crash_multiplier=multiplier)

    assert (verdict.verdict, verdict.reason) == (
        Verdict.INCONCLUSIVE,
        GateReason.UNREACHABLE_LIMIT,
    )
    assert f"baseline crash rate {baseline} read live" in verdict.summary
    assert f"a limit of {limit}: no crash rate exceeds it" in verdict.summary
    said = verdict_reason(verdict, metric_rows(verdict, None))
    assert said.startswith("No verdict: the baseline crash rate")
    assert gate_reason_words(verdict.reason) == "the live baseline sets a limit no crash rate exceeds"


def test_an_error_rate_over_its_threshold_still_rolls_back() -> None:
    verdict = gate("relay", "0.6", "0.9", error="0.5")
    assert (verdict.verdict, verdict.reason) == (Verdict.ROLLBACK, GateReason.ERROR_RATE)


@pytest.mark.parametrize(("track", "failing"), [("relay", Verdict.ROLLBACK), ("desktop", None)])
def test_a_crash_rate_above_even_that_limit_still_fails(
    track: str, failing: Verdict | None
) -> None:
    """A crash rate above 1 (crashes per request can be) is over any limit: it fails."""
    verdict = gate(track, "0.6", "1.5")
    assert verdict.reason is GateReason.CRASH_RATE
    assert verdict.verdict is (failing or Verdict.KILL_SWITCH)


def test_a_live_baseline_below_the_line_is_judged_as_before() -> None:
    assert gate("relay", "0.4", "0.8").verdict is Verdict.PASS  # limit 80%: equal passes
    assert gate("relay", "0.4", "0.81").reason is GateReason.CRASH_RATE


def test_too_little_data_is_said_first() -> None:
    verdict = live_track("relay", min_sample=1000).evaluate_gate(
        baseline_crash=D("0.6"), current_crash=D("0.1"), current_error=D(0), sample=10
    )
    assert verdict.reason is GateReason.INSUFFICIENT_SAMPLE


def test_the_thread_says_why_it_holds() -> None:
    held = GateInconclusive("5% canary", "figures", reason=GateReason.UNREACHABLE_LIMIT)
    text = render(held)
    assert "the baseline query" in text and "Not enough data" not in text


@given(
    baseline=st.decimals(min_value=D("0.5"), max_value=1, places=4),
    crash=st.decimals(min_value=0, max_value=1, places=4),
    error=st.decimals(min_value=0, max_value=D("0.01"), places=4),
)
def test_a_live_baseline_whose_limit_is_100_percent_or_more_never_passes(
    baseline: Decimal, crash: Decimal, error: Decimal
) -> None:
    relay, desktop = live_track("relay"), live_track("desktop")
    for track in (relay, desktop):
        verdict = track.evaluate_gate(
            baseline_crash=baseline, current_crash=crash, current_error=error, sample=5000
        )
        assert verdict.verdict is not Verdict.PASS
