"""The Prometheus source against a real Prometheus (Debian's `prometheus` binary) scraping the
relay exporter at known rates every second; and the whole chain through the bot: Prometheus ->
gate -> review on the GitHub simulator -> gate card and chart in the Slack thread.

One Prometheus serves the module (each test that changes a job's traffic has a job of its own;
one whose every query must differ, a Prometheus of its own). Without the binary the module is
skipped, or fails when REQUIRE_SERVICES=1 (CI installs it).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from command_line import run_here
from sandbox_views import RELAY_ROLLED_BACK_AT_CANARY, dispatched, reviews, value_of
from services import missing

from bot.adapters.charts import PNG_SIGNATURE
from bot.adapters.metrics.prometheus import PrometheusSource
from bot.domain.gate import GateReason, GateVerdict, Verdict
from bot.domain.metrics import QueryWindow, Reading, judge
from bot.domain.plan import PrometheusMetrics, Track
from bot.domain.rollout import StageState, TrackState
from bot.plan_file import parse_plan
from sandbox.harness import Sandbox, fast_plan, write_figures
from sandbox.prometheus_clock import SkewedClock
from sandbox.prometheus_exporter import (
    PrometheusProcess,
    RelayExporter,
    RelayTraffic,
    prometheus_binary,
)

T = TypeVar("T")

DOCS = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
TRAFFIC = {
    "failing": RelayTraffic(requests=1000, request_errors=30, ws=500, ws_errors=15),  # 3%
    "healthy": RelayTraffic(requests=1000, request_errors=2, ws=500, ws_errors=1),  # 0.2%
    "quiet": RelayTraffic(requests=1, request_errors=0, ws=1, ws_errors=0),  # 2 a second
    "idle": RelayTraffic(requests=0, request_errors=0, ws=0, ws_errors=0),
}
REQUESTS = '{__name__=~"relay_request_rate_total|relay_ws_rate_total"%s}'
ERRORS = '{__name__=~"relay_request_errors_total|relay_ws_errors_total"%s}'


def relay_metrics(job: str, **extra: Any) -> dict[str, Any]:
    """The relay's metrics section reading one exporter (docs/metrics.md's queries + a job)."""
    matcher = f',job="{job}"'
    requests = f"sum(increase({REQUESTS % matcher}[$window]))"
    return {
        "source": "prometheus",
        "baseline_crash_rate": "0.001",
        "error_rate": {
            "query": f"sum(increase({ERRORS % matcher}[$window])) / {requests}",
            "sample": requests,
        },
        "crash_rate": {"query": "vector(0.001)"},
        **extra,
    }


@dataclass(frozen=True)
class Exported:
    """A job of the module's Prometheus: its exporter's traffic, the release (`version`
    label) its series are of, and whether a series appears only at its first count."""

    traffic: RelayTraffic
    version: str = ""
    lazy: bool = False


RELEASES = {
    # docs/metrics.md's ready example at the 5% canary: the release's pods fail 3% of HTTP and
    # WebSocket requests together, the stable fleet beside them serves 19 times the traffic at
    # 0.2%.
    "canary": Exported(TRAFFIC["failing"], "v1.4.2"),
    "fleet": Exported(
        RelayTraffic(requests=19_000, request_errors=38, ws=9_500, ws_errors=19), "v1.4.1"
    ),
    # A release whose pods served requests and failed none, and one whose pods served none.
    "clean": Exported(RelayTraffic(1000, 0, 500, 0), "v1.5.0", lazy=True),
    "unused": Exported(TRAFFIC["idle"], "v1.5.1", lazy=True),
}
TURNING = ("ahead", "held")
"""Jobs healthy until the one test that reads each makes it fail (`Scraping.set_traffic`)."""
JOBS = {
    **{job: Exported(traffic) for job, traffic in TRAFFIC.items()},
    **RELEASES,
    **{job: Exported(TRAFFIC["healthy"]) for job in TURNING},
}


@dataclass(frozen=True)
class Telemetry:
    prometheus_url: str


@dataclass(frozen=True)
class Scraping:
    """The module's Prometheus and its exporters by job, served on `loop` (a thread's)."""

    prometheus: PrometheusProcess
    exporters: dict[str, RelayExporter]
    loop: asyncio.AbstractEventLoop

    async def set_traffic(self, job: str, traffic: RelayTraffic) -> None:
        """Change `job`'s rates from now on, on the loop its exporter answers scrapes on."""

        async def change() -> None:
            self.exporters[job].set_traffic(traffic)

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(change(), self.loop))


