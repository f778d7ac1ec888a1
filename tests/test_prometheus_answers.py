"""What the Prometheus source makes of an answer, whatever its shape: one finite, non-negative
number with no warning is a figure; anything else (no series, several, NaN, a warning that the
data is partial, an error, an unknown shape) is no figure, so the gate never passes on it.

Against a loopback server answering `/api/v1/query` with a given JSON body, as Prometheus (or a
Thanos querier, which lists PromQL's info annotations among the warnings) does, on a clock the
test sets: `time()` asked without a `time` gives that clock, as Prometheus gives its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from email.utils import format_datetime
from importlib import resources
from typing import Any

import pytest
import yaml
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from bot.adapters.metrics.live import PASSING_WAIT, RETRIES, RETRY_WAIT
from bot.adapters.metrics.prometheus import PrometheusSource
from bot.adapters.metrics.sources import MetricsEndpoints, unanswered
from bot.domain.clocks import MAX_CLOCK_SKEW
from bot.domain.gate import GateReason, Verdict, evaluate_desktop
from bot.domain.metrics import QueryWindow, Reading, judge
from bot.domain.plan import PrometheusMetrics, Track
from bot.plan_file import load_plan, parse_plan
from bot.services.findings import metrics_queries_finding
from sandbox.clock import ManualClock
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
    but `time()` asked at no `time`: Prometheus's clock, `clock()`, as a scalar (counted in
    `clock_reads`)."""

    def __init__(self, body: Any, *, clock: Callable[[], datetime] = lambda: NOW) -> None:
        self.body = body
        self.clock = clock
        self.clock_reads = 0

    async def _query(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("query") == "time()" and "time" not in form:
            self.clock_reads += 1
            stamp = round(self.clock().timestamp(), 3)
            clock = {"resultType": "scalar", "result": [stamp, f"{stamp:.3f}"]}
            return web.json_response({"status": "success", "data": clock})
        ok = isinstance(self.body, dict) and self.body.get("status") == "success"
        return web.json_response(self.body, status=200 if ok else 400)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/query", self._query)
        return app


async def read(
    body: Any, *, now: datetime = NOW, bot: Callable[[], datetime] = lambda: NOW
) -> Reading:
    """What the source reads of WINDOW from a Prometheus answering `body`, its clock at `now`
    while the bot's says `bot()`."""
    async with QueryAnswers(body, clock=lambda: now) as server:
        source = PrometheusSource(METRICS, url=server.url, clock=bot, charts=False)
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


@pytest.mark.parametrize("partial", [True, False], ids=["partial", "whole"])
async def test_an_answer_marked_partial_is_no_figure(partial: bool) -> None:
    """A VictoriaMetrics cluster with a `vmstorage` node down answers `success` with a number
    from the nodes that answered, `isPartial: true` and no warning: the canary's failing series
    may be on the node left out. It passed on that number; it is no figure, never a PASS."""
    reading = await read({**vector("0.002"), "isPartial": partial})
    (crash,) = reading.metrics
    if not partial:
        assert reading.figures.crash_rate == Decimal("0.002") and crash.problem is None
        return
    assert reading.figures.crash_rate is None
    assert crash.problem == (
        "value: Prometheus answered isPartial: part of its storage did not answer, so the "
        "number may leave out the canary's series"
    )
    verdict = judge(DESKTOP, reading)
    assert (verdict.verdict, verdict.reason) == (Verdict.INCONCLUSIVE, GateReason.NO_DATA)


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


# -- Prometheus's clock and the bot's --------------------------------------------------------------

DESKTOP = load_plan(None).track("desktop")


@pytest.mark.parametrize(
    ("ahead", "words"),
    [
        (
            timedelta(minutes=2),
            "Prometheus's clock is 120s ahead of the bot's, more than 5s apart: the figures it "
            "gives for a window are those of 120s before it, so none is read; sync both hosts' "
            "clocks with NTP",
        ),
        (
            -timedelta(minutes=2),
            "Prometheus's clock is 120s behind the bot's, more than 5s apart: a window's last "
            "120s are not in its figures yet, so none is read; sync both hosts' clocks with NTP",
        ),
        (
            MAX_CLOCK_SKEW + timedelta(seconds=1),
            "Prometheus's clock is 6s ahead of the bot's, more than 5s apart: the figures it "
            "gives for a window are those of 6s before it, so none is read; sync both hosts' "
            "clocks with NTP",
        ),
    ],
    ids=["ahead", "behind", "just past the tolerance"],
)
async def test_a_prometheus_clock_off_the_bot_s_gives_no_figure_never_a_pass(
    ahead: timedelta, words: str
) -> None:
    """Prometheus 2 minutes ahead of the bot answers for the window with the figures of 2
    minutes before it (before the canary's traffic, for a short window), and they passed; 2
    minutes behind, the window's last 2 minutes are not scraped yet. Either way, on figures
    that would pass: no figure, and the gate says INCONCLUSIVE for the clocks."""
    reading = await read(vector("0.0001"), now=NOW + ahead)
    assert reading.figures.crash_rate is None
    assert reading.clock_offset == round(ahead.total_seconds())
    (crash,) = reading.metrics
    assert crash.problem == words
    verdict = judge(DESKTOP, reading)
    assert (verdict.verdict, verdict.reason) == (Verdict.INCONCLUSIVE, GateReason.CLOCK_SKEW)
    assert verdict.summary == words.replace("Prometheus's", "the metrics source's")


@pytest.mark.parametrize(
    "ahead",
    [-MAX_CLOCK_SKEW, timedelta(0), MAX_CLOCK_SKEW],
    ids=["behind by the tolerance", "equal", "ahead by the tolerance"],
)
async def test_a_clock_within_the_tolerance_leaves_the_figures_read(ahead: timedelta) -> None:
    """Up to `MAX_CLOCK_SKEW` from the bot's clock, either way, the window is read."""
    reading = await read(vector("0.0001"), now=NOW + ahead)
    assert reading.figures.crash_rate == Decimal("0.0001")
    assert reading.metrics[0].problem is None and reading.clock_offset is None
    assert judge(DESKTOP, reading).verdict is Verdict.PASS


class SlowRequests:
    """The bot's clock, each look `step` after the last: every request takes `step`, and
    Prometheus reads its clock, `ahead` of the bot's, half-way through."""

    def __init__(self, step: timedelta, ahead: timedelta) -> None:
        self.now, self.step, self.ahead = NOW, step, ahead

    def bot(self) -> datetime:
        seen, self.now = self.now, self.now + self.step
        return seen

    def prometheus(self) -> datetime:
        return self.now - self.step / 2 + self.ahead


@pytest.mark.parametrize(
    ("ahead", "reads", "figure", "offset"),
    [(0, 1, True, None), (8, 1, False, 8), (4, 3, False, None)],
    ids=["in step", "apart whatever the duration", "too slow to tell"],
)
async def test_the_request_s_duration_is_allowed_for(
    ahead: int, reads: int, figure: bool, offset: int | None
) -> None:
    """Prometheus's `time()` is read at some moment between the request and its answer: with
    a request taking 4s, a clock in step is from -2s to +2s off (read); 8s ahead, from +6s to
    +10s (apart); 4s ahead, from +2s to +6s: too slow to tell, so read again, three times at
    most, then no figure with the reason."""
    slow = SlowRequests(timedelta(seconds=4), timedelta(seconds=ahead))
    async with QueryAnswers(vector("0.0001"), clock=slow.prometheus) as server:
        source = PrometheusSource(METRICS, url=server.url, clock=slow.bot, charts=False)
        reading = await source.measure(WINDOW)
        assert server.clock_reads == reads
    assert (reading.figures.crash_rate is not None) is figure
    assert reading.clock_offset == offset
    if reads == 3:
        assert reading.metrics[0].problem == (
            "could not tell whether Prometheus's clock is within 5s of the bot's: it is +2.0s "
            "to +6.0s from it (+: ahead), its answers to time() too slow to tell (is "
            "Prometheus overloaded?)"
        )
        assert judge(DESKTOP, reading).reason is GateReason.NO_DATA


async def test_a_quick_second_reading_settles_what_a_slow_one_left_open() -> None:
    """A first answer that took 8s cannot tell a clock 3s ahead from one 7s ahead (it is -1s
    to +7s); a quick second one narrows it to +2.9s to +3s: read after two readings."""
    bot_looks = iter([NOW + timedelta(seconds=s) for s in (0, 8, 9, 9.1)])
    prometheus_looks = iter([NOW + timedelta(seconds=7), NOW + timedelta(seconds=12)])
    async with QueryAnswers(vector("0.0001"), clock=lambda: next(prometheus_looks)) as server:
        source = PrometheusSource(
            METRICS, url=server.url, clock=lambda: next(bot_looks), charts=False
        )
        reading = await source.measure(WINDOW)
        assert server.clock_reads == 2
    assert reading.figures.crash_rate == Decimal("0.0001")


async def test_the_doctor_s_queries_are_asked_whatever_the_clocks() -> None:
    """`rollout-bot doctor` asks each track's queries once to see that they answer; the
    clocks have a line of their own, so a Prometheus 2 minutes ahead still has its queries
    asked, and answered (not every figure said unanswered for the clocks)."""
    stage = load_plan(None).track("relay").stages[0]

    def ahead() -> datetime:
        return datetime.now(UTC) + timedelta(minutes=2)

    async with QueryAnswers(vector("0.0001"), clock=ahead) as server:
        endpoints = MetricsEndpoints(prometheus_url=server.url)
        problems = await unanswered(
            METRICS, endpoints, track="desktop", stage=stage, tag="v1.4.2", service="relay"
        )
    assert problems == ([], [])


async def test_the_doctor_tells_queries_that_answer_no_data_from_those_unanswered() -> None:
    """A misspelt metric matches no series: the query ran, so it is not unanswered (a ✗), but
    it answered no data (a ⚠ for a release that runs); before, both read as answered."""
    stage = load_plan(None).track("relay").stages[0]
    async with QueryAnswers(vector()) as server:
        endpoints = MetricsEndpoints(prometheus_url=server.url)
        problems = await unanswered(
            METRICS, endpoints, track="desktop", stage=stage, tag="v1.4.2", service="relay"
        )
    assert problems is not None
    unanswerable, no_data = problems
    assert unanswerable == []
    assert no_data and all("no data: the query matched no series" in part for part in no_data)


def test_a_baseline_answering_no_data_is_expected_without_other_releases() -> None:
    """`doctor --tag` of the release at 100%: its own figures answer, the baseline (every other
    release) matches no series, as it must with no other release running. The warning told to
    look for a misspelt name, "no data expected only while the release has no traffic yet":
    untrue of a baseline, whose no data is expected while no other release has traffic."""
    metrics = "metrics of the relay track (prometheus)"
    baseline = ["crash_rate baseline: no data: the query matched no series"]
    finding = metrics_queries_finding(metrics, ([], baseline))
    assert finding.warning
    assert "for a baseline while no other release has traffic (the tag at 100%" in finding.fix
    value = metrics_queries_finding(
        metrics, ([], ["crash_rate value: no data: the query matched no series"])
    )
    assert value.fix.endswith("No data is expected only while the release has no traffic yet")


class PassingFailures(QueryAnswers):
    """QueryAnswers whose first queries fail as a proxy in front of a Prometheus that restarts
    fails them, one each: "503" answers HTTP 503 without JSON, "reset" drops the connection,
    "429" asks to wait 0 seconds, "429-date" 2 s as an HTTP-date by its own clock (an hour
    behind the bot's); each failure takes `took` seconds (real ones: a request's
    time is the event loop's)."""

    def __init__(self, body: Any, *failures: str, paced: Paced, took: float = 0.0) -> None:
        super().__init__(body)
        self.failures = list(failures)
        self.asked = 0
        self.paced = paced
        self.took = took

    async def _query(self, request: web.Request) -> web.Response:
        self.asked += 1
        if not self.failures:
            return await super()._query(request)
        await asyncio.sleep(self.took)
        failure = self.failures.pop(0)
        if failure == "reset":
            assert request.transport is not None
            request.transport.close()
        if failure == "429":
            return web.Response(status=429, headers={"Retry-After": "0"})
        if failure == "429-date":
            answered = NOW - timedelta(hours=1)
            until = answered + timedelta(seconds=2)
            dates = {"Date": format_datetime(answered, usegmt=True)}
            return web.Response(
                status=429, headers={**dates, "Retry-After": format_datetime(until, usegmt=True)}
            )
        return web.Response(status=503, text="Service Unavailable")


class Paced(ManualClock):
    """The bot's clock, moved by the source's waits (kept in `waits`) instead of waiting them."""

    def __init__(self) -> None:
        super().__init__(NOW)
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.advance(timedelta(seconds=seconds))


def paced_source(server: PassingFailures, **options: Any) -> PrometheusSource:
    paced = server.paced
    return PrometheusSource(
        METRICS, url=server.url, clock=paced, sleep=paced.sleep, charts=False, **options
    )


@pytest.mark.parametrize("failures", [("503",), ("reset",), ("503", "reset")])
async def test_a_query_failing_in_passing_is_asked_again(failures: tuple[str, ...]) -> None:
    """A 503 from a proxy (Prometheus restarting) or a connection reset lost the figure: the
    gate said INCONCLUSIVE and the stage waited out an extension. The query is asked again a
    second later, a few seconds at most in all, and the figure read."""
    async with PassingFailures(vector("0.0001"), *failures, paced=Paced()) as server:
        reading = await paced_source(server).measure(WINDOW)
    assert reading.figures.crash_rate == Decimal("0.0001")
    assert server.asked == server.clock_reads + len(failures) + 1
    assert server.paced.waits == [PASSING_WAIT] * len(failures)


async def test_a_query_failing_longer_than_a_gate_waits_is_inconclusive() -> None:
    """A Prometheus that keeps failing is asked again only while the waits add up to
    RETRY_WAIT: then the figure is missing with the last answer, the gate INCONCLUSIVE."""
    async with PassingFailures(vector("0.0001"), *["503"] * 10, paced=Paced()) as server:
        reading = await paced_source(server).measure(WINDOW)
    assert reading.figures.crash_rate is None
    (metric,) = reading.metrics
    assert metric.problem is not None and "HTTP 503" in metric.problem
    assert server.asked - server.clock_reads == 1 + int(RETRY_WAIT / PASSING_WAIT)
    assert sum(server.paced.waits) <= RETRY_WAIT


async def test_a_slow_failing_answer_spends_what_a_gate_waits() -> None:
    """A 503 or 504 that takes its time (a proxy's own timeout, a query Prometheus gave up on)
    was asked again three times, each taking it again: a reading, and the rollout's lock a
    Stop waits for, held four answers' time and the waits, not "a few seconds" longer. The
    time from the first ask counts: once it and the wait pass RETRY_WAIT, the answer stands."""
    slow = 1.2  # seconds: its waits, not waited here (Paced), count besides
    async with PassingFailures(vector("0.0001"), *["503"] * 10, paced=Paced(), took=slow) as s:
        reading = await paced_source(s, compare_clocks=False).measure(WINDOW)
    assert reading.figures.crash_rate is None
    # At 1.2 s, a wait of 1 s more is within RETRY_WAIT; at 2.4 s, with it, it is not.
    assert s.asked == 2, s.asked
    assert s.paced.waits == [PASSING_WAIT]


async def test_a_rate_limit_asking_no_wait_is_asked_again_a_few_times_only() -> None:
    """`Retry-After: 0` said again and again waits nothing: the query is asked again RETRIES
    times, not for ever."""
    async with PassingFailures(vector("0.0001"), *["429"] * 10, paced=Paced()) as server:
        reading = await paced_source(server, compare_clocks=False).measure(WINDOW)
    assert reading.figures.crash_rate is None
    assert server.asked == 1 + RETRIES


async def test_a_rate_limit_until_a_date_is_waited_out_by_the_answer_s_clock() -> None:
    """`Retry-After` may be an HTTP-date (RFC 9110 §10.2.3), on the answering server's clock
    (its `Date`), which may be off the bot's: the wait is until then by that clock. It was
    unreadable, and the query asked again after PASSING_WAIT whatever it said."""
    async with PassingFailures(vector("0.0001"), "429-date", paced=Paced()) as server:
        reading = await paced_source(server, compare_clocks=False).measure(WINDOW)
    assert reading.figures.crash_rate == Decimal("0.0001")
    assert server.paced.waits == [2.0]


# -- the sample behind the rates ----------------------------------------------------------------


class AnswersByQuery(QueryAnswers):
    """Answers each instant query with the body given for its text (no series otherwise)."""

    def __init__(self, bodies: dict[str, Any]) -> None:
        super().__init__(vector())
        self.bodies = bodies

    async def _query(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.body = self.bodies.get(str(form.get("query")), vector())
        return await super()._query(request)


def sampled_relay(min_sample: int) -> Track:
    """The relay track reading an error rate and a crash rate, each with a sample of its own."""
    plan = yaml.safe_load(
        resources.files("bot.domain").joinpath("default_plan.yml").read_text(encoding="utf-8")
    )
    plan["tracks"]["relay"]["thresholds"]["min_sample"] = min_sample
    plan["tracks"]["relay"]["metrics"] = {
        "source": "prometheus",
        "baseline_crash_rate": "0.001",
        "error_rate": {"query": "errors", "sample": "requests"},
        "crash_rate": {"query": "crashes", "sample": "sessions"},
    }
    return parse_plan(yaml.safe_dump(plan), "test plan").track("relay")


@pytest.mark.parametrize(
    ("requests", "sessions", "min_sample", "sample", "verdict"),
    [
        (vector("5000"), vector("1200"), 1000, 1200, Verdict.PASS),
        (vector("5000"), vector("800"), 1000, 800, Verdict.INCONCLUSIVE),  # the smallest decides
        (vector("800"), vector("5000"), 1000, 800, Verdict.INCONCLUSIVE),
        (vector("1000.9"), vector("5000"), 1000, 1000, Verdict.PASS),  # at the minimum passes
        (vector("999.9"), vector("5000"), 1000, 999, Verdict.INCONCLUSIVE),  # whole requests
        (vector("5000"), vector(), 1000, 0, Verdict.INCONCLUSIVE),  # no series: counted nothing
        (vector("5000"), vector(), 0, 0, Verdict.INCONCLUSIVE),  # 0 whatever the minimum
        (vector("5000"), vector("NaN"), 1000, None, Verdict.INCONCLUSIVE),  # unreadable
        (vector("5000"), vector("NaN"), 0, None, Verdict.INCONCLUSIVE),  # its rate not judged
        (vector("5000"), vector("1", "2"), 0, None, Verdict.INCONCLUSIVE),  # two series
    ],
)
async def test_the_smallest_sample_of_the_gated_metrics_decides(
    requests: Any, sessions: Any, min_sample: int, sample: int | None, verdict: Verdict
) -> None:
    """Each metric may count its own sample; the gate needs enough of every one: the smallest
    (rounded down to whole requests) is compared with `min_sample`, and one that could not be
    read leaves the sample unknown and its own rate unjudged."""
    track = sampled_relay(min_sample)
    assert isinstance(track.metrics, PrometheusMetrics)
    bodies = {
        "errors": vector("0.001"),
        "crashes": vector("0.001"),
        "requests": requests,
        "sessions": sessions,
    }
    async with AnswersByQuery(bodies) as server:
        source = PrometheusSource(track.metrics, url=server.url, clock=lambda: NOW, charts=False)
        reading = await source.measure(WINDOW)

    assert reading.figures.sample == sample
    judged = judge(track, reading)
    assert judged.verdict is verdict, judged.summary
