"""The Sentry release-health source against a local server answering with Sentry's JSON, and a
desktop ring tripping the kill-switch on Sentry's crash rate through the whole bot."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from figures import CANARY_OK
from pydantic import SecretStr
from sandbox_views import HALTED_ON_INTERNAL, reviews

from bot.adapters.metrics.sentry import SentryAccess, SentrySource
from bot.config import ConfigError, Settings, load_settings
from bot.domain.gate import GateReason, Verdict, evaluate_desktop
from bot.domain.metrics import QueryWindow, Reading
from bot.domain.plan import SentryMetrics
from bot.domain.rollout import Phase, StageState, TrackState
from sandbox.config import SENTRY_TOKEN, bot_environment
from sandbox.harness import Sandbox, fast_plan, write_figures
from sandbox.plans import SENTRY_RINGS
from sandbox.sentry import SentryTestServer

TOKEN = SENTRY_TOKEN
RELEASE = "scriptum-desktop@v1.4.2"
PREVIOUS = "scriptum-desktop@v1.4.1"


def access(server: SentryTestServer, token: str = TOKEN) -> SentryAccess:
    return SentryAccess(
        url=server.url, org=server.org, project=server.project, token=SecretStr(token)
    )


def config(**extra: Any) -> SentryMetrics:
    return SentryMetrics.model_validate({**SENTRY_RINGS, **extra})


def window(stage: str = "internal") -> QueryWindow:
    end = datetime.now(UTC)
    start = end - timedelta(minutes=30)
    return QueryWindow(
        tag="v1.4.2", track="desktop", stage=stage, start=start, end=end, rollout_start=start
    )


def gate(reading: Reading, min_sample: int = 0) -> Any:
    return evaluate_desktop(
        baseline_crash=reading.baseline_crash,
        current_crash=reading.figures.crash_rate,
        sample=reading.figures.sample,
        min_sample=min_sample,
    )


def with_sessions(server: SentryTestServer, at: datetime | None = None) -> None:
    at = at or datetime.now(UTC) - timedelta(minutes=10)
    server.add_sessions(release=RELEASE, environment="internal", count=10000, crashed=25, at=at)
    server.add_sessions(release=PREVIOUS, environment="internal", count=20000, crashed=20, at=at)
    server.add_sessions(release=RELEASE, environment="beta", count=40, crashed=0, at=at)


async def test_crash_rate_and_sessions_of_the_release_in_the_ring(
    sentry: SentryTestServer,
) -> None:
    with_sessions(sentry)
    reading = await SentrySource(config(), access=access(sentry)).measure(window())
    assert reading.figures.crash_rate == Decimal("0.0025")
    assert reading.figures.sample == 10000
    assert reading.baseline_crash == Decimal("0.001")
    (metric,) = reading.metrics
    assert metric.problem is None
    assert metric.link == (
        f"{sentry.url}/organizations/scriptum/releases/scriptum-desktop%40v1.4.2/"
        "?project=4505&environment=internal"
    )
    request = sentry.requests[0]
    assert request.authorization == f"Bearer {TOKEN}"
    assert sorted(request.params["field"]) == ["crash_rate(session)", "sum(session)"]
    assert request.params["query"] == [f'release:"{RELEASE}"']
    assert request.params["environment"] == ["internal"]
    assert request.params["project"] == ["4505"]
    verdict = gate(reading)
    assert (verdict.verdict, verdict.reason) == (Verdict.KILL_SWITCH, GateReason.CRASH_RATE)


async def test_the_baseline_from_every_other_release(sentry: SentryTestServer) -> None:
    with_sessions(sentry)
    source = SentrySource(
        config(baseline_crash_rate="0.01", baseline_query="!release:scriptum-desktop@$tag"),
        access=access(sentry),
    )
    reading = await source.measure(window())
    assert reading.baseline_crash == Decimal("0.001")  # 20 of 20,000, not the fixed 0.01
    assert gate(reading).verdict is Verdict.KILL_SWITCH


@pytest.mark.parametrize(
    ("other_sessions", "sample", "verdict"),
    [
        (20, 20, Verdict.INCONCLUSIVE),  # 1 crash in 20: a 5% baseline, a limit of 10%
        (20000, 10000, Verdict.KILL_SWITCH),  # enough of both: 1 in 20,000 against 8%
    ],
)
async def test_a_baseline_read_from_too_few_sessions_is_not_enough_data(
    sentry: SentryTestServer, other_sessions: int, sample: int, verdict: Verdict
) -> None:
    """Most of a ring moved to the release: the sessions of every other release in it are a
    handful, and one crash among them set a baseline of 5%, under whose 10% limit a release
    crashing in 8% of its sessions passed. The baseline's sessions are a sample too."""
    at = datetime.now(UTC) - timedelta(minutes=10)
    sentry.add_sessions(release=RELEASE, environment="internal", count=10000, crashed=800, at=at)
    sentry.add_sessions(
        release=PREVIOUS, environment="internal", count=other_sessions, crashed=1, at=at
    )
    source = SentrySource(
        config(baseline_query="!release:scriptum-desktop@$tag"), access=access(sentry)
    )
    reading = await source.measure(window())
    assert reading.figures.crash_rate == Decimal("0.08")
    assert reading.figures.sample == sample
    assert gate(reading, min_sample=1000).verdict is verdict


