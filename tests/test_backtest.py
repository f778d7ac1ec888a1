"""`rollout-bot backtest` against a real Prometheus holding a known past week of the relay
(`sandbox/relay_history.py`, backfilled with promtool): the exact counts per verdict and
reason, the windows listed with their times and figures, and every bad input refused with
one line and exit 2 (an unreachable Prometheus: exit 1).

Without the prometheus or promtool binaries the module is skipped, or fails when
REQUIRE_SERVICES=1 (CI installs them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from services import missing

from bot.adapters.metrics.prometheus import PrometheusSource
from bot.cli import backtest
from bot.domain.metrics import QueryWindow
from bot.domain.plan import PrometheusMetrics
from sandbox.prometheus_exporter import PrometheusProcess, prometheus_binary, promtool_binary
from sandbox.relay_history import RELAY_METRICS, known_week

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The known week starts at midnight UTC nine days ago: in the past, within any retention.
WEEK_START = datetime.combine(
    datetime.now(UTC).date() - timedelta(days=9), datetime.min.time(), UTC
)
DAY = WEEK_START.date()
NOW = WEEK_START + timedelta(days=8)


@dataclass(frozen=True)
class History:
    prometheus_url: str
    plan: Path


def at(days: int, hours: int, minutes: int = 0) -> str:
    """A time of the known week as the table shows it: `2026-11-26 14:00`."""
    moment = WEEK_START + timedelta(days=days, hours=hours, minutes=minutes)
    return f"{moment:%Y-%m-%d %H:%M}"


def day(days: int) -> str:
    return (DAY + timedelta(days=days)).isoformat()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def history(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[History]:
    """A real Prometheus holding the known week, and a plan whose relay reads it."""
    if prometheus_binary() is None or promtool_binary() is None:
        missing("the prometheus or promtool binary is missing (apt-get install prometheus)")
    plan = yaml.safe_load(
        resources.files("bot.domain").joinpath("default_plan.yml").read_text(encoding="utf-8")
    )
    plan["tracks"]["relay"]["thresholds"]["min_sample"] = 1000
    plan["tracks"]["relay"]["metrics"] = RELAY_METRICS
    path = tmp_path_factory.mktemp("backtest") / "plan.yml"
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    prometheus = PrometheusProcess({}, history=known_week(WEEK_START))
    await prometheus.start()
    try:
        yield History(prometheus.url, path)
    finally:
        await prometheus.stop()


@pytest.fixture
def run(
    history: History, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    """Run `rollout-bot backtest ARGS` (in a thread: it runs its own event loop) with the
    known week's plan and Prometheus; returns the exit status, stdout and stderr."""
    monkeypatch.setenv("PROMETHEUS_URL", history.prometheus_url)

    async def invoke(*args: str, plan: bool = True, now: datetime = NOW) -> tuple[int, str, str]:
        given = ["--plan", str(history.plan), *args] if plan else list(args)
        status = await asyncio.to_thread(backtest.main, given, clock=lambda: now)
        out, err = capsys.readouterr()
        return status, out, err

    return invoke


