"""The time a settled gate's figures cover (`metrics.settle`): a window within its settle is not
over. Its gate has not run yet, so neither an INCONCLUSIVE extension decided on time nor a
person's Extend during the settle is a window opened again late: both read from the deploy,
as without settle. A held stage re-evaluated reads the latest stretch whose figures have
settled, as its gate did. Pure, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from test_rollout_machine import (
    NO_DATA,
    PLAN,
    PLAN_TEXT,
    at,
    canary_observing,
    evaluate,
    relay_verdict,
)

from bot.adapters.slack.messages import slack_time
from bot.adapters.slack.rollout_words import stage_words
from bot.cli.metrics import latest_window
from bot.domain.metrics import gate_windows
from bot.domain.plan import settle_of
from bot.domain.rollout import (
    InvalidTransition,
    Rollout,
    ScheduleWindow,
    StageState,
    extend,
    gate_evaluated,
    promote,
)
from bot.plan_file import parse_plan

SETTLE = timedelta(minutes=20)
_MANUAL_RELAY = (
    '    metrics:\n      source: manual\n      baseline_crash_rate: "0.001"\n\n  desktop:'
)
assert _MANUAL_RELAY in PLAN_TEXT
SETTLED = parse_plan(
    PLAN_TEXT.replace(
        _MANUAL_RELAY,
        "    metrics:\n"
        "      source: prometheus\n"
        '      baseline_crash_rate: "0.001"\n'
        "      crash_rate: {query: 'crash_rate{stage=\"$stage\"}', sample: 'requests'}\n"
        "      error_rate: {query: 'error_rate{stage=\"$stage\"}'}\n"
        "      settle: 20m\n\n  desktop:",
    ),
    "settled relay",
)
"""The built-in plan, its relay read from Prometheus with `settle: 20m`. The canary deployed at
T0+5m: its window runs to T0+35m, and its gate reads it at T0+55m."""
assert settle_of(SETTLED.track("relay").metrics) == SETTLE


def read(rollout: Rollout, now: datetime) -> list[tuple[datetime, datetime]]:
    windows = gate_windows(rollout, track="relay", stage="canary", now=now, settle=SETTLE)
    return [(window.start, window.end) for window in windows]


def inconclusive(rollout: Rollout, now: datetime) -> Rollout:
    decision = gate_evaluated(
        evaluate(rollout, "relay", "canary"),
        SETTLED,
        track="relay",
        stage="canary",
        verdict=NO_DATA,
        now=now,
    )
    return decision.rollout


def test_the_settled_gate_reads_its_window() -> None:
    assert read(canary_observing(SETTLED), at(55)) == [(at(5), at(35))]


def test_an_inconclusive_settled_gate_extends_its_window_from_the_deploy() -> None:
    """Judged on time (its window's end and settle), INCONCLUSIVE adds 15m to the window: the
    window's own figures stay in. Read as a window opened again late, the extension read from
    T0+25m, and the canary's crashes of its first 20 minutes were never judged again."""
    extended = inconclusive(canary_observing(SETTLED), at(55))
    canary = extended.track("relay").stage("canary")
    assert canary.state is StageState.OBSERVING and canary.window_ends_at == at(70)
    assert read(extended, at(90)) == [(at(5), at(70))]


def test_extend_during_the_settle_adds_to_the_window() -> None:
    """Extend clicked at T0+45m, while the gate waits for the window's late figures: the window
    runs 15m longer, from the deploy; its gate reads it 20m after its new end. Moved to end
    15m from the click, the window was read from T0+15m: its first 10 minutes never judged."""
    rollout = canary_observing(SETTLED)
    decision = extend(
        rollout, SETTLED, track="relay", actor="U1", by=timedelta(minutes=15), now=at(45)
    )
    canary = decision.rollout.track("relay").stage("canary")
    assert canary.window_ends_at == at(50)
    assert ScheduleWindow("relay", "canary", at(50)) in decision.effects
    assert read(decision.rollout, at(70)) == [(at(5), at(50))]


def test_extend_after_the_settle_still_moves_the_end_from_now() -> None:
    """Past its end and settle (its timer late), the window observes again from now."""
    rollout = canary_observing(SETTLED)
    decision = extend(
        rollout, SETTLED, track="relay", actor="U1", by=timedelta(minutes=15), now=at(60)
    )
    canary = decision.rollout.track("relay").stage("canary")
    assert canary.window_ends_at == at(75)
    assert read(decision.rollout, at(95)) == [(at(30), at(75))]


def test_a_held_stage_re_evaluated_reads_the_latest_settled_stretch() -> None:
    """Held on the gate's PASS at T0+55m. Re-evaluated as it was held, it reads what the gate
    read; two hours later, the latest 30m whose figures have settled (ending 20m ago), not the
    last 30m: their late figures (a crash reported at the app's next start) are not in yet, and
    a `promote: auto` stage was promoted on that PASS."""
    held = gate_evaluated(
        evaluate(canary_observing(SETTLED), "relay", "canary"),
        SETTLED,
        track="relay",
        stage="canary",
        verdict=relay_verdict(),
        now=at(55),
    ).rollout
    assert held.track("relay").stage("canary").state is StageState.HOLDING
    assert read(held, at(55)) == [(at(5), at(35))]
    assert read(held, at(175)) == [(at(125), at(155))]


def test_a_late_settled_gate_reads_the_latest_settled_stretch() -> None:
    """The gate ran at T0+120m, 65 minutes late (its timer behind): it reads its window and the
    latest 30m whose figures have settled (ending 20m ago), as a held stage's re-evaluation
    does. Ending now, the latest stretch missed the crashes of its last 20 minutes not yet
    reported, and a PASS on it promoted a canary failing since its window ended."""
    assert read(canary_observing(SETTLED), at(120)) == [(at(5), at(35)), (at(70), at(100))]
    # A minute past its end and settle, the latest stretch already reads past the window's end.
    assert read(canary_observing(SETTLED), at(57)) == [(at(5), at(35)), (at(7), at(37))]


# -- what a person sees while the gate settles ------------------------------------------------


def test_promote_during_the_settle_names_when_the_gate_reads() -> None:
    """At T0+45m the window ended 10 minutes ago: "still observing until 09:35" read as a stuck
    bot. The refusal says the window ended and when its gate reads it."""
    with pytest.raises(InvalidTransition) as refused:
        promote(canary_observing(SETTLED), SETTLED, track="relay", actor="U2")
    message = refused.value.message
    assert "window ends at 2025-06-02 09:35 UTC" in message
    assert "its gate reads it at 2025-06-02 09:55 UTC (settle 20m) and decides first" in message


def test_the_card_names_when_a_settled_gate_reads() -> None:
    rollout = canary_observing(SETTLED)
    plan_track = SETTLED.track("relay")
    canary = rollout.track("relay").stage("canary")
    words = stage_words(canary, plan_track.stage("canary"), plan_track)
    assert words.startswith("observing until <!date^")
    assert words.endswith(f", its gate at {slack_time(at(55))} (settle 20m)")
    without = canary_observing()
    plain = PLAN.track("relay")
    assert "settle" not in stage_words(
        without.track("relay").stage("canary"), plain.stage("canary"), plain
    )


def test_rollout_bot_metrics_reads_the_latest_settled_window() -> None:
    """`rollout-bot metrics canary` says what the gate would do: with a settle, over the 30m
    ending 20m ago, not over 30m whose late figures are not in (a PASS the gate would not give)."""
    track = SETTLED.track("relay")
    window = latest_window(
        track, "relay", track.stage("canary"), tag="v1.4.2", service="relay", now=at(100)
    )
    assert (window.start, window.end) == (at(50), at(80))
    plain = PLAN.track("relay")
    window = latest_window(
        plain, "relay", plain.stage("canary"), tag="v1.4.2", service="relay", now=at(100)
    )
    assert (window.start, window.end) == (at(70), at(100))
