"""A real Prometheus as a VictoriaMetrics cluster answers with one of its `vmstorage` nodes down.

`vmselect` serves partial answers by default (unless `-search.denyPartialResponse`): `success`,
the number computed from the nodes that answered, `isPartial: true`, and no warning. The
series on the node that is down (the canary's, maybe) are simply left out of the number.
`time()` reads no storage, so its answer is whole.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sandbox.prometheus_clock import SkewedClock


class PartialAnswers(SkewedClock):
    """`upstream`'s query API, every answer but `time()`'s marked `isPartial: true`."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, timedelta(0))

    def _annotate(self, body: dict[str, Any], query: str) -> None:
        if query.strip() != "time()":
            body["isPartial"] = True
