"""A flood of forged or unauthorised requests does not flood the log: each kind of refusal is one
line per minute, how many were left out is logged as the minute ends (on the next refusal's
line, or on one of its own when none comes, or as the bot stops), and the metrics count every
one. Before, each refused request was a WARNING line of its own, and later a flood that ended
within its minute left its count out of the log."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from figures import passing_sandbox
from sandbox_views import command_body
from test_observability import Scraper, parse, value

from handlers.refusals import EVERY, Kind, RefusalLog
from sandbox.clock import ManualClock
from sandbox.config import SLACK_SIGNING_SECRET
from sandbox.signing import github_signature_headers, slack_signature_headers

pytestmark = pytest.mark.story

TOKEN = "scrape-me-0123456789"
FLOOD = 25
START = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)


def _counted(line: str, left_out: int, since: str) -> str:
    return (
        f"{line} ({left_out} more like it in the minute since 2026-12-06 {since} UTC, not logged)"
    )


def _lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


@pytest.mark.parametrize(
    ("refusals", "logged"),
    [
        # (seconds after START, kind): the lines logged, in order.
        ([(0, Kind.GITHUB_SIGNATURE)], ["refused 0"]),
        (
            [(0, Kind.GITHUB_SIGNATURE), (1, Kind.GITHUB_SIGNATURE), (59, Kind.GITHUB_SIGNATURE)],
            ["refused 0"],
        ),
        (
            [(0, Kind.GITHUB_SIGNATURE), (30, Kind.GITHUB_SIGNATURE), (60, Kind.GITHUB_SIGNATURE)],
            [
                "refused 0",
                _counted("refused 0", 1, "07:00:00"),
                "refused 60",
            ],
        ),
        (  # a quiet minute: nothing left out, nothing to say about it
            [(0, Kind.GITHUB_SIGNATURE), (120, Kind.GITHUB_SIGNATURE)],
            ["refused 0", "refused 120"],
        ),
        (  # each kind has its own minute
            [(0, Kind.GITHUB_SIGNATURE), (1, Kind.OTHER_WORKSPACE), (2, Kind.GITHUB_SIGNATURE)],
            ["refused 0", "refused 1"],
        ),
        (  # the count starts again after each line
            [(s, Kind.SLACK_SIGNATURE) for s in (0, 10, 20, 60, 70, 125)],
            [
                "refused 0",
                _counted("refused 0", 2, "07:00:00"),
                "refused 60",
                _counted("refused 60", 1, "07:01:00"),
                "refused 125",
            ],
        ),
    ],
)
def test_one_line_per_kind_per_minute_with_the_count_left_out(
    caplog: pytest.LogCaptureFixture, refusals: list[tuple[int, Kind]], logged: list[str]
) -> None:
    """Without the app's timer (the tests below) a count is logged before the next line of
    its kind at the latest."""
    clock = ManualClock(START)
    log = RefusalLog(clock=clock)
    logger = logging.getLogger("tests.refusals")
    for seconds, kind in refusals:
        clock.advance(START + timedelta(seconds=seconds) - clock())
        log.warning(logger, kind, "refused %d", seconds)
    assert _lines(caplog, "tests.refusals") == logged
    assert all(r.levelno == logging.WARNING for r in caplog.records)


async def test_a_flood_that_ends_within_its_minute_has_its_count_logged_as_the_minute_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No refusal comes after the flood to carry its count: the count is a line of its own
    when the minute ends, on the app's clock (the bug: it was never logged)."""
    clock = ManualClock(START)
    refusals = RefusalLog(clock=clock)
    logger = logging.getLogger("tests.refusals")
    async with asynccontextmanager(refusals.counting)(web.Application()):
        await asyncio.sleep(0)  # its task starts, and sleeps on the clock
        for seconds in (0, 10, 20):
            clock.advance(START + timedelta(seconds=seconds) - clock())
            refusals.warning(logger, Kind.GITHUB_SIGNATURE, "refused %d", seconds)
        refusals.warning(logger, Kind.METRICS_SCRAPE, "scrape refused")
        clock.advance(START + timedelta(seconds=59) - clock())
        await clock.settle()
        assert _lines(caplog, "tests.refusals") == ["refused 0", "scrape refused"]

        clock.advance(timedelta(seconds=1))
        await clock.settle()
        counted = _counted("refused 0", 2, "07:00:00")
        assert _lines(caplog, "tests.refusals") == ["refused 0", "scrape refused", counted]

        clock.advance(timedelta(seconds=30))  # the next refusal begins a minute, no count again
        refusals.warning(logger, Kind.GITHUB_SIGNATURE, "refused %d", 90)
        clock.advance(EVERY)
        await clock.settle()
        assert _lines(caplog, "tests.refusals")[3:] == ["refused 90"]