async def test_a_user_crash_rate_counts_users(sentry: SentryTestServer) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    sentry.add_sessions(
        release=RELEASE,
        environment="internal",
        count=900,
        crashed=9,
        at=at,
        users=300,
        crashed_users=1,
    )
    source = SentrySource(config(crash_rate="crash_rate(user)"), access=access(sentry))
    reading = await source.measure(window())
    assert reading.figures.sample == 300
    assert reading.figures.crash_rate is not None
    assert float(reading.figures.crash_rate) == pytest.approx(1 / 300)


async def test_a_release_without_sessions_is_no_data_never_a_zero(
    sentry: SentryTestServer,
) -> None:
    with_sessions(sentry)
    at = datetime.now(UTC) - timedelta(minutes=10)  # the ring's environment has the last release
    sentry.add_sessions(release=PREVIOUS, environment="ga", count=100, crashed=0, at=at)
    reading = await SentrySource(config(), access=access(sentry)).measure(window("ga"))
    assert reading.figures.crash_rate is None
    (metric,) = reading.metrics
    assert metric.problem is not None and "no sessions" in metric.problem
    verdict = gate(reading)
    assert (verdict.verdict, verdict.reason) == (Verdict.INCONCLUSIVE, GateReason.NO_DATA)


async def test_sessions_counted_without_a_crash_rate_are_said_so_not_none(
    sentry: SentryTestServer,
) -> None:
    """Sentry counted the release's sessions and gave a null crash rate: no data, in its words
    (not "no sessions", which sends the person looking for a release nobody runs)."""
    with_sessions(sentry)
    sentry.totals_patch = {"crash_rate(session)": None}
    reading = await SentrySource(config(), access=access(sentry)).measure(window())
    (metric,) = reading.metrics
    assert metric.problem is not None and "counted 10000 sessions" in metric.problem, metric
    assert "no sessions" not in metric.problem
    assert gate(reading).verdict is Verdict.INCONCLUSIVE


@pytest.mark.parametrize(
    ("count", "baseline"),
    [
        (None, False),
        (float("inf"), False),
        (float("nan"), False),
        (-10000, False),
        (9999.5, False),
        (True, False),
        (float("inf"), True),
        (-20000, True),
    ],
)
async def test_a_count_that_is_not_a_whole_number_is_never_a_pass(
    sentry: SentryTestServer, count: object, baseline: bool
) -> None:
    """A null, NaN, infinite, negative or fractional session count leaves its rate unjudged:
    an infinite one raised out of the gate, and a null or negative one PASSed (min_sample 0)."""
    with_sessions(sentry)
    sentry.totals_patch = {"sum(session)": count}
    extra = {"baseline_query": f"!release:{RELEASE}"} if baseline else {}
    reading = await SentrySource(config(**extra), access=access(sentry)).measure(window())
    (metric,) = reading.metrics
    assert metric.problem is not None and "whole, non-negative sum(session)" in metric.problem
    verdict = gate(reading)
    assert verdict.verdict is Verdict.INCONCLUSIVE, verdict.summary


async def test_too_few_sessions_is_inconclusive(sentry: SentryTestServer) -> None:
    with_sessions(sentry)
    reading = await SentrySource(config(), access=access(sentry)).measure(window("beta"))
    assert (reading.figures.crash_rate, reading.figures.sample) == (Decimal(0), 40)
    verdict = gate(reading, min_sample=1000)
    assert (verdict.verdict, verdict.reason) == (
        Verdict.INCONCLUSIVE,
        GateReason.INSUFFICIENT_SAMPLE,
    )


