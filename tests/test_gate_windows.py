"""The time a gate's figures cover (`stage_window`), whoever asks: the window's timer on time
or late, Re-evaluate while the stage observes, and Re-evaluate once it holds. Pure, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from test_rollout_machine import NO_DATA, PLAN, at, canary_observing, judged, relay_verdict

from bot.domain.controls import reevaluation
from bot.domain.metrics import LATE_GATE, gate_windows, stage_window
from bot.domain.reasons import Reason
from bot.domain.rollout import (
    CancelWindow,
    Rollout,
    ScheduleWindow,
    StageState,
    extend,
    gate_evaluated,
    window_timer_dead,
)

# The canary deployed at T0+5m: its window runs to T0+35m.


def window_at(rollout: Rollout, now: datetime) -> tuple[datetime, datetime]:
    window = stage_window(rollout, track="relay", stage="canary", now=now)
    return window.start, window.end


def test_while_observing_the_window_so_far() -> None:
    assert window_at(canary_observing(), at(20)) == (at(5), at(20))


@pytest.mark.parametrize("late", [timedelta(0), timedelta(seconds=3), timedelta(hours=2)])
def test_the_window_timer_reads_its_own_window_however_late(late: timedelta) -> None:
    """The runbook's gate is on the observation window: a timer fired late (the bot was down)
    judges that window, not a longer one that would dilute what it saw (and, over a minute
    late, the latest stretch too: below)."""
    assert window_at(canary_observing(), at(35) + late) == (at(5), at(35))


@pytest.mark.parametrize(
    ("late", "latest"),
    [
        (timedelta(0), None),
        (LATE_GATE, None),
        (
            LATE_GATE + timedelta(seconds=1),
            (at(6) + timedelta(seconds=1), at(36) + timedelta(seconds=1)),
        ),
        (timedelta(hours=2), (at(125), at(155))),
    ],
    ids=["on time", "within a minute", "a minute and a second", "two hours"],
)
def test_a_late_gate_reads_the_latest_stretch_too(
    late: timedelta, latest: tuple[datetime, datetime] | None
) -> None:
    """More than `LATE_GATE` after its window's end, the gate also reads the latest stretch of
    the window's length: the canary may have failed since (`tests/test_late_gate.py`)."""
    windows = gate_windows(canary_observing(), track="relay", stage="canary", now=at(35) + late)
    assert [(w.start, w.end) for w in windows] == [(at(5), at(35)), *([latest] if latest else [])]


def test_a_held_stage_reads_one_window_however_late() -> None:
    """Re-evaluated hours after its end, a held stage reads the latest stretch alone."""
    assert len(gate_windows(held(False), track="relay", stage="canary", now=at(155))) == 1


def held(inconclusive: bool) -> Rollout:
    """The canary held at T0+35m on a PASS, or after INCONCLUSIVE twice (once extended)."""
    if not inconclusive:
        return judged(canary_observing(), "relay", "canary", relay_verdict(), at(35))
    extended = judged(canary_observing(), "relay", "canary", NO_DATA, at(35))
    ends = extended.track("relay").stage("canary").window_ends_at
    assert ends is not None
    return judged(extended, "relay", "canary", NO_DATA, ends)


@pytest.mark.parametrize("inconclusive", [False, True], ids=["on a PASS", "INCONCLUSIVE"])
def test_a_held_stage_is_re_evaluated_up_to_now(inconclusive: bool) -> None:
    """Held after its window (a PASS waiting for Promote, an INCONCLUSIVE hold) the canary is
    still deployed: Re-evaluate two hours later read the closed window, and its hours-old
    PASS (a `promote: auto` stage is promoted on it) hid a canary failing since. It reads the
    latest window of the length it was observed for: two hours of good figures since its deploy
    would dilute the failing last half hour."""
    rollout = held(inconclusive)
    canary = rollout.track("relay").stage("canary")
    assert canary.state is StageState.HOLDING and canary.window_ends_at is not None
    observed_for = canary.window_ends_at - at(5)
    later = at(35 + 120)
    assert window_at(rollout, later) == (later - observed_for, later)