async def test_the_count_of_a_minute_still_running_is_logged_as_the_bot_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(START)
    refusals = RefusalLog(clock=clock)
    logger = logging.getLogger("tests.refusals")
    async with asynccontextmanager(refusals.counting)(web.Application()):
        for _ in range(3):
            refusals.warning(logger, Kind.OTHER_WORKSPACE, "foreign %s", "T0ELSEWHERE")
        assert _lines(caplog, "tests.refusals") == ["foreign T0ELSEWHERE"]
    assert _lines(caplog, "tests.refusals") == [
        "foreign T0ELSEWHERE",
        _counted("foreign T0ELSEWHERE", 2, "07:00:00"),
    ]


async def test_a_flood_of_forged_and_foreign_requests_is_a_line_a_minute_and_counted_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        passing_sandbox(tmp_path, extra_env={"METRICS_TOKEN": TOKEN}) as box,
        aiohttp.ClientSession() as http,
    ):

        async def forged_webhook() -> None:
            body = json.dumps({"action": "completed"}).encode()
            headers = github_signature_headers("not-the-secret", body, event="workflow_run")
            async with http.post(f"{box.url}/github/webhook", data=body, headers=headers) as r:
                assert r.status == 401

        async def foreign_command() -> None:
            _, body = command_body(box.slack, "status", team_id="T0ELSEWHERE")
            headers = slack_signature_headers(SLACK_SIGNING_SECRET, body)
            async with http.post(f"{box.url}/slack/events", data=body, headers=headers) as r:
                assert r.status == 200 and "another Slack workspace" in await r.text()

        async def forged_slack() -> None:
            body = "command=%2Frollout&text=status"
            headers = slack_signature_headers("not-the-secret", body)
            async with http.post(f"{box.url}/slack/events", data=body, headers=headers) as r:
                assert r.status == 401

        async def unauthorised_scrape() -> None:
            async with http.get(f"{box.url}/metrics") as r:
                assert r.status == 401

        flood = (forged_webhook, foreign_command, forged_slack, unauthorised_scrape)
        for _ in range(FLOOD):
            for send in flood:
                await send()
        webhook_lines = _lines(caplog, "handlers.github_webhook")
        assert webhook_lines == ["webhook refused: missing or wrong signature"]
        (workspace_line,) = _lines(caplog, "handlers.workspace")
        assert "it names team T0ELSEWHERE" in workspace_line
        assert _lines(caplog, "handlers.slack_events") == [
            "Slack request refused: missing, stale or wrong signature"
        ]
        assert _lines(caplog, "handlers.metrics") == [
            "metrics scrape refused: missing or wrong bearer token"
        ]
        found = await Scraper(box, http, TOKEN).samples()
        assert value(found, "rollout_bot_signature_refusals_total", door="github") == FLOOD
        assert value(found, "rollout_bot_signature_refusals_total", door="slack") == FLOOD
        assert value(found, "rollout_bot_refusals_total", reason="other_workspace") == FLOOD

        loggers = ("handlers.workspace", "handlers.slack_events", "handlers.metrics")
        caplog.clear()
        box.clock.advance(EVERY)  # the flood is over: its counts are logged as the minute ends
        await box.clock.settle()
        (webhook_line,) = _lines(caplog, "handlers.github_webhook")
        assert webhook_line.startswith(
            f"webhook refused: missing or wrong signature ({FLOOD - 1} more like it in the "
            "minute since "
        )
        for logger in loggers:
            (line,) = _lines(caplog, logger)
            assert f"({FLOOD - 1} more like it in the minute since " in line, logger
        caplog.clear()
        for send in flood:
            await send()
        assert _lines(caplog, "handlers.github_webhook") == [
            "webhook refused: missing or wrong signature"
        ]
        for logger in loggers:
            (line,) = _lines(caplog, logger)
            assert "more like it" not in line, logger
        found = parse((await Scraper(box, http, TOKEN).get())[2])
        assert value(found, "rollout_bot_signature_refusals_total", door="github") == FLOOD + 1
