"""The Sentry release-health source: a ring's crash rate and session count from the sessions API.

`GET /api/0/organizations/{org}/sessions/` with `field=crash_rate(session)` and
`field=sum(session)` for the release and environment of the stage, over its window (and for
`baseline_query`, whose sessions are a sample too: the smaller of the two is the gate's). Sentry
rounds the range out to whole buckets of its `interval` (to whole hours on a self-hosted Sentry,
whatever the interval): the bot asks for the finest interval, reads the range Sentry answers
for, and counts only the buckets of the window; when Sentry's buckets reach past the window (an
hour-rounded Sentry), the figure is not judged, never diluted by sessions of another time. No
sessions, a null rate or an HTTP error leave the figure missing with the reason: the gate says
INCONCLUSIVE, never PASS.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from bot.adapters.metrics.live import (
    Asking,
    LiveSource,
    MetricsProblem,
    Sleep,
    request_json,
    utc_now,
)
from bot.adapters.metrics.sentry_buckets import (
    HOUR,
    SLACK,
    Totals,
    fine_interval,
    period,
    totals_of,
)
from bot.domain.metrics import Figures, MetricReading, QueryWindow, Reading
from bot.domain.plan import SentryMetrics, fill
from bot.services.ports import Clock
from bot.settings.metrics import READ_WITHIN

log = logging.getLogger(__name__)

_COUNT_FIELD = {"crash_rate(session)": "sum(session)", "crash_rate(user)": "count_unique(user)"}


@dataclass(frozen=True)
class SentryAccess:
    """Where and as whom the bot reads release health (SENTRY_URL, _ORG, _PROJECT, _TOKEN)."""

    url: str
    org: str
    project: str
    """The numeric project id (Sentry's sessions API filters by id)."""
    token: SecretStr


class SentryClient:
    """The organisation sessions endpoint of Sentry's API."""

    def __init__(
        self, access: SentryAccess, *, clock: Clock = utc_now, sleep: Sleep = asyncio.sleep
    ) -> None:
        self._access = access
        self._clock = clock
        self._sleep = sleep

    @property
    def access(self) -> SentryAccess:
        return self._access

    async def totals(
        self,
        session: Asking,
        *,
        field: str,
        query: str,
        environment: str | None,
        start: datetime,
        end: datetime,
    ) -> Totals:
        count_field = _COUNT_FIELD[field]
        fine = fine_interval(start, end)
        params: list[tuple[str, str]] = [
            ("field", field),
            ("field", count_field),
            ("project", self._access.project),
            ("query", query),
            ("start", _iso(start)),
            ("end", _inclusive_end(start, end)),
            ("interval", period(fine)),
        ]
        if environment:
            params.append(("environment", environment))
        status, body = await self._get(session, params)
        if status == 400 and fine < HOUR:
            # A self-hosted Sentry refuses intervals under an hour without minute resolution,
            # and ranges over 6 h with it: hourly buckets it answers.
            params = [(key, "1h" if key == "interval" else value) for key, value in params]
            status, body = await self._get(session, params)
        if status == 404 and environment:
            # Sentry answers 404 to an environment no session or event has reported yet (a
            # ring's first release), as to an unknown organisation: asked without it, it tells.
            unfiltered, _ = await self._get(session, params[:-1])
            if unfiltered == 200:
                raise MetricsProblem(
                    f"no data: Sentry knows no environment {environment!r} (no session or event "
                    "has reported it yet): check the plan's environment if the ring reports"
                )
        if status == 401:
            raise MetricsProblem(
                "Sentry refused the token (HTTP 401): SENTRY_TOKEN is invalid, expired or revoked"
            )
        if status == 403:
            # Sentry answers a project id the token cannot read (or not the organisation's) so
            # too: the token alone named, an operator would replace a good one.
            raise MetricsProblem(
                f"Sentry refused the request (HTTP 403): SENTRY_TOKEN needs org:read on "
                f"{self._access.org}, and SENTRY_PROJECT ({self._access.project}) must be the "
                "numeric id of one of its projects the token can read"
            )
        if status != 200 or not isinstance(body, dict):
            detail = body.get("detail") if isinstance(body, dict) else None
            raise MetricsProblem(
                f"Sentry answered HTTP {status}" + (f": {detail}" if detail else "")
            )
        try:
            return totals_of(body, field, count_field, (start, end), max(fine, SLACK))
        except (ValueError, TypeError, AttributeError, KeyError, IndexError):
            raise MetricsProblem("Sentry answered in an unexpected shape") from None

    async def _get(self, session: Asking, params: list[tuple[str, str]]) -> tuple[int, Any]:
        url = f"{self._access.url.rstrip('/')}/api/0/organizations/{self._access.org}/sessions/"
        headers = {"Authorization": f"Bearer {self._access.token.get_secret_value()}"}
        return await request_json(
            session,
            "GET",
            url,
            service="Sentry",
            clock=self._clock,
            sleep=self._sleep,
            params=params,
            headers=headers,
        )


class SentrySource(LiveSource):
    """Reads a ring's crash rate from Sentry release health at the end of its window."""

    def __init__(
        self,
        config: SentryMetrics,
        *,
        access: SentryAccess | None,
        clock: Clock = utc_now,
        timeout: float = 10.0,
        within: float = READ_WITHIN,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(clock=clock, timeout=timeout, within=within)
        self._config = config
        self._client = SentryClient(access, clock=clock, sleep=sleep) if access else None

    async def measure(self, window: QueryWindow) -> Reading:
        config = self._config
        if self._client is None:
            metric = MetricReading(
                name="crash_rate",
                value=None,
                problem="Sentry is not configured (SENTRY_ORG, SENTRY_PROJECT, SENTRY_TOKEN)",
            )
            return _reading(metric, None, window)
        values = window.placeholders()
        release = fill(config.release, values)
        environment = fill(config.environment, values) if config.environment else None
        baseline_query = fill(config.baseline_query, values) if config.baseline_query else None
        client = self._client
        async with self.session() as session:
            current, chart, baseline = await asyncio.gather(
                self._totals(session, client, _release_query(release), environment, window, False),
                self._totals(session, client, _release_query(release), environment, window, True),
                self._totals(session, client, baseline_query, environment, window, False),
            )
        problems = [
            f"{what}: {problem}"
            for what, (_, problem) in (("value", current), ("baseline", baseline))
            if problem
        ]
        rate = current[0].rate if current[0] else None
        sample = current[0].count if current[0] else None
        fixed = config.baseline_crash_rate if baseline_query is None else None
        baseline_rate = fixed if fixed is not None else (baseline[0].rate if baseline[0] else None)
        counted = baseline[0].count if baseline[0] else None
        if baseline_query is not None:
            # The baseline is a rate of its own sessions: one crash among a ring's last handful
            # of other releases' sessions sets a limit a crashing release passes under.
            sample = None if sample is None or counted is None else min(sample, counted)
        metric = MetricReading(
            name="crash_rate",
            value=rate,
            sample=sample,
            baseline=baseline_rate,
            baseline_live=baseline_query is not None,
            baseline_sample=counted,
            baseline_counted=baseline_query is not None,
            problem="; ".join(problems) or None,
            link=_release_url(client.access, release, environment),
            series=chart[0].series if chart[0] else (),
        )
        return _reading(metric, baseline_rate, window)

    async def _totals(
        self,
        session: Asking,
        client: SentryClient,
        query: str | None,
        environment: str | None,
        window: QueryWindow,
        whole_rollout: bool,
    ) -> tuple[Totals | None, str | None]:
        if query is None:
            return None, None
        try:
            totals = await client.totals(
                session,
                field=self._config.crash_rate,
                query=query,
                environment=environment,
                start=window.rollout_start if whole_rollout else window.start,
                end=window.end,
            )
        except MetricsProblem as problem:
            log.warning("sentry sessions %r: %s", query, problem)
            return None, str(problem)
        if totals.wider and not whole_rollout:
            return totals, totals.wider
        if totals.rate is None and not whole_rollout:
            where = f" in {environment}" if environment else ""
            if totals.count is None:
                counted = _COUNT_FIELD[self._config.crash_rate]
                return totals, (
                    f"no data: Sentry gave no whole, non-negative {counted} for {query}{where} "
                    "(null, NaN, infinite or negative): its crash rate is not judged"
                )
            if totals.count == 0:
                return totals, f"no data: no sessions for {query}{where} in the window"
            return totals, (
                f"no data: Sentry counted {totals.count} sessions for {query}{where} but gave "
                "no crash rate: it is not judged"
            )
        return totals, None


def _reading(metric: MetricReading, baseline: Decimal | None, window: QueryWindow) -> Reading:
    return Reading(
        baseline_crash=baseline,
        figures=Figures(crash_rate=metric.value, sample=metric.sample),
        source="sentry",
        metrics=(metric,),
        window=(window.start, window.end),
    )


def _release_query(release: str) -> str:
    escaped = release.replace("\\", "\\\\").replace('"', '\\"')
    return f'release:"{escaped}"'


def _release_url(access: SentryAccess, release: str, environment: str | None) -> str:
    url = (
        f"{access.url.rstrip('/')}/organizations/{access.org}/releases/"
        f"{quote(release, safe='')}/?project={access.project}"
    )
    return url + (f"&environment={quote(environment, safe='')}" if environment else "")


def _inclusive_end(start: datetime, end: datetime) -> str:
    """The window's last whole second, as Sentry reads `end`: inclusive (it adds a second, then
    rounds the range out to whole hours). An end of 11:00:00 sent as is read the hour after the
    window too, its sessions diluting the window's. At least a second after the start: a window
    shorter than a second must not read as an empty range, which Sentry refuses ("start must be
    before end")."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)  # first: a local time's fold
    if end.microsecond:
        end += timedelta(microseconds=1_000_000 - end.microsecond)
    last = max(end - timedelta(seconds=1), start.replace(microsecond=0) + timedelta(seconds=1))
    return _iso(last)


def _iso(moment: datetime) -> str:
    """The moment in whole seconds, as Sentry reads it (cut down)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
