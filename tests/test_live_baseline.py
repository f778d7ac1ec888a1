"""A baseline read live (Prometheus's `crash_rate.baseline`, Sentry's `baseline_query`): one
whose limit is 100% or more, which no crash rate exceeds, so the crash rule could never fail;
and the sample behind it.

Plan files refuse such a fixed baseline (`0.5` meant as 0.5%, times 2); a live one is only known
when it is read. The gate never PASSes on it: it holds, INCONCLUSIVE for the unreachable limit,
naming the baseline read, unless a rule it can apply fails (the error rate, or a crash rate
above even that limit).

A Prometheus baseline is a rate of its own requests: `crash_rate.baseline_sample` counts them
into the gate's sample (the smallest decides, as Sentry's baseline sessions do); a plan file
without it still loads, and the card, the PASS line and the audit say it was not counted.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import yaml
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from bot.adapters.metrics.prometheus import PrometheusSource
from bot.adapters.slack.audit_views import event_line
from bot.adapters.slack.gate_views import gate_card
from bot.adapters.slack.messages import render
from bot.domain.errors import PlanError
from bot.domain.gate import GateReason, GateVerdict, Verdict, gate_reason_words
from bot.domain.gate_report import metric_rows, verdict_reason
from bot.domain.metrics import QueryWindow, Reading, baseline_sample_detail, judge
from bot.domain.plan import PrometheusMetrics, RolloutPlan, Track
from bot.domain.rollout.codec import verdict_from_json, verdict_to_json
from bot.domain.rollout.events import GateInconclusive
from bot.plan_file import load_plan, parse_plan
from bot.services.records import AuditEvent
from sandbox.loopback import LoopbackServer

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
            "crash_rate": {
                "query": "crashes",
                "baseline": "crashes offset $since_start",
                "baseline_sample": "requests offset $since_start",
            },
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
    assert (
        gate_reason_words(verdict.reason) == "the live baseline sets a limit no crash rate exceeds"
    )


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


# -- the sample behind a Prometheus baseline read live ------------------------------------------

START = datetime(2026, 12, 5, 11, 30, tzinfo=UTC)
NOW = START + timedelta(minutes=30)
WINDOW = QueryWindow("v1.4.2", "relay", "canary", START, NOW, rollout_start=START)


class PromQLAnswers(LoopbackServer):
    """Answers each instant query with one series of `values[query]` (no series when the
    query is not there), and `time()` at no `time` with NOW, as Prometheus gives its clock."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    async def _query(self, request: web.Request) -> web.Response:
        form = await request.post()
        query = str(form.get("query"))
        if query == "time()" and "time" not in form:
            stamp = NOW.timestamp()
            data: dict[str, Any] = {"resultType": "scalar", "result": [stamp, f"{stamp:.3f}"]}
        else:
            known = query in self.values
            series = [{"metric": {}, "value": [NOW.timestamp(), self.values.get(query)]}]
            data = {"resultType": "vector", "result": series if known else []}
        return web.json_response({"status": "success", "data": data})

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/query", self._query)
        return app


def prometheus_track(min_sample: int, **crash_rate: str) -> Track:
    data: dict[str, Any] = load_plan(None).model_dump(mode="json", by_alias=True)
    relay = data["tracks"]["relay"]
    relay["thresholds"]["min_sample"] = min_sample
    relay["metrics"] = {
        "source": "prometheus",
        "baseline_crash_rate": "0.001",
        "error_rate": {"query": "errors", "sample": "requests"},
        "crash_rate": {"query": "crashes", **crash_rate},
    }
    return parse_plan(yaml.safe_dump(data), "test plan").track("relay")


ANSWERS = {
    "errors": "0.001",
    "requests": "5000",
    "crashes": "0.001",
    "baseline": "0.0008",
    "baseline requests": "12",
}


async def read_and_judge(track: Track) -> tuple[GateVerdict, Reading]:
    assert isinstance(track.metrics, PrometheusMetrics)
    async with PromQLAnswers(ANSWERS) as server:
        source = PrometheusSource(track.metrics, url=server.url, clock=lambda: NOW, charts=False)
        reading = await source.measure(WINDOW)
    return judge(track, reading), reading


