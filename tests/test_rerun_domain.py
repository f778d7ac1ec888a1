"""Re-run rollback, the pure rules: which failed failure job may be re-run, what the re-run
makes of the rollout (stopping again, at the run's next attempt), and how the run's next
looks follow it: the new attempt is the rollout's own, a look read before it is old news.

The machine on hand-built snapshots (`test_rollout_machine`'s); the sandbox stories are in
`test_rerun_rollback.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pytest
import test_rollout_machine as github
from test_rollout_machine import PLAN, RELAY_ROLLBACK, at, job, running, said, snapshot, waiting

from bot.adapters.slack.messages import render
from bot.domain.controls import CardRef, Control, card_applies, effect_key
from bot.domain.rollout import (
    Announce,
    InvalidTransition,
    Phase,
    Review,
    Rollout,
    StageState,
    StopKind,
    StopReason,
    TrackState,
    reconcile,
    rerun_failure_job,
    rerun_refusal,
)
from bot.domain.rollout.events import FailureJobRerun, RerunNotFollowed
from bot.domain.run import JobConclusion, JobSnapshot, RunSnapshot

GATE_FAILED = StopReason(StopKind.GATE_FAILED, subject="5% canary", outcome="ROLLBACK")


def rollback_failed(
    outcome: str = "failure", cause: StopReason | None = GATE_FAILED, *, detail: str = ""
) -> Rollout:
    """`v1.4.2` ended: its canary gate failed, the relay rollback job ended `outcome` (the
    relay track failed), the desktop kill-switch halted the rings; it followed attempt 1."""
    rollout = running()
    relay = rollout.track("relay")
    relay = relay.with_stage(replace(relay.stage("canary"), state=StageState.FAILED_GATE))
    reason = StopReason(
        StopKind.FAILURE_JOB_FAILED,
        subject=RELAY_ROLLBACK,
        outcome=outcome,
        detail=detail,
        cause=cause,
    )
    relay = replace(relay, state=TrackState.FAILED, ended_reason=reason, ended_at=at(40))
    desktop = replace(rollout.track("desktop"), state=TrackState.HALTED, ended_at=at(30))
    ended = rollout.with_track(relay).with_track(desktop)
    return replace(ended, phase=Phase.ENDED, ended_at=at(40), attempt=1)


def attempt(
    number: int, *jobs: JobSnapshot, status: str = "in_progress", waiting_on: Iterable[str] = ()
) -> RunSnapshot:
    """The run as GitHub shows it at its attempt `number`."""
    return replace(snapshot(*jobs, status=status, waiting_on=waiting_on), attempt=number)


KEPT = (
    job(github.PREFLIGHT, completed_at=at(2)),
    job(github.CANARY, completed_at=at(5)),
    replace(job(github.HALF, JobConclusion.FAILURE, at(36)), ran=False),  # rejected by the stop
    job(github.FULL, JobConclusion.SKIPPED, at(36)),
    job(github.INTERNAL, JobConclusion.FAILURE, at(20)),
    job(github.BETA, JobConclusion.SKIPPED, at(20)),
    job(github.GA, JobConclusion.SKIPPED, at(20)),
    job(github.KILL_SWITCH, completed_at=at(25)),
)
"""The jobs a re-run of the relay rollback keeps, with their first attempt's results."""


def test_a_failed_rollback_goes_back_to_stopping_at_the_runs_next_attempt() -> None:
    ended = rollback_failed()

    decision = rerun_failure_job(ended, PLAN, track="relay", attempt=2, actor="U1")

    rollout = decision.rollout
    relay = rollout.track("relay")
    assert (rollout.phase, rollout.ended_at, rollout.attempt) == (Phase.RUNNING, None, 2)
    assert (relay.state, relay.ending, relay.ended_at) == (
        TrackState.ABORTING,
        TrackState.ROLLED_BACK,
        None,
    )
    assert relay.ended_reason == GATE_FAILED  # the stop's own reason again
    assert rollout.track("desktop") == ended.track("desktop")
    (told,) = [e for e in decision.effects if isinstance(e, Announce)]
    assert isinstance(told.event, FailureJobRerun) and told.failure
    text = render(told.event)
    assert "<@U1> re-ran *Relay auto-rollback*" in text and "/attempts/2|attempt 2>" in text
    assert "Hosted relay may still be on *5% canary*" in text


def test_the_new_attempt_is_followed_its_rollback_approved_and_the_rollout_ends_rolled_back() -> (
    None
):
    """The bot's own re-run is not a re-run it did not see coming: attempt 2's rollback waits
    at its environment and is approved, as the first time; its success ends the rollout."""
    rerun = rerun_failure_job(rollback_failed(), PLAN, track="relay", attempt=2, actor="U1")
    asked = attempt(2, *KEPT, waiting(RELAY_ROLLBACK), waiting_on={"relay-rollback"})

    approving = reconcile(rerun.rollout, PLAN, asked, at(50))

    assert not any(
        isinstance(e, Announce) and isinstance(e.event, RerunNotFollowed) for e in approving.effects
    )
    assert [(e.environment, e.approve) for e in approving.effects if isinstance(e, Review)] == [
        ("relay-rollback", True)
    ]
    done = attempt(2, *KEPT, job(RELAY_ROLLBACK, completed_at=at(55)), status="completed")
    ended = reconcile(approving.rollout, PLAN, done, at(56)).rollout
    relay = ended.track("relay")
    assert ended.phase is Phase.ENDED
    assert relay.state is TrackState.ROLLED_BACK
    assert said(relay.ended_reason) == said(GATE_FAILED)


