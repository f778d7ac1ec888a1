"""A replica's clock against the database server's: each replica keeps its leases on the
server's clock by this offset (tests/test_lease_clocks.py), but a clock that is off still moves
the window ends it fires, so it must be seen. Each replica on PostgreSQL reads the server's
`clock_timestamp()` at start and at each scrape: a gauge, one WARNING past 5 s; `rollout-bot
doctor` says it too; SQLite is skipped with its reason. The replica's clock is the sandbox's,
moved; the database is real."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from test_observability import Scraper, parse, value

from bot.adapters.telemetry import PrometheusTelemetry
from bot.cli.doctor_clocks import database_clock_finding
from bot.services.clock_skew import SQLITE_SKIPPED, ClockReading, DatabaseClock
from bot.version import build
from sandbox.harness import Sandbox

OFFSET = "rollout_bot_database_clock_offset_seconds"
WARNED = re.compile(
    r"the database server's clock is 120s behind the bot's \(more than 5s apart\): a window's "
    r"end scheduled by another replica fires here as early \(or as late\) as this clock is "
    r"ahead \(or behind\): sync every host's clock with NTP"
)


def said(caplog: pytest.LogCaptureFixture, level: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bot.services.clock_skew" and r.levelname == level
    ]


async def test_a_replica_whose_clock_runs_ahead_of_the_database_s_says_so_at_start_and_scrape(
    tmp_path: Path,
    postgres_database_url: str,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The replica's clock two minutes ahead of PostgreSQL's: one WARNING at start with what
    is at risk and the fix, the gauge at -120 s at each scrape (not a second WARNING); its
    clock set right, the gauge follows at the next scrape and one INFO line says so."""
    caplog.set_level(logging.INFO, logger="bot.services.clock_skew")
    box = Sandbox(workdir=tmp_path, database_url=postgres_database_url)
    box.clock.advance(timedelta(minutes=2))
    async with box:
        [warning] = said(caplog, "WARNING")
        assert WARNED.fullmatch(warning), warning
        scraper = Scraper(box, http, None)
        for _ in range(2):
            offset = value(await scraper.samples(), OFFSET)
            assert offset is not None and abs(offset + 120) < 1, offset
        assert len(said(caplog, "WARNING")) == 1

        box.clock.advance(-timedelta(minutes=2))
        offset = value(await scraper.samples(), OFFSET)
        assert offset is not None and abs(offset) < 1, offset
    assert said(caplog, "INFO") == ["the database server's clock is within 5s of the bot's again"]
    assert len(said(caplog, "WARNING")) == 1


@pytest.mark.parametrize(
    ("ahead", "line"),
    [
        (
            timedelta(0),
            r"✓ database postgresql://postgres@127\.0\.0\.1:5432/\w+: its clock and "
            r"the bot's are 0s apart \(at most 5s\)",
        ),
        (
            timedelta(minutes=2),
            r"⚠ database postgresql://postgres@127\.0\.0\.1:5432/\w+: its clock is "
            r"120s behind the bot's \(more than 5s apart\): a window's end scheduled by another "
            r"replica fires here as early .* sync every host's clock with NTP",
        ),
    ],
    ids=["in step", "the bot two minutes ahead"],
)
def test_the_doctor_compares_the_bot_s_clock_with_the_database_server_s(
    postgres_database_url: str, ahead: timedelta, line: str
) -> None:
    [finding] = database_clock_finding(
        postgres_database_url, reachable=True, clock=lambda: datetime.now(UTC) + ahead
    )
    assert re.fullmatch(line, finding.line()), finding.line()


def test_the_doctor_skips_sqlite_with_the_reason_and_an_unreachable_database(
    sqlite_database_url: str,
) -> None:
    [finding] = database_clock_finding(sqlite_database_url, reachable=True)
    assert finding.line() == f"✓ {SQLITE_SKIPPED}"
    assert database_clock_finding(sqlite_database_url, reachable=False) == []


async def test_a_database_away_at_start_is_one_warning_and_the_replica_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first check fails (the database went away after `serve` checked it): one WARNING
    line with the cause, nothing raised, the gauge still unknown."""

    @asynccontextmanager
    async def refused() -> AsyncIterator[ClockReading]:
        raise ConnectionRefusedError("connection refused")
        yield  # never reached: it makes this an async generator

    telemetry = PrometheusTelemetry(build())
    await DatabaseClock(
        server=refused, clock=lambda: datetime.now(UTC), telemetry=telemetry
    ).first_check()
    offset = value(parse(telemetry.exposition(None)[0].decode()), OFFSET)
    assert offset is not None and math.isnan(offset)
    [line] = said(caplog, "WARNING")
    assert line.startswith("the database server's clock was not read: ") and "refused" in line
