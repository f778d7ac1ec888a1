"""The summary and the period report as pure values: which events count, how time held is
measured, the period's median and p90. No I/O: a rollout value and audit events in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from cleared import cleared_rollout

from bot.domain.period_report import InvalidPeriod, parse_period, period_report
from bot.domain.rollout import Phase, Rollout, StageState, TrackState, verdict_to_json
from bot.domain.rollout_summary import summarize
from bot.plan_file import load_plan
from bot.services.records import BOT, AuditEvent, is_machine, metrics_actor

PLAN = load_plan(None)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
PERSON = "U0RELMGR01"
OTHER = "U0APPROVE2"


def at(minutes: int) -> datetime:
    return T0 + minutes * MINUTE


def event(
    minutes: int,
    actor: str,
    action: str,
    result: str = "ok",
    stage: str | None = None,
    **detail: object,
) -> AuditEvent:
    return AuditEvent(
        id=minutes,
        at=at(minutes),
        actor=actor,
        action=action,
        result=result,
        rollout_id="r-1",
        track="relay",
        stage=stage,
        detail=detail or None,
    )


def gate(minutes: int, stage: str, crash: str, **extra: object) -> AuditEvent:
    verdict = PLAN.track("relay").evaluate_gate(
        baseline_crash=Decimal("0.001"),
        current_crash=Decimal(crash),
        current_error=Decimal("0"),
        sample=5000,
    )
    detail = {**verdict_to_json(verdict), **extra}
    return event(minutes, metrics_actor("static"), "gate", verdict.verdict, stage, **detail)


def ended(minutes: int, relay: TrackState = TrackState.COMPLETED) -> Rollout:
    """Started at T0; the relay's canary window 0-30 and its 50% window 40-100; ended then."""
    rollout = cleared_rollout(PLAN, now=T0)
    relay_track = rollout.track("relay")
    canary, half, *rest = relay_track.stages
    stages = (
        replace(canary, state=StageState.PASSED, window_started_at=at(0), window_ends_at=at(30)),
        replace(half, window_started_at=at(40), window_ends_at=at(100)),
        *rest,
    )
    tracks = tuple(
        replace(t, state=relay if t.name == "relay" else TrackState.COMPLETED, ended_at=at(minutes))
        for t in rollout.tracks
    )
    rollout = replace(rollout, phase=Phase.ENDED, run_id=7, ended_at=at(minutes), tracks=tracks)
    return rollout.with_track(replace(rollout.track("relay"), stages=stages))


def test_held_runs_from_the_gate_to_the_first_promotion_and_people_only_are_named() -> None:
    trail = [
        event(0, PERSON, "start"),
        event(0, PERSON, "dispatch"),
        gate(30, "canary", "0.001"),
        event(35, PERSON, "promote", "refused"),  # refused: not an act
        event(36, PERSON, "promote", "github_error"),  # GitHub refused it: not an act either
        event(38, PERSON, "promote"),
        event(39, PERSON, "promote"),  # a replica that lost the save recorded it again
        gate(70, "half", "0.001", interim=True),  # a re-evaluation before the window's end
        gate(100, "half", "0.001"),
        event(110, PERSON, "promote", override=True),
        event(100, BOT, "github_approved"),
    ]
    summary = summarize(ended(120), PLAN, trail, machine=is_machine)

    canary, half, *_ = summary.stages
    assert (canary.promoted_at, canary.promoted_by, canary.held) == (at(38), PERSON, 8 * MINUTE)
    assert (half.promoted_at, half.held) == (at(110), 10 * MINUTE)
    assert summary.held == 18 * MINUTE
    assert summary.lead_time == 120 * MINUTE and summary.succeeded
    assert [v.at for v in summary.verdicts] == [at(30), at(100)]  # the interim one is not
    assert [a.what for a in summary.acts] == [
        "started",
        "dispatched",
        "promoted",  # once: the second record of the same promotion is not a second act
        "promoted (override)",
    ]
    assert {a.actor for a in summary.acts} == {PERSON}


def test_a_failed_gates_note_of_the_tracks_it_left_is_no_act_and_no_gate() -> None:
    # Figures entered by hand fail the relay's 50% gate: the gate's audit event is the
    # person's, and so is its `not_stopped` note of the desktop track (`TracksLeft`). The
    # note names no act of hers on the desktop, and is no gate of it: the desktop's Promote
    # recorded twice around it (a replica that lost the save) is one promotion.
    failed = gate(100, "half", "0.01")
    trail = [
        event(0, PERSON, "promote"),
        replace(event(99, PERSON, "promote"), track="desktop"),
        replace(failed, actor=PERSON),
        replace(event(100, PERSON, "gate", "not_stopped", why="running"), track="desktop"),
        replace(event(101, PERSON, "promote"), track="desktop"),
    ]
    summary = summarize(ended(120, TrackState.ROLLED_BACK), PLAN, trail, machine=is_machine)
    assert [(a.what, a.track) for a in summary.acts] == [
        ("promoted", "Hosted relay"),
        ("promoted", "Desktop app and CLI"),
        ("entered the figures", "Hosted relay"),
    ]


