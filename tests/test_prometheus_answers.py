"""What the Prometheus source makes of an answer, whatever its shape: one finite, non-negative
number with no warning is a figure; anything else (no series, several, NaN, a warning that the
data is partial, an error, an unknown shape) is no figure, so the gate never passes on it.

Against a loopback server answering `/api/v1/query` with a given JSON body, as Prometheus (or a
Thanos querier, which lists PromQL's info annotations among the warnings) does, on a clock the
test sets: `time()` asked without a `time` gives that clock, as Prometheus gives its own.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from bot.adapters.metrics.prometheus import MAX_CLOCK_SKEW, PrometheusSource
from bot.domain.gate import GateReason, Verdict, evaluate_desktop
from bot.domain.metrics import QueryWindow, Reading
from bot.domain.plan import PrometheusMetrics
from sandbox.loopback import LoopbackServer

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
WINDOW = QueryWindow(
    tag="v1.4.2",
    track="relay",
    stage="canary",
    start=NOW - timedelta(minutes=30),
    end=NOW,
    rollout_start=NOW - timedelta(minutes=30),
)
METRICS = PrometheusMetrics.model_validate(
    {"source": "prometheus", "baseline_crash_rate": "0.001", "crash_rate": {"query": "x"}}
)


class QueryAnswers(LoopbackServer):
    """Answers every instant query with `body` (HTTP 200, or 400 when it is not a success),
    but `time()` asked at no `time`: Prometheus's clock, `now`, as a scalar."""

    def __init__(self, body: Any, *, now: datetime = NOW) -> None:
        self.body = body
        self.now = now

    async def _query(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("query") == "time()" and "time" not in form:
            stamp = round(self.now.timestamp(), 3)
            clock = {"resultType": "scalar", "result": [stamp, f"{stamp:.3f}"]}
            return web.json_response({"status": "success", "data": clock})
        ok = isinstance(self.body, dict) and self.body.get("status") == "success"
        return web.json_response(self.body, status=200 if ok else 400)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/query", self._query)
        return app


async def read(body: Any, *, now: datetime = NOW) -> Reading:
    async with QueryAnswers(body, now=now) as server:
        source = PrometheusSource(METRICS, url=server.url, charts=False)
        return await source.measure(WINDOW)


def vector(*values: Any, warnings: list[str] | None = None) -> dict[str, Any]:
    result = [
        {"metric": {"pod": f"relay-{i}"}, "value": [NOW.timestamp(), v]}
        for i, v in enumerate(values)
    ]
    body: dict[str, Any] = {"status": "success", "data": {"resultType": "vector", "result": result}}
    if warnings is not None:
        body["warnings"] = warnings
    return body


@pytest.mark.parametrize(
    ("warnings", "figure"),
    [
        (['PromQL info: metric might not be a counter, name does not end in _total: "x"'], True),
        (["PromQL warning: quantile value should be between 0 and 1, got 1.1 (1:10)"], False),
        (["partial response: store 10.0.0.7:10901 unavailable"], False),
        ([], True),
    ],
    ids=["info", "PromQL warning", "store down", "empty list"],
)
async def test_only_an_info_annotation_leaves_the_number_read(
    warnings: list[str], figure: bool
) -> None:
    """A `PromQL info:` may be a false positive (a counter named without `_total`): the number
    stands. A `PromQL warning:` or a store's is a wrong or partial answer: no figure."""
    reading = await read(vector("0.002", warnings=warnings))
    (crash,) = reading.metrics
    assert (reading.figures.crash_rate == Decimal("0.002")) is figure, crash.problem
    assert (crash.problem is None) is figure, crash.problem


# -- any answer ---------------------------------------------------------------------------------

TEXTS = st.sampled_from(
    ["0.002", "0", "-0", "1e-3", "0.5", "3", "NaN", "+Inf", "-Inf", "-0.1", "abc", "", "1e999"]
)
VALUES = st.one_of(
    st.tuples(st.floats(0, 2e9), TEXTS).map(list),
    TEXTS,
    st.none(),
    st.lists(TEXTS, max_size=3),
)
WARNINGS = st.lists(
    st.sampled_from(
        ["PromQL info: metric might not be a counter", "remote_read: connection refused"]
    ),
    max_size=2,
)


@st.composite
def answers(draw: st.DrawFn) -> Any:
    """Prometheus answers, well formed or not, with the parts that decide a figure varied."""
    kind = draw(st.sampled_from(["vector", "scalar", "matrix", "string", None]))
    if kind == "vector":
        series = draw(st.lists(VALUES, max_size=3))
        result: Any = [{"metric": {"i": str(i)}, "value": v} for i, v in enumerate(series)]
    else:
        result = draw(VALUES)
    body: dict[str, Any] = {
        "status": draw(st.sampled_from(["success", "error"])),
        "data": draw(st.sampled_from([{"resultType": kind, "result": result}, None, []])),
    }
    warnings = draw(st.none() | WARNINGS)
    if warnings is not None:
        body["warnings"] = warnings
    return body


def expected_figure(body: dict[str, Any]) -> Decimal | None:
    """The one number a gate may use from `body`, or None (written apart from the source)."""
    warnings = body.get("warnings") or []
    if body["status"] != "success" or any(not w.startswith("PromQL info:") for w in warnings):
        return None
    data = body["data"]
    if not isinstance(data, dict):
        return None
    result = data["result"]
    if data["resultType"] == "vector" and isinstance(result, list) and len(result) == 1:
        pair = result[0]["value"]
    elif data["resultType"] == "scalar":
        pair = result
    else:
        return None
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)):
        return None
    try:
        value = Decimal(pair[1])
    except InvalidOperation:
        return None
    usable = value.is_finite() and (not value.is_signed() or value == 0)
    return abs(value) if usable else None