async def test_a_baseline_read_over_a_handful_of_requests_is_too_little_data() -> None:
    """Twelve requests behind the baseline: one crash among them would set a limit a crashing
    canary passes under. Counted (`baseline_sample`), it is below `min_sample`."""
    track = prometheus_track(1000, baseline="baseline", baseline_sample="baseline requests")

    verdict, reading = await read_and_judge(track)

    assert (verdict.verdict, verdict.reason) == (
        Verdict.INCONCLUSIVE,
        GateReason.INSUFFICIENT_SAMPLE,
    )
    assert verdict.sample == 12
    (_error, crash) = reading.metrics
    assert (crash.baseline, crash.baseline_sample) == (D("0.0008"), 12)
    rows = metric_rows(verdict, reading)
    assert verdict_reason(verdict, rows) == "Too little data: a sample of 12, the gate needs 1,000."


async def test_a_counted_baseline_is_shown_with_its_sample() -> None:
    track = prometheus_track(10, baseline="baseline", baseline_sample="baseline requests")
    verdict, reading = await read_and_judge(track)
    assert verdict.verdict is Verdict.PASS and verdict.sample == 12
    card = str(gate_card(verdict=verdict, reading=reading, **CARD))
    assert "baseline 0.08% (read live, sample 12)" in card


async def test_an_uncounted_live_baseline_is_not_claimed_to_have_the_canary_s_sample() -> None:
    """Without `min_sample` a plan may read its baseline live uncounted: the card and the
    audit say the sample is the canary's and the baseline's was not counted."""
    track = prometheus_track(0, baseline="baseline")

    verdict, reading = await read_and_judge(track)

    assert verdict.verdict is Verdict.PASS and verdict.sample == 5000
    card = str(gate_card(verdict=verdict, reading=reading, **CARD))
    assert "baseline 0.08% (read live, its sample not counted)" in card
    said = verdict_reason(verdict, metric_rows(verdict, reading))
    assert said == (
        "Every metric is within its limit on a sample of 5,000 (the baseline read live: its "
        "sample not counted)."
    )
    detail = {"sample": verdict.sample, **baseline_sample_detail(reading)}
    assert detail == {"sample": 5000, "baseline_sample": "not counted"}
    event = AuditEvent(
        id=1, at=NOW, actor="bot", action="gate", result="PASS", rollout_id="r-1", detail=detail
    )
    assert "sample: 5000; baseline sample: not counted" in event_line(event)


def test_a_fixed_baseline_needs_no_sample() -> None:
    verdict = prometheus_track(0).evaluate_gate(
        baseline_crash=D("0.001"), current_crash=D("0.001"), current_error=D(0), sample=5000
    )
    said = verdict_reason(verdict, metric_rows(verdict, None))
    assert said == "Every metric is within its limit on a sample of 5,000."


def test_a_plan_file_with_a_live_baseline_and_no_count_of_it_still_loads() -> None:
    """Plan files written before `baseline_sample` keep working: the card says the baseline's
    sample is not counted (above)."""
    assert prometheus_track(1000, baseline="baseline").metrics.crash_rate.baseline_sample is None


def test_a_count_of_no_live_baseline_is_refused() -> None:
    with pytest.raises(
        PlanError,
        match=re.escape(
            "tracks.relay.metrics.crash_rate.baseline_sample: counts the requests behind "
            "crash_rate.baseline: add it, or remove this"
        ),
    ):
        prometheus_track(1000, baseline_sample="baseline requests")


CARD = {"stage_label": "5% canary", "track_label": "Hosted relay", "window": None}


def test_an_error_rate_has_no_baseline_to_count() -> None:
    data: dict[str, Any] = load_plan(None).model_dump(mode="json", by_alias=True)
    data["tracks"]["relay"]["metrics"] = {
        "source": "prometheus",
        "baseline_crash_rate": "0.001",
        "error_rate": {"query": "errors", "baseline_sample": "requests"},
        "crash_rate": {"query": "crashes"},
    }
    with pytest.raises(
        PlanError, match=r"error_rate\.baseline_sample: the error rate has a thresh"
    ):
        parse_plan(yaml.safe_dump(data), "test plan")