def test_a_stage_promoted_on_its_own_held_nothing_and_is_not_given_a_later_promotion() -> None:
    # The canary's PASS promoted it at once (`promote: auto`): the 50% deployed at 40 without
    # a click. The only Promote, at 110, is the 50%'s.
    trail = [gate(30, "canary", "0.001"), gate(100, "half", "0.001"), event(110, PERSON, "promote")]
    summary = summarize(ended(120), PLAN, trail, machine=is_machine)
    canary, half, *_ = summary.stages
    assert (canary.promoted_at, canary.promoted_by, canary.held) == (None, None, None)
    assert (half.promoted_at, half.held) == (at(110), 10 * MINUTE)
    assert summary.held == 10 * MINUTE, f"held reads {summary.held}"


def test_a_promotion_in_the_second_github_says_the_next_stage_completed_is_still_its() -> None:
    # GitHub gives a job's completion in whole seconds: the 50%'s job completed "at 40:00"
    # after a Promote recorded at 40:00.4. That Promote is the canary's, and held it.
    click = replace(event(40, PERSON, "promote"), at=at(40) + timedelta(milliseconds=400))
    trail = [gate(30, "canary", "0.001"), click]
    summary = summarize(ended(120), PLAN, trail, machine=is_machine)
    canary, *_ = summary.stages
    assert (canary.promoted_at, canary.promoted_by) == (click.at, PERSON)
    assert canary.held == 10 * MINUTE + timedelta(milliseconds=400)


def test_the_lead_time_runs_from_the_dispatch_not_a_scheduled_starts_wait() -> None:
    rollout = ended(120)  # dispatched at T0, 100% two hours later
    typed = T0 - timedelta(days=3)  # `/rollout start v1.4.2 --at "mon 09:00"` on Friday
    scheduled_start = replace(rollout, created_at=typed, dispatched_at=T0)
    trail = [event(-3 * 24 * 60, PERSON, "start"), gate(30, "canary", "0.001")]
    summary = summarize(scheduled_start, PLAN, trail, machine=is_machine)
    assert summary.started_at == typed and summary.dispatched_at == T0
    assert summary.lead_time == 120 * MINUTE, f"lead time reads {summary.lead_time}"


def test_the_summary_names_freeze_overrides_linked_runs_and_cancelled_schedules() -> None:
    trail = [
        event(0, PERSON, "start"),
        event(0, PERSON, "command:start", override_freeze="INC-1 fix", freeze="INC-1"),
        event(1, PERSON, "cancel_schedule"),
        event(2, OTHER, "form:override_freeze", "refused", override_freeze="x", freeze="weekend"),
        event(3, OTHER, "form:override_freeze", override_freeze="hotfix", freeze="weekend"),
        event(4, OTHER, "dispatch", "run_not_identified"),
        event(5, BOT, "attach_run", "gave_up"),
        event(6, OTHER, "attach_run", run_id=7),
        gate(30, "canary", "0.001"),
    ]
    summary = summarize(ended(120), PLAN, trail, machine=is_machine)
    assert [(a.actor, a.what, a.said) for a in summary.acts] == [
        (PERSON, "started", ""),
        (PERSON, "overrode the freeze (INC-1)", "INC-1 fix"),
        (PERSON, "cancelled the scheduled dispatch", ""),
        (OTHER, "overrode the freeze (weekend)", "hotfix"),  # the refused one is not an act
        (OTHER, "dispatched", ""),
        (OTHER, "linked the run", ""),
    ]


def test_a_failed_gate_holds_nothing() -> None:
    trail = [gate(30, "canary", "0.003")]
    summary = summarize(ended(45, TrackState.ROLLED_BACK), PLAN, trail, machine=is_machine)
    assert summary.stages[0].held is None and summary.held == timedelta(0)
    assert not summary.succeeded


def test_a_rollout_still_running_has_no_summary() -> None:
    with pytest.raises(ValueError, match="has not ended"):
        summarize(cleared_rollout(PLAN, now=T0), PLAN, [], machine=is_machine)


def test_the_period_takes_the_median_and_the_nearest_rank_p90() -> None:
    summaries = [
        summarize(
            ended(minutes),
            PLAN,
            [gate(30, "canary", "0.001"), event(30 + wait, PERSON, "promote")],
            machine=is_machine,
        )
        # Each Promote comes before the 50% deploys (at 40, `ended`), as the canary's must.
        for minutes, wait in [(60, 1), (120, 2), (180, 4), (600, 8)]
    ]
    failed = summarize(ended(50, TrackState.ROLLED_BACK), PLAN, [], machine=is_machine)
    period = parse_period("2026-11")
    report = period_report(period, *period.bounds(at(0) + timedelta(days=30)), [*summaries, failed])
    assert (report.rollouts, report.succeeded, report.success_rate) == (5, 4, 0.8)
    assert report.lead_median == 150 * MINUTE  # between 2h and 3h
    assert report.lead_p90 == 600 * MINUTE
    assert report.held_median == 2 * MINUTE  # 0, 1, 2, 4, 8
    assert [s.state for s in report.stopped] == [TrackState.ROLLED_BACK]
    assert report.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert report.end == datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["0d", "367d", "7", "d", "2026-00", "1999-12", "2026-1", ""])
def test_periods_that_do_not_parse(text: str) -> None:
    with pytest.raises(InvalidPeriod):
        parse_period(text)


def test_a_month_that_has_not_begun_is_refused_and_the_current_one_ends_now() -> None:
    with pytest.raises(InvalidPeriod, match="has not begun"):
        parse_period("2026-12").bounds(T0)
    assert parse_period("2026-11").bounds(T0) == (datetime(2026, 11, 1, tzinfo=UTC), T0)
    assert parse_period("2026-12").bounds(datetime(2026, 12, 31, 23, tzinfo=UTC))[0].month == 12