async def test_the_canary_windows_of_the_week(history: History) -> None:
    """The command as an operator runs it (its own process: nothing else on stderr)."""
    args = ["--plan", str(history.plan), "--from", day(0), "--to", day(6), "--stage", "canary"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "backtest",
        *args,
        env={**os.environ, "PROMETHEUS_URL": history.prometheus_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    out, err = stdout.decode(), stderr.decode()
    assert (process.returncode, err) == (0, "")
    no_data = (
        "INCONCLUSIVE No data for the error rate: value: no data: the query matched no "
        "series; sample: no data: the query matched no series."
    )
    assert out.splitlines() == [
        f"Backtest from {at(0, 0)} to {at(7, 0)} UTC (Prometheus {history.prometheus_url})",
        "",
        "Hosted relay, 5% canary (relay/canary): 336 windows of 30m",
        "  PASS             330   98.2%",
        "  ROLLBACK           2    0.6%   error rate 1, crash rate 1",
        "  INCONCLUSIVE       4    1.2%   no data 3, not enough data 1",
        "  not PASS:",
        f"    {at(1, 14)}-14:30  ROLLBACK     error rate 0.05 exceeds the threshold 0.01",
        f"    {at(2, 9)}-09:30  ROLLBACK     crash rate 0.005 exceeds 2x baseline 0.001 "
        "(limit 0.002); sample 30000",
        # An INCONCLUSIVE window is read again over the plan's inconclusive_extension (15m),
        # as the live gate does: the quiet hour's second window then passes on the traffic
        # after it, and so does the gap's last one.
        f"    {at(3, 3)}-03:45  INCONCLUSIVE sample 450 is below the minimum of 1000",
        f"    {at(4, 10)}-10:45  {no_data}",
        f"    {at(4, 10, 30)}-11:15  {no_data}",
        f"    {at(4, 11)}-11:45  {no_data}",
    ]


async def test_every_stage_as_json_with_a_bounded_list(run: Callable[..., Any]) -> None:
    status, out, err = await run("--from", day(0), "--to", day(6), "--json", "--limit", "3")
    assert (status, err) == (0, "")
    report = json.loads(out)
    assert report["skipped"] == [{"track": "desktop", "source": "manual"}]
    canary, half = report["stages"]
    assert (canary["stage"], canary["window"], canary["windows"]) == ("canary", "30m", 336)
    assert canary["verdicts"] == {"PASS": 330, "ROLLBACK": 2, "INCONCLUSIVE": 4}
    assert canary["reasons"] == {
        "ROLLBACK": {"error_rate": 1, "crash_rate": 1},
        "INCONCLUSIVE": {"no_data": 3, "insufficient_sample": 1},
    }
    assert [(w["start"], w["verdict"], w["reason"]) for w in canary["not_passed"]] == [
        ((WEEK_START + timedelta(days=1, hours=14)).isoformat(), "ROLLBACK", "error_rate"),
        ((WEEK_START + timedelta(days=2, hours=9)).isoformat(), "ROLLBACK", "crash_rate"),
        (
            (WEEK_START + timedelta(days=3, hours=3)).isoformat(),
            "INCONCLUSIVE",
            "insufficient_sample",
        ),
    ]
    assert canary["not_passed"][0]["current_error"] == "0.05"
    extended = canary["not_passed"][2]  # read again over the 15m extension
    assert (extended["end"], extended["sample"]) == (
        (WEEK_START + timedelta(days=3, hours=3, minutes=45)).isoformat(),
        450,
    )
    assert canary["more"] == 3
    # The 50% stage's own 60m windows: the spikes dilute into an hour, and still fail.
    assert (half["stage"], half["window"], half["windows"]) == ("half", "1h", 168)
    assert half["verdicts"] == {"PASS": 165, "ROLLBACK": 2, "INCONCLUSIVE": 1}
    assert half["reasons"]["INCONCLUSIVE"] == {"no_data": 1}
    assert [(w["end"], w["current_error"]) for w in half["not_passed"][:1]] == [
        ((WEEK_START + timedelta(days=1, hours=15)).isoformat(), "0.026")
    ]
    assert half["more"] == 0


async def test_a_limit_of_zero_lists_no_window(run: Callable[..., Any]) -> None:
    status, out, _ = await run("--from", day(0), "--to", day(6), "--stage", "half", "--limit", "0")
    assert status == 0
    assert out.splitlines()[-2:] == ["  not PASS:", "    … and 3 more"]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--from", "2026-13-01", "--to", "2026-11-30"], "--from '2026-13-01' is not a date"),
        (["--from", day(0), "--to", "9999-12-31"], "--to '9999-12-31' is not a date"),
        (["--from", day(3), "--to", day(1)], "the range ends"),
        (["--from", day(12), "--to", day(14)], "the range starts in the future"),
        (["--from", day(0), "--to", day(1), "--stage", "nope"], "no stage 'nope' in the plan"),
        (["--from", day(0), "--to", day(1), "--track", "web"], "no track 'web' in the plan"),
        (
            ["--from", day(0), "--to", day(1), "--track", "desktop"],
            "only Prometheus data can be replayed, and the plan reads the desktop track from "
            "manual",
        ),
        (
            ["--from", day(0), "--to", day(1), "--stage", "full"],
            "Hosted relay 100% has no observation window, so no gate",
        ),
        (
            ["--from", f"{day(0)}T00:00", "--to", f"{day(0)}T00:20", "--stage", "canary"],
            "no whole 30m window",
        ),
        (["--from", "2020-01-01", "--to", day(6)], "more than 10,000"),
        (["--from", day(-30), "--to", day(-29)], "no data between"),
        (["--from", day(0)], "the following arguments are required: --to"),
        (["--from", day(0), "--to", day(1), "--limit", "-1"], "argument --limit"),
    ],
    ids=[
        "bad date",
        "the calendar's edge",
        "backwards",
        "future",
        "unknown stage",
        "unknown track",
        "no Prometheus source",
        "no window",
        "shorter than a window",
        "too many windows",
        "no data",
        "missing --to",
        "bad limit",
    ],
)
async def test_bad_input_is_one_line_and_exit_2(
    run: Callable[..., Any], args: list[str], line: str
) -> None:
    status, out, err = await run(*args, now=datetime.now(UTC))
    assert (status, out) == (2, "")
    assert err.startswith("rollout-bot backtest: ") and line in err
    assert err.count("\n") == 1, err


