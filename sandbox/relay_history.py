"""A known week of Scriptum's relay in OpenMetrics text, to backfill a real Prometheus with.

Steady traffic (1,000 requests and messages a minute, 0.2% failing, no restarts) with four
episodes at known times: an error spike, a crash spike (relay restarts), a quiet hour and a
two-hour gap with no samples at all. Replayed in 30-minute windows from the week's start,
each episode decides a known set of windows (what `tests/test_backtest.py` asserts):

| episode | 30m windows | verdict |
|---|---|---|
| error spike, day 1 14:00-14:30, 5% errors | 1 | ROLLBACK (error rate) |
| crash spike, day 2 09:00-09:30, 5 restarts a minute | 1 | ROLLBACK (crash rate) |
| quiet hour, day 3 03:00-04:00, 10 requests a minute | 2 | INCONCLUSIVE (sample 300) |
| gap, day 4 10:00-12:00, no samples | 4 | INCONCLUSIVE (no data) |
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Traffic:
    """What the relay counts in one minute."""

    requests: int
    request_errors: int
    ws: int
    ws_errors: int
    restarts: int = 0


@dataclass(frozen=True)
class Episode:
    """Traffic other than the steady one from `start` (after the week's start) for `length`;
    no traffic means no samples at all (a scrape gap)."""

    name: str
    start: timedelta
    length: timedelta
    traffic: Traffic | None

    def covers(self, offset: timedelta) -> bool:
        return self.start < offset <= self.start + self.length


STEADY = Traffic(requests=600, request_errors=1, ws=400, ws_errors=1)
EPISODES = (
    Episode(
        "error spike",
        timedelta(days=1, hours=14),
        timedelta(minutes=30),
        Traffic(requests=600, request_errors=30, ws=400, ws_errors=20),
    ),
    Episode(
        "crash spike",
        timedelta(days=2, hours=9),
        timedelta(minutes=30),
        Traffic(requests=600, request_errors=1, ws=400, ws_errors=1, restarts=5),
    ),
    Episode(
        "quiet hour",
        timedelta(days=3, hours=3),
        timedelta(hours=1),
        Traffic(requests=6, request_errors=0, ws=4, ws_errors=0),
    ),
    Episode("gap", timedelta(days=4, hours=10), timedelta(hours=2), None),
)

_SERIES = (
    ('relay_request_rate_total{endpoint="/documents",method="GET"}', "requests"),
    ('relay_request_errors_total{endpoint="/documents",method="GET"}', "request_errors"),
    ('relay_ws_rate_total{endpoint="/ws/sync",method="GET"}', "ws"),
    ('relay_ws_errors_total{endpoint="/ws/sync",method="GET"}', "ws_errors"),
    ('kube_pod_container_status_restarts_total{container="relay"}', "restarts"),
)

RELAY_METRICS = {
    "source": "prometheus",
    "baseline_crash_rate": "0.001",
    "error_rate": {
        "query": 'sum(increase({__name__=~"relay_request_errors_total|relay_ws_errors_total"}'
        "[$window])) / sum(increase("
        '{__name__=~"relay_request_rate_total|relay_ws_rate_total"}[$window]))',
        "sample": 'sum(increase({__name__=~"relay_request_rate_total|relay_ws_rate_total"}'
        "[$window]))",
    },
    "crash_rate": {
        "query": 'sum(increase(kube_pod_container_status_restarts_total{container="relay"}'
        "[$window])) / sum(increase("
        '{__name__=~"relay_request_rate_total|relay_ws_rate_total"}[$window]))',
    },
}
"""The relay track's `metrics` section reading this history (docs/metrics.md's queries without
their `version="$tag"` matcher: a week of the past spans releases, docs/backtest.md)."""


def known_week(start: datetime) -> str:
    """A sample a minute of every series from `start` to `start` + 7 days (both included),
    as OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`."""
    totals = dict.fromkeys((field for _, field in _SERIES), 0)
    lines: list[str] = []
    minutes = int(WEEK.total_seconds()) // 60
    for minute in range(minutes + 1):
        offset = timedelta(minutes=minute)
        episode = next((e for e in EPISODES if e.covers(offset)), None)
        if episode is not None and episode.traffic is None:
            continue  # a gap: no samples (the counters do not move either)
        traffic = STEADY if episode is None else episode.traffic
        assert traffic is not None
        if minute > 0:
            for field in totals:
                totals[field] += getattr(traffic, field)
        stamp = int((start + offset).timestamp())
        lines += [f"{series} {totals[field]} {stamp}" for series, field in _SERIES]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"
