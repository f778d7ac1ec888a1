"""Review of issue 14 (branch review14): `/readyz` and `/metrics` say all is well while the
scheduler fires nothing or the database is gone.

These tests FAIL on main: each names the defect it proves (see the review report).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from test_app import client, readyz, settings, slack  # noqa: F401 - fixtures

from bot.bootstrap import create_app
from bot.config import Settings, load_settings
from handlers.app_keys import READINESS
from storage.db import create_engine
from storage.migrate import upgrade


async def test_review14_a_scheduler_failing_every_pass_does_not_count_as_going_round(
    client: TestClient[object, object],  # noqa: F811
    sqlite_database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`Scheduler.run` sets `last_tick` at the start of each pass, before the pass fails, and
    retries every 5 s: a scheduler that fails every pass (here its timers table is gone while
    `SELECT 1` and the migration revision still answer) keeps `/readyz` at 200 for ever, while
    it fires no window end. A failed pass must not count as the loop going round."""
    async with asyncio.timeout(10):
        while (await readyz(client))[0] != 200:  # noqa: ASYNC110 - the first round
            await asyncio.sleep(0.05)
    assert client.app is not None
    readiness = client.app[READINESS]
    with sqlite3.connect(make_url(sqlite_database_url).database or "") as db:
        db.execute("drop table timers")
    caplog.set_level(logging.WARNING, logger="bot.services.scheduler")

    def failures() -> int:
        return sum("scheduler iteration failed" in r.getMessage() for r in caplog.records)

    async with asyncio.timeout(15):
        while failures() < 1:  # noqa: ASYNC110 - the scheduler's next pass
            await asyncio.sleep(0.05)
        failed_from = readiness.last_tick()
        while failures() < 2:  # noqa: ASYNC110 - its retry, 5 s later
            await asyncio.sleep(0.05)
    assert readiness.last_tick() == failed_from, "a failed pass moved the scheduler's tick"


def _samples(body: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if not sample.labels
    }


@pytest.mark.postgres
async def test_review14_metrics_show_the_database_outage(
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,  # noqa: F811
    empty_postgres_database_url: str,
) -> None:
    """The database is gone: every replica's /readyz answers 503, but /metrics still answers
    200 with the database gauges frozen at their last values (timers_overdue stays 0, so
    RolloutBotTimersOverdue cannot fire) and no series says the database or readiness is
    down: up=1, no alert in ops/alerts.yml fires during a full database outage."""
    await upgrade(empty_postgres_database_url)
    monkeypatch.setenv("DATABASE_URL", empty_postgres_database_url)
    on_postgres = load_settings(Settings, env_file=None)
    name = make_url(empty_postgres_database_url).database
    async with TestClient(TestServer(create_app(on_postgres))) as test_client:
        assert (await test_client.get("/metrics")).status == 200
        admin = create_engine(
            str(make_url(empty_postgres_database_url).set(database="test")),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
        )
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.dispose()
        ready = await readyz(test_client)
        scrape = await test_client.get("/metrics")
        figures = _samples(await scrape.text())
    assert ready[0] == 503
    assert scrape.status == 200
    down = {n: v for n, v in figures.items() if "ready" in n or "database" in n}
    assert down and 0 in down.values(), sorted(figures)