def test_a_rollback_that_fails_again_ends_failed_again_at_its_attempt() -> None:
    rerun = rerun_failure_job(rollback_failed(), PLAN, track="relay", attempt=2, actor="U1")
    failed = attempt(
        2, *KEPT, job(RELAY_ROLLBACK, JobConclusion.FAILURE, at(55)), status="completed"
    )

    decision = reconcile(rerun.rollout, PLAN, failed, at(56))

    relay = decision.rollout.track("relay")
    assert decision.rollout.phase is Phase.ENDED
    assert relay.state is TrackState.FAILED
    assert relay.ended_reason is not None and relay.ended_reason.cause == GATE_FAILED
    assert rerun_refusal(decision.rollout, PLAN, track="relay") is None  # offered again
    ended = [e.event for e in decision.effects if isinstance(e, Announce)]
    assert any(getattr(e, "attempt", None) == 2 for e in ended)  # its button: attempt 2


def test_a_look_read_before_the_re_run_changes_nothing() -> None:
    """A poll (or another replica's) read attempt 1, rollback failed, before the re-run, and
    reconciles after it was saved: not a second end of the track, nor a second message."""
    rerun = rerun_failure_job(rollback_failed(), PLAN, track="relay", attempt=2, actor="U1")
    old = attempt(1, *KEPT, job(RELAY_ROLLBACK, JobConclusion.FAILURE, at(39)), status="completed")

    decision = reconcile(rerun.rollout, PLAN, old, at(51))

    assert decision.rollout == rerun.rollout
    assert decision.effects == ()


def test_a_stop_for_a_failed_stage_job_fails_again_once_rolled_back() -> None:
    cause = StopReason(StopKind.JOB_FAILED, subject="relay-canary-5", outcome="failure")
    rerun = rerun_failure_job(
        rollback_failed(cause=cause), PLAN, track="relay", attempt=2, actor="U1"
    )
    assert rerun.rollout.track("relay").ending is TrackState.FAILED


@pytest.mark.parametrize(
    ("rollout", "words"),
    [
        (rollback_failed("skipped"), "did not fail on GitHub"),
        (rollback_failed(detail="100%"), "did not fail on GitHub"),
        (replace(rollback_failed(), phase=Phase.RUNNING), "is still going"),
        (replace(rollback_failed(), attempt=None), "does not know the run attempt"),
        (running(), "did not fail on GitHub"),
    ],
    ids=["skipped", "landed", "run-going", "attempt-unknown", "not-failed"],
)
def test_what_cannot_be_re_run_is_refused_and_changes_nothing(rollout: Rollout, words: str) -> None:
    assert words in (rerun_refusal(rollout, PLAN, track="relay") or "")
    with pytest.raises(InvalidTransition, match=words):
        rerun_failure_job(rollout, PLAN, track="relay", attempt=2, actor="U1")


def test_the_button_is_once_per_run_attempt_and_stale_after_a_re_run() -> None:
    ended = rollback_failed()
    card = CardRef(ended.id, "relay", attempt=1)
    assert card_applies(Control.RERUN_FAILURE_JOB, ended, PLAN, card)
    key = effect_key(Control.RERUN_FAILURE_JOB, card)
    assert key == f"rerun_failure_job:{ended.id}:relay:1"
    again = replace(ended, attempt=2)  # failed again, at attempt 2
    assert not card_applies(Control.RERUN_FAILURE_JOB, again, PLAN, card)
    assert effect_key(Control.RERUN_FAILURE_JOB, replace(card, attempt=2)) != key


def test_a_failed_kill_switch_is_re_run_to_halt_the_rings() -> None:
    rollout = rollback_failed()
    desktop = rollout.track("desktop")
    desktop = desktop.with_stage(replace(desktop.stage("internal"), state=StageState.FAILED_GATE))
    reason = StopReason(
        StopKind.FAILURE_JOB_FAILED,
        subject=github.KILL_SWITCH,
        outcome="timed_out",
        cause=GATE_FAILED,
    )
    ended = rollout.with_track(replace(desktop, state=TrackState.FAILED, ended_reason=reason))

    decision = rerun_failure_job(ended, PLAN, track="desktop", attempt=2, actor="U1")

    assert decision.rollout.track("desktop").ending is TrackState.HALTED
    (told,) = [render(e.event) for e in decision.effects if isinstance(e, Announce)]
    assert "re-ran *Desktop/CLI kill-switch*" in told
    assert "stays on the *internal ring*" in told
