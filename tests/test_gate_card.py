"""The gate card as a release engineer reads it, and the notifier posting it with its charts
to the thread through the real Slack client and the Slack test server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from cleared import cleared_rollout
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.chart_worker import ChartFailed, ChartWorker
from bot.adapters.charts import PNG_SIGNATURE
from bot.adapters.slack.gate_views import gate_card, gate_card_text
from bot.adapters.slack.limits import SECTION_TEXT
from bot.adapters.slack.messages import slack_time
from bot.adapters.slack.notifier import SlackNotifier
from bot.cli.metrics import plain_text
from bot.domain.gate import GateVerdict, evaluate_desktop, evaluate_relay
from bot.domain.gate_report import metric_rows, times
from bot.domain.metrics import Figures, MetricReading, Reading
from bot.domain.rollout import (
    Rollout,
    Stage,
    StageState,
)
from bot.plan_file import load_plan
from sandbox.render import render_blocks
from sandbox.slack import SlackTestServer

D = Decimal
R = TypeVar("R")
NOW = datetime(2025, 6, 2, 9, 30, tzinfo=UTC)
WINDOW = (NOW - timedelta(minutes=30), NOW)
BOT_TOKEN = "xoxb-gate-card-test"
CHANNEL = "C0RELEASES"
PLAN = load_plan(None)


def relay(error: str, crash: str = "0.001", baseline: str = "0.001", **kw: object) -> GateVerdict:
    return evaluate_relay(
        baseline_crash=D(baseline),
        current_crash=D(crash),
        current_error=D(error),
        **kw,  # type: ignore[arg-type]
    )


def live_reading(verdict: GateVerdict, **error_detail: object) -> Reading:
    error = MetricReading(
        name="error_rate",
        value=verdict.current_error,
        sample=4512,
        link="http://prometheus:9090/graph?g0.expr=errors",
        series=((NOW - timedelta(minutes=40), 0.002), (NOW, 0.03)),
    )
    crash = MetricReading(
        name="crash_rate",
        value=verdict.current_crash,
        sample=4512,
        baseline=verdict.baseline_crash,
        link="http://prometheus:9090/graph?g0.expr=crashes",
        series=((NOW - timedelta(minutes=40), 0.001), (NOW, 0.001)),
    )
    return Reading(
        baseline_crash=verdict.baseline_crash,
        figures=Figures(crash_rate=verdict.current_crash, error_rate=verdict.current_error),
        source="prometheus",
        metrics=(replace(error, **error_detail), crash),  # type: ignore[arg-type]
        window=WINDOW,
    )


def canary_card(
    verdict: GateVerdict, reading: Reading | None = None, chart_note: str | None = None
) -> list[dict[str, Any]]:
    """The gate card of the relay's 5% canary over WINDOW."""
    return gate_card(
        verdict=verdict,
        reading=reading,
        stage_label="5% canary",
        track_label="Hosted relay",
        window=WINDOW,
        chart_note=chart_note,
    )


def shown(verdict: GateVerdict, reading: Reading | None = None, **kw: str | None) -> str:
    return render_blocks(canary_card(verdict, reading, kw.get("chart_note")))