async def test_a_refused_token_is_inconclusive_and_never_shown(
    sentry: SentryTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    with_sessions(sentry)
    wrong = "sntrys_wrong_0a1b2c3d"
    with caplog.at_level(logging.DEBUG):
        reading = await SentrySource(config(), access=access(sentry, wrong)).measure(window())
    (metric,) = reading.metrics
    assert metric.problem is not None and "refused the token (HTTP 401)" in metric.problem
    assert gate(reading).verdict is Verdict.INCONCLUSIVE
    assert wrong not in caplog.text and wrong not in repr(access(sentry, wrong))


async def test_a_project_the_token_cannot_read_is_named(sentry: SentryTestServer) -> None:
    """Sentry answers 403 to a project id the token cannot read, or not of the organisation:
    the card said the token needed org:read, and an operator replaced a good token."""
    with_sessions(sentry)
    other = replace(access(sentry), project="4506")
    reading = await SentrySource(config(), access=other).measure(window())
    (metric,) = reading.metrics
    assert metric.problem is not None and "HTTP 403" in metric.problem
    assert "SENTRY_PROJECT (4506)" in metric.problem
    assert gate(reading).verdict is Verdict.INCONCLUSIVE


async def test_a_ring_environment_sentry_has_not_seen_yet_is_no_data(
    sentry: SentryTestServer,
) -> None:
    """Sentry answers 404 to an environment no session has reported yet (a ring's first
    release), as to an unknown organisation: the card said only "the requested resource does
    not exist", and the doctor called a sound setup's fresh ring unanswered."""
    with_sessions(sentry)
    reading = await SentrySource(config(), access=access(sentry)).measure(window("ga"))
    (metric,) = reading.metrics
    assert metric.problem == (
        "value: no data: Sentry knows no environment 'ga' (no session or event has reported it "
        "yet): check the plan's environment if the ring reports"
    )
    assert gate(reading).verdict is Verdict.INCONCLUSIVE
    wrong_org = replace(access(sentry), org="scriptum-typo")
    reading = await SentrySource(config(), access=wrong_org).measure(window("ga"))
    (metric,) = reading.metrics
    assert metric.problem is not None and "HTTP 404" in metric.problem


async def test_a_rate_limit_sentry_lifts_within_seconds_is_waited_out(
    sentry: SentryTestServer,
) -> None:
    """Sentry's rate limiter refuses the reading's requests (HTTP 429; its window begins again a
    second later, X-Sentry-Rate-Limit-Reset): each is asked again once it has, and the gate
    judges the figures. Before, the crash rate was missing ("Sentry answered HTTP 429"), the
    gate INCONCLUSIVE and the ring held for an extension."""
    with_sessions(sentry)
    sentry.rate_limited.extend([1.0, 1.0])
    reading = await SentrySource(config(), access=access(sentry)).measure(window())
    assert reading.figures.crash_rate == Decimal("0.0025")
    assert reading.metrics[0].problem is None
    assert len(sentry.requests) == 4  # the value and the chart, each refused once


async def test_a_rate_limit_longer_than_a_gate_waits_is_not_asked_through(
    sentry: SentryTestServer,
) -> None:
    """A window that begins again later than a gate waits (RETRY_WAIT) is not waited for, nor
    asked before (Sentry would refuse it again): the crash rate is missing, INCONCLUSIVE."""
    with_sessions(sentry)
    sentry.rate_limited.extend([60.0, 60.0])
    reading = await SentrySource(config(), access=access(sentry)).measure(window())
    (metric,) = reading.metrics
    assert metric.problem is not None and "Sentry answered HTTP 429" in metric.problem
    assert gate(reading).verdict is Verdict.INCONCLUSIVE
    assert len(sentry.requests) == 2


@pytest.mark.parametrize("bot_off", [-10, 10], ids=["bot behind", "bot ahead"])
async def test_a_rate_limit_is_waited_by_sentry_s_clock_not_the_bot_s(
    sentry: SentryTestServer, bot_off: int
) -> None:
    """X-Sentry-Rate-Limit-Reset is a moment on Sentry's clock: read against the bot's, a bot
    10 s behind waited 11 s (beyond RETRY_WAIT: not asked again, the crash rate missing and the
    ring held for an extension), and one 10 s ahead asked again at once, into the same refused
    window. It is read against the answer's Date, Sentry's own clock: a second or two."""
    with_sessions(sentry)
    sentry.rate_limited.extend([1.0, 1.0])
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)  # the sandbox's refusals are one a request, not a window

    def skewed() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=bot_off)

    source = SentrySource(config(), access=access(sentry), clock=skewed, sleep=sleep)
    reading = await source.measure(window())
    assert reading.figures.crash_rate == Decimal("0.0025"), reading.metrics[0].problem
    assert len(waits) == 2 and all(1 <= wait <= 2 for wait in waits), waits


