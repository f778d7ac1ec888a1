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
from cleared import cleared_rollout
from hypothesis import given
from hypothesis import strategies as st

from bot.adapters.slack.messages import reason_text, render, slack_time
from bot.adapters.slack.rollout_words import stop_note, track_standing
from bot.domain.gate import GateKind, GateVerdict, Verdict, evaluate_desktop, evaluate_relay
from bot.domain.plan import RolloutPlan
from bot.domain.reasons import Reason
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
    StopReason,
    TrackState,
    abort,
    begin_dispatch,
    cancel_preflight,
    confirm_flags,
    dispatched,
    extend,
    gate_evaluated,
    holding_tracks,
    migration_check,
    promote,
    read_again,
    read_failed,
    reconcile,
    verdict_from_json,
    verdict_to_json,
    window_ended,
    window_timer_dead,
    window_timer_key,
)
from bot.domain.rollout.events import RunReadable, RunUnreadable
from bot.domain.run import (
    EnvironmentReview,
    JobConclusion,
    JobSnapshot,
    JobStatus,
    RunRef,
    RunSnapshot,
)
from bot.plan_file import load_plan, parse_plan

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
    """Matches an Announce whose event the thread shows with every fragment (the figures,
    names and links a reader needs), with the given failure flag."""

    def __init__(self, *fragments: str, failure: bool = False) -> None:
        self.fragments = fragments
        self.failure = failure

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Announce):
            return NotImplemented
        return other.failure is self.failure and all(
            f in render(other.event) for f in self.fragments
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Says({', '.join(map(repr, self.fragments))}, failure={self.failure})"


def said(reason: StopReason | None) -> str | None:
    """A track's stop reason as the card words it."""
    return None if reason is None else reason_text(reason)


def effects(decision: Decision) -> list[object]:
    return list(decision.effects)


CLEAR = Preflight(
    flags=Check(CheckState.PASS, confirmed_by="U1"),
    migrations=Check(CheckState.PASS, "2 migration files, additive only"),
    image=Check(CheckState.PASS, "published"),
)


def fresh(plan: RolloutPlan = PLAN, preflight: Preflight = CLEAR) -> Rollout:
    return cleared_rollout(plan, now=T0, preflight=preflight)


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
) -> Rollout:
    return gate_evaluated(
        evaluate(rollout, track, stage), PLAN, track=track, stage=stage, verdict=verdict, now=now
    ).rollout


def deploy(rollout: Rollout, stage_job: str, environment: str, completed_at: datetime) -> Rollout:
    """GitHub waits for the stage's environment, the bot approves it, the job succeeds."""
    asked = snapshot(waiting(stage_job), waiting_on={environment})
    rollout = reconcile(rollout, PLAN, asked, completed_at - timedelta(minutes=1)).rollout
    done = snapshot(job(stage_job, completed_at=completed_at))
    return reconcile(rollout, PLAN, done, completed_at + timedelta(minutes=1)).rollout


def passed(
    rollout: Rollout, track: str, stage: str, verdict: GateVerdict, now: datetime
) -> Rollout:
    return promote(
        judged(rollout, track, stage, verdict, now), PLAN, track=track, actor="U2"
    ).rollout