@pytest.mark.parametrize(
    ("verdict", "first_line"),
    [
        (
            relay("0.002", sample=4512),
            ":large_green_circle: *5% canary gate: PASS*. Every metric is within its limit "
            "on a sample of 4,512.",
        ),
        (
            relay("0.0301"),
            ":red_circle: *5% canary gate: ROLLBACK*. Error rate 3.01% is 3.01x its 1% limit. "
            "Rolling back.",
        ),
        (
            relay("0.001", crash="0.005"),
            ":red_circle: *5% canary gate: ROLLBACK*. Crash rate 0.5% is 2.50x its limit of "
            "0.2% (2x baseline 0.1%). Rolling back.",
        ),
        (
            relay("0.001", crash="0.0001", baseline="0"),
            ":red_circle: *5% canary gate: ROLLBACK*. Crashes (0.01%) against a zero baseline. "
            "Rolling back.",
        ),
        (
            evaluate_desktop(baseline_crash=D("0.001"), current_crash=D("0.003")),
            ":red_circle: *5% canary gate: KILL_SWITCH*. Crash rate 0.3% is 1.50x its limit of "
            "0.2% (2x baseline 0.1%). Kill-switch tripped.",
        ),
        (
            relay("0", sample=12, min_sample=1000),
            ":large_yellow_circle: *5% canary gate: INCONCLUSIVE*. Too little data: a sample of "
            "12, the gate needs 1,000.",
        ),
        (
            relay("0", min_sample=1000),
            ":large_yellow_circle: *5% canary gate: INCONCLUSIVE*. Too little data: an unknown "
            "sample, the gate needs 1,000.",
        ),
        (
            relay("0", sample=0),
            ":large_yellow_circle: *5% canary gate: INCONCLUSIVE*. No data: nothing was observed "
            "in the window (a sample of 0).",
        ),
    ],
    ids=[
        "pass",
        "error",
        "crash",
        "zero baseline",
        "kill switch",
        "small sample",
        "no sample",
        "zero sample",
    ],
)
def test_the_first_line_says_the_verdict_and_what_decided_it(
    verdict: GateVerdict, first_line: str
) -> None:
    assert shown(verdict).splitlines()[0] == first_line
    assert gate_card_text(verdict, "5% canary") == first_line.replace("*", "")


def test_each_metric_shows_value_baseline_limit_ratio_sample_window_and_query() -> None:
    verdict = relay("0.0301", sample=4512)
    card = shown(verdict, live_reading(verdict))
    lines = card.splitlines()
    assert lines[1:5] == [
        "*Error rate* (Hosted relay): *3.01%*, *3.01x* its limit of 1% (threshold)",
        f"sample 4,512 · window 30m ending {slack_time(NOW)}",
        "<http://prometheus:9090/graph?g0.expr=errors|Open the query in Prometheus>",
        "*Crash rate* (Hosted relay): *0.1%*, *0.50x* its limit of 0.2% (2x baseline)",
    ]
    assert lines[5] == f"baseline 0.1% · sample 4,512 · window 30m ending {slack_time(NOW)}"
    assert card.splitlines()[-1] == "Figures: prometheus"


def test_no_data_names_the_metric_and_why() -> None:
    verdict = evaluate_relay(
        baseline_crash=D("0.001"), current_crash=D("0.001"), current_error=None
    )
    reading = live_reading(verdict, problem="value: no data: the query matched no series")
    card = shown(verdict, reading)
    assert card.splitlines()[0] == (
        ":large_yellow_circle: *5% canary gate: INCONCLUSIVE*. No data for the error rate: "
        "value: no data: the query matched no series."
    )
    assert ":warning: value: no data: the query matched no series" in card
    assert "*Error rate* (Hosted relay): *missing*, limit 1% (threshold)" in card


def test_slack_limits_hold_for_long_problems_and_links() -> None:
    verdict = relay("0.002")
    reading = live_reading(verdict, problem="x" * 5000, link="http://p/graph?" + "q" * 5000)
    blocks = canary_card(verdict, reading)
    for block in blocks:
        texts = [block.get("text", {}).get("text", "")]
        texts += [f["text"] for f in block.get("fields", [])]
        texts += [e["text"] for e in block.get("elements", [])]
        assert all(len(text) <= SECTION_TEXT for text in texts)
    assert "Open the query" not in render_blocks(blocks).split("*Crash rate*")[0]


def test_figures_typed_by_hand_make_a_card_too() -> None:
    card = shown(relay("0.002", sample=900))
    assert "*Error rate* (Hosted relay): *0.2%*, *0.20x* its limit of 1% (threshold)" in card
    assert "sample 900 · window 30m" in card
    assert card.splitlines()[-1] == "Figures: entered by hand"


def test_the_terminal_card() -> None:
    verdict = relay("0.0301", sample=4512)
    text = plain_text(
        verdict=verdict,
        reading=live_reading(verdict),
        stage_label="5% canary",
        track_label="Hosted relay",
        window=WINDOW,
    )
    lines = text.splitlines()
    # `rollout-bot metrics` only reads: it says what the gate would do, never that it acted.
    assert lines[0] == (
        "Hosted relay: 5% canary gate: ROLLBACK. Error rate 3.01% is 3.01x its 1% limit. "
        "The gate would roll back."
    )
    assert lines[1] == "  window: 30m, 2025-06-02 09:00:00 to 09:30:00 UTC"
    assert "limit 1% (threshold)   3.01x the limit   sample 4,512" in lines[2]
    assert lines[3] == "    query: http://prometheus:9090/graph?g0.expr=errors"