def test_a_held_stage_reads_the_latest_window_of_its_length() -> None:
    """Re-evaluated as its window closes, a held stage reads that window; a quarter of an hour
    later, the last half hour (its window's length), never from before its deploy."""
    rollout = held(False)
    assert window_at(rollout, at(50)) == (at(20), at(50))
    assert window_at(rollout, at(35)) == (at(5), at(35))


# -- a window opened again after it closed ----------------------------------------------------
# An INCONCLUSIVE verdict reached late (the bot was down), on a held stage re-evaluated, or a
# missed gate extended by hand, opens the window again hours after the deploy. Read from the
# deploy, the extended window held those hours of figures: a canary failing in its last half
# hour passed on them (and a `promote: auto` stage was promoted). It reads the latest stretch
# of the length observed, plus the time added.

LATER = at(35 + 120)


def _extended_end(rollout: Rollout) -> datetime:
    canary = rollout.track("relay").stage("canary")
    assert canary.state is StageState.OBSERVING and canary.window_ends_at is not None
    return canary.window_ends_at


def test_an_extension_given_late_reads_the_latest_window_not_the_hours_before() -> None:
    """The window's timer fired two hours late: INCONCLUSIVE extends by 15m from then."""
    extended = judged(canary_observing(), "relay", "canary", NO_DATA, LATER)
    ends = _extended_end(extended)
    assert ends == LATER + timedelta(minutes=15)
    assert window_at(extended, ends) == (LATER - timedelta(minutes=30), ends)


def test_an_extension_on_time_reads_from_the_deploy() -> None:
    extended = judged(canary_observing(), "relay", "canary", NO_DATA, at(35))
    assert window_at(extended, at(50)) == (at(5), at(50))


def test_a_held_stage_re_evaluated_inconclusive_extends_its_latest_window() -> None:
    """Held on a PASS, re-evaluated two hours later: INCONCLUSIVE extends the window once."""
    rollout = held(False)
    assert window_at(rollout, LATER) == (LATER - timedelta(minutes=30), LATER)
    ready = reevaluation(rollout, PLAN, track="relay", verdict=NO_DATA, now=LATER)
    assert ready is not None
    extended = gate_evaluated(
        ready.rollout, PLAN, track="relay", stage="canary", verdict=NO_DATA, now=LATER
    ).rollout
    ends = _extended_end(extended)
    assert window_at(extended, ends) == (LATER - timedelta(minutes=30), ends)


def test_a_missed_gate_extended_by_hand_reads_its_latest_window() -> None:
    """The window's timer gave up; two hours later a person extends the window by 15m."""
    missed = window_timer_dead(
        canary_observing(),
        PLAN,
        track="relay",
        stage="canary",
        due_at=at(35),
        attempts=5,
        reason=Reason("the database was unreachable"),
    ).rollout
    extended = extend(
        missed, PLAN, track="relay", actor="U2", by=timedelta(minutes=15), now=LATER
    ).rollout
    ends = _extended_end(extended)
    assert ends == LATER + timedelta(minutes=15)
    assert window_at(extended, ends) == (LATER - timedelta(minutes=30), ends)


def test_a_window_extended_by_hand_after_its_end_reads_its_latest_window() -> None:
    """The window's timer is late (the bot was down, its timers behind) and the canary still
    observes two hours after its end: a person's Extend +15m moved the end to T0+50m, a time
    already past, so the gate ran at once on the first 45 minutes after the deploy and passed a
    canary failing since. It extends from now, reading the latest stretch as a missed gate's."""
    extended = extend(
        canary_observing(), PLAN, track="relay", actor="U2", by=timedelta(minutes=15), now=LATER
    )
    ends = _extended_end(extended.rollout)
    assert ends == LATER + timedelta(minutes=15)
    assert window_at(extended.rollout, ends) == (LATER - timedelta(minutes=30), ends)
    assert CancelWindow("relay", "canary", at(35)) in extended.effects
    assert ScheduleWindow("relay", "canary", ends) in extended.effects