def uncounted_canary_track() -> Track:
    """`baseline_sample` but no `sample` on any metric: allowed with `min_sample: 0`."""
    data: dict[str, Any] = load_plan(None).model_dump(mode="json", by_alias=True)
    relay = data["tracks"]["relay"]
    relay["thresholds"]["min_sample"] = 0
    relay["metrics"] = {
        "source": "prometheus",
        "baseline_crash_rate": "0.001",
        "error_rate": {"query": "errors"},
        "crash_rate": {
            "query": "crashes",
            "baseline": "baseline",
            "baseline_sample": "baseline requests",
        },
    }
    return parse_plan(yaml.safe_dump(data), "test plan").track("relay")


async def test_a_baseline_count_alone_is_not_shown_as_the_canary_s_sample() -> None:
    """The canary's requests uncounted, the baseline's 12 were shown as the sample the canary
    passed on: the row, the PASS line and the thread's summary name them the baseline's."""
    verdict, reading = await read_and_judge(uncounted_canary_track())

    assert verdict.verdict is Verdict.PASS and verdict.sample == 12
    rows = metric_rows(verdict, reading)
    assert [row.sample for row in rows] == [None, None]
    assert rows[1].baseline_shown == "0.08% (read live, sample 12)"
    assert verdict_reason(verdict, rows) == (
        "Every metric is within its limit on the baseline's sample of 12 (the canary's not "
        "counted)."
    )
    assert verdict.summary.endswith("; baseline sample 12 (the canary's not counted)")
    assert "; sample 12" not in verdict.summary
    stored = verdict_from_json(verdict_to_json(verdict))
    assert stored == verdict


async def test_a_baseline_count_of_nothing_alone_says_the_baseline_counted_nothing() -> None:
    async with PromQLAnswers({**ANSWERS, "baseline requests": "0"}) as server:
        track = uncounted_canary_track()
        assert isinstance(track.metrics, PrometheusMetrics)
        source = PrometheusSource(track.metrics, url=server.url, clock=lambda: NOW, charts=False)
        reading = await source.measure(WINDOW)
    verdict = judge(track, reading)

    assert (verdict.verdict, verdict.reason) == (
        Verdict.INCONCLUSIVE,
        GateReason.INSUFFICIENT_SAMPLE,
    )
    assert verdict.summary == "baseline sample 0: the baseline read live counted nothing"
    assert verdict_reason(verdict, metric_rows(verdict, reading)) == (
        "No data: the baseline read live counted nothing (a sample of 0)."
    )


async def test_an_unreadable_baseline_count_is_not_called_uncounted() -> None:
    """A `baseline_sample` whose query failed was shown and audited as `not counted`, as if the
    plan had none."""
    track = prometheus_track(0, baseline="baseline", baseline_sample="baseline requests")
    assert isinstance(track.metrics, PrometheusMetrics)
    async with PromQLAnswers({**ANSWERS, "baseline requests": "NaN"}) as server:
        source = PrometheusSource(track.metrics, url=server.url, clock=lambda: NOW, charts=False)
        reading = await source.measure(WINDOW)
    verdict = judge(track, reading)

    assert verdict.verdict is Verdict.INCONCLUSIVE
    rows = metric_rows(verdict, reading)
    assert rows[1].baseline_note == "read live, its sample unreadable"
    assert baseline_sample_detail(reading) == {"baseline_sample": "unreadable"}


def test_a_verdict_stored_before_baseline_sample_only_still_reads() -> None:
    verdict = prometheus_track(0).evaluate_gate(
        baseline_crash=D("0.001"), current_crash=D("0.001"), current_error=D(0), sample=5000
    )
    stored = verdict_to_json(verdict)
    assert "baseline_sample_only" not in stored
    assert verdict_from_json(stored).baseline_sample_only is False
