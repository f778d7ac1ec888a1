"""How a backtest cuts its range into the plan's windows (no I/O): whole windows of each
stage's length, back to back from the start, never past the end or now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from itertools import pairwise

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from bot.domain.plan import RolloutPlan
from bot.plan_file import parse_plan
from bot.services.backtest import MAX_WINDOWS, InvalidBacktest, Replay, prepare
from sandbox.relay_history import RELAY_METRICS

START = datetime(2026, 11, 1, tzinfo=UTC)


def relay_on_prometheus() -> RolloutPlan:
    plan = yaml.safe_load(
        resources.files("bot.domain").joinpath("default_plan.yml").read_text(encoding="utf-8")
    )
    plan["tracks"]["relay"]["metrics"] = RELAY_METRICS
    return parse_plan(yaml.safe_dump(plan), "test plan")


PLAN = relay_on_prometheus()


@example(offset=0, length=86400, now_after=86400)  # a whole day: the last window ends on it
@given(
    offset=st.integers(min_value=0, max_value=10**6),
    length=st.integers(min_value=30 * 60, max_value=40 * 86400),
    now_after=st.integers(min_value=0, max_value=40 * 86400),
)
def test_windows_are_whole_back_to_back_and_within_the_range(
    offset: int, length: int, now_after: int
) -> None:
    start = START + timedelta(seconds=offset)
    end = start + timedelta(seconds=length)
    now = start + timedelta(seconds=now_after + 1)
    try:
        prepared = prepare(PLAN, Replay(start=start, end=end), now=now)
    except InvalidBacktest as refused:
        last = min(end, now)
        shortest = last - start < timedelta(hours=1) and "no whole" in refused.message
        assert shortest or "more than" in refused.message, refused.message
        return
    assert prepared.end == min(end, now)
    assert [planned.stage.key for planned in prepared.stages] == ["canary", "half"]
    total = 0
    for planned in prepared.stages:
        length_of = planned.stage.window
        assert length_of is not None
        windows = planned.windows
        assert windows[0].start == start
        assert all(w.end - w.start == length_of for w in windows)
        assert all(a.end == b.start for a, b in pairwise(windows))
        assert windows[-1].end <= prepared.end < windows[-1].end + length_of
        # Each window is a rollout of its own: $since_start reaches back to its start.
        assert all(w.placeholders()["since_start"] == w.placeholders()["window"] for w in windows)
        total += len(windows)
    assert total <= MAX_WINDOWS