async def test_an_unconfigured_sentry_is_inconclusive() -> None:
    reading = await SentrySource(config(), access=None).measure(window())
    (metric,) = reading.metrics
    assert metric.problem is not None and "SENTRY_TOKEN" in metric.problem
    assert gate(reading).verdict is Verdict.INCONCLUSIVE


async def test_the_server_keeps_sentrys_interval_rules(sentry: SentryTestServer) -> None:
    """As a self-hosted Sentry without minute resolution (sentry.io takes 10s and up)."""
    sentry.backend, sentry.minute_resolution = "sessions", False
    at = datetime(2025, 6, 2, 9, 40, tzinfo=UTC)
    sentry.add_sessions(release=RELEASE, environment="internal", count=10, crashed=1, at=at)
    url = f"{sentry.url}/api/0/organizations/scriptum/sessions/"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    base = {"field": "sum(session)", "start": "2025-06-02T09:10:00", "end": "2025-06-02T09:50:00"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(url, params={**base, "interval": "30m"}) as response:
            assert response.status == 400
        async with session.get(url, params={**base, "interval": "1h"}) as response:
            body = await response.json()
        # Sentry takes the end as inclusive (a second added before rounding): an end on the
        # hour brings in the hour after it.
        on_the_hour = {**base, "end": "2025-06-02T10:00:00", "interval": "1h"}
        async with session.get(url, params=on_the_hour) as response:
            inclusive = await response.json()
    # The range is rounded out to whole hours, as Sentry does.
    assert (body["start"], body["end"]) == ("2025-06-02T09:00:00Z", "2025-06-02T10:00:00Z")
    assert body["groups"] == [
        {"by": {}, "totals": {"sum(session)": 10}, "series": {"sum(session)": [10]}}
    ]
    assert (inclusive["start"], inclusive["end"]) == (
        "2025-06-02T09:00:00Z",
        "2025-06-02T11:00:00Z",
    )


def test_a_plan_reading_sentry_needs_its_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml"))
    plan["tracks"]["desktop"]["metrics"] = config().model_dump(mode="json", exclude_none=True)
    (tmp_path / "plan.yml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    env = bot_environment(
        slack_api_url="http://127.0.0.1:1/api/",
        github_api_url="http://127.0.0.1:1",
        database_url=f"sqlite:///{tmp_path}/bot.db",
    )
    for name, value in {**env, "ROLLOUT_PLAN": str(tmp_path / "plan.yml")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SENTRY_ORG", "scriptum")
    with pytest.raises(ConfigError) as refused:
        load_settings(Settings, env_file=None)
    assert refused.value.problems == [
        "SENTRY_TOKEN: the rollout plan reads crash rates from Sentry: set SENTRY_PROJECT, "
        "SENTRY_TOKEN"
    ]
    monkeypatch.setenv("SENTRY_PROJECT", "4505")
    monkeypatch.setenv("SENTRY_TOKEN", TOKEN)
    settings = load_settings(Settings, env_file=None)
    assert TOKEN not in "\n".join(value for _, value in settings.describe())


async def test_a_ring_crashing_in_sentry_trips_the_kill_switch_through_the_bot(
    sentry: SentryTestServer, tmp_path: Path, sqlite_database_url: str
) -> None:
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml"))
    plan["tracks"]["desktop"]["metrics"] = config().model_dump(mode="json", exclude_none=True)
    async with Sandbox(
        workdir=tmp_path,
        database_url=sqlite_database_url,
        plan_yaml=yaml.safe_dump(plan, sort_keys=False),
        extra_env=sentry.environment(),
    ) as box:
        write_figures(box.figures, "relay", {"canary": CANARY_OK, "half": CANARY_OK})
        await box.command("start v1.4.2 --flags-ready")
        await box.click("dispatch")
        # Sessions during the ring's window (Sentry rounds a range out to whole hours, so
        # sessions from before the rollout would count only when no hour boundary lies between).
        with_sessions(sentry, at=datetime.now(UTC))
        await box.wait_until(lambda r: r.phase is Phase.RUNNING)
        halted = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
        assert halted.track("desktop").stage("internal").state is StageState.FAILED_GATE
        assert reviews(box, "desktop") == HALTED_ON_INTERNAL
        card = await box.wait_for_thread("internal ring gate: KILL_SWITCH*")
        assert "Crash rate 0.25% is 1.25x its limit of 0.2%" in card
        assert "sample 10,000" in card and "Open the query in Sentry" in card


async def test_a_window_shorter_than_a_second_is_still_a_range_sentry_takes(
    sentry: SentryTestServer,
) -> None:
    start = datetime.now(UTC).replace(microsecond=100_000)
    with_sessions(sentry, at=start)
    short = replace(window(), start=start, end=start + timedelta(milliseconds=400))
    reading = await SentrySource(config(), access=access(sentry)).measure(short)
    (metric,) = reading.metrics
    assert metric.problem is None  # not "Sentry answered HTTP 400: start must be before end"
    request = sentry.requests[0]
    assert request.params["start"] < request.params["end"]


async def test_a_window_ending_on_the_hour_does_not_count_the_hour_after_it(
    sentry: SentryTestServer,
) -> None:
    """Sentry takes `end` as inclusive and rounds the range out to whole hours: a window ending
    at 11:00:00 sent as `end=11:00:00` read 10:00 to 12:00, and the healthy sessions started
    after the window (read as its gate settled, or late) diluted a ring crashing in half of its
    window's sessions under its limit: a PASS."""
    start = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
    end = start + timedelta(hours=1)
    at = start + timedelta(minutes=30)
    sentry.add_sessions(release=RELEASE, environment="internal", count=10, crashed=5, at=at)
    after = end + timedelta(minutes=20)
    sentry.add_sessions(release=RELEASE, environment="internal", count=5000, crashed=0, at=after)
    hour = replace(window(), start=start, end=end, rollout_start=start)
    reading = await SentrySource(config(), access=access(sentry)).measure(hour)
    assert (reading.figures.crash_rate, reading.figures.sample) == (Decimal("0.5"), 10)
    assert gate(reading).verdict is Verdict.KILL_SWITCH


def half_hour_crashing(sentry: SentryTestServer) -> QueryWindow:
    """A window 10:00-10:30 whose 10 sessions crash in 5, and 5,000 healthy sessions started
    in the rest of its hour, after it (its gate settled, or read late)."""
    start = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
    at = start + timedelta(minutes=10)
    sentry.add_sessions(release=RELEASE, environment="internal", count=10, crashed=5, at=at)
    after = start + timedelta(minutes=45)
    sentry.add_sessions(release=RELEASE, environment="internal", count=5000, crashed=0, at=after)
    end = start + timedelta(minutes=30)
    return replace(window(), start=start, end=end, rollout_start=start)


@pytest.mark.parametrize(("backend", "interval"), [("metrics", "10s"), ("sessions", "10s")])
async def test_a_window_counts_no_sessions_started_after_it_in_its_last_hour(
    sentry: SentryTestServer, backend: str, interval: str
) -> None:
    """The bot asked Sentry for hourly buckets, and Sentry rounds the range out to them: a
    30-minute window read its whole hour, the sessions started after it (with little time to
    crash) diluted 5 crashes in 10 sessions to 0.1%, under the 0.2% limit: a PASS. Now it asks
    for the finest buckets and counts those of the window (a self-hosted Sentry with minute
    resolution still answers the whole hour, by the minute)."""
    sentry.backend = backend
    reading = await SentrySource(config(), access=access(sentry)).measure(
        half_hour_crashing(sentry)
    )
    assert (reading.figures.crash_rate, reading.figures.sample) == (Decimal("0.5"), 10)
    assert gate(reading).verdict is Verdict.KILL_SWITCH
    assert {r.params["interval"][0] for r in sentry.requests} == {interval}


@pytest.mark.parametrize(
    ("minute_resolution", "crash_rate"),
    [(False, "crash_rate(session)"), (True, "crash_rate(user)")],
)
async def test_a_window_sentry_reads_only_in_whole_hours_is_not_judged(
    sentry: SentryTestServer, minute_resolution: bool, crash_rate: str
) -> None:
    """A self-hosted Sentry without minute resolution refuses buckets under an hour and counts
    the window's whole hour; users (counted once over a range) cannot be added up by the
    minute: the diluted figure is not judged, and the card says what Sentry read."""
    sentry.backend, sentry.minute_resolution = "sessions", minute_resolution
    reading = await SentrySource(config(crash_rate=crash_rate), access=access(sentry)).measure(
        half_hour_crashing(sentry)
    )
    (metric,) = reading.metrics
    assert metric.problem is not None
    assert "Sentry read 10:00:00 to 11:00:00 UTC for the window 10:00:00 to 10:30:00" in (
        metric.problem
    )
    assert gate(reading).verdict is Verdict.INCONCLUSIVE
    assert metric.series  # the chart of the rollout still has Sentry's hours


async def test_a_window_on_the_hour_is_read_whole_without_minute_resolution(
    sentry: SentryTestServer,
) -> None:
    sentry.backend, sentry.minute_resolution = "sessions", False
    start = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
    sentry.add_sessions(release=RELEASE, environment="internal", count=10, crashed=5, at=start)
    hour = replace(window(), start=start, end=start + timedelta(hours=1), rollout_start=start)
    reading = await SentrySource(config(), access=access(sentry)).measure(hour)
    assert gate(reading).verdict is Verdict.KILL_SWITCH
    # Refused 10s, asked again by the hour.
    assert sorted(r.params["interval"][0] for r in sentry.requests) == ["10s", "10s", "1h", "1h"]


async def test_a_long_window_on_sentry_io_is_counted_by_its_buckets(
    sentry: SentryTestServer,
) -> None:
    """sentry.io rounds a range asked by the minute (or more) out to whole hours: a 16-hour
    window asked by the minute came to 1020 points, refused, and asked again by the hour, read
    whole hours past the window: INCONCLUSIVE, blaming a self-hosted Sentry. Now the bot asks
    for an interval whose buckets over the hour-rounded range Sentry answers (5 minutes)."""
    start = datetime(2025, 6, 2, 10, 3, tzinfo=UTC)
    end = start + timedelta(hours=16)
    at, after = start + timedelta(hours=1), end + timedelta(minutes=30)
    sentry.add_sessions(release=RELEASE, environment="internal", count=10, crashed=5, at=at)
    sentry.add_sessions(release=RELEASE, environment="internal", count=5000, crashed=0, at=after)
    long = replace(window(), start=start, end=end, rollout_start=start)
    reading = await SentrySource(config(), access=access(sentry)).measure(long)
    assert (reading.figures.crash_rate, reading.figures.sample) == (Decimal("0.5"), 10)
    assert gate(reading).verdict is Verdict.KILL_SWITCH
    assert {r.params["interval"][0] for r in sentry.requests} == {"5m"}


async def test_a_user_crash_rate_sentry_io_reads_in_whole_hours_names_no_feature_it_lacks(
    sentry: SentryTestServer,
) -> None:
    """Users are counted once over the range Sentry reads, and sentry.io rounds a range asked by
    the minute out to whole hours: a 3-hour user crash rate is not judged, and the card said
    a self-hosted Sentry's minute resolution would judge it (sentry.io has none to turn on)."""
    start = datetime(2025, 6, 2, 10, 3, tzinfo=UTC)
    sentry.add_sessions(release=RELEASE, environment="internal", count=10, crashed=5, at=start)
    three = replace(window(), start=start, end=start + timedelta(hours=3), rollout_start=start)
    source = SentrySource(config(crash_rate="crash_rate(user)"), access=access(sentry))
    (metric,) = (await source.measure(three)).metrics
    assert metric.problem is not None
    assert "Sentry read 10:00:00 to 14:00:00 UTC for the window 10:03:00 to 13:03:00" in (
        metric.problem
    )
    assert "minute-resolution" not in metric.problem  # sentry.io has none to turn on
    assert "crash_rate(session) is counted by its buckets" in metric.problem