async def test_an_unreadable_plan_is_exit_2(run: Callable[..., Any], tmp_path: Path) -> None:
    status, out, err = await run(
        "--plan", str(tmp_path / "missing.yml"), "--from", day(0), "--to", day(1), plan=False
    )
    assert (status, out) == (2, "")
    assert err == (
        f"rollout-bot backtest: cannot read the rollout plan {tmp_path / 'missing.yml'}: "
        "No such file or directory\n"
    )


async def test_without_prometheus_url_it_is_exit_2(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_URL")
    status, out, err = await run("--from", day(0), "--to", day(1))
    assert (status, out, err) == (2, "", "rollout-bot backtest: PROMETHEUS_URL: missing\n")


async def test_an_unreachable_prometheus_is_exit_1(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("PROMETHEUS_URL", f"http://reader:s3cret@127.0.0.1:{port}")
    status, out, err = await run("--from", day(0), "--to", day(1))
    assert (status, out) == (1, "")
    assert err == (
        f"rollout-bot backtest: Prometheus at http://127.0.0.1:{port} unreachable "
        "(ClientConnectorError)\n"
    )


async def test_a_prometheus_that_never_answers_ends_by_gate_metrics_timeout(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backtest reads as the gates do, within GATE_METRICS_TIMEOUT: a Prometheus that takes
    the connection and never answers is given that long, and the error names it (it was given
    the default 10 s, named as the setting it did not read)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel takes the connection; nothing ever answers it
        port = silent.getsockname()[1]
        monkeypatch.setenv("PROMETHEUS_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("GATE_METRICS_TIMEOUT", "0.5")
        status, out, err = await run("--from", day(0), "--to", day(1))
    assert (status, out) == (1, "")
    assert err == (
        f"rollout-bot backtest: Prometheus at http://127.0.0.1:{port} did not answer within "
        "0.5 s (GATE_METRICS_TIMEOUT, last: no answer)\n"
    )


async def test_the_prometheus_password_is_scrubbed_in_both_its_forms(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A generated password often holds `@` or `:`, which the URL carries percent-encoded: the
    backtest's log scrubber knows it written both ways, as the bot's does."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("PROMETHEUS_URL", f"http://reader:p%40ss%3Aw0rd@127.0.0.1:{port}")
    status, _, _ = await run("--from", day(0), "--to", day(1))
    assert status == 1

    logging.getLogger("bot.adapters.metrics").error("reading p%40ss%3Aw0rd, meant p@ss:w0rd")
    err = capsys.readouterr().err
    assert "reading" in err and "p%40ss" not in err and "p@ss" not in err


async def test_a_range_reaching_into_the_future_ends_now(run: Callable[..., Any]) -> None:
    now = WEEK_START + timedelta(days=7, hours=1)
    status, out, _ = await run(
        "--from", day(6), "--to", day(30), "--stage", "canary", "--json", now=now
    )
    assert status == 0
    report = json.loads(out)
    assert report["to"] == now.isoformat()
    # 25 hours: the last day of the week, then an hour after its last sample (no data).
    assert report["stages"][0]["verdicts"] == {"PASS": 48, "ROLLBACK": 0, "INCONCLUSIVE": 2}


def crash_query_naming(history: History, tmp_path: Path, matcher: str) -> Path:
    """The known week's plan, its relay crash query selecting pods by `matcher` instead of
    `container="relay"`, written to a file of its own."""
    plan = yaml.safe_load(history.plan.read_text(encoding="utf-8"))
    relay = plan["tracks"]["relay"]["metrics"]
    relay["crash_rate"]["query"] = relay["crash_rate"]["query"].replace(
        'container="relay"', matcher
    )
    path = tmp_path / "plan.yml"
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    return path


async def test_queries_naming_the_tag_need_one(
    run: Callable[..., Any], history: History, tmp_path: Path
) -> None:
    path = crash_query_naming(history, tmp_path, 'container="relay",version="$tag"')
    status, out, err = await run("--plan", str(path), "--from", day(0), "--to", day(1), plan=False)
    assert (status, out) == (2, "")
    assert err == (
        "rollout-bot backtest: the relay track's queries name $tag: "
        "give the release's tag with --tag\n"
    )


async def test_the_tag_is_read_as_slash_commands_read_it(
    run: Callable[..., Any], history: History, tmp_path: Path
) -> None:
    """`--tag` is the queries' `$tag`: one no release can have reached Prometheus as a query
    of its own making (a `1` for every window's crash rate), where `metrics` refuses it."""
    path = crash_query_naming(history, tmp_path, 'container="relay",version="$tag"')
    window = ["--plan", str(path), "--from", day(2), "--to", day(2), "--stage", "canary"]

    status, out, err = await run(*window, "--tag", 'v1"} or vector(1) or {x="', plan=False)

    assert (status, out) == (2, ""), err
    assert err.startswith("rollout-bot backtest: argument --tag: ") and err.count("\n") == 1
    assert '" (U+0022 QUOTATION MARK) is not allowed in a tag' in err
    _, _, err = await run(*window, "--tag", "`v1.4.2`", plan=False)  # no pods of that version
    assert "no data between" in err, err


async def test_service_names_what_the_queries_call_the_service(
    run: Callable[..., Any], history: History, tmp_path: Path
) -> None:
    """A bot releasing several services fills `$service` with the one released: a replay of
    one service's queries names it, as the live gate does."""
    path = crash_query_naming(history, tmp_path, 'container="$service"')
    window = ["--plan", str(path), "--from", day(2), "--to", day(2), "--stage", "canary"]

    def verdicts(out: str) -> dict[str, int]:
        return dict(json.loads(out)["stages"][0]["verdicts"])

    named = await run(*window, "--service", "relay", "--json", plan=False)
    unnamed = await run(*window, plan=False)  # `$service` is `default`: no such pods

    assert named[0] == 0, named[2]
    assert verdicts(named[1]) == {"PASS": 47, "ROLLBACK": 1, "INCONCLUSIVE": 0}
    assert unnamed[:2] == (2, "") and "no data between" in unnamed[2]
    refused = await run(*window, "--service", "Relay API", plan=False)
    assert refused[0] == 2 and "'Relay API' is not a service's name" in refused[2]


async def test_the_replay_reads_no_chart_series(history: History) -> None:
    """The backtest's source leaves out the chart's range query; a live one still reads it."""
    metrics = PrometheusMetrics.model_validate(RELAY_METRICS)
    start = WEEK_START + timedelta(days=1)
    window = QueryWindow(
        tag="v1",
        track="relay",
        stage="canary",
        start=start,
        end=start + timedelta(minutes=30),
        rollout_start=start,
    )
    for charts in (False, True):
        source = PrometheusSource(metrics, url=history.prometheus_url, charts=charts)
        reading = await source.measure(window)
        assert reading.figures.sample == 30000
        assert all(bool(metric.series) is charts for metric in reading.metrics), charts


async def test_a_window_within_its_tracks_settle_is_not_replayed_yet(
    run: Callable[..., Any], history: History, tmp_path: Path
) -> None:
    """A track with `metrics.settle` is judged live that long after its window's end, when
    the late figures are in: a replay up to now does not judge a window whose settle has not
    passed (its last scrapes, or a remote-write store's, may not be in yet), nor extends an
    INCONCLUSIVE one into it."""
    plan = yaml.safe_load(history.plan.read_text(encoding="utf-8"))
    plan["tracks"]["relay"]["metrics"]["settle"] = "15m"
    path = tmp_path / "plan.yml"
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    now = WEEK_START + timedelta(days=6, hours=12, minutes=10)
    args = ["--plan", str(path), "--to", day(7), "--stage", "canary", "--json"]

    status, out, err = await run(*args, "--from", day(6), plan=False, now=now)

    assert status == 0, err
    stage = json.loads(out)["stages"][0]
    # 11:30-12:00 ended 10 minutes ago, within the 15m settle: the live gate has not read it.
    assert stage["windows"] == 23
    # The quiet hour's INCONCLUSIVE 03:00-03:30: its 15m extension would end at 03:45, 5
    # minutes before now and within the settle, so the first verdict stands, unextended.
    quiet = WEEK_START + timedelta(days=3, hours=3, minutes=50)
    status, out, err = await run(*args, "--from", day(3), plan=False, now=quiet)
    assert status == 0, err
    [held] = json.loads(out)["stages"][0]["not_passed"]
    assert (held["verdict"], held["summary"]) == (
        "INCONCLUSIVE",
        "sample 300 is below the minimum of 1000",
    )
    assert held["end"] == (quiet - timedelta(minutes=20)).isoformat()
    status, out, err = await run(*args, "--from", f"{day(6)}T11:30Z", plan=False, now=now)
    assert (status, out) == (2, "")
    assert err == (
        "rollout-bot backtest: no whole 30m window of Hosted relay 5% canary fits between "
        f"{at(6, 11, 30)} UTC and {at(6, 11, 55)} UTC (its figures settle 15m)\n"
    )
