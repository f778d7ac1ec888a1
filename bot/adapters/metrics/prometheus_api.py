"""Prometheus's HTTP query API as the gate's sources use it: one number from an instant query
(anything else a `MetricsProblem` with the reason), a series from a range query, and
Prometheus's own clock compared with the bot's (`bot.domain.clocks`)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from yarl import URL

from bot.adapters.metrics.live import (
    Asking,
    MetricsProblem,
    Sleep,
    asking,
    request_json,
    utc_now,
)
from bot.domain.clocks import ClockOffset
from bot.services.clock_skew import offset_of, too_slow_to_tell
from bot.services.ports import Clock
from bot.settings.metrics import READ_WITHIN

_MAX_WARNING = 200
"""A warning's text is cut to this many characters in a figure's problem."""


def public_url(base_url: str) -> str:
    """The base URL without credentials or a trailing slash: safe to show and to log."""
    url = URL(base_url)
    if url.user is not None or url.password is not None:
        url = url.with_user(None)
    return str(url).rstrip("/")


async def check_clock(
    url: str, *, clock: Clock = utc_now, within: float = READ_WITHIN
) -> ClockOffset:
    """How far Prometheus's clock at `url` is from `clock`; raises MetricsProblem when it
    cannot answer within `within` seconds (unreachable, refusing, not Prometheus)."""
    async with asking(each=READ_WITHIN, within=within) as session:
        return await PrometheusClient(url).offset(session, clock)


def unclear(offset: ClockOffset) -> str:
    """Why the clocks could not be compared (answers too slow to tell)."""
    return too_slow_to_tell(offset, whose="Prometheus's", server="Prometheus", asked="time()")


class NoSeries(MetricsProblem):
    """The query matched no series."""


class PrometheusClient:
    """Prometheus's HTTP query API (`/api/v1/query`, `/api/v1/query_range`)."""

    def __init__(
        self, base_url: str, *, clock: Clock = utc_now, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._clock = clock
        self._sleep = sleep

    async def instant(self, session: Asking, query: str, at: datetime | None) -> Decimal:
        """The one number `query` gives at `at` (None: at Prometheus's own now); raises
        MetricsProblem with the reason otherwise."""
        form = {"query": query} if at is None else {"query": query, "time": _epoch(at)}
        data = await self._call(session, "query", form)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar" and isinstance(result, list):
            return _number(result)
        if kind != "vector" or not isinstance(result, list):
            raise MetricsProblem(f"the query gave a {kind}, not one number")
        if not result:
            raise NoSeries("no data: the query matched no series")
        if len(result) > 1:
            raise MetricsProblem(
                f"the query gave {len(result)} series, not one: aggregate them (sum, max)"
            )
        return _number(result[0].get("value"))

    async def now(self, session: Asking) -> datetime:
        """Prometheus's clock: `time()` asked without a `time` is evaluated at the server's
        now (with one, it would only give that `time` back)."""
        return datetime.fromtimestamp(float(await self.instant(session, "time()", None)), UTC)

    async def offset(self, session: Asking, clock: Clock) -> ClockOffset:
        """How far Prometheus's clock is from `clock` (`offset_of`: read again while the
        answers' round trips leave it unclear)."""
        return await offset_of(lambda: self.now(session), clock)

    async def series(
        self,
        session: Asking,
        query: str,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> tuple[tuple[datetime, float], ...]:
        """`query` over time (the first series; NaN and infinite points left out)."""
        data = await self._call(
            session,
            "query_range",
            {
                "query": query,
                "start": _epoch(start),
                "end": _epoch(end),
                "step": f"{max(1, int(step.total_seconds()))}s",
            },
        )
        result = data.get("result")
        if data.get("resultType") != "matrix" or not isinstance(result, list) or not result:
            return ()
        points: list[tuple[datetime, float]] = []
        for stamp, text in result[0].get("values", []):
            value = float(text)
            if math.isfinite(value):
                points.append((datetime.fromtimestamp(float(stamp), UTC), value))
        return tuple(points)

    async def _call(
        self, session: Asking, endpoint: str, form: Mapping[str, str]
    ) -> dict[str, Any]:
        status, body = await request_json(
            session,
            "POST",
            f"{self.base_url}/api/v1/{endpoint}",
            service=f"Prometheus at {public_url(self.base_url)}",
            clock=self._clock,
            sleep=self._sleep,
            data=dict(form),
        )
        if body is None:
            raise MetricsProblem(f"Prometheus answered HTTP {status} without JSON")
        if not isinstance(body, dict):
            raise MetricsProblem("Prometheus answered with something other than a JSON object")
        if body.get("status") != "success":
            detail = body.get("error") or f"HTTP {status}"
            raise MetricsProblem(f"Prometheus refused the query: {detail}")
        if body.get("isPartial") is True:
            # VictoriaMetrics' vmselect with a vmstorage node down: the number leaves out the
            # series on that node (the canary's, maybe), and no warning says so.
            raise MetricsProblem(
                "Prometheus answered isPartial: part of its storage did not answer, so the "
                "number may leave out the canary's series"
            )
        warning = _first_warning(body.get("warnings"))
        if warning is not None:
            raise MetricsProblem(
                f"Prometheus warned that its answer may be partial or wrong: {warning}"
            )
        data = body.get("data")
        if not isinstance(data, dict):
            raise MetricsProblem("Prometheus answered without data")
        return data


def _number(pair: object) -> Decimal:
    """The value of a `[timestamp, "text"]` pair: finite and not negative, or MetricsProblem."""
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
        raise MetricsProblem("Prometheus answered a value of an unknown shape")
    text = pair[1]
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise MetricsProblem(f"the query gave {text!r}, not a number") from None
    if value.is_nan():
        raise MetricsProblem("the query gave NaN (0/0: nothing counted in the window?)")
    if value.is_infinite():
        raise MetricsProblem(f"the query gave {text} (a division by zero?)")
    if value.is_signed() and value != 0:
        raise MetricsProblem(f"the query gave a negative number ({text})")
    return abs(value)


def _first_warning(warnings: object) -> str | None:
    """The first warning of a `success` answer that makes its number untrustworthy: part of the
    data could not be read (a remote-read store or a Thanos store down: the number may leave out
    the very series that fail) or a `PromQL warning:`. A `PromQL info:` annotation, which
    Thanos and Prometheus before it had an `infos` list put among the warnings, may be a false
    positive (a counter not named `_total`) and is not."""
    listed = warnings if isinstance(warnings, list) else [warnings] if warnings else []
    for warning in map(str, listed):
        if not warning.startswith("PromQL info:"):
            return warning[:_MAX_WARNING]
    return None


def _epoch(moment: datetime) -> str:
    return f"{moment.timestamp():.3f}"
