"""GitHub's clock as the gauge reads it off GitHub's answers
(`rollout_bot_github_clock_offset_seconds{host}`): every answer, PyGithub's own included, and
a cached answer's `Date` taken with its `Age`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_observability import parse, value

from bot.adapters.github.clock import UndatedAnswer, dated_offset
from bot.adapters.github.transport import GitHubTransport
from bot.adapters.telemetry import PrometheusTelemetry
from bot.version import build
from sandbox.config import GITHUB_TOKEN
from sandbox.github import GitHubSimulator

GAUGE = "rollout_bot_github_clock_offset_seconds"


def behind(hours: float) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) - timedelta(hours=hours)


async def offset_after(
    simulator: GitHubSimulator, read: Callable[[GitHubTransport], Any]
) -> float | None:
    telemetry = PrometheusTelemetry(build())
    transport = GitHubTransport(
        api_url=simulator.api_url,
        token=GITHUB_TOKEN,
        repository=simulator.repository,
        telemetry=telemetry,
    )
    try:
        await transport.call("read", lambda: read(transport))
    finally:
        await transport.close()
    found = parse(telemetry.exposition(None)[0].decode())
    return value(found, GAUGE, host=simulator.api_url.removeprefix("http://"))


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda transport: transport.repo.default_branch, id="a repository's"),
        pytest.param(lambda transport: transport.client.get_user().login, id="the client's"),
    ],
)
async def test_an_answer_read_through_pygithub_sets_the_gauge(
    read: Callable[[GitHubTransport], Any],
) -> None:
    """Most of the bot's reads go through PyGithub (runs, jobs, the repository): their `Date`
    was never read, so the gauge followed the few GETs the bot sends itself."""
    async with GitHubSimulator(token=GITHUB_TOKEN, clock=behind(1)) as simulator:
        offset = await offset_after(simulator, read)
    assert offset is not None and -3601 <= offset <= -3599, offset


async def test_a_cached_answer_s_date_is_taken_with_its_age() -> None:
    """A cache in front of GitHub (Enterprise Server's proxy) serves an answer 5 minutes old:
    its `Date` is 5 minutes behind and its `Age` says so. The clocks agree: 0, not -300."""
    async with GitHubSimulator(token=GITHUB_TOKEN) as simulator:
        simulator.cached_for = 300
        path = f"/repos/{simulator.repository}"
        offset = await offset_after(simulator, lambda transport: transport.get_json(path))
    assert offset is not None and abs(offset) <= 2, offset


def test_an_unreadable_age_makes_the_date_unreadable() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    date = "Sun, 06 Dec 2026 11:55:00 GMT"
    assert dated_offset(date, sent=now, received=now, age="300").middle == timedelta(seconds=0.5)
    with pytest.raises(UndatedAnswer):
        dated_offset(date, sent=now, received=now, age="five minutes")


@pytest.mark.parametrize(
    ("date", "age"),
    [
        pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", None, id="a date at the calendar's end"),
        pytest.param("Sun, 06 Dec 2026 11:55:00 GMT", "99999999999999", id="an age past it"),
        pytest.param("Sun, 06 Dec 2026 11:55:00 GMT", "\xb2", id="a digit int() refuses"),
    ],
)
def test_a_date_or_age_past_reading_is_unreadable(date: str, age: str | None) -> None:
    """The hook reads every answer inside PyGithub's request: anything but UndatedAnswer
    escaping it failed the call GitHub had answered (a write too, sent and done)."""
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    with pytest.raises(UndatedAnswer):
        dated_offset(date, sent=now, received=now, age=age)


async def test_an_answer_the_clock_cannot_read_still_answers_the_call() -> None:
    """A proxy's odd `Date` (the calendar's last second) made every GitHub call fail with an
    OverflowError raised in PyGithub's response hook: GitHub's answer was lost to the bot."""
    end = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    async with GitHubSimulator(token=GITHUB_TOKEN, clock=lambda: end) as simulator:
        offset = await offset_after(simulator, lambda transport: transport.repo.default_branch)
    assert offset is None
