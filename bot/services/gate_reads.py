"""Reading a gate's figures from the track's metrics source, and judging them."""

from __future__ import annotations

import asyncio

from bot.domain.gate import GateVerdict
from bot.domain.metrics import QueryWindow, Reading, judge, judge_late
from bot.domain.plan import Track
from bot.services.ports import MetricsSource


async def read_gate(
    source: MetricsSource, track: Track, windows: tuple[QueryWindow, ...]
) -> tuple[GateVerdict, Reading] | None:
    """Read the gate's windows (`gate_windows`: its own, and the latest stretch when it runs
    late) and judge them; a late gate takes the worse verdict (`judge_late`). None: a person
    types the figures. A late gate's two windows are read at once: a source that does not
    answer holds the verdict one GATE_METRICS_TIMEOUT, not two. Figures
    of no window (`static`) are judged once."""
    own, *later = windows
    reading, *latest = await asyncio.gather(*(source.read(window) for window in windows))
    if reading is None:
        return None
    if not later or reading.window is None:
        return judge(track, reading), reading
    assert latest[0] is not None  # a source that read one window reads any
    return judge_late(track, (own, reading), (later[0], latest[0]))