RING_TERMINAL = {
    "stage_label": "internal ring",
    "track_label": "Desktop app and CLI",
    "window": WINDOW,
}
"""Where the terminal card of a ring's reading was read."""


def test_the_terminal_card_of_a_ring_says_the_kill_switch_would_trip_not_that_it_did() -> None:
    """`rollout-bot metrics internal` while the rings run: a failing reading trips nothing."""
    verdict = evaluate_desktop(baseline_crash=D("0.001"), current_crash=D("0.003"), sample=900)
    text = plain_text(verdict=verdict, reading=None, **RING_TERMINAL)  # type: ignore[arg-type]
    first = text.splitlines()[0]
    assert first.startswith("Desktop app and CLI: internal ring gate: KILL_SWITCH. Crash rate")
    assert first.endswith("The gate would trip the kill-switch.")
    assert "tripped" not in text and "Rolling back" not in text


# -- the notifier: card and charts in the thread ---------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[SlackTestServer]:
    async with SlackTestServer(bot_token=BOT_TOKEN) as server:
        yield server


async def post_gate_card(slack: SlackTestServer, verdict: GateVerdict, charts: ChartWorker) -> None:
    """The notifier posts `verdict`'s card, read live, in the thread of an observed rollout,
    and its charts follow."""
    notifier = await gate_card_posted(slack, verdict, charts)
    await notifier.close(grace=30)


async def gate_card_posted(
    slack: SlackTestServer, verdict: GateVerdict, charts: ChartWorker
) -> SlackNotifier:
    """The notifier that posted `verdict`'s card (its charts maybe still on their way)."""
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
    notifier = SlackNotifier(client, approvers={}, charts=charts)
    rollout = await observed_rollout(notifier)
    await notifier.post_gate_card(
        rollout,
        PLAN,
        track="relay",
        stage="canary",
        verdict=verdict,
        reading=live_reading(verdict),
        key=1,
    )
    return notifier


async def observed_rollout(notifier: SlackNotifier) -> Rollout:
    rollout = cleared_rollout(PLAN, now=NOW - timedelta(hours=1))
    ts = await notifier.publish(rollout, PLAN, lambda: asyncio.sleep(0))  # no lease to look at
    track = rollout.track("relay")
    canary = Stage(
        key="canary", state=StageState.HOLDING, window_started_at=WINDOW[0], window_ends_at=NOW
    )
    return replace(rollout, message_ts=ts).with_track(track.with_stage(canary))


async def test_the_card_and_a_png_per_metric_go_to_the_thread(
    slack: SlackTestServer, chart_worker: ChartWorker
) -> None:
    await post_gate_card(slack, relay("0.0301", sample=4512), chart_worker)
    (parent,) = slack.messages(CHANNEL)
    card, charts = parent.replies
    assert card.rendered.startswith(":red_circle: *5% canary gate: ROLLBACK*")
    assert [c.method for c in slack.calls if c.method.startswith("files.")] == [
        "files.getUploadURLExternal",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]
    assert {f["name"] for f in charts.files} == {"error-rate.png", "crash-rate.png"}
    for upload in slack.files.values():
        assert upload.completed and upload.data is not None
        assert upload.data.startswith(PNG_SIGNATURE) and len(upload.data) > 5000
    assert "5% canary gate" in charts.text


async def test_the_card_is_delivered_before_its_charts_are_drawn(
    slack: SlackTestServer, chart_worker: ChartWorker
) -> None:
    # What delivered the card (the outbox's flush, and the person's answer after it) goes on
    # while the charts are drawn; they follow in the thread.
    drawing = DrawsWhenLet(chart_worker)
    async with asyncio.timeout(10):
        notifier = await gate_card_posted(slack, relay("0.0301", sample=4512), drawing)
    (parent,) = slack.messages(CHANNEL)
    (card,) = parent.replies
    assert card.rendered.startswith(":red_circle: *5% canary gate: ROLLBACK*")
    assert slack.calls_to("files.getUploadURLExternal") == []
    drawing.let.set()
    await notifier.close(grace=30)
    (parent,) = slack.messages(CHANNEL)
    card, charts = parent.replies
    assert {f["name"] for f in charts.files} == {"error-rate.png", "crash-rate.png"}


