"""The pure rollout state machine, driven by hand-built run snapshots and an explicit clock.

Snapshots look like GitHub's jobs API (display names, `waiting` environment names) and every
test asserts the exact effects asked for: what gets approved or rejected on GitHub, which
timers exist, what the thread is told.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.gate import GateVerdict, Verdict, evaluate_desktop, evaluate_relay
from bot.domain.plan import RolloutPlan, load_plan, parse_plan
from bot.domain.rollout import (
    Announce,
    CancelWindow,
    Check,
    CheckState,
    Decision,
    InvalidTransition,
    Phase,
    Preflight,
    ReadMetrics,
    Review,
    Rollout,
    ScheduleWindow,
    StageState,
    TrackState,
    abort,
    begin_dispatch,
    cancel_preflight,
    confirm_flags,
    dispatched,
    gate_evaluated,
    holding_tracks,
    migration_check,
    new_rollout,
    promote,
    reconcile,
    slack_time,
    verdict_from_json,
    verdict_to_json,
    window_ended,
)
from bot.domain.run import JobConclusion, JobSnapshot, JobStatus, RunRef, RunSnapshot

D = Decimal
PLAN = load_plan(None)
PLAN_TEXT = resources.files("bot.domain").joinpath("default_plan.yml").read_text("utf-8")
AUTO_PLAN = parse_plan(PLAN_TEXT.replace("promote: manual", "promote: auto"), "auto promote")
NO_EXTENSION_PLAN = parse_plan(
    re.sub(r"\n *inconclusive_extension: \S+", "", PLAN_TEXT), "no inconclusive extension"
)

T0 = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
RUN = RunRef(run_id=7001, html_url="https://github.test/scriptum/scriptum/actions/runs/7001")
TAG = "v1.4.2"

# Job display names, as GitHub's jobs API reports them.
PREFLIGHT = "Relay preflight checks"
CANARY = "Relay rollout 5% canary (30m)"
HALF = "Relay rollout 50% (60m)"
FULL = "Relay rollout 100%"
RELAY_ROLLBACK = "Relay auto-rollback"
INTERNAL = "Desktop/CLI ring deploy - internal"
BETA = "Desktop/CLI ring deploy - beta"
GA = "Desktop/CLI ring deploy - GA"
KILL_SWITCH = "Desktop/CLI kill-switch"
JOB_IDS = {
    name: 90_000 + index
    for index, name in enumerate(
        [PREFLIGHT, CANARY, HALF, FULL, RELAY_ROLLBACK, INTERNAL, BETA, GA, KILL_SWITCH]
    )
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def job_url(name: str) -> str:
    return f"{RUN.html_url}/job/{JOB_IDS[name]}"


def job(
    name: str,
    conclusion: JobConclusion | None = JobConclusion.SUCCESS,
    completed_at: datetime | None = None,
    status: JobStatus = JobStatus.COMPLETED,
) -> JobSnapshot:
    if conclusion is None:
        return JobSnapshot(name, status, html_url=job_url(name))
    return JobSnapshot(name, JobStatus.COMPLETED, conclusion, completed_at, job_url(name))


def waiting(name: str) -> JobSnapshot:
    return job(name, None, status=JobStatus.WAITING)


def snapshot(
    *jobs: JobSnapshot,
    waiting_on: Iterable[str] = (),
    status: str = "in_progress",
    conclusion: str | None = None,
) -> RunSnapshot:
    return RunSnapshot(
        run_id=RUN.run_id,
        status=status,
        conclusion=conclusion,
        html_url=RUN.html_url,
        jobs={j.name: j for j in jobs},
        waiting=frozenset(waiting_on),
    )


class Says:
    """Matches an Announce holding every fragment (the figures, names and links a reader needs)
    with the given failure flag."""

    def __init__(self, *fragments: str, failure: bool = False) -> None:
        self.fragments = fragments
        self.failure = failure

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Announce):
            return NotImplemented
        return other.failure is self.failure and all(f in other.text for f in self.fragments)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Says({', '.join(map(repr, self.fragments))}, failure={self.failure})"


def effects(decision: Decision) -> list[object]:
    return list(decision.effects)


CLEAR = Preflight(
    flags=Check(CheckState.PASS, "confirmed by <@U1>"),
    migrations=Check(CheckState.PASS, "2 migration files, additive only"),
    image=Check(CheckState.PASS, "published"),
)


def fresh(plan: RolloutPlan = PLAN, preflight: Preflight = CLEAR) -> Rollout:
    return new_rollout(
        rollout_id="r-1",
        tag=TAG,
        channel_id="C-RELEASES",
        started_by="U1",
        plan=plan,
        preflight=preflight,
        now=T0,
    )


def running(plan: RolloutPlan = PLAN) -> Rollout:
    return dispatched(begin_dispatch(fresh(plan), now=T0), plan, RUN).rollout


def states(rollout: Rollout, track: str) -> list[StageState]:
    return [stage.state for stage in rollout.track(track).stages]


def relay_verdict(
    crash: str = "0.002", error: str = "0.01", baseline: str = "0.001"
) -> GateVerdict:
    return evaluate_relay(
        baseline_crash=D(baseline), current_crash=D(crash), current_error=D(error)
    )


def desktop_verdict(crash: str = "0.002", baseline: str = "0.001") -> GateVerdict:
    return evaluate_desktop(baseline_crash=D(baseline), current_crash=D(crash))


NO_DATA = evaluate_relay(baseline_crash=D("0.001"), current_crash=None, current_error=D("0"))


# -- scenario steps -------------------------------------------------------------------------

FIRST_APPROVED = snapshot(
    waiting(PREFLIGHT),
    waiting(CANARY),
    waiting(INTERNAL),
    waiting_on={"relay-canary-5", "desktop-internal"},
)


def approved(plan: RolloutPlan = PLAN) -> Rollout:
    """Both first stages approved and deploying."""
    return reconcile(running(plan), plan, FIRST_APPROVED, at(1)).rollout


def canary_observing(plan: RolloutPlan = PLAN) -> Rollout:
    """The canary deployed at T0+5m (window until T0+35m); desktop internal still deploying."""
    run = snapshot(job(PREFLIGHT), job(CANARY, completed_at=at(5)), job(INTERNAL, None))
    return reconcile(approved(plan), plan, run, at(6)).rollout


def evaluate(rollout: Rollout, track: str, stage: str) -> Rollout:
    due = rollout.track(track).stage(stage).window_ends_at
    assert due is not None
    decision = window_ended(rollout, track=track, stage=stage, due_at=due)
    assert effects(decision) == [ReadMetrics(track, stage)]
    return decision.rollout


def judged(
    rollout: Rollout,
    track: str,
    stage: str,
    verdict: GateVerdict,
    now: datetime,
    plan: RolloutPlan = PLAN,
) -> Rollout:
    return gate_evaluated(
        evaluate(rollout, track, stage), plan, track=track, stage=stage, verdict=verdict, now=now
    ).rollout


# -- dispatch and the first approvals -------------------------------------------------------


def test_dispatch_approves_the_first_stage_of_both_tracks() -> None:
    begun = begin_dispatch(fresh(), now=at(0.5))
    assert (begun.phase, begun.dispatched_at) == (Phase.DISPATCHING, at(0.5))

    decision = dispatched(begun, PLAN, RUN)

    rollout = decision.rollout
    assert (rollout.phase, rollout.run_id, rollout.run_url) == (Phase.RUNNING, 7001, RUN.html_url)
    assert [t.state for t in rollout.tracks] == [TrackState.ACTIVE, TrackState.ACTIVE]
    assert states(rollout, "relay") == [
        StageState.APPROVING,
        StageState.PENDING,
        StageState.PENDING,
    ]
    assert states(rollout, "desktop") == [
        StageState.APPROVING,
        StageState.PENDING,
        StageState.PENDING,
    ]
    assert effects(decision) == [
        Says(
            f"Dispatched *Deployment Strategy* for `{TAG}`: <{RUN.html_url}|run 7001>.",
            "5% canary (Hosted relay), internal ring (Desktop app and CLI)",
        )
    ]


def test_a_second_dispatched_cannot_reset_a_running_rollout() -> None:
    rollout = canary_observing()
    with pytest.raises(InvalidTransition, match="already"):
        dispatched(rollout, PLAN, RunRef(7002, "https://github.test/other"))


def test_nothing_is_approved_before_github_waits() -> None:
    rollout = running()
    decision = reconcile(
        rollout, PLAN, snapshot(job(PREFLIGHT, None, status=JobStatus.IN_PROGRESS)), at(1)
    )
    assert decision == Decision(rollout)


@pytest.mark.parametrize(
    "names",
    [{"relay-canary-5", "desktop-internal"}, {"Relay-Canary-5", "DESKTOP-INTERNAL"}],
    ids=["as-planned", "other-case"],
)
def test_waiting_first_stages_are_approved_every_time_but_announced_once(names: set[str]) -> None:
    run = snapshot(waiting(CANARY), waiting(INTERNAL), job(PREFLIGHT), waiting_on=names)
    expected_reviews = [
        Review("relay", "relay-canary-5", approve=True, comment=f"rollout-bot: {TAG} to 5% canary"),
        Review(
            "desktop",
            "desktop-internal",
            approve=True,
            comment=f"rollout-bot: {TAG} to internal ring",
        ),
    ]

    first = reconcile(running(), PLAN, run, at(1))

    assert states(first.rollout, "relay")[0] is StageState.DEPLOYING
    assert states(first.rollout, "desktop")[0] is StageState.DEPLOYING
    assert effects(first) == [
        expected_reviews[0],
        Says("Approved *5% canary* (Hosted relay): deploying."),
        expected_reviews[1],
        Says("Approved *internal ring* (Desktop app and CLI): deploying."),
    ]

    again = reconcile(first.rollout, PLAN, run, at(2))

    assert again.rollout == first.rollout
    assert effects(again) == expected_reviews


# -- observation windows --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completed_at", "now", "window_start"),
    [(at(5), at(6), at(5)), (None, at(6), at(6))],
    ids=["github-time", "no-completed_at"],
)
def test_a_deployed_stage_starts_its_window_from_the_job_completion(
    completed_at: datetime | None, now: datetime, window_start: datetime
) -> None:
    run = snapshot(job(PREFLIGHT), job(CANARY, completed_at=completed_at), job(INTERNAL, None))
    ends = window_start + timedelta(minutes=30)

    decision = reconcile(approved(), PLAN, run, now)

    canary = decision.rollout.track("relay").stage("canary")
    assert (canary.state, canary.window_started_at, canary.window_ends_at, canary.extensions) == (
        StageState.OBSERVING,
        window_start,
        ends,
        0,
    )
    assert effects(decision) == [
        ScheduleWindow("relay", "canary", ends, 0),
        Says("*5% canary* deployed (Hosted relay). Observing for 30m", slack_time(ends)),
    ]

    again = reconcile(decision.rollout, PLAN, run, now + timedelta(minutes=1))

    assert again.rollout == decision.rollout
    assert effects(again) == [ScheduleWindow("relay", "canary", ends, 0)]


def test_the_window_timer_asks_for_the_metrics() -> None:
    rollout = canary_observing()

    first = window_ended(rollout, track="relay", stage="canary", due_at=at(35))

    assert first.rollout.track("relay").stage("canary").state is StageState.EVALUATING
    assert effects(first) == [ReadMetrics("relay", "canary")]

    # Fired again (a crash before the verdict): the metrics are asked for again, nothing else.
    again = window_ended(first.rollout, track="relay", stage="canary", due_at=at(35))

    assert again.rollout == first.rollout
    assert effects(again) == [ReadMetrics("relay", "canary")]


@pytest.mark.parametrize("due_at", [at(30), at(36), at(35) + timedelta(seconds=1)])
def test_a_stale_window_timer_changes_nothing(due_at: datetime) -> None:
    rollout = canary_observing()
    assert window_ended(rollout, track="relay", stage="canary", due_at=due_at) == Decision(rollout)


# -- gates -----------------------------------------------------------------------------------


def test_pass_holds_the_next_stage_for_a_promote() -> None:
    rollout = evaluate(canary_observing(), "relay", "canary")
    verdict = relay_verdict(crash="0.002", error="0.01")  # both exactly at the limit

    decision = gate_evaluated(
        rollout, PLAN, track="relay", stage="canary", verdict=verdict, now=at(36)
    )

    canary = decision.rollout.track("relay").stage("canary")
    assert (canary.state, canary.verdict) == (StageState.HOLDING, verdict)
    assert states(decision.rollout, "relay")[1] is StageState.PENDING
    assert holding_tracks(decision.rollout) == ["relay"]
    assert effects(decision) == [
        Says(
            "5% canary gate PASS",
            "crash rate 0.002 within 2x baseline 0.001 (limit 0.002)",
            "error rate 0.01 within the threshold 0.01",
            "Holding *50%* until someone clicks Promote",
        )
    ]

    promoted = promote(decision.rollout, PLAN, track="relay", actor="U2")

    assert states(promoted.rollout, "relay") == [
        StageState.PASSED,
        StageState.APPROVING,
        StageState.PENDING,
    ]
    assert holding_tracks(promoted.rollout) == []
    assert effects(promoted) == [Says("<@U2> promoted Hosted relay to *50%*.")]

    half_waits = snapshot(
        job(CANARY, completed_at=at(5)), waiting(HALF), waiting_on={"relay-rollout-50"}
    )
    approving = reconcile(promoted.rollout, PLAN, half_waits, at(40))

    assert effects(approving) == [
        Review("relay", "relay-rollout-50", approve=True, comment=f"rollout-bot: {TAG} to 50%"),
        Says("Approved *50%* (Hosted relay): deploying."),
    ]


def test_pass_with_promote_auto_approves_the_next_stage_at_once() -> None:
    rollout = evaluate(canary_observing(AUTO_PLAN), "relay", "canary")

    decision = gate_evaluated(
        rollout, AUTO_PLAN, track="relay", stage="canary", verdict=relay_verdict(), now=at(36)
    )

    assert states(decision.rollout, "relay") == [
        StageState.PASSED,
        StageState.APPROVING,
        StageState.PENDING,
    ]
    assert decision.rollout.track("relay").stage("canary").verdict == relay_verdict()
    assert effects(decision) == [
        Says("5% canary gate PASS", "Promoting to *50%* automatically (plan: promote auto)")
    ]

    half_waits = snapshot(
        job(CANARY, completed_at=at(5)), waiting(HALF), waiting_on={"relay-rollout-50"}
    )
    approving = reconcile(decision.rollout, AUTO_PLAN, half_waits, at(37))

    assert states(approving.rollout, "relay")[1] is StageState.DEPLOYING
    assert effects(approving) == [
        Review("relay", "relay-rollout-50", approve=True, comment=f"rollout-bot: {TAG} to 50%"),
        Says("Approved *50%* (Hosted relay): deploying."),
    ]


def test_a_verdict_for_a_stage_not_being_evaluated_is_ignored() -> None:
    rollout = canary_observing()
    decision = gate_evaluated(
        rollout, PLAN, track="relay", stage="canary", verdict=relay_verdict("0.5"), now=at(20)
    )
    assert decision == Decision(rollout)


def desktop_internal_observing(rollout: Rollout) -> Rollout:
    """The internal ring deployed at T0+10m (window until T0+70m)."""
    run = snapshot(
        job(PREFLIGHT), job(CANARY, completed_at=at(5)), job(INTERNAL, completed_at=at(10))
    )
    return reconcile(rollout, PLAN, run, at(11)).rollout


def test_a_crash_at_the_canary_rolls_back_the_relay_and_leaves_the_desktop_alone() -> None:
    rollout = desktop_internal_observing(canary_observing())
    desktop_before = rollout.track("desktop")
    desktop_timer = ScheduleWindow("desktop", "internal", at(70), 0)
    reason = "5% canary gate ROLLBACK: crash rate"

    failed = judged(rollout, "relay", "canary", relay_verdict(crash="0.0021", error="0"), at(36))

    relay = failed.track("relay")
    assert (relay.state, relay.ending, relay.ended_reason) == (
        TrackState.ABORTING,
        TrackState.ROLLED_BACK,
        reason,
    )
    assert states(failed, "relay") == [
        StageState.FAILED_GATE,
        StageState.PENDING,
        StageState.PENDING,
    ]

    half_waits = snapshot(
        job(CANARY, completed_at=at(5)),
        waiting(HALF),
        job(INTERNAL, completed_at=at(10)),
        waiting_on={"relay-rollout-50"},
    )
    rejecting = reconcile(failed, PLAN, half_waits, at(37))

    assert states(rejecting.rollout, "relay")[1] is StageState.REJECTED
    assert effects(rejecting) == [
        Review("relay", "relay-rollout-50", approve=False, comment=f"rollout-bot: {reason}"),
        Says("Rejected *50%* (Hosted relay)."),
        desktop_timer,
    ]

    rollback_waits = snapshot(
        job(CANARY, completed_at=at(5)),
        job(HALF, JobConclusion.FAILURE, at(37)),
        waiting(RELAY_ROLLBACK),
        job(INTERNAL, completed_at=at(10)),
        waiting_on={"relay-rollback"},
    )
    approving = reconcile(rejecting.rollout, PLAN, rollback_waits, at(38))

    assert approving.rollout == rejecting.rollout
    assert effects(approving) == [
        Review("relay", "relay-rollback", approve=True, comment="rollout-bot: Relay auto-rollback"),
        desktop_timer,
    ]

    rolled_back = snapshot(
        job(CANARY, completed_at=at(5)),
        job(HALF, JobConclusion.FAILURE, at(37)),
        job(RELAY_ROLLBACK, completed_at=at(40)),
        job(INTERNAL, completed_at=at(10)),
    )
    ended = reconcile(approving.rollout, PLAN, rolled_back, at(41))

    relay = ended.rollout.track("relay")
    assert (relay.state, relay.ending, relay.ended_at) == (TrackState.ROLLED_BACK, None, at(41))
    assert ended.rollout.phase is Phase.RUNNING
    assert ended.rollout.track("desktop") == desktop_before
    assert effects(ended) == [
        Says(
            "*Relay auto-rollback* finished.",
            f"<{job_url(RELAY_ROLLBACK)}|logs>",
            "Hosted relay: rolled back.",
            failure=True,
        ),
        desktop_timer,
    ]


def half_observing(plan: RolloutPlan = PLAN) -> Rollout:
    """Canary passed and promoted; 50% deployed at T0+45m (window until T0+105m)."""
    rollout = judged(canary_observing(plan), "relay", "canary", relay_verdict(), at(36), plan)
    if rollout.track("relay").stage("canary").state is StageState.HOLDING:
        rollout = promote(rollout, plan, track="relay", actor="U2").rollout
    half_waits = snapshot(
        job(CANARY, completed_at=at(5)), waiting(HALF), waiting_on={"relay-rollout-50"}
    )
    rollout = reconcile(rollout, plan, half_waits, at(37)).rollout
    deployed = snapshot(job(CANARY, completed_at=at(5)), job(HALF, completed_at=at(45)))
    rollout = reconcile(rollout, plan, deployed, at(46)).rollout
    assert rollout.track("relay").stage("half").window_ends_at == at(105)
    return rollout


@pytest.mark.parametrize(
    ("stage", "verdict", "reason", "words"),
    [
        (
            "half",
            relay_verdict(crash="0.001", error="0.0101"),
            "50% gate ROLLBACK: error rate",
            ["50% gate *ROLLBACK*", "error rate 0.0101 exceeds the threshold 0.01"],
        ),
        (
            "canary",
            relay_verdict(crash="0.0001", error="0", baseline="0"),
            "5% canary gate ROLLBACK: crashes on a zero baseline",
            ["5% canary gate *ROLLBACK*", "crash rate 0.0001 while the baseline crash rate is 0"],
        ),
        (
            "canary",
            relay_verdict(crash="0.0021", error="0.01"),
            "5% canary gate ROLLBACK: crash rate",
            ["crash rate 0.0021 exceeds 2x baseline 0.001 (limit 0.002)"],
        ),
    ],
    ids=["error-rate-at-50", "zero-baseline-at-canary", "crash-at-canary"],
)
def test_a_failed_relay_gate_rejects_the_next_stage(
    stage: str, verdict: GateVerdict, reason: str, words: list[str]
) -> None:
    rollout = half_observing() if stage == "half" else canary_observing()
    following, environment = {
        "half": ("100%", "relay-rollout-100"),
        "canary": ("50%", "relay-rollout-50"),
    }[stage]

    decision = gate_evaluated(
        evaluate(rollout, "relay", stage),
        PLAN,
        track="relay",
        stage=stage,
        verdict=verdict,
        now=at(110),
    )

    assert verdict.verdict is Verdict.ROLLBACK
    relay = decision.rollout.track("relay")
    assert (relay.state, relay.ending, relay.ended_reason) == (
        TrackState.ABORTING,
        TrackState.ROLLED_BACK,
        reason,
    )
    assert relay.stage(stage).state is StageState.FAILED_GATE
    assert effects(decision) == [
        Says(*words, "rolling back now", "*Relay auto-rollback*", failure=True)
    ]

    rejecting = reconcile(decision.rollout, PLAN, snapshot(waiting_on={environment}), at(111))

    assert effects(rejecting) == [
        Review("relay", environment, approve=False, comment=f"rollout-bot: {reason}"),
        Says(f"Rejected *{following}* (Hosted relay)."),
    ]


# -- INCONCLUSIVE ----------------------------------------------------------------------------


def test_inconclusive_extends_once_then_holds_for_a_human() -> None:
    rollout = evaluate(canary_observing(), "relay", "canary")

    extended = gate_evaluated(
        rollout, PLAN, track="relay", stage="canary", verdict=NO_DATA, now=at(36)
    )

    canary = extended.rollout.track("relay").stage("canary")
    assert (canary.state, canary.extensions, canary.window_ends_at, canary.verdict) == (
        StageState.OBSERVING,
        1,
        at(51),
        NO_DATA,
    )
    assert effects(extended) == [
        ScheduleWindow("relay", "canary", at(51), 1),
        Says("5% canary gate INCONCLUSIVE", "Window extended once by 15m", slack_time(at(51))),
    ]

    # The first window's timer, fired late, is stale now; a reconcile keeps the new timer.
    stale = window_ended(extended.rollout, track="relay", stage="canary", due_at=at(35))
    assert stale == Decision(extended.rollout)
    kept = reconcile(extended.rollout, PLAN, snapshot(job(CANARY, completed_at=at(5))), at(40))
    assert effects(kept) == [ScheduleWindow("relay", "canary", at(51), 1)]

    evaluating = window_ended(extended.rollout, track="relay", stage="canary", due_at=at(51))
    assert effects(evaluating) == [ReadMetrics("relay", "canary")]
    held = gate_evaluated(
        evaluating.rollout, PLAN, track="relay", stage="canary", verdict=NO_DATA, now=at(52)
    )

    canary = held.rollout.track("relay").stage("canary")
    assert (canary.state, canary.extensions, canary.window_ends_at) == (
        StageState.HOLDING,
        1,
        at(51),
    )
    assert effects(held) == [
        Says("5% canary gate INCONCLUSIVE", "holding for a human", failure=True)
    ]
    assert holding_tracks(held.rollout) == ["relay"]

    with pytest.raises(InvalidTransition, match="INCONCLUSIVE"):
        promote(held.rollout, PLAN, track="relay", actor="U2")

    overridden = promote(held.rollout, PLAN, track="relay", actor="U2", override=True)

    assert states(overridden.rollout, "relay") == [
        StageState.PASSED,
        StageState.APPROVING,
        StageState.PENDING,
    ]
    assert effects(overridden) == [
        Says("<@U2> promoted Hosted relay to *50%* (override of an INCONCLUSIVE gate).")
    ]


def test_without_an_extension_inconclusive_holds_at_once() -> None:
    rollout = evaluate(canary_observing(NO_EXTENSION_PLAN), "relay", "canary")

    decision = gate_evaluated(
        rollout, NO_EXTENSION_PLAN, track="relay", stage="canary", verdict=NO_DATA, now=at(36)
    )

    canary = decision.rollout.track("relay").stage("canary")
    assert (canary.state, canary.extensions, canary.window_ends_at) == (
        StageState.HOLDING,
        0,
        at(35),
    )
    assert effects(decision) == [Says("INCONCLUSIVE", "holding for a human", failure=True)]


def test_promote_while_observing_names_the_window_end() -> None:
    rollout = canary_observing()
    with pytest.raises(InvalidTransition) as refused:
        promote(rollout, PLAN, track="relay", actor="U2")
    assert "still observing until " + slack_time(at(35)) in refused.value.message
    assert holding_tracks(rollout) == []
