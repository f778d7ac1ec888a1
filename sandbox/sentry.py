"""A local Sentry answering the release-health sessions API as sentry.io does.

`GET /api/0/organizations/{org}/sessions/` with Bearer token auth, `field` (`sum(session)`,
`count_unique(user)`, `crash_rate(session)`, `crash_rate(user)`), `project`, `environment`,
`query` (`release:"x"`, `!release:"x"`), `start`/`end` (the end inclusive) or `statsPeriod`, and
`interval`, read as Sentry's `get_constrained_date_range` does for its two backends (`backend`):
a metrics-backed Sentry (sentry.io, the default) takes 10s and up, dividing a day, aligns the
range to 10s and rounds it out to whole hours for a minute and up; a sessions-backed one
(self-hosted) reads 10s as a minute, refuses less than an hour without minute resolution
(`minute_resolution`) and ranges over 6 h at minute resolution, and rounds the range out to
whole hours whatever the interval. At most 1000 points.
Sessions are recorded with `add_sessions`; every request is kept in `requests`. Faults:
`totals_patch`, `rate_limited` (a 429 as Sentry's rate limiter answers).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from sandbox.loopback import LoopbackServer

_MAX_POINTS = 1000
_FIELDS = ("sum(session)", "count_unique(user)", "crash_rate(session)", "crash_rate(user)")
_PERIOD = re.compile(r"([0-9]+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_TERM = re.compile(r'(!?)release:(?:"((?:[^"\\]|\\.)*)"|(\S+))')


@dataclass(frozen=True)
class SessionBatch:
    """`count` sessions of `users` users of one release in one environment at one moment."""

    release: str
    environment: str
    at: datetime
    count: int
    crashed: int
    users: int
    crashed_users: int


@dataclass(frozen=True)
class SentryRequest:
    path: str
    params: dict[str, list[str]]
    authorization: str | None


@dataclass
class SentryTestServer(LoopbackServer):
    """Sentry's sessions API on 127.0.0.1 (random port) for one organisation and project."""

    token: str
    org: str = "scriptum"
    project: str = "4505"
    batches: list[SessionBatch] = field(default_factory=list)
    requests: list[SentryRequest] = field(default_factory=list)
    totals_patch: dict[str, Any] = field(default_factory=dict)
    """Faults for tests: fields whose totals are answered as given (a null, NaN, infinite or
    negative count a proxy or a broken release-health backend could give)."""
    rate_limited: list[float] = field(default_factory=list)
    """Faults for tests: the next requests, one each, are refused by the rate limiter (HTTP
    429), its window starting again that many seconds later."""
    backend: str = "metrics"
    """`metrics` (sentry.io: the range aligned to the interval) or `sessions` (a self-hosted
    Sentry on the sessions dataset: the range rounded out to whole hours)."""
    minute_resolution: bool = True
    """A `sessions` backend's minute-resolution feature: without it, intervals under an hour
    are refused."""

    def environment(self) -> dict[str, str]:
        """The settings that point a bot at this server (`SENTRY_URL`, `SENTRY_ORG`, ...)."""
        return {
            "SENTRY_URL": self.url,
            "SENTRY_ORG": self.org,
            "SENTRY_PROJECT": self.project,
            "SENTRY_TOKEN": self.token,
        }

    def add_sessions(
        self,
        *,
        release: str,
        environment: str,
        count: int,
        crashed: int,
        at: datetime,
        users: int | None = None,
        crashed_users: int | None = None,
    ) -> None:
        self.batches.append(
            SessionBatch(
                release=release,
                environment=environment,
                at=at,
                count=count,
                crashed=crashed,
                users=count if users is None else users,
                crashed_users=crashed if crashed_users is None else crashed_users,
            )
        )

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/0/organizations/{org}/sessions/", self._sessions)
        return app

    async def _sessions(self, request: web.Request) -> web.Response:
        query = request.rel_url.query
        self.requests.append(
            SentryRequest(
                path=request.path,
                params={key: query.getall(key) for key in set(query.keys())},
                authorization=request.headers.get("Authorization"),
            )
        )
        if self.rate_limited:
            # Sentry's API docs (Rate Limits): a fixed window per caller and endpoint; every
            # answer says when the next window begins (X-Sentry-Rate-Limit-Reset, UTC epoch
            # seconds). They name no Retry-After.
            reset = math.ceil(datetime.now(UTC).timestamp() + self.rate_limited.pop(0))
            return web.json_response(
                {"detail": "You are attempting to use this endpoint too frequently."},
                status=429,
                headers={
                    "X-Sentry-Rate-Limit-Limit": "40",
                    "X-Sentry-Rate-Limit-Remaining": "0",
                    "X-Sentry-Rate-Limit-Reset": str(reset),
                },
            )
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"detail": "Invalid token"}, status=401)
        if request.match_info["org"] != self.org:
            return web.json_response(
                {"detail": "The requested resource does not exist"}, status=404
            )
        unknown = set(query.getall("environment", [])) - {b.environment for b in self.batches}
        if unknown:
            # Sentry knows an environment once a session or event reported it; it answers a
            # name it does not know as it answers an unknown organisation.
            return web.json_response(
                {"detail": "The requested resource does not exist"}, status=404
            )
        projects = query.getall("project", [])
        if projects and any(p not in (self.project, "-1") for p in projects):
            # Sentry's answer to a project id the token cannot read (or none of the org's).
            return web.json_response(
                {"detail": "You do not have permission to perform this action."}, status=403
            )
        try:
            return web.json_response(self._answer(query))
        except ValueError as error:
            return web.json_response({"detail": str(error)}, status=400)

    def _answer(self, query: MultiDictProxy[str]) -> dict[str, Any]:
        fields = query.getall("field", [])
        if not fields:
            raise ValueError('Request is missing a "field"')
        unknown = [name for name in fields if name not in _FIELDS]
        if unknown:
            raise ValueError(f'Invalid field: "{unknown[0]}"')
        interval = self._interval(query.get("interval", "1h"))
        start, end = _range(query, self._rounding(interval))
        if (end - start) / interval > _MAX_POINTS:
            raise ValueError(
                "Your interval and date range would create too many results. "
                "Use a larger interval, or a smaller date range."
            )
        minutes = self.backend == "sessions" and interval % timedelta(hours=1)
        if minutes and end - start > timedelta(hours=6):
            raise ValueError(
                "The time-range when using one-minute resolution intervals is restricted "
                "to 6 hours."
            )
        environments = set(query.getall("environment", []))
        matches = _matcher(query.get("query", ""))
        chosen = [
            b
            for b in self.batches
            if start <= b.at < end
            and (not environments or b.environment in environments)
            and matches(b.release)
        ]
        intervals = []
        moment = start
        while moment < end:
            intervals.append(moment)
            moment += interval
        series = {
            name: [
                _value(name, [b for b in chosen if slot <= b.at < slot + interval])
                for slot in intervals
            ]
            for name in fields
        }
        totals = {name: _value(name, chosen) for name in fields}
        totals.update((name, value) for name, value in self.totals_patch.items() if name in totals)
        return {
            "start": _iso(start),
            "end": _iso(end),
            "intervals": [_iso(slot) for slot in intervals],
            "groups": [{"by": {}, "totals": totals, "series": series}] if chosen else [],
            "query": query.get("query", ""),
        }

    def _interval(self, text: str) -> timedelta:
        match = _PERIOD.fullmatch(text)
        if match is None:
            raise ValueError(f"Invalid interval: {text}")
        interval = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        smallest = timedelta(seconds=10)
        if self.backend == "sessions":
            # The sessions dataset has no bucket under a minute: it reads 10s as 1m.
            interval = max(interval, timedelta(minutes=1))
            smallest = timedelta(minutes=1 if self.minute_resolution else 60)
        if interval < smallest or interval % smallest:
            unit = {10: "ten seconds", 60: "one minute"}.get(int(smallest.total_seconds()))
            raise ValueError(
                "The interval has to be a multiple of the minimum interval of "
                f"{unit or 'one hour'}."
            )
        if interval > timedelta(days=1):
            raise ValueError("The interval has to be less than one day.")
        if timedelta(days=1) % interval:
            raise ValueError("The interval should divide one day without a remainder.")
        return interval

    def _rounding(self, interval: timedelta) -> timedelta:
        """The unit the range is rounded out to: whole hours (the interval's, rounded up), as
        `get_constrained_date_range` does for either backend, but for an interval under a minute
        on the metrics backend (sentry.io's 10s), which aligns the range to the interval."""
        if self.backend == "metrics" and interval < timedelta(minutes=1):
            return interval
        return timedelta(hours=-(-interval // timedelta(hours=1)))


def _value(name: str, batches: list[SessionBatch]) -> float | int | None:
    sessions = sum(b.count for b in batches)
    users = sum(b.users for b in batches)
    if name == "sum(session)":
        return sessions
    if name == "count_unique(user)":
        return users
    if name == "crash_rate(session)":
        return sum(b.crashed for b in batches) / sessions if sessions else None
    return sum(b.crashed_users for b in batches) / users if users else None


def _range(query: MultiDictProxy[str], rounding: timedelta) -> tuple[datetime, datetime]:
    if "start" in query and "end" in query:
        start, end = _parse(query["start"]), _parse(query["end"])
    else:
        match = _PERIOD.fullmatch(query.get("statsPeriod", "24h"))
        if match is None:
            raise ValueError("Invalid statsPeriod")
        end = datetime.now(UTC)
        start = end - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if end <= start:
        raise ValueError("start must be before end")
    if "end" in query:
        # Sentry takes an explicit `end` as inclusive: it adds a second before rounding, so an
        # end on an interval's boundary brings in the whole interval after it.
        end += timedelta(seconds=1)
    # Sentry rounds the range out to whole intervals (whole hours on the sessions dataset).
    step = rounding.total_seconds()
    first = datetime.fromtimestamp(start.timestamp() // step * step, UTC)
    last = datetime.fromtimestamp(-(-end.timestamp() // step) * step, UTC)
    return first, last


def _matcher(search: str) -> Callable[[str], bool]:
    terms = [
        (negated == "!", quoted.replace('\\"', '"') if quoted else bare)
        for negated, quoted, bare in _TERM.findall(search)
    ]
    if search.strip() and not terms:
        raise ValueError(f"Invalid query: {search}")

    def matches(release: str) -> bool:
        return all((release == wanted) != negated for negated, wanted in terms)

    return matches


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