class DrawsWhenLet(ChartWorker):
    """A chart worker whose charts wait until the test `let`s them draw (on `worker`)."""

    def __init__(self, worker: ChartWorker) -> None:
        super().__init__()
        self.let = asyncio.Event()
        self._worker = worker

    async def run(self, draw: Callable[..., R], *args: object) -> R:
        await self.let.wait()
        return await self._worker.run(draw, *args)


async def test_without_matplotlib_the_card_says_charts_are_off(
    slack: SlackTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.dates"):
        monkeypatch.setitem(sys.modules, module, None)
    await post_gate_card(slack, relay("0.002", sample=4512), NeverDraws())
    (parent,) = slack.messages(CHANNEL)
    (card,) = parent.replies
    assert "Charts are off: install `rollout-bot[charts]`" in card.rendered
    assert slack.calls_to("files.getUploadURLExternal") == []


class NeverDraws(ChartWorker):
    """A chart worker whose process dies at every chart (as when matplotlib crashes)."""

    async def run(self, draw: Callable[..., R], *args: object) -> R:
        raise ChartFailed("the chart worker died while drawing")


async def test_charts_not_drawn_leave_the_card_alone_with_a_warning(
    slack: SlackTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    await post_gate_card(slack, relay("0.0301", sample=4512), NeverDraws())
    (parent,) = slack.messages(CHANNEL)
    (card,) = parent.replies  # one card, and no second one for its charts
    assert card.rendered.startswith(":red_circle: *5% canary gate: ROLLBACK*")
    assert slack.calls_to("files.getUploadURLExternal") == []
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "could not upload the charts" in warning.getMessage()
    assert "chart not drawn: the chart worker died while drawing" in warning.getMessage()


@pytest.mark.parametrize(
    ("verdict", "ratio"),
    [
        (relay("0.010001"), "1.01x"),  # just above the limit: never shown as 1.00x
        (relay("0.01" + "0" * 30 + "1"), "1.01x"),  # beyond Decimal's 28 digits too
        (relay("0.01"), "1.00x"),  # at the limit: a PASS
        (relay("0.0099999"), "0.99x"),  # just below: never shown as 1.00x, nor above
        (relay("0.001", crash="0.0020001"), "1.01x"),
        (relay("0.001", crash="0.5", baseline="1e-30"), f"{2.5e29:.2f}x"),  # no crash
    ],
)
def test_the_ratio_to_the_limit_is_never_rounded_across_it(
    verdict: GateVerdict, ratio: str
) -> None:
    """A ratio above 1 fails the gate, so the card rounds it away from 1: a ROLLBACK never
    reads `1.00x`, and a PASS never reads more than `1.00x`."""
    rows = metric_rows(verdict, None)
    shown = {times(row.ratio) for row in rows if row.ratio is not None and row.ratio > D("0.5")}
    assert shown == {ratio}


async def test_figures_typed_for_a_window_opened_again_name_the_stretch_it_covers(
    slack: SlackTestServer, chart_worker: ChartWorker
) -> None:
    """A window opened again after it closed covers its latest stretch (the figures modal asks
    for that stretch): the card of the figures typed says so, not the hours since the deploy."""
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
    notifier = SlackNotifier(client, approvers={}, charts=chart_worker)
    rollout = await observed_rollout(notifier)
    relay_track = rollout.track("relay")
    canary = replace(
        relay_track.stage("canary"),
        window_started_at=NOW - timedelta(hours=3),
        observed_from=NOW - timedelta(minutes=45),
    )
    await notifier.post_gate_card(
        rollout.with_track(relay_track.with_stage(canary)),
        PLAN,
        track="relay",
        stage="canary",
        verdict=relay("0.002", sample=900),
        reading=None,
        key=1,
    )
    await notifier.close(grace=30)

    (parent,) = slack.messages(CHANNEL)
    (card,) = parent.replies
    assert "sample 900 · window 45m" in card.rendered