def _run(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)


@pytest.fixture(scope="module")
def scraping() -> Iterator[Scraping]:
    """An exporter for each job and one real Prometheus scraping them every second, served
    from a thread of their own so every test's event loop can query them."""
    if prometheus_binary() is None:
        missing("the prometheus binary is missing (apt-get install prometheus)")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="telemetry", daemon=True)
    thread.start()
    exporters = {job: RelayExporter(e.traffic, lazy=e.lazy) for job, e in JOBS.items()}
    prometheus: PrometheusProcess | None = None
    try:
        for exporter in exporters.values():
            _run(loop, exporter.start())
        prometheus = PrometheusProcess(
            {job: e.target for job, e in exporters.items()},
            labels={job: {"version": e.version} for job, e in JOBS.items() if e.version},
        )
        _run(loop, prometheus.start())
        _run(loop, prometheus.wait_for_scrapes(4))
        yield Scraping(prometheus, exporters, loop)
    finally:
        if prometheus is not None:
            _run(loop, prometheus.stop())
        for exporter in exporters.values():
            _run(loop, exporter.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def telemetry(scraping: Scraping) -> Telemetry:
    return Telemetry(prometheus_url=scraping.prometheus.url)


def window(stage: str, seconds: int = 3, *, ahead: timedelta = timedelta(0)) -> QueryWindow:
    """The last `seconds` up to now, on a bot's clock `ahead` of Prometheus's."""
    end = datetime.now(UTC) + ahead
    start = end - timedelta(seconds=seconds)
    return QueryWindow(
        tag="v1.4.2", track="relay", stage=stage, start=start, end=end, rollout_start=start
    )


def source(telemetry: Telemetry, metrics: dict[str, Any]) -> PrometheusSource:
    return PrometheusSource(PrometheusMetrics.model_validate(metrics), url=telemetry.prometheus_url)


def judged(reading: Reading, *, min_sample: int = 1000) -> GateVerdict:
    """The relay gate's verdict on `reading`, with the default plan's thresholds (and
    INCONCLUSIVE when Prometheus's clock was too far from the bot's)."""
    return judge(relay_track(min_sample), reading)


def relay_track(min_sample: int = 1000) -> Track:
    plan = yaml.safe_load(
        resources.files("bot.domain").joinpath("default_plan.yml").read_text(encoding="utf-8")
    )
    plan["tracks"]["relay"]["thresholds"]["min_sample"] = min_sample
    plan["tracks"]["relay"]["metrics"] = relay_metrics("healthy")
    return parse_plan(yaml.safe_dump(plan), "test plan").track("relay")


# -- the source against a real Prometheus ----------------------------------------------------


async def test_error_rate_and_sample_match_the_known_traffic(telemetry: Telemetry) -> None:
    reading = await source(telemetry, relay_metrics("failing")).measure(window("failing", 3))
    traffic = TRAFFIC["failing"]
    assert reading.figures.error_rate is not None and reading.figures.sample is not None
    assert float(reading.figures.error_rate) == pytest.approx(traffic.error_rate, rel=0.1)
    assert reading.figures.sample == pytest.approx(traffic.per_second * 3, rel=0.3)
    (error, _crash) = reading.metrics
    assert error.problem is None and error.link is not None
    assert error.link.startswith(f"{telemetry.prometheus_url}/graph?g0.expr=")
    assert "g0.range_input=3s" in error.link and "relay_ws_errors_total" in error.link
    assert error.series, "a series over the rollout for the chart"


async def test_the_gate_rolls_back_a_high_error_rate_and_passes_a_healthy_one(
    telemetry: Telemetry,
) -> None:
    for job, expected in (("failing", Verdict.ROLLBACK), ("healthy", Verdict.PASS)):
        reading = await source(telemetry, relay_metrics(job)).measure(window(job))
        verdict = judged(reading)
        assert verdict.verdict is expected, (job, verdict.summary)


@pytest.mark.parametrize(
    ("metrics", "problem"),
    [
        (relay_metrics("no-such-job"), "no data: the query matched no series"),
        (relay_metrics("idle"), "NaN"),
        (
            {**relay_metrics("healthy"), "crash_rate": {"query": "sum(increase(relay[$window]"}},
            "Prometheus refused the query",
        ),
        (
            {**relay_metrics("healthy"), "crash_rate": {"query": "up"}},
            "series, not one: aggregate them",
        ),
    ],
    ids=["empty series", "0/0", "bad PromQL", "several series"],
)
async def test_no_usable_number_is_inconclusive_with_the_reason(
    telemetry: Telemetry, metrics: dict[str, Any], problem: str
) -> None:
    reading = await source(telemetry, metrics).measure(window("healthy"))
    verdict = judged(reading, min_sample=0)
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.reason is GateReason.NO_DATA
    assert any(problem in (m.problem or "") for m in reading.metrics), reading.metrics


async def test_too_few_requests_is_inconclusive_never_pass(telemetry: Telemetry) -> None:
    reading = await source(telemetry, relay_metrics("quiet")).measure(window("quiet"))
    assert reading.figures.error_rate == 0
    verdict = judged(reading)
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.reason is GateReason.INSUFFICIENT_SAMPLE
    assert verdict.sample is not None and verdict.sample < 100


async def test_a_fractional_sample_just_under_the_minimum_never_passes(
    telemetry: Telemetry,
) -> None:
    """`increase()` extrapolates, so a sample is fractional: 99.6 requests are fewer than a
    `min_sample` of 100, not 100 (rounded to the nearest, the gate passed on them)."""
    metrics = relay_metrics("healthy")
    metrics["error_rate"] = {"query": "vector(0)", "sample": "vector(99.6)"}
    reading = await source(telemetry, metrics).measure(window("healthy"))
    assert reading.figures.sample == 99
    verdict = judged(reading, min_sample=100)
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert verdict.reason is GateReason.INSUFFICIENT_SAMPLE


async def test_a_zero_sample_never_passes_whatever_the_minimum(telemetry: Telemetry) -> None:
    """A canary no request reached, read with queries guarded by `or vector(0)`: an error
    rate of 0 on a sample of 0 tested nothing (it passed with `min_sample: 0`)."""
    metrics = relay_metrics("healthy")
    metrics["error_rate"] = {"query": "vector(0)", "sample": "vector(0.4)"}
    reading = await source(telemetry, metrics).measure(window("healthy"))
    assert (reading.figures.error_rate, reading.figures.sample) == (0, 0)
    verdict = judged(reading, min_sample=0)
    assert (verdict.verdict, verdict.reason) == (
        Verdict.INCONCLUSIVE,
        GateReason.INSUFFICIENT_SAMPLE,
    )


async def test_a_sample_matching_no_series_counted_nothing(telemetry: Telemetry) -> None:
    """A canary no request reached: its labelled request counters have no series yet, so the
    `sample` query matches none, beside an error rate guarded with `or vector(0)`. The sample
    was unknown, and with `min_sample: 0` the gate passed on nothing; it is 0, INCONCLUSIVE."""
    metrics = relay_metrics("healthy")
    nowhere = REQUESTS % ',job="no-such-job"'
    requests = f"sum(increase({nowhere}[$window]))"
    metrics["error_rate"] = {"query": f"(0 * {requests}) or vector(0)", "sample": requests}
    reading = await source(telemetry, metrics).measure(window("healthy"))
    assert (reading.figures.error_rate, reading.figures.sample) == (0, 0)
    (error, _crash) = reading.metrics
    assert error.problem == "sample: no data: the query matched no series"
    verdict = judged(reading, min_sample=0)
    assert (verdict.verdict, verdict.reason) == (
        Verdict.INCONCLUSIVE,
        GateReason.INSUFFICIENT_SAMPLE,
    )


async def test_a_rate_whose_sample_could_not_be_read_is_not_judged(telemetry: Telemetry) -> None:
    """The `sample` query fails (Prometheus refuses it) beside an error rate that reads 0: the
    sample is unknown, and with `min_sample: 0` the gate passed on a window that may have
    tested nothing. The rate is not judged without its count: INCONCLUSIVE, the reason named."""
    metrics = relay_metrics("healthy")
    metrics["error_rate"] = {"query": "vector(0)", "sample": "sum(rate(oops[$window]"}
    reading = await source(telemetry, metrics).measure(window("healthy"))
    assert (reading.figures.error_rate, reading.figures.sample) == (None, None)
    (error, _crash) = reading.metrics
    assert error.problem is not None and error.problem.startswith("sample: Prometheus refused")
    verdict = judged(reading, min_sample=0)
    assert (verdict.verdict, verdict.reason) == (Verdict.INCONCLUSIVE, GateReason.NO_DATA)


async def test_a_baseline_read_above_one_is_no_baseline(telemetry: Telemetry) -> None:
    """Rates are fractions: a baseline query giving percent (0.1% read as 0.1 x 100 = 10) set
    a limit no crash rate reaches. It is left missing with the reason: INCONCLUSIVE."""
    metrics = relay_metrics(
        "healthy", crash_rate={"query": "vector(0.05)", "baseline": "vector(0.1) * 100"}
    )
    reading = await source(telemetry, metrics).measure(window("healthy"))
    assert reading.baseline_crash is None
    (_error, crash) = reading.metrics
    assert crash.problem == "baseline: 10 is above 1 (100%): rates are fractions (0.01 = 1%)"
    verdict = judged(reading, min_sample=0)
    assert (verdict.verdict, verdict.reason) == (Verdict.INCONCLUSIVE, GateReason.NO_DATA)


async def test_an_unreachable_prometheus_is_inconclusive(telemetry: Telemetry) -> None:
    config = PrometheusMetrics.model_validate(relay_metrics("healthy"))
    dead = PrometheusSource(config, url="http://user:hunter2@127.0.0.1:9", timeout=2)
    reading = await dead.measure(window("healthy"))
    assert reading.figures.error_rate is None and reading.figures.crash_rate is None
    problems = " ".join(m.problem or "" for m in reading.metrics)
    assert "unreachable" in problems and "hunter2" not in problems


async def test_a_baseline_query_and_the_placeholders(telemetry: Telemetry) -> None:
    metrics = relay_metrics(
        "healthy",
        crash_rate={
            "query": 'count(up{job="$stage"}) * 0 + 0.002',
            "baseline": 'count(up{job="$stage"} offset $since_start) * 0 + 0.0005',
        },
    )
    reading = await source(telemetry, metrics).measure(window("healthy"))
    assert reading.baseline_crash == Decimal("0.0005")
    assert reading.figures.crash_rate == Decimal("0.002")
    (_error, crash) = reading.metrics
    assert crash.baseline == Decimal("0.0005") and crash.problem is None


def documented_relay_example() -> dict[str, Any]:
    """The relay track's `thresholds` and `metrics` of docs/metrics.md's ready example."""
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(    thresholds:.*?)```", text, re.S)
    assert block is not None
    section: dict[str, Any] = yaml.safe_load(block.group(1))
    return section


async def test_the_documented_relay_example_reads_the_release_s_traffic_alone(
    telemetry: Telemetry,
) -> None:
    """docs/metrics.md's ready example at the 5% canary (RELEASES: `canary`, `fleet`): the
    release's pods fail 3% of HTTP and WebSocket requests together, the stable fleet beside
    them serves 19 times the traffic at 0.2%. The example read every pod's counters: 0.34%,
    the canary diluted twenty times under the 1% threshold, a PASS. It reads the series of the
    release (`version="$tag"`): 3%, ROLLBACK. Its crash and baseline queries are PromQL
    Prometheus takes."""
    section = documented_relay_example()
    example = section["metrics"]
    crash = example.pop("crash_rate")
    # Ten seconds: several scrapes of each job in the window on a loaded machine too.
    reading = await source(telemetry, {**example, "crash_rate": {"query": "vector(0)"}}).measure(
        window("canary", 10)
    )
    as_written = await source(telemetry, {**example, "crash_rate": crash}).measure(
        window("canary", 10)
    )
    assert reading.figures.error_rate is not None
    assert float(reading.figures.error_rate) == pytest.approx(0.03, rel=0.1)
    verdict = judge(relay_track(section["thresholds"]["min_sample"]), reading)
    assert (verdict.verdict, verdict.reason) == (Verdict.ROLLBACK, GateReason.ERROR_RATE)
    (_error, crash_read) = as_written.metrics
    assert crash_read.problem is not None  # no kube-state-metrics here: no series, no refusal
    assert "refused" not in crash_read.problem, crash_read.problem
    assert section["thresholds"]["min_sample"] > 0


async def test_the_documented_relay_example_passes_a_canary_that_never_failed(
    telemetry: Telemetry,
) -> None:
    """The release's pods have served requests and failed none (RELEASES: `clean`): their
    errors counters, created at their first count as client libraries do, have no series yet.
    The example's error rate matched no series, INCONCLUSIVE on a healthy canary (extended,
    then held); the errors count as 0 beside requests that were counted: 0%, PASS. Without
    requests (`unused`) it stays no data."""
    section = documented_relay_example()
    example = {**section["metrics"], "crash_rate": {"query": "vector(0)"}}
    read = source(telemetry, example)
    reading = await read.measure(replace(window("canary", 10), tag=RELEASES["clean"].version))
    idle = await read.measure(replace(window("canary", 10), tag=RELEASES["unused"].version))
    verdict = judge(relay_track(section["thresholds"]["min_sample"]), reading)
    assert reading.figures.error_rate == 0, reading.metrics
    assert verdict.verdict is Verdict.PASS, verdict.summary
    assert idle.figures.error_rate is None and idle.figures.sample == 0


# -- answers Prometheus warns about ------------------------------------------------------------


async def test_a_partial_answer_is_no_figure_never_a_pass() -> None:
    """A Prometheus whose remote-read store is down answers `success` with a number from the
    data it could read and a warning (a Thanos store down does the same): the canary's failing
    series may be the ones left out. It passed on that number; it is no figure, INCONCLUSIVE."""
    if prometheus_binary() is None:
        missing("the prometheus binary is missing (apt-get install prometheus)")
    async with RelayExporter(TRAFFIC["healthy"]) as exporter:
        jobs = {"healthy": exporter.target}
        async with PrometheusProcess(jobs, remote_read=["http://127.0.0.1:9/read"]) as prometheus:
            await prometheus.wait_for_scrapes(4)
            reading = await source(Telemetry(prometheus.url), relay_metrics("healthy")).measure(
                window("healthy")
            )
    assert reading.figures.error_rate is None and reading.figures.sample is None
    (error, _crash) = reading.metrics
    assert error.problem is not None
    assert "value: Prometheus warned that its answer may be partial or wrong: remote_read" in (
        error.problem
    )
    verdict = judged(reading)
    assert (verdict.verdict, verdict.reason) == (Verdict.INCONCLUSIVE, GateReason.NO_DATA)


# -- Prometheus's clock off the bot's --------------------------------------------------------


async def test_a_prometheus_clock_behind_the_bot_s_gives_no_figure_never_a_pass(
    telemetry: Telemetry,
) -> None:
    """Prometheus's clock 8s behind the bot's: the window, read up to its end by the bot's
    clock, lacks its last 8s (not scraped yet by Prometheus's), and a canary failing in them
    passed on the rest. The clocks are compared first: INCONCLUSIVE, the clocks named. The
    same window from the same Prometheus on the bot's clock passes: it is the clock."""
    healthy = relay_metrics("healthy")
    async with SkewedClock(telemetry.prometheus_url, -timedelta(seconds=8)) as behind:
        reading = await source(Telemetry(behind.url), healthy).measure(window("healthy", 60))
    assert reading.figures.error_rate is None and reading.figures.sample is None
    assert reading.clock_offset == -8
    (error, _crash) = reading.metrics
    assert error.problem == (
        "Prometheus's clock is 8s behind the bot's, more than 5s apart: a window's last 8s are "
        "not in its figures yet, so none is read; sync both hosts' clocks with NTP"
    )
    verdict = judged(reading)
    assert (verdict.verdict, verdict.reason) == (Verdict.INCONCLUSIVE, GateReason.CLOCK_SKEW)
    in_step = await source(telemetry, healthy).measure(window("healthy", 60))
    assert judged(in_step).verdict is Verdict.PASS


async def test_a_canary_failing_in_its_window_never_passes_on_a_prometheus_ahead(
    scraping: Scraping, telemetry: Telemetry
) -> None:
    """Prometheus's clock 8s ahead of the bot's answers for the window with the figures of 8s
    before it: the canary failed from the window's start (3% errors), Prometheus gave the
    healthy figures before it, and the gate passed. The clocks are compared first:
    INCONCLUSIVE. A Prometheus on the bot's clock reads the failure: ROLLBACK."""
    await scraping.prometheus.wait_for_scrapes(9)  # 8s of healthy figures before the failure
    await scraping.set_traffic("ahead", TRAFFIC["failing"])
    await asyncio.sleep(4)  # three 1s scrapes of the failure, and one more
    failing = window("failing", 3)
    async with SkewedClock(telemetry.prometheus_url, timedelta(seconds=8)) as ahead:
        reading = await source(Telemetry(ahead.url), relay_metrics("ahead")).measure(failing)
    assert reading.clock_offset == 8
    verdict = judged(reading)
    assert (verdict.verdict, verdict.reason) == (Verdict.INCONCLUSIVE, GateReason.CLOCK_SKEW)
    assert verdict.summary.startswith("the metrics source's clock is 8s ahead of")
    in_step = await source(telemetry, relay_metrics("ahead")).measure(failing)
    assert judged(in_step).verdict is Verdict.ROLLBACK


# -- the whole chain: Prometheus -> gate -> GitHub -> Slack ------------------------------------


def prometheus_plan(workdir: Path, job: str, **metrics: Any) -> str:
    plan = yaml.safe_load(fast_plan(workdir / "figures.yml", window="3s", extension="3s"))
    plan["tracks"]["relay"]["thresholds"]["min_sample"] = 1000
    plan["tracks"]["relay"]["metrics"] = relay_metrics(job, **metrics)
    return yaml.safe_dump(plan, sort_keys=False)


@asynccontextmanager
async def dispatched_on_prometheus(
    telemetry: Telemetry, workdir: Path, database_url: str, job: str, **metrics: Any
) -> AsyncIterator[Sandbox]:
    """A sandbox whose relay gates read Prometheus's `job` (`metrics`: other queries for some
    of them) at `telemetry`'s URL: v1.4.2 started and dispatched."""
    async with Sandbox(
        workdir=workdir,
        database_url=database_url,
        plan_yaml=prometheus_plan(workdir, job, **metrics),
        extra_env={"PROMETHEUS_URL": telemetry.prometheus_url},
        skip_windows=False,  # Prometheus scrapes in real time
    ) as box:
        write_figures(box.figures, "desktop", {"internal": {"crash_rate": "0.001"}})
        await dispatched(box)
        yield box


async def test_a_high_error_rate_rolls_back_through_the_whole_chain(
    telemetry: Telemetry, tmp_path: Path, sqlite_database_url: str
) -> None:
    async with dispatched_on_prometheus(telemetry, tmp_path, sqlite_database_url, "failing") as box:
        ended = await box.wait_until(
            lambda r: r.track("relay").state is TrackState.ROLLED_BACK, timeout=30
        )
        assert ended.track("relay").stage("canary").state is StageState.FAILED_GATE
        assert reviews(box, "relay") == RELAY_ROLLED_BACK_AT_CANARY
        card = await box.wait_for_thread("5% canary gate: ROLLBACK*. Error rate")
        assert re.search(r"Error rate [23](\.\d+)?% is [23]\.\d\dx its 1% limit", card), card
        assert "Open the query in Prometheus" in card
        assert re.search(r"\nsample \d,\d{3} · window 3s ending", card), card
        await box.slack.wait_for(lambda: bool(box.slack.calls_to("files.completeUploadExternal")))
        (reserve,) = box.slack.calls_to("files.getUploadURLExternal")[:1]
        assert reserve.args["filename"] == "error-rate.png"
        uploaded = [f for f in box.slack.files.values() if f.completed]
        assert {f.filename for f in uploaded} == {"error-rate.png", "crash-rate.png"}
        for upload in uploaded:
            assert upload.data is not None and upload.data.startswith(PNG_SIGNATURE)
            assert upload.length == len(upload.data)
        assert any("[file: Error rate" in reply for reply in box.thread())


async def test_a_high_error_rate_rolls_back_though_the_crash_rate_query_reads_nothing(
    telemetry: Telemetry, tmp_path: Path, sqlite_database_url: str
) -> None:
    """SPEC: roll back at once when either rule holds. The crash rate's query matches no
    series, the error rate is 3%: the canary rolls back instead of waiting for a person."""
    async with dispatched_on_prometheus(
        telemetry,
        tmp_path,
        sqlite_database_url,
        "failing",
        crash_rate={"query": "sum(relay_crashes_nobody_exports)"},
    ) as box:
        ended = await box.wait_until(
            lambda r: r.track("relay").state is TrackState.ROLLED_BACK, timeout=30
        )
        canary = ended.track("relay").stage("canary")
        assert canary.state is StageState.FAILED_GATE and canary.extensions == 0
        assert canary.verdict is not None and canary.verdict.current_crash is None
        assert reviews(box, "relay") == RELAY_ROLLED_BACK_AT_CANARY
        card = await box.wait_for_thread("5% canary gate: ROLLBACK*. Error rate")
        assert "no series" in card, card


async def test_a_held_canary_failing_since_its_window_rolls_back_on_re_evaluate(
    scraping: Scraping, telemetry: Telemetry, tmp_path: Path, sqlite_database_url: str
) -> None:
    """The canary passed its window and holds for a Promote; its error rate climbs after. A
    Re-evaluate read the closed window again and said PASS on figures older than the failure
    (a `promote: auto` stage was promoted on them); it reads up to now and rolls back."""
    async with dispatched_on_prometheus(telemetry, tmp_path, sqlite_database_url, "held") as box:
        held = await box.wait_until(
            lambda r: r.track("relay").stage("canary").state is StageState.HOLDING, timeout=30
        )
        canary = held.track("relay").stage("canary")
        assert canary.verdict is not None and canary.verdict.passed
        assert canary.window_started_at is not None
        await scraping.set_traffic("held", TRAFFIC["failing"])
        since_deployed = source(telemetry, relay_metrics("held"))

        async def failing_so_far() -> bool:
            assert canary.window_started_at is not None
            now = datetime.now(UTC)
            reading = await since_deployed.measure(
                QueryWindow("v1.4.2", "relay", "canary", canary.window_started_at, now, now)
            )
            return (reading.figures.error_rate or 0) > Decimal("0.015")

        async with asyncio.timeout(30):  # Prometheus scrapes every second
            while True:
                if await failing_so_far():
                    break
                await asyncio.sleep(0.5)
        await box.click("reevaluate", value=await value_of(box, "reevaluate", "relay"))
        ended = await box.wait_until(
            lambda r: r.track("relay").state is TrackState.ROLLED_BACK, timeout=30
        )
    assert ended.track("relay").stage("canary").state is StageState.FAILED_GATE
    assert reviews(box, "relay") == RELAY_ROLLED_BACK_AT_CANARY


async def test_too_few_requests_extends_the_window_and_never_passes(
    telemetry: Telemetry, tmp_path: Path, sqlite_database_url: str
) -> None:
    async with dispatched_on_prometheus(telemetry, tmp_path, sqlite_database_url, "quiet") as box:
        extended = await box.wait_for_thread("extended once", timeout=30)
        assert "INCONCLUSIVE" in extended
        held = await box.wait_until(
            lambda r: r.track("relay").stage("canary").state is StageState.HOLDING, timeout=30
        )
        canary = held.track("relay").stage("canary")
        assert canary.extensions == 1
        assert canary.verdict is not None and canary.verdict.verdict is Verdict.INCONCLUSIVE
        assert reviews(box, "relay") == [("relay-canary-5", "approved")]

        def cards() -> list[str]:
            return [reply for reply in box.thread() if "gate: INCONCLUSIVE" in reply]

        await box.slack.wait_for(lambda: len(cards()) == 2)  # the card follows the hold
        assert all("Too little data: a sample of" in card for card in cards())
        assert not any("canary gate: PASS" in reply for reply in box.thread())


async def test_a_prometheus_clock_ahead_holds_the_canary_for_the_clocks_never_a_pass(
    telemetry: Telemetry, tmp_path: Path, sqlite_database_url: str
) -> None:
    """Prometheus's clock 8s ahead, on healthy figures that would pass: the thread says the
    clocks differ and to sync them (NTP), the window is extended once, then the canary holds
    for a person, told to sync the clocks and Re-evaluate. Never a PASS."""
    async with SkewedClock(telemetry.prometheus_url, timedelta(seconds=8)) as ahead:
        skewed = Telemetry(ahead.url)
        async with dispatched_on_prometheus(
            skewed, tmp_path, sqlite_database_url, "healthy"
        ) as box:
            extended = await box.wait_for_thread("extended once", timeout=30)
            assert "gate INCONCLUSIVE (the metrics source's clock is 8s ahead of the bot's" in (
                extended
            )
            assert "sync both hosts' clocks with NTP" in extended
            told = await box.wait_for_thread("sync the clocks, then Re-evaluate", timeout=30)
            assert "Holding for a human" in told
            held = await box.wait_until(
                lambda r: r.track("relay").stage("canary").state is StageState.HOLDING
            )
            verdict = held.track("relay").stage("canary").verdict
            assert verdict is not None and verdict.reason is GateReason.CLOCK_SKEW
            card = await box.wait_for_thread("No verdict: the metrics source's clock is 8s")
            assert "Prometheus's clock is 8s ahead of the bot's" in card  # the metric's row
            assert reviews(box, "relay") == [("relay-canary-5", "approved")]
            assert not any("canary gate: PASS" in reply for reply in box.thread())


def test_the_metrics_command_prints_what_the_gate_would_read(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    plan = yaml.safe_load(prometheus_plan(tmp_path, "failing"))
    plan["tracks"]["relay"]["stages"][0]["observe"]["window"] = "5s"
    plan_file = tmp_path / "plan.yml"
    plan_file.write_text(yaml.safe_dump(plan), encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "secret",
        "GITHUB_TOKEN": "ghp_test",
        "GITHUB_REPOSITORY": "scriptum/scriptum",
        "RELEASE_CHANNELS": "C0RELEASES",
        "ROLLOUT_APPROVERS": "U0MANAGER",
        "ROLLOUT_PLAN": str(plan_file),
        "PROMETHEUS_URL": telemetry.prometheus_url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/bot.db",
    }

    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "metrics", "canary", "--tag", "v1.4.2"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "5% canary gate: ROLLBACK" in done.stdout
    assert "error rate" in done.stdout and "limit 1% (threshold)" in done.stdout
    assert f"query: {telemetry.prometheus_url}/graph?g0.expr=" in done.stdout
    code, _, err = run_here(["metrics", "quarter", "--tag", "v1.4.2"], env=env, cwd=tmp_path)
    assert code == 2 and "canary, half, full" in err
