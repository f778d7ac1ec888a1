"""The doctor's clock checks: how far Prometheus's clock, the database server's and GitHub's
are from the bot's, the round trip of each reading allowed for (`bot.domain.clocks`). Run the
doctor on a replica's host: it is that host's clock that is compared."""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.adapters.github.clock import UndatedAnswer, github_offset
from bot.adapters.github.transport import GitHubTransport
from bot.adapters.metrics.live import MetricsProblem, utc_now
from bot.adapters.metrics.prometheus_api import check_clock, public_url, unclear
from bot.config import Settings
from bot.domain.clocks import MAX_CLOCK_SKEW, ClockOffset, offset_words, shifted_words
from bot.domain.errors import GitHubError
from bot.services.clock_skew import (
    APART_AT_RISK,
    SQLITE_SKIPPED,
    offset_of,
    too_slow_to_tell,
)
from bot.services.failures import error_summary
from bot.services.findings import Finding, failed, passed, warned
from bot.services.ports import Clock
from storage.db import engine_for_one_task, mask_database_url, server_clock


def clock_finding(settings: Settings) -> Finding | None:
    """How far apart the bot's clock and Prometheus's are (None without PROMETHEUS_URL),
    allowing for the request's round trip: a gate reads its window by the bot's clock and
    Prometheus stamps its samples by its own, so past `MAX_CLOCK_SKEW` apart either way every
    gate reading Prometheus says INCONCLUSIVE, the clocks named (`bot.domain.clocks`)."""
    if settings.prometheus_url is None:
        return None
    url = str(settings.prometheus_url)
    shown = f"Prometheus at {public_url(url)}"
    try:
        offset = asyncio.run(check_clock(url, within=settings.gate_metrics_timeout))
    except MetricsProblem as problem:
        return failed(f"{shown}'s clock", f"{problem}: check PROMETHEUS_URL")
    return _offset_finding(
        shown,
        offset,
        if_apart=f"{shifted_words(offset.seconds)}, so every gate reading it says INCONCLUSIVE: "
        "sync both hosts' clocks with NTP",
        why_unclear=unclear(offset),
    )


def _offset_finding(shown: str, offset: ClockOffset, *, if_apart: str, why_unclear: str) -> Finding:
    """The finding on `shown`'s clock: within `MAX_CLOCK_SKEW` of the bot's, past it
    (`if_apart`: what that breaks and what to do), or not comparable (`why_unclear`)."""
    limit = int(MAX_CLOCK_SKEW.total_seconds())
    if offset.agree:
        apart = abs(offset.seconds)
        return passed(f"{shown}: its clock and the bot's are {apart}s apart (at most {limit}s)")
    if offset.apart:
        ahead = f"its clock is {offset_words(offset.seconds)} (more than {limit}s apart)"
        return warned(f"{shown}: {ahead}", if_apart)
    return warned(f"{shown}: its clock could not be compared with the bot's", why_unclear)


def database_clock_finding(
    database_url: str, *, reachable: bool, clock: Clock = utc_now
) -> list[Finding]:
    """How far apart the bot's clock and the database server's are: every replica keeps its
    leases on the database's, corrected by its offset, but a timer is due by the clock of the
    replica that scheduled it (`bot.services.clock_skew`). Nothing when the database does not
    answer (its own finding says so); on SQLite, why it is not compared."""
    url = make_url(database_url)
    if not reachable:
        return []
    if url.get_backend_name() == "sqlite":
        return [passed(SQLITE_SKIPPED)]
    shown = f"database {mask_database_url(url)}"
    try:
        offset = asyncio.run(_database_offset(database_url, clock))
    except (OSError, SQLAlchemyError) as error:
        return [failed(f"{shown}'s clock", f"not read ({error_summary(error)}): try again")]
    slow = too_slow_to_tell(
        offset, whose="the database server's", server="the database", asked="clock_timestamp()"
    )
    return [_offset_finding(shown, offset, if_apart=APART_AT_RISK, why_unclear=slow)]


async def _database_offset(database_url: str, clock: Clock) -> ClockOffset:
    async with engine_for_one_task(database_url) as engine, server_clock(engine) as theirs:
        return await offset_of(theirs, clock)


GITHUB_APART = (
    "a stage's window starts at GitHub's time for its job only between the bot's approval and "
    "the bot's now, else when the bot saw the job complete (one WARNING per stage): a window "
    "on GitHub's time would read figures from before the deploy; sync GitHub's (Enterprise "
    "Server's) clock and the bot host's with NTP"
)


GITHUB_UNDATED = (
    "its answer to a repository read carries no readable Date header (a proxy in front of "
    "GitHub Enterprise Server that drops it?): a stage's window still starts at GitHub's time "
    "for its job only between the bot's approval and the bot's now; check the appliance's "
    "NTP on its own, or let the proxy pass Date on"
)


async def github_clock_finding(github: GitHubTransport, clock: Clock = utc_now) -> Finding | None:
    """How far apart GitHub's clock (its answers' `Date`) and the bot's are: a job's completion
    time is GitHub's, and a window starts there (docs/reliability.md). None when GitHub does
    not answer: the check that reaches the repository says so."""
    shown = f"GitHub at {github.api_url}"
    try:
        offset = await github_offset(github, clock)
    except UndatedAnswer:
        return warned(f"{shown}: its clock could not be compared with the bot's", GITHUB_UNDATED)
    except GitHubError:
        return None
    slow = too_slow_to_tell(offset, whose="GitHub's", server="GitHub", asked="a repository read")
    return _offset_finding(shown, offset, if_apart=GITHUB_APART, why_unclear=slow)