def all_effects(*decisions: Decision) -> list[object]:
    return [effect for decision in decisions for effect in decision.effects]


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
        ScheduleWindow("relay", "canary", ends),
        Says("*5% canary* deployed (Hosted relay). Observing for 30m", slack_time(ends)),
    ]

    again = reconcile(decision.rollout, PLAN, run, now + timedelta(minutes=1))

    assert again.rollout == decision.rollout
    assert effects(again) == [ScheduleWindow("relay", "canary", ends)]


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
    desktop_timer = ScheduleWindow("desktop", "internal", at(70))
    reason = "5% canary gate ROLLBACK: crash rate"

    failed = judged(rollout, "relay", "canary", relay_verdict(crash="0.0021", error="0"), at(36))

    relay = failed.track("relay")
    assert (relay.state, relay.ending, said(relay.ended_reason)) == (
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

    # Still waiting at the next look (the rejection was lost): rejected again, announced once.
    again = reconcile(rejecting.rollout, PLAN, half_waits, at(37.5))
    assert again.rollout == rejecting.rollout
    assert effects(again) == [
        Review("relay", "relay-rollout-50", approve=False, comment=f"rollout-bot: {reason}"),
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
    # Ended when its rollback job did (at 40), not when the bot saw it.
    assert (relay.state, relay.ending, relay.ended_at) == (TrackState.ROLLED_BACK, None, at(40))
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


def half_observing() -> Rollout:
    """Canary passed and promoted; 50% deployed at T0+45m (window until T0+105m)."""
    rollout = passed(canary_observing(), "relay", "canary", relay_verdict(), at(36))
    return deploy(rollout, HALF, "relay-rollout-50", at(45))


@pytest.mark.parametrize(
    ("stage", "verdict", "reason", "words"),
    [
        (
            "half",
            relay_verdict(crash="0.001", error="0.0101"),
            "50% gate ROLLBACK: error rate",
            [
                "50% gate *ROLLBACK*: error rate (",
                "error rate 0.0101 exceeds the threshold 0.01",
                "Reached: 50%.",
            ],
        ),
        (
            "canary",
            relay_verdict(crash="0.0001", error="0", baseline="0"),
            "5% canary gate ROLLBACK: crashes on a zero baseline",
            [
                "5% canary gate *ROLLBACK*: crashes on a zero baseline (",
                "crash rate 0.0001 while the baseline crash rate is 0",
            ],
        ),
        (
            "canary",
            relay_verdict(crash="0.0021", error="0.01"),
            "5% canary gate ROLLBACK: crash rate",
            [
                "*ROLLBACK*: crash rate (crash rate 0.0021 exceeds 2x baseline 0.001 (limit 0.002)",
                "Reached: 5% canary.",
            ],
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
    assert (relay.state, relay.ending, said(relay.ended_reason)) == (
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
        ScheduleWindow("relay", "canary", at(51)),
        Says("5% canary gate INCONCLUSIVE", "Window extended once by 15m", slack_time(at(51))),
    ]

    # The first window's timer, fired late, is stale now; a reconcile keeps the new timer.
    stale = window_ended(extended.rollout, track="relay", stage="canary", due_at=at(35))
    assert stale == Decision(extended.rollout)
    kept = reconcile(extended.rollout, PLAN, snapshot(job(CANARY, completed_at=at(5))), at(40))
    assert effects(kept) == [ScheduleWindow("relay", "canary", at(51))]

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


@pytest.mark.parametrize(
    ("track", "stage", "stop", "other"),
    [
        ("relay", "canary", "Roll back stops", "Kill-switch"),
        ("desktop", "internal", "Kill-switch stops", "Roll back"),
    ],
)
def test_a_stage_held_without_a_verdict_names_the_stop_button_of_its_track(
    track: str, stage: str, stop: str, other: str
) -> None:
    """INCONCLUSIVE, or a gate that could not run: the thread names the button the track's
    lane of the card has (the desktop rings have Kill-switch, no Roll back)."""
    rollout = evaluate(
        desktop_internal_observing(canary_observing(NO_EXTENSION_PLAN)), track, stage
    )
    due = rollout.track(track).stage(stage).window_ends_at
    assert due is not None

    held = gate_evaluated(
        rollout, NO_EXTENSION_PLAN, track=track, stage=stage, verdict=NO_DATA, now=at(71)
    )
    missed = window_timer_dead(
        rollout,
        NO_EXTENSION_PLAN,
        track=track,
        stage=stage,
        due_at=due,
        attempts=3,
        reason=Reason("timeout"),
    )

    for decision in (held, missed):
        (told,) = [render(e.event) for e in decision.effects if isinstance(e, Announce)]
        assert "holding" in told.lower()
        assert stop in told and other not in told


def test_promote_while_observing_names_the_window_end() -> None:
    rollout = canary_observing()
    with pytest.raises(InvalidTransition) as refused:
        promote(rollout, PLAN, track="relay", actor="U2")
    assert "still observing until 2025-06-02 09:35 UTC" in refused.value.message
    assert holding_tracks(rollout) == []


# -- the desktop track and its kill-switch --------------------------------------------------


def at_half_and_beta() -> Rollout:
    """Canary and internal ring passed and promoted; 50% deployed at 80, beta at 90."""
    rollout = deploy(
        deploy(approved(), CANARY, "relay-canary-5", at(5)), INTERNAL, "desktop-internal", at(10)
    )
    rollout = passed(rollout, "relay", "canary", relay_verdict(), at(36))
    rollout = passed(rollout, "desktop", "internal", desktop_verdict(), at(71))
    rollout = deploy(
        deploy(rollout, HALF, "relay-rollout-50", at(80)), BETA, "desktop-beta", at(90)
    )
    return rollout


def test_desktop_kill_switch_at_beta_while_the_relay_goes_on_to_100() -> None:
    rollout = at_half_and_beta()
    assert rollout.track("desktop").stage("beta").window_ends_at == at(210)  # 2h for beta
    rollout = passed(rollout, "relay", "half", relay_verdict(), at(141))

    tripped = gate_evaluated(
        evaluate(rollout, "desktop", "beta"),
        PLAN,
        track="desktop",
        stage="beta",
        verdict=desktop_verdict(crash="0.0025"),
        now=at(211),
    )

    desktop = tripped.rollout.track("desktop")
    assert (desktop.state, desktop.ending, said(desktop.ended_reason)) == (
        TrackState.ABORTING,
        TrackState.HALTED,
        "beta ring gate KILL_SWITCH: crash rate",
    )
    assert effects(tripped) == [
        Says(
            "beta ring gate *KILL_SWITCH*: crash rate (",
            "crash rate 0.0025 exceeds 2x baseline 0.001 (limit 0.002)",
            "The release stays on the beta ring.",
            "tripping the kill-switch now",
            "*Desktop/CLI kill-switch*",
            failure=True,
        )
    ]
    assert tripped.rollout.track("relay") == rollout.track("relay")

    both_wait = snapshot(waiting(FULL), waiting(GA), waiting_on={"relay-rollout-100", "desktop-ga"})
    step1 = reconcile(tripped.rollout, PLAN, both_wait, at(212))
    assert effects(step1) == [
        Review("relay", "relay-rollout-100", approve=True, comment=f"rollout-bot: {TAG} to 100%"),
        Says("Approved *100%* (Hosted relay): deploying."),
        Review(
            "desktop",
            "desktop-ga",
            approve=False,
            comment="rollout-bot: beta ring gate KILL_SWITCH: crash rate",
        ),
        Says("Rejected *GA ring* (Desktop app and CLI)."),
    ]
    assert states(step1.rollout, "desktop") == [
        StageState.PASSED,
        StageState.FAILED_GATE,
        StageState.REJECTED,
    ]

    kill_waits = snapshot(
        job(FULL, None, status=JobStatus.IN_PROGRESS),
        job(GA, JobConclusion.FAILURE, at(212)),
        waiting(KILL_SWITCH),
        waiting_on={"desktop-kill-switch"},
    )
    step2 = reconcile(step1.rollout, PLAN, kill_waits, at(213))
    assert step2.rollout == step1.rollout
    kill_review = Review(
        "desktop",
        "desktop-kill-switch",
        approve=True,
        comment="rollout-bot: Desktop/CLI kill-switch",
    )
    assert effects(step2) == [kill_review]

    relay_done = snapshot(
        job(FULL, completed_at=at(215)),
        job(GA, JobConclusion.FAILURE, at(212)),
        waiting(KILL_SWITCH),
        waiting_on={"desktop-kill-switch"},
    )
    step3 = reconcile(step2.rollout, PLAN, relay_done, at(216))
    relay = step3.rollout.track("relay")
    assert (relay.state, relay.ended_at) == (TrackState.COMPLETED, at(215))  # its job's end
    assert states(step3.rollout, "relay")[-1] is StageState.DEPLOYED
    assert step3.rollout.phase is Phase.RUNNING  # the desktop track has not ended yet
    assert effects(step3) == [Says("*100%* deployed: Hosted relay is done."), kill_review]

    all_done = snapshot(
        job(FULL, completed_at=at(215)),
        job(GA, JobConclusion.FAILURE, at(212)),
        job(KILL_SWITCH, completed_at=at(218)),
        status="completed",
        conclusion="failure",
    )
    step4 = reconcile(step3.rollout, PLAN, all_done, at(219))
    assert [t.state for t in step4.rollout.tracks] == [TrackState.COMPLETED, TrackState.HALTED]
    assert (step4.rollout.phase, step4.rollout.ended_at) == (Phase.ENDED, at(218))
    assert effects(step4) == [
        Says(
            "*Desktop/CLI kill-switch* finished.",
            "Desktop app and CLI: halted by the kill-switch.",
            failure=True,
        ),
        Says(
            f"Rollout of `{TAG}` ended.",
            "Hosted relay: completed; Desktop app and CLI: halted by the kill-switch.",
        ),
    ]

    reviews = [e for e in all_effects(tripped, step1, step2, step3, step4) if isinstance(e, Review)]
    assert not any(r.environment == "relay-rollback" for r in reviews)
    # Ended: later snapshots change nothing.
    assert reconcile(step4.rollout, PLAN, all_done, at(230)) == Decision(step4.rollout)


def test_tracks_that_completed_while_the_bot_was_down_end_when_their_jobs_did() -> None:
    """The 100% and GA jobs finished at 215 and 220; the bot looked again only at 400 (it was
    down). The rollout ended at 220: its lead time, and the period `/rollout report` counts it
    in, are the release's, not the outage's."""
    rollout = at_half_and_beta()
    rollout = passed(rollout, "relay", "half", relay_verdict(), at(141))
    rollout = passed(rollout, "desktop", "beta", desktop_verdict(), at(211))
    both_wait = snapshot(waiting(FULL), waiting(GA), waiting_on={"relay-rollout-100", "desktop-ga"})
    rollout = reconcile(rollout, PLAN, both_wait, at(212)).rollout

    done = snapshot(
        job(FULL, completed_at=at(215)),
        job(GA, completed_at=at(220)),
        status="completed",
        conclusion="success",
    )
    back = reconcile(rollout, PLAN, done, at(400)).rollout

    assert [(t.state, t.ended_at) for t in back.tracks] == [
        (TrackState.COMPLETED, at(215)),
        (TrackState.COMPLETED, at(220)),
    ]
    assert (back.phase, back.ended_at) == (Phase.ENDED, at(220))


def test_a_completion_time_ahead_of_the_bots_clock_ends_the_track_now() -> None:
    """GitHub's clock may run ahead of the bot's: an end is never in the bot's future."""
    rollout = deploy(
        deploy(approved(), CANARY, "relay-canary-5", at(5)), INTERNAL, "desktop-internal", at(10)
    )
    rollout = passed(rollout, "relay", "canary", relay_verdict(), at(36))
    rollout = deploy(rollout, HALF, "relay-rollout-50", at(80))
    rollout = passed(rollout, "relay", "half", relay_verdict(), at(141))
    asked = snapshot(waiting(FULL), waiting_on={"relay-rollout-100"})
    rollout = reconcile(rollout, PLAN, asked, at(142)).rollout

    ahead = reconcile(rollout, PLAN, snapshot(job(FULL, completed_at=at(150.5))), at(150)).rollout

    assert ahead.track("relay").ended_at == at(150)


def test_a_completion_time_before_the_dispatch_ends_the_track_when_the_bot_saw_it() -> None:
    """GitHub's clock far behind the bot's (a GitHub Enterprise Server off its time source):
    a job that reports completing before the rollout was even dispatched did not. Its track
    (and the rollout) end when the bot saw it, as before GitHub's times were taken: never a
    lead time below zero, nor a report period before the release began."""
    rollout = at_half_and_beta()
    rollout = passed(rollout, "relay", "half", relay_verdict(), at(141))
    asked = snapshot(waiting(FULL), waiting_on={"relay-rollout-100"})
    rollout = reconcile(rollout, PLAN, asked, at(142)).rollout
    assert rollout.dispatched_at == T0

    skewed = snapshot(job(FULL, completed_at=T0 - timedelta(days=1)))
    behind = reconcile(rollout, PLAN, skewed, at(150)).rollout

    assert behind.track("relay").ended_at == at(150)


def test_a_manual_kill_during_the_internal_window() -> None:
    rollout = desktop_internal_observing(canary_observing())
    why = "kill-switch by <@U9>: crash reports from support"

    killed = abort(
        rollout, PLAN, track="desktop", actor="U9", reason="crash reports from support", now=at(20)
    )

    desktop = killed.rollout.track("desktop")
    assert (desktop.state, desktop.ending, said(desktop.ended_reason)) == (
        TrackState.ABORTING,
        TrackState.HALTED,
        why,
    )
    assert states(killed.rollout, "desktop")[0] is StageState.STOPPED
    assert killed.rollout.track("relay") == rollout.track("relay")
    assert effects(killed) == [
        CancelWindow("desktop", "internal", at(70)),
        Says(
            f":rotating_light: Desktop app and CLI: {why}.",
            "The release stays on the internal ring.",
            "approving *Desktop/CLI kill-switch*",
            failure=True,
        ),
    ]
    # The cancelled window's timer, had it fired anyway, changes nothing.
    late = window_ended(killed.rollout, track="desktop", stage="internal", due_at=at(70))
    assert late == Decision(killed.rollout)

    beta_waits = snapshot(
        job(CANARY, completed_at=at(5)),
        job(INTERNAL, completed_at=at(10)),
        waiting(BETA),
        waiting_on={"desktop-beta"},
    )
    rejecting = reconcile(killed.rollout, PLAN, beta_waits, at(21))
    assert effects(rejecting) == [
        ScheduleWindow("relay", "canary", at(35)),
        # GitHub is told the reason without Slack's mention markup.
        Review(
            "desktop",
            "desktop-beta",
            approve=False,
            comment="rollout-bot: kill-switch by Slack user U9: crash reports from support",
        ),
        Says("Rejected *beta ring* (Desktop app and CLI)."),
    ]

    kill_waits = snapshot(
        job(CANARY, completed_at=at(5)),
        job(BETA, JobConclusion.FAILURE, at(21)),
        waiting(KILL_SWITCH),
        waiting_on={"desktop-kill-switch"},
    )
    approving = reconcile(rejecting.rollout, PLAN, kill_waits, at(22))
    assert effects(approving) == [
        ScheduleWindow("relay", "canary", at(35)),
        Review(
            "desktop",
            "desktop-kill-switch",
            approve=True,
            comment="rollout-bot: Desktop/CLI kill-switch",
        ),
    ]

    with pytest.raises(InvalidTransition, match="Desktop app and CLI is already"):
        abort(approving.rollout, PLAN, track="desktop", actor="U9", reason="", now=at(23))


def test_a_relay_rollback_while_holding_stops_the_hold() -> None:
    rollout = judged(canary_observing(), "relay", "canary", relay_verdict(), at(36))

    decision = abort(rollout, PLAN, track="relay", actor="U3", reason="", now=at(40))

    assert states(decision.rollout, "relay") == [
        StageState.STOPPED,
        StageState.PENDING,
        StageState.PENDING,
    ]
    assert holding_tracks(decision.rollout) == []
    assert decision.rollout.track("relay").ending is TrackState.ROLLED_BACK
    assert effects(decision) == [
        Says(
            ":rotating_light: Hosted relay: rolled back by <@U3>.",
            "Reached: 5% canary.",
            "approving *Relay auto-rollback*",
            failure=True,
        )
    ]
    with pytest.raises(InvalidTransition, match="nothing to promote"):
        promote(decision.rollout, PLAN, track="relay", actor="U2")


def desktop_at_ga(rollout: Rollout) -> Rollout:
    """The desktop track through internal and beta; GA approved and deploying."""
    rollout = deploy(rollout, INTERNAL, "desktop-internal", at(10))
    rollout = passed(rollout, "desktop", "internal", desktop_verdict(), at(71))
    rollout = deploy(rollout, BETA, "desktop-beta", at(80))
    rollout = passed(rollout, "desktop", "beta", desktop_verdict(), at(201))
    asked = snapshot(waiting(GA), waiting_on={"desktop-ga"})
    return reconcile(rollout, PLAN, asked, at(202)).rollout


def test_a_kill_after_ga_changes_nothing() -> None:
    deploying = desktop_at_ga(approved())
    assert states(deploying, "desktop")[-1] is StageState.DEPLOYING
    done = reconcile(deploying, PLAN, snapshot(job(GA, completed_at=at(205))), at(206))
    completed = done.rollout
    assert completed.track("desktop").state is TrackState.COMPLETED
    assert effects(done) == [Says("*GA ring* deployed: Desktop app and CLI is done.")]

    for rollout, words in [
        (deploying, "already deploying GA ring"),
        (completed, "already completed (GA ring)"),
    ]:
        with pytest.raises(InvalidTransition) as refused:
            abort(rollout, PLAN, track="desktop", actor="U9", reason="late", now=at(210))
        assert words in refused.value.message
        assert "nothing was changed" in refused.value.message


def test_a_kill_at_ga_the_run_unread_is_kept_and_github_tells_what_it_stopped() -> None:
    """GA saved as deploying and the run unreadable (`waiting` None): whether GitHub deploys
    GA or still holds it (the bot's approval failed) is not known. The kill is kept, saying so
    (never where the release stays), and the first read of the run decides: GA held is
    rejected (never approved again), GA deploying lands while the track stops."""
    deploying = desktop_at_ga(approved())
    kept = abort(deploying, PLAN, track="desktop", actor="U9", reason="", now=at(210), waiting=None)
    stopping = kept.rollout
    assert stopping.track("desktop").state is TrackState.ABORTING
    assert states(stopping, "desktop")[-1] is StageState.DEPLOYING
    [told] = effects(kept)
    assert told == Says("cannot tell yet whether *GA ring* is deploying", failure=True)
    assert "stays on" not in render(told.event)

    held = reconcile(stopping, PLAN, snapshot(waiting(GA), waiting_on={"desktop-ga"}), at(211))
    assert [e for e in effects(held) if isinstance(e, Review)] == [
        Review(
            "desktop",
            "desktop-ga",
            approve=False,
            comment="rollout-bot: kill-switch by Slack user U9",
        )
    ]
    assert states(held.rollout, "desktop")[-1] is StageState.REJECTED

    landed = reconcile(stopping, PLAN, snapshot(job(GA, completed_at=at(211))), at(212))
    assert not [e for e in effects(landed) if isinstance(e, Review)]
    assert Says("*GA ring* deployed", failure=False) in effects(landed)


def test_a_kept_kill_whose_next_read_finds_ga_deploying_is_never_answered_tripped() -> None:
    """The kill's own read failed, so the kill at GA (saved as deploying) is kept; the read
    that follows it in the same command answers: GA is running (or already landed), which
    GitHub cannot stop. The answer says that GA lands, never 'Kill-switch tripped' (nor the
    unread words: GitHub was read) for a release that reaches GA all the same."""
    deploying = desktop_at_ga(approved())
    kept = abort(deploying, PLAN, track="desktop", actor="U9", reason="", now=at(210), waiting=None)
    running = job(GA, None, status=JobStatus.IN_PROGRESS)
    for read in (running, job(GA, completed_at=at(211))):
        after = reconcile(kept.rollout, PLAN, snapshot(read), at(212)).rollout
        assert after.unread_since is None
        answer = stop_note(after, PLAN, GateKind.DESKTOP)
        assert "tripped" not in answer and "could not be read" not in answer, answer
        assert "*GA ring*" in answer and "cannot stop" in answer, answer
    held = snapshot(waiting(GA), waiting_on={"desktop-ga"})
    rejected = reconcile(kept.rollout, PLAN, held, at(212))
    assert "Kill-switch tripped for" in stop_note(rejected.rollout, PLAN, GateKind.DESKTOP)


def test_nothing_to_abort_before_the_dispatch() -> None:
    with pytest.raises(InvalidTransition, match="has not been dispatched yet"):
        abort(fresh(), PLAN, track="relay", actor="U9", reason="", now=at(1))


# -- failures on GitHub's side --------------------------------------------------------------


def test_a_failed_preflight_fails_the_relay_and_its_rollback_is_approved() -> None:
    rollout = running()
    run = snapshot(
        job(PREFLIGHT, JobConclusion.FAILURE, at(2)),
        job(CANARY, JobConclusion.SKIPPED, at(2)),
        waiting(INTERNAL),
        waiting(RELAY_ROLLBACK),
        waiting_on={"relay-rollback"},
    )

    decision = reconcile(rollout, PLAN, run, at(3))

    relay = decision.rollout.track("relay")
    assert (relay.state, relay.ending, said(relay.ended_reason)) == (
        TrackState.ABORTING,
        TrackState.FAILED,
        f"{CANARY} was skipped",
    )
    assert states(decision.rollout, "relay")[0] is StageState.FAILED
    assert decision.rollout.track("desktop") == rollout.track("desktop")
    assert effects(decision) == [
        Says(
            f":x: Hosted relay: *{CANARY}* was skipped on GitHub.",
            f"Logs: <{job_url(PREFLIGHT)}|{PREFLIGHT}>.",
            "approving *Relay auto-rollback*",
            failure=True,
        ),
        Review("relay", "relay-rollback", approve=True, comment="rollout-bot: Relay auto-rollback"),
    ]

    finished = snapshot(
        job(PREFLIGHT, JobConclusion.FAILURE, at(2)),
        job(CANARY, JobConclusion.SKIPPED, at(2)),
        job(RELAY_ROLLBACK, completed_at=at(4)),
    )
    ended = reconcile(decision.rollout, PLAN, finished, at(5))
    assert ended.rollout.track("relay").state is TrackState.FAILED
    assert ended.rollout.phase is Phase.RUNNING
    assert effects(ended) == [
        Says("*Relay auto-rollback* finished.", "Hosted relay: failed.", failure=True)
    ]


@pytest.mark.parametrize(
    ("track", "failing", "failure_env", "failure_job", "label"),
    [
        ("relay", CANARY, "relay-rollback", RELAY_ROLLBACK, "Hosted relay"),
        ("desktop", INTERNAL, "desktop-kill-switch", KILL_SWITCH, "Desktop app and CLI"),
    ],
)
def test_a_failing_deploy_step_fails_the_track_with_its_log_link(
    track: str, failing: str, failure_env: str, failure_job: str, label: str
) -> None:
    rollout = approved()
    run = snapshot(
        job(failing, JobConclusion.FAILURE, at(4)),
        waiting(failure_job),
        waiting_on={failure_env},
    )

    decision = reconcile(rollout, PLAN, run, at(5))

    assert decision.rollout.track(track).state is TrackState.ABORTING
    assert decision.rollout.track(track).ending is TrackState.FAILED
    assert effects(decision) == [
        Says(
            f":x: {label}: *{failing}* ended `failure` on GitHub.",
            f"Logs: <{job_url(failing)}|{failing}>.",
            failure=True,
        ),
        Review(track, failure_env, approve=True, comment=f"rollout-bot: {failure_job}"),
    ]


def test_a_desktop_failure_links_its_own_job_not_the_relays() -> None:
    rollout = judged(canary_observing(), "relay", "canary", relay_verdict(crash="0.01"), at(36))
    run = snapshot(
        job(CANARY, completed_at=at(5)),
        job(HALF, JobConclusion.FAILURE, at(37)),
        job(INTERNAL, JobConclusion.TIMED_OUT, at(38)),
    )

    decision = reconcile(rollout, PLAN, run, at(39))

    assert effects(decision) == [
        Says(
            f"*{INTERNAL}* ended `timed_out` on GitHub. Logs: <{job_url(INTERNAL)}|{INTERNAL}>. ",
            failure=True,
        )
    ]


def test_a_rollback_job_that_fails_leaves_the_track_failed_not_rolled_back() -> None:
    rollout = judged(canary_observing(), "relay", "canary", relay_verdict(crash="0.01"), at(36))
    run = snapshot(
        job(CANARY, completed_at=at(5)),
        job(HALF, JobConclusion.FAILURE, at(37)),
        job(RELAY_ROLLBACK, JobConclusion.FAILURE, at(39)),
    )

    decision = reconcile(rollout, PLAN, run, at(40))

    relay = decision.rollout.track("relay")
    assert (relay.state, said(relay.ended_reason)) == (
        TrackState.FAILED,
        "Relay auto-rollback ended `failure` (5% canary gate ROLLBACK: crash rate)",
    )
    # Where the release may still be is said: "failed" alone read as if rolled back halfway.
    assert effects(decision) == [
        Says(
            ":x: *Relay auto-rollback* ended `failure`.",
            f"<{job_url(RELAY_ROLLBACK)}|logs>",
            "Hosted relay: failed. The rollback did not finish: Hosted relay may still be on "
            "*5% canary*. Finish it on GitHub",
            failure=True,
        )
    ]


def test_a_kill_switch_job_that_fails_says_the_release_stays_on_its_ring() -> None:
    rollout = desktop_internal_observing(canary_observing())
    killed = abort(rollout, PLAN, track="desktop", actor="U9", reason="", now=at(20)).rollout
    run = snapshot(
        job(INTERNAL, completed_at=at(10)),
        replace(job(BETA, JobConclusion.FAILURE, at(21)), ran=False),  # rejected
        job(KILL_SWITCH, JobConclusion.CANCELLED, at(22)),
    )

    decision = reconcile(killed, PLAN, run, at(23))

    assert decision.rollout.track("desktop").state is TrackState.FAILED
    assert effects(decision) == [
        ScheduleWindow("relay", "canary", at(35)),  # the relay goes on
        Says(
            ":x: *Desktop/CLI kill-switch* ended `cancelled`.",
            "Desktop app and CLI: failed. The release stays on the internal ring: its next "
            "ring was rejected.",
            failure=True,
        ),
    ]


def landed_at_100(reason: str = "") -> Decision:
    """Roll back (by U1, for `reason`) came after 100% was approved on GitHub, before the bot
    looked: the 100% job ran, nothing failed, so GitHub skipped the `if: failure()` rollback."""
    stopping = abort(half_observing(), PLAN, track="relay", actor="U1", reason=reason, now=at(60))
    run = snapshot(
        job(CANARY, completed_at=at(5)),
        job(HALF, completed_at=at(45)),
        job(FULL, completed_at=at(62)),
        job(RELAY_ROLLBACK, JobConclusion.SKIPPED, at(62)),
        job(INTERNAL, None, status=JobStatus.IN_PROGRESS),
    )
    return reconcile(stopping.rollout, PLAN, run, at(63))


def test_a_rollback_job_github_skipped_says_it_never_ran_and_where_the_release_is() -> None:
    """The thread said the rollback "did not finish" and that its logs say what stopped it (a
    skipped job has no logs): it never ran, nothing was rolled back, and the release is on
    100%."""
    decision = landed_at_100()

    assert decision.rollout.track("relay").state is TrackState.FAILED
    assert states(decision.rollout, "relay")[2] is StageState.STOPPED
    ended = [e for e in effects(decision) if isinstance(e, Announce)][-1]
    text = render(ended.event)
    assert "*Relay auto-rollback* ended `skipped`" in text
    assert (
        "It never ran: Hosted relay reached *100%* before the stop took hold; nothing was "
        "rolled back." in text
    ), text
    assert "did not finish" not in text and "say what stopped it" not in text


def test_a_kill_switch_job_that_fails_after_a_ring_failed_never_says_a_ring_was_rejected() -> None:
    """The beta ring's own job failed (no ring was rejected), then the kill-switch job failed:
    the thread said `its next ring was rejected`, as if beta never got the build."""
    rollout = deploy(
        deploy(approved(), CANARY, "relay-canary-5", at(5)), INTERNAL, "desktop-internal", at(10)
    )
    rollout = passed(rollout, "desktop", "internal", desktop_verdict(), at(71))
    asked = snapshot(waiting(BETA), waiting_on={"desktop-beta"})
    rollout = reconcile(rollout, PLAN, asked, at(72)).rollout
    failed = reconcile(rollout, PLAN, snapshot(job(BETA, JobConclusion.FAILURE, at(74))), at(75))
    assert failed.rollout.track("desktop").ending is TrackState.FAILED
    run = snapshot(
        job(BETA, JobConclusion.FAILURE, at(74)), job(KILL_SWITCH, JobConclusion.FAILURE, at(77))
    )

    decision = reconcile(failed.rollout, PLAN, run, at(78))

    assert decision.rollout.track("desktop").state is TrackState.FAILED
    ended = [e for e in effects(decision) if isinstance(e, Announce)][-1]
    text = render(ended.event)
    assert "*Desktop/CLI kill-switch* ended `failure`" in text, text
    assert "The release stays on the internal ring." in text, text
    assert "rejected" not in text, text


def test_a_run_that_ends_without_its_rollback_job_seen_never_says_rolled_back() -> None:
    """Only the rollback job's success rolls back: a run that ended without the bot seeing it
    end (a job renamed in the workflow and not in the plan) leaves the track failed."""
    rollout = judged(canary_observing(), "relay", "canary", relay_verdict(crash="0.01"), at(36))
    run = snapshot(
        job(CANARY, completed_at=at(5)),
        job(HALF, JobConclusion.FAILURE, at(37)),
        JobSnapshot("Relay rollback (helm)", JobStatus.COMPLETED, JobConclusion.SUCCESS, at(39)),
        job(INTERNAL, completed_at=at(10)),
        job(BETA, JobConclusion.FAILURE, at(38)),
        job(KILL_SWITCH, JobConclusion.SKIPPED, at(38)),
        status="completed",
        conclusion="failure",
    )

    decision = reconcile(rollout, PLAN, run, at(40))

    relay = decision.rollout.track("relay")
    assert (relay.state, said(relay.ended_reason)) == (
        TrackState.FAILED,
        "the run ended `failure` before Relay auto-rollback was seen to end "
        "(5% canary gate ROLLBACK: crash rate)",
    )
    assert effects(decision)[0] == Says(
        "The run ended (`failure`) before *Relay auto-rollback* was seen to end: check it on "
        "GitHub. Hosted relay: failed.",
        failure=True,
    )


def test_a_second_stop_is_refused_in_the_words_of_the_card() -> None:
    rollout = desktop_internal_observing(canary_observing())
    rolling_back = abort(rollout, PLAN, track="relay", actor="U1", reason="", now=at(20))
    killing = abort(rolling_back.rollout, PLAN, track="desktop", actor="U1", reason="", now=at(20))

    with pytest.raises(InvalidTransition, match="Hosted relay is already rolling back: nothing"):
        abort(killing.rollout, PLAN, track="relay", actor="U2", reason="", now=at(21))
    with pytest.raises(InvalidTransition, match="CLI is already tripping the kill-switch: nothing"):
        abort(killing.rollout, PLAN, track="desktop", actor="U2", reason="", now=at(21))


def test_a_run_that_ends_under_active_tracks_fails_them_and_ends_the_rollout() -> None:
    rollout = canary_observing()  # relay observing, desktop internal deploying
    run = snapshot(
        job(CANARY, completed_at=at(5)),
        job(INTERNAL, JobConclusion.CANCELLED, at(9)),
        status="completed",
        conclusion="cancelled",
    )

    decision = reconcile(rollout, PLAN, run, at(10))

    ended = decision.rollout
    assert [t.state for t in ended.tracks] == [TrackState.FAILED, TrackState.FAILED]
    assert said(ended.track("relay").ended_reason) == "the run ended `cancelled` first"
    assert states(ended, "relay")[0] is StageState.STOPPED
    assert (ended.phase, ended.ended_at) == (Phase.ENDED, at(10))
    assert effects(decision) == [
        CancelWindow("relay", "canary", at(35)),
        Says("The run ended (`cancelled`). Hosted relay: failed.", failure=True),
        Says(f"*{INTERNAL}* ended `cancelled` on GitHub", job_url(INTERNAL), failure=True),
        Says("The run ended (`cancelled`). Desktop app and CLI: failed.", failure=True),
        Says(f"Rollout of `{TAG}` ended.", "Hosted relay: failed; Desktop app and CLI: failed."),
    ]
    # The window's timer, if it fires anyway, wakes nothing.
    assert window_ended(ended, track="relay", stage="canary", due_at=at(35)) == Decision(ended)


# -- preflight -------------------------------------------------------------------------------

MIGRATIONS = "crates/relay/src/db/migrations"


@pytest.mark.parametrize(
    ("files", "state", "detail"),
    [
        (
            {f"{MIGRATIONS}/0007_users.sql": "ALTER TABLE users ADD bio;\nDROP TABLE users;\n"},
            CheckState.FAIL,
            f"destructive migration: `{MIGRATIONS}/0007_users.sql` line 2: `DROP TABLE users;`",
        ),
        (
            {f"{MIGRATIONS}/0008.sql": "  ALTER TABLE docs DROP COLUMN title;  "},
            CheckState.FAIL,
            f"destructive migration: `{MIGRATIONS}/0008.sql` line 1: "
            "`ALTER TABLE docs DROP COLUMN title;`",
        ),
        # The workflow's rule is a plain word match: a comment counts too.
        (
            {f"{MIGRATIONS}/0009.sql": "-- DROP TABLE legacy later\nSELECT 1;"},
            CheckState.FAIL,
            f"destructive migration: `{MIGRATIONS}/0009.sql` line 1: `-- DROP TABLE legacy later`",
        ),
        (
            {
                f"{MIGRATIONS}/0002_b.sql": "DROP COLUMN x;",
                f"{MIGRATIONS}/0001_a.sql": "SELECT 1;\n\nDROP TABLE t;",
            },
            CheckState.FAIL,
            f"destructive migration: `{MIGRATIONS}/0001_a.sql` line 3: `DROP TABLE t;`; "
            f"`{MIGRATIONS}/0002_b.sql` line 1: `DROP COLUMN x;`",
        ),
        (
            {
                f"{MIGRATIONS}/0010.sql": "drop table users;\nDrop Column x;\nCREATE TABLE t ();",
                f"{MIGRATIONS}/0011.sql": "DROP TABLESPACE archive; -- XDROP TABLE",
                f"{MIGRATIONS}/README.md": "Never DROP TABLE here.",
                f"{MIGRATIONS}/old/0001.sql": "DROP TABLE users;",
                "crates/relay/src/db/seeds/reset.sql": "DROP TABLE users;",
            },
            CheckState.PASS,
            "2 migration files, additive only",
        ),
        ({}, CheckState.PASS, "0 migration files, additive only"),
    ],
    ids=["drop-table", "drop-column", "in-a-comment", "several", "not-destructive", "none"],
)
def test_migration_check_applies_the_workflow_rule(
    files: dict[str, str], state: CheckState, detail: str
) -> None:
    assert migration_check(PLAN, files) == Check(state, detail)


def test_dispatch_is_refused_while_a_check_blocks() -> None:
    bad = migration_check(PLAN, {f"{MIGRATIONS}/0007.sql": "DROP TABLE users;"})
    rollout = fresh(
        preflight=Preflight(
            flags=Check(CheckState.PENDING),
            migrations=bad,
            image=Check(CheckState.SKIPPED, "not checked: the image check is turned off"),
        )
    )

    with pytest.raises(InvalidTransition) as refused:
        begin_dispatch(rollout, now=at(1))
    assert refused.value.message.startswith("Dispatch is blocked.")
    assert "Feature flags: pending" in refused.value.message
    assert (
        f"Migrations: destructive migration: `{MIGRATIONS}/0007.sql` line 1"
        in refused.value.message
    )
    assert "Image tag" not in refused.value.message  # a check turned off does not block

    confirmed = confirm_flags(rollout, actor="U1")
    assert confirmed.preflight.flags == Check(CheckState.PASS, confirmed_by="U1")
    with pytest.raises(InvalidTransition) as still:
        begin_dispatch(confirmed, now=at(2))
    assert "Feature flags" not in still.value.message
    assert "Migrations: destructive migration" in still.value.message

    fixed = replace(
        confirmed, preflight=replace(confirmed.preflight, migrations=migration_check(PLAN, {}))
    )
    begun = begin_dispatch(fixed, now=at(3))
    assert (begun.phase, begun.dispatched_at) == (Phase.DISPATCHING, at(3))
    with pytest.raises(InvalidTransition, match="already dispatched"):
        begin_dispatch(begun, now=at(4))
    with pytest.raises(InvalidTransition):
        confirm_flags(begun, actor="U1")


@pytest.mark.parametrize("state", [CheckState.FAIL, CheckState.ERROR, CheckState.PENDING])
def test_an_image_check_that_is_not_clear_blocks(state: CheckState) -> None:
    rollout = fresh(preflight=replace(CLEAR, image=Check(state, f"registry said {state}")))
    with pytest.raises(InvalidTransition, match=f"Image tag: registry said {state}"):
        begin_dispatch(rollout, now=at(1))


def test_cancel_during_preflight_ends_both_tracks() -> None:
    cancelled = cancel_preflight(fresh(), actor="U1", now=at(2))
    assert (cancelled.phase, cancelled.ended_at) == (Phase.ENDED, at(2))
    assert [(t.state, said(t.ended_reason)) for t in cancelled.tracks] == [
        (TrackState.CANCELLED, "cancelled by <@U1>"),
        (TrackState.CANCELLED, "cancelled by <@U1>"),
    ]
    with pytest.raises(InvalidTransition):
        cancel_preflight(running(), actor="U1", now=at(2))


# -- verdicts in storage ---------------------------------------------------------------------

RATES = st.decimals(min_value=0, max_value=10, allow_nan=False, allow_infinity=False)
SAMPLES = st.none() | st.integers(min_value=0, max_value=10**9)


def round_trip(verdict: GateVerdict) -> GateVerdict:
    return verdict_from_json(json.loads(json.dumps(verdict_to_json(verdict))))


@given(baseline=RATES, crash=RATES, error=RATES, multiplier=RATES, sample=SAMPLES)
def test_a_relay_verdict_survives_storage(
    baseline: Decimal, crash: Decimal, error: Decimal, multiplier: Decimal, sample: int | None
) -> None:
    verdict = evaluate_relay(
        baseline_crash=baseline,
        current_crash=crash,
        current_error=error,
        crash_multiplier=multiplier,
        sample=sample,
        min_sample=100,
    )
    back = round_trip(verdict)
    assert back == verdict
    assert verdict_to_json(back) == verdict_to_json(verdict)  # same digits, same exponent
    assert back.summary == verdict.summary


@given(baseline=RATES, crash=RATES | st.none(), sample=SAMPLES)
def test_a_desktop_verdict_survives_storage(
    baseline: Decimal, crash: Decimal | None, sample: int | None
) -> None:
    verdict = evaluate_desktop(baseline_crash=baseline, current_crash=crash, sample=sample)
    assert round_trip(verdict) == verdict


def test_a_verdict_on_unusable_figures_survives_storage() -> None:
    verdict = evaluate_relay(baseline_crash=None, current_crash=D("NaN"), current_error=D("-0.1"))
    back = round_trip(verdict)
    assert (back.verdict, back.reason) == (Verdict.INCONCLUSIVE, verdict.reason)
    assert verdict_to_json(back) == verdict_to_json(verdict)
    assert back.summary == verdict.summary


def test_extending_a_window_moves_its_timer_and_the_old_one_fires_stale() -> None:
    rollout = canary_observing()  # the canary window ends at(35)
    moved = extend(rollout, PLAN, track="relay", actor="U9", by=timedelta(minutes=15), now=at(30))

    assert moved.rollout.track("relay").stage("canary").window_ends_at == at(50)
    assert effects(moved)[:2] == [
        CancelWindow("relay", "canary", at(35)),
        ScheduleWindow("relay", "canary", at(50)),
    ]
    assert window_ended(moved.rollout, track="relay", stage="canary", due_at=at(35)) == Decision(
        moved.rollout
    )
    assert window_timer_key("r-1", "relay", "canary", at(35)) != window_timer_key(
        "r-1", "relay", "canary", at(50)
    )


def test_extending_without_a_running_window_changes_nothing() -> None:
    rollout = canary_observing()
    with pytest.raises(InvalidTransition, match="no window running"):
        extend(rollout, PLAN, track="desktop", actor="U9", by=timedelta(minutes=15), now=at(30))


# -- reviews made by a person on GitHub ------------------------------------------------------

OCTOCAT_APPROVED_HALF = EnvironmentReview("relay-rollout-50", "approved", "octocat")


def canary_holding() -> Rollout:
    """Canary gate passed at T0+36m: 50% is held for a Promote."""
    return judged(canary_observing(), "relay", "canary", relay_verdict(), at(36))


def test_an_approval_on_github_ends_the_hold_and_the_window_starts_on_completion() -> None:
    started = replace(
        snapshot(job(CANARY, completed_at=at(5)), job(HALF, None, status=JobStatus.IN_PROGRESS)),
        reviews=(OCTOCAT_APPROVED_HALF,),
    )

    decision = reconcile(canary_holding(), PLAN, started, at(40))

    assert states(decision.rollout, "relay") == [
        StageState.PASSED,
        StageState.DEPLOYING,
        StageState.PENDING,
    ]
    assert holding_tracks(decision.rollout) == []
    assert effects(decision) == [
        Says(
            "octocat approved *50%* (Hosted relay) on GitHub",
            "the hold after 5% canary ends",
            "Deploying.",
        )
    ]
    with pytest.raises(InvalidTransition, match=r"nothing to promote|not waiting for a Promote"):
        promote(decision.rollout, PLAN, track="relay", actor="U2")

    done = replace(
        snapshot(job(CANARY, completed_at=at(5)), job(HALF, completed_at=at(44))),
        reviews=(OCTOCAT_APPROVED_HALF,),
    )
    deployed = reconcile(decision.rollout, PLAN, done, at(45))

    half = deployed.rollout.track("relay").stage("half")
    assert (half.state, half.window_started_at, half.window_ends_at) == (
        StageState.OBSERVING,
        at(44),
        at(104),
    )
    assert effects(deployed) == [
        ScheduleWindow("relay", "half", at(104)),
        Says("*50%* deployed (Hosted relay). Observing for 1h"),
    ]
    assert reconcile(deployed.rollout, PLAN, done, at(46)).rollout == deployed.rollout


def test_a_stage_approved_and_finished_between_two_looks_is_observed_at_once() -> None:
    done = replace(
        snapshot(job(CANARY, completed_at=at(5)), job(HALF, completed_at=at(44))),
        reviews=(OCTOCAT_APPROVED_HALF,),
    )

    decision = reconcile(canary_holding(), PLAN, done, at(50))

    assert states(decision.rollout, "relay")[:2] == [StageState.PASSED, StageState.OBSERVING]
    assert decision.rollout.track("relay").stage("half").window_ends_at == at(104)
    assert effects(decision) == [
        Says("octocat approved *50%* (Hosted relay) on GitHub"),
        ScheduleWindow("relay", "half", at(104)),
        Says("*50%* deployed (Hosted relay)."),
    ]


def test_an_approval_on_github_during_a_window_stops_that_window() -> None:
    started = replace(
        snapshot(job(CANARY, completed_at=at(5)), job(HALF, None, status=JobStatus.IN_PROGRESS)),
        reviews=(OCTOCAT_APPROVED_HALF,),
    )

    decision = reconcile(canary_observing(), PLAN, started, at(20))

    assert states(decision.rollout, "relay")[:2] == [StageState.PASSED, StageState.DEPLOYING]
    assert effects(decision) == [
        CancelWindow("relay", "canary", at(35)),
        Says("octocat approved *50%*", "the window of 5% canary is stopped before its gate"),
    ]
    # The stopped window's timer, should it fire anyway, changes nothing.
    stale = window_ended(decision.rollout, track="relay", stage="canary", due_at=at(35))
    assert stale.rollout == decision.rollout and effects(stale) == []


def test_a_stage_without_required_reviewers_that_starts_on_its_own_moves_on() -> None:
    started = snapshot(
        job(CANARY, completed_at=at(5)), job(HALF, None, status=JobStatus.IN_PROGRESS)
    )

    decision = reconcile(canary_holding(), PLAN, started, at(40))

    assert states(decision.rollout, "relay")[:2] == [StageState.PASSED, StageState.DEPLOYING]
    assert effects(decision) == [Says("*50%* (Hosted relay) started on GitHub without the bot")]


def test_a_held_stage_still_waiting_or_queued_keeps_the_hold() -> None:
    for next_job in (waiting(HALF), job(HALF, None, status=JobStatus.QUEUED)):
        run = snapshot(job(CANARY, completed_at=at(5)), next_job, waiting_on={"relay-rollout-50"})
        decision = reconcile(canary_holding(), PLAN, run, at(40))
        assert decision.rollout == canary_holding()
        assert effects(decision) == []


def test_a_rejection_on_github_stops_the_relay_and_its_rollback_is_approved() -> None:
    rejected = JobSnapshot(
        HALF, JobStatus.COMPLETED, JobConclusion.FAILURE, at(40), job_url(HALF), ran=False
    )
    run = replace(
        snapshot(
            job(CANARY, completed_at=at(5)),
            rejected,
            waiting(RELAY_ROLLBACK),
            waiting_on={"relay-rollback"},
        ),
        reviews=(EnvironmentReview("relay-rollout-50", "rejected", "octocat", "error budget"),),
    )

    decision = reconcile(canary_holding(), PLAN, run, at(41))

    relay = decision.rollout.track("relay")
    assert (relay.state, relay.ending, said(relay.ended_reason)) == (
        TrackState.ABORTING,
        TrackState.ROLLED_BACK,
        "50% rejected on GitHub by octocat",
    )
    assert states(decision.rollout, "relay") == [
        StageState.STOPPED,
        StageState.REJECTED,
        StageState.PENDING,
    ]
    assert effects(decision) == [
        Says(
            "octocat rejected *50%* (Hosted relay) on GitHub (error budget).",
            "Reached: 5% canary.",
            "rolling back",
            "*Relay auto-rollback*",
            failure=True,
        ),
        Review("relay", "relay-rollback", approve=True, comment="rollout-bot: Relay auto-rollback"),
    ]
    assert decision.rollout.track("desktop") == canary_holding().track("desktop")

    finished = replace(
        run,
        jobs={**run.jobs, RELAY_ROLLBACK: job(RELAY_ROLLBACK, completed_at=at(43))},
        waiting=frozenset(),
    )
    ended = reconcile(decision.rollout, PLAN, finished, at(44))
    assert ended.rollout.track("relay").state is TrackState.ROLLED_BACK
    assert effects(ended) == [
        Says("*Relay auto-rollback* finished.", "Hosted relay: rolled back.", failure=True)
    ]


def test_a_stage_approved_on_github_before_the_rollback_took_hold_is_told_as_reached() -> None:
    """The gate failed (or Roll back was clicked) on a state read before the bot saw that the
    next stage was approved (by a person on github.com, by a Promote on another replica):
    GitHub runs the approved job whatever the bot does, so the card and thread say that the
    release got there."""
    stopping = reconcile(
        judged(canary_observing(), "relay", "canary", relay_verdict(crash="0.01"), at(36)),
        PLAN,
        snapshot(job(CANARY, completed_at=at(5))),
        at(36),
    ).rollout
    assert states(stopping, "relay")[1] is StageState.PENDING
    started = replace(
        snapshot(job(CANARY, completed_at=at(5)), job(HALF, None, status=JobStatus.IN_PROGRESS)),
        reviews=(OCTOCAT_APPROVED_HALF,),
    )

    deploying = reconcile(stopping, PLAN, started, at(41))

    assert states(deploying.rollout, "relay")[1] is StageState.DEPLOYING
    assert "rolling back: 5% canary gate ROLLBACK" in track_standing(
        deploying.rollout.track("relay"), PLAN.track("relay")
    )
    landed = replace(
        snapshot(
            job(CANARY, completed_at=at(5)),
            job(HALF, completed_at=at(44)),
            waiting(FULL),
            waiting_on={"relay-rollout-100"},
        ),
        reviews=(OCTOCAT_APPROVED_HALF,),
    )

    rejecting = reconcile(deploying.rollout, PLAN, landed, at(45))

    assert states(rejecting.rollout, "relay") == [
        StageState.FAILED_GATE,
        StageState.STOPPED,
        StageState.REJECTED,
    ]
    assert effects(rejecting)[0] == Says(
        "*50%* deployed (Hosted relay); not observed: the track is stopping."
    )
    assert isinstance(effects(rejecting)[1], Review)
    rolled_back = reconcile(
        rejecting.rollout,
        PLAN,
        replace(
            landed,
            jobs={**landed.jobs, RELAY_ROLLBACK: job(RELAY_ROLLBACK, completed_at=at(47))},
            waiting=frozenset(),
        ),
        at(48),
    ).rollout
    assert track_standing(rolled_back.track("relay"), PLAN.track("relay")).startswith(
        "rolled back from 50%"
    )


def test_a_ring_rejected_on_github_mid_window_trips_the_kill_switch() -> None:
    rollout = desktop_internal_observing(canary_observing())
    internal = rollout.track("desktop").stage("internal")
    assert internal.window_ends_at is not None
    rejected = JobSnapshot(
        BETA, JobStatus.COMPLETED, JobConclusion.FAILURE, at(30), job_url(BETA), ran=False
    )
    run = snapshot(
        job(CANARY, completed_at=at(5)),
        job(INTERNAL, completed_at=at(10)),
        rejected,
        waiting(KILL_SWITCH),
        waiting_on={"desktop-kill-switch"},
    )

    decision = reconcile(rollout, PLAN, run, at(31))

    desktop = decision.rollout.track("desktop")
    assert (desktop.state, desktop.ending) == (TrackState.ABORTING, TrackState.HALTED)
    assert states(decision.rollout, "desktop")[:2] == [StageState.STOPPED, StageState.REJECTED]
    assert effects(decision) == [
        ScheduleWindow("relay", "canary", at(35)),  # the relay goes on (idempotent timer)
        CancelWindow("desktop", "internal", internal.window_ends_at),
        Says(
            "Someone rejected *beta ring* (Desktop app and CLI) on GitHub.",
            "The release stays on the internal ring.",
            "tripping the kill-switch",
            failure=True,
        ),
        Review(
            "desktop",
            "desktop-kill-switch",
            approve=True,
            comment="rollout-bot: Desktop/CLI kill-switch",
        ),
    ]


def test_a_stage_approved_on_github_whose_deploy_fails_fails_the_track() -> None:
    run = replace(
        snapshot(job(CANARY, completed_at=at(5)), job(HALF, JobConclusion.FAILURE, at(42))),
        reviews=(OCTOCAT_APPROVED_HALF,),
    )

    decision = reconcile(canary_holding(), PLAN, run, at(43))

    relay = decision.rollout.track("relay")
    assert (relay.state, relay.ending) == (TrackState.ABORTING, TrackState.FAILED)
    assert effects(decision) == [
        Says("octocat approved *50%*"),
        Says("*Relay rollout 50% (60m)* ended `failure` on GitHub", failure=True),
    ]


def test_a_job_that_succeeded_ran_whether_or_not_it_names_a_runner() -> None:
    """GitHub's job names its runner and steps optionally: an approved stage whose job
    succeeded without naming them ran (a failed one that names neither was rejected, by a
    reviewer or by another protection rule: GitHub gives a rejected job no runner)."""
    quiet_success = JobSnapshot(
        HALF, JobStatus.COMPLETED, JobConclusion.SUCCESS, at(44), job_url(HALF), ran=False
    )
    done = snapshot(job(CANARY, completed_at=at(5)), quiet_success)  # no reviewer on record
    deployed = reconcile(canary_holding(), PLAN, done, at(50)).rollout
    assert states(deployed, "relay")[:2] == [StageState.PASSED, StageState.OBSERVING]


def test_a_cancelled_waiting_stage_is_not_a_rejection() -> None:
    cancelled = JobSnapshot(
        HALF, JobStatus.COMPLETED, JobConclusion.CANCELLED, at(40), job_url(HALF), ran=False
    )
    run = snapshot(job(CANARY, completed_at=at(5)), cancelled)

    decision = reconcile(canary_holding(), PLAN, run, at(41))

    assert decision.rollout == canary_holding()
    assert effects(decision) == []


def test_a_rule_wait_outside_the_plan_is_told_once_and_never_reviewed() -> None:
    """A job waits for the App's answer at `staging`, which no stage or failure job of the plan
    names: the thread is told once (a later look, another spelling: nothing more) and nothing
    is approved or rejected there. A wait at the plan's own environment is not told of."""
    rule_waits = frozenset({"staging", "relay-rollback"})
    look = replace(
        snapshot(JobSnapshot("Deploy staging", JobStatus.WAITING), waiting_on=rule_waits),
        rule_waits=rule_waits,
    )

    first = reconcile(running(), PLAN, look, T0)

    told = Says("waits at `staging`", "does not name `staging`", RUN.html_url, failure=True)
    assert effects(first) == [told]
    assert first.rollout.told_outside == ("staging",)
    for later in (
        look,
        replace(look, waiting=frozenset({"STAGING"}), rule_waits=frozenset({"STAGING"})),
    ):
        again = reconcile(first.rollout, PLAN, later, T0 + timedelta(minutes=1))
        assert (effects(again), again.rollout) == ([], first.rollout)


def test_a_review_wait_of_the_bots_account_outside_the_plan_is_told_once() -> None:
    """Token mode: a job waits at `staging`, where the bot's account is a required reviewer
    (GitHub lists it as one the bot may approve) and which the plan does not name. Nobody reads
    the bot's account's notifications, so the thread is told once, as a review's wait, and
    nothing is approved or rejected there."""
    look = snapshot(JobSnapshot("Deploy staging", JobStatus.WAITING), waiting_on={"staging"})

    first = reconcile(running(), PLAN, look, T0)

    told = Says("waits at `staging` for the bot's review", "required reviewers", failure=True)
    assert effects(first) == [told]
    assert first.rollout.told_outside == ("staging",)
    again = reconcile(first.rollout, PLAN, look, T0 + timedelta(minutes=1))
    assert (effects(again), again.rollout) == ([], first.rollout)


def test_an_unreadable_run_is_told_once_past_the_threshold_and_once_when_read_again() -> None:
    five, url = timedelta(minutes=5), running().run_url
    first = read_failed(running(), now=at(1), cause="GitHub answered 502", after=five)
    assert (first.rollout.unread_since, first.effects) == (at(1), ())
    before = read_failed(first.rollout, now=at(5.9), cause="GitHub answered 502", after=five)
    assert before == Decision(first.rollout)  # nothing to save
    past = read_failed(first.rollout, now=at(6), cause="GitHub answered 502", after=five)
    assert effects(past) == [
        Announce(RunUnreadable(at(1), "GitHub answered 502", url, False), True)
    ]
    again = read_failed(past.rollout, now=at(9), cause="GitHub answered 502", after=five)
    assert again == Decision(past.rollout)
    back = read_again(again.rollout, now=at(10))
    assert effects(back) == [Announce(RunReadable(at(1), at(10)), failure=True)]
    assert (back.rollout.unread_since, back.rollout.told_unread) == (None, False)
    assert read_again(back.rollout, now=at(11)) == Decision(back.rollout)


def test_a_rate_limit_that_resets_past_the_threshold_is_told_at_once() -> None:
    limited = read_failed(
        running(),
        now=at(1),
        cause="rate limited",
        after=timedelta(minutes=5),
        rate_limited=True,
        until=at(40),
    )
    told = RunUnreadable(at(1), "rate limited", running().run_url, rate_limited=True)
    assert effects(limited) == [Announce(told, failure=True)]
    quiet = read_failed(running(), now=at(1), cause="x", after=timedelta(minutes=5), until=at(2))
    assert quiet.effects == ()
