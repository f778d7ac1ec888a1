"""A flood of forged or unauthorised requests does not flood the log: each kind of refusal is one
line per minute, the next line after the minute says how many were left out, and the metrics
count every one. Before, each refused request was a WARNING line of its own."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
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
                "refused 60 (and 1 more like it since 2026-12-06 07:00:00 UTC, not logged)",
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
                "refused 60 (and 2 more like it since 2026-12-06 07:00:00 UTC, not logged)",
                "refused 125 (and 1 more like it since 2026-12-06 07:01:00 UTC, not logged)",
            ],
        ),
    ],
)
def test_one_line_per_kind_per_minute_with_the_count_left_out(
    caplog: pytest.LogCaptureFixture, refusals: list[tuple[int, Kind]], logged: list[str]
) -> None:
    clock = ManualClock(START)
    log = RefusalLog(clock=clock)
    logger = logging.getLogger("tests.refusals")
    for seconds, kind in refusals:
        clock.advance(START + timedelta(seconds=seconds) - clock())
        log.warning(logger, kind, "refused %d", seconds)
    assert _lines(caplog, "tests.refusals") == logged
    assert all(r.levelno == logging.WARNING for r in caplog.records)


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

        box.clock.advance(EVERY)
        caplog.clear()
        for send in flood:
            await send()
        (webhook_line,) = _lines(caplog, "handlers.github_webhook")
        assert webhook_line.startswith("webhook refused: missing or wrong signature (and ")
        assert f"(and {FLOOD - 1} more like it since " in webhook_line
        for logger in ("handlers.workspace", "handlers.slack_events", "handlers.metrics"):
            (line,) = _lines(caplog, logger)
            assert f"(and {FLOOD - 1} more like it since " in line, logger
        found = parse((await Scraper(box, http, TOKEN).get())[2])
        assert value(found, "rollout_bot_signature_refusals_total", door="github") == FLOOD + 1