@given(answers())
def test_a_figure_only_from_one_clean_number_and_never_a_pass_without_one(body: Any) -> None:
    reading = asyncio.run(read(body))
    expected = expected_figure(body)
    assert reading.figures.crash_rate == expected
    (crash,) = reading.metrics
    assert (crash.problem is None) is (expected is not None), crash.problem
    verdict = evaluate_desktop(
        baseline_crash=reading.baseline_crash, current_crash=reading.figures.crash_rate
    )
    if expected is None:
        assert verdict.verdict is not Verdict.PASS


# -- Prometheus's clock behind the bot's ----------------------------------------------------------


async def test_a_window_ending_in_prometheus_s_future_is_no_figure_never_a_pass() -> None:
    """The bot's clock 2 minutes ahead of Prometheus's: the window's end lies in Prometheus's
    future, its last 2 minutes not scraped yet, and a canary failing in them passed on the
    healthy figures before. Prometheus's clock is asked first: no figure, INCONCLUSIVE."""
    reading = await read(vector("0.0001"), now=NOW - timedelta(minutes=2))
    assert reading.figures.crash_rate is None
    (crash,) = reading.metrics
    assert crash.problem == (
        "Prometheus's clock is 120s behind the bot's: the window's last 120s are not in its "
        "figures yet (sync both clocks with NTP)"
    )
    verdict = evaluate_desktop(
        baseline_crash=reading.baseline_crash, current_crash=reading.figures.crash_rate
    )
    assert (verdict.verdict, verdict.reason) == (Verdict.INCONCLUSIVE, GateReason.NO_DATA)


@pytest.mark.parametrize(
    "ahead", [-timedelta(hours=1), timedelta(0), MAX_CLOCK_SKEW], ids=["behind", "equal", "limit"]
)
async def test_a_clock_within_the_tolerance_leaves_the_figures_read(ahead: timedelta) -> None:
    """Up to `MAX_CLOCK_SKEW` ahead of Prometheus's clock (or behind it), the window is read."""
    reading = await read(vector("0.0001"), now=NOW - ahead)
    assert reading.figures.crash_rate == Decimal("0.0001")
    assert reading.metrics[0].problem is None
    verdict = evaluate_desktop(
        baseline_crash=reading.baseline_crash, current_crash=reading.figures.crash_rate
    )
    assert verdict.verdict is Verdict.PASS
