"""How a stopped track ends, and whether everything that shows it tells where the release is:
the thread, the card's lane (also `/rollout status`), and the stop reason the report shows.

The pure machine on hand-built snapshots (`test_rollout_machine`'s); the sandbox stories are
in `test_rollout_ends_sandbox.py`.
"""

from __future__ import annotations

from dataclasses import replace

from test_rollout_machine import (
    BETA,
    CANARY,
    FULL,
    GA,
    HALF,
    INTERNAL,
    KILL_SWITCH,
    PLAN,
    PREFLIGHT,
    RELAY_ROLLBACK,
    at,
    canary_observing,
    job,
    landed_at_100,
    running,
    said,
    snapshot,
    waiting,
)

from bot.adapters.slack.messages import render
from bot.adapters.slack.rollout_words import track_standing
from bot.domain.rollout import (
    Announce,
    CancelWindow,
    Decision,
    Phase,
    Review,
    StageState,
    TrackState,
    abort,
    reconcile,
)
from bot.domain.run import JobConclusion, JobStatus


def thread(decision: Decision) -> list[str]:
    return [render(e.event) for e in decision.effects if isinstance(e, Announce)]


def test_a_rollback_github_skipped_before_anything_deployed_ends_rolled_back() -> None:
    """Roll back came while the canary waited for its approval: the bot rejected it, and the
    plan's rollback job (`if: failure() && needs.relay-canary-5.result == 'success'`) was
    skipped: nothing had deployed, nothing was there to roll back. The track ended *failed*
    (`Relay auto-rollback ended skipped`), as if the rollback had gone wrong."""
    stopping = abort(running(), PLAN, track="relay", actor="U1", reason="", now=at(1)).rollout
    asked = snapshot(
        job(PREFLIGHT), waiting(CANARY), waiting(INTERNAL), waiting_on={"relay-canary-5"}
    )
    rejecting = reconcile(stopping, PLAN, asked, at(2))
    reviews = [e for e in rejecting.effects if isinstance(e, Review)]
    assert [(r.environment, r.approve) for r in reviews] == [("relay-canary-5", False)]
    run = snapshot(
        job(PREFLIGHT),
        replace(job(CANARY, JobConclusion.FAILURE, at(3)), ran=False),  # rejected
        job(HALF, JobConclusion.SKIPPED, at(3)),
        job(FULL, JobConclusion.SKIPPED, at(3)),
        job(RELAY_ROLLBACK, JobConclusion.SKIPPED, at(3)),
        job(INTERNAL, None, status=JobStatus.IN_PROGRESS),
    )

    decision = reconcile(rejecting.rollout, PLAN, run, at(4))

    relay = decision.rollout.track("relay")
    assert relay.state is TrackState.ROLLED_BACK
    assert said(relay.ended_reason) == "rolled back by <@U1>"
    assert track_standing(relay, PLAN.track("relay")) == (
        "rolled back, nothing was deployed: rolled back by <@U1>"
    )
    (told,) = thread(decision)
    assert told.startswith("*Relay auto-rollback* was skipped on GitHub:"), told
    assert "nothing of Hosted relay had been deployed, so there was nothing to roll back" in told
    assert "Hosted relay: rolled back: nothing was deployed." in told
    assert "failed" not in told and ":x:" not in told


def test_a_kill_switch_github_skipped_before_any_ring_ends_halted() -> None:
    stopping = abort(running(), PLAN, track="desktop", actor="U1", reason="", now=at(1)).rollout
    run = snapshot(
        replace(job(INTERNAL, JobConclusion.FAILURE, at(3)), ran=False),  # rejected
        job(BETA, JobConclusion.SKIPPED, at(3)),
        job(GA, JobConclusion.SKIPPED, at(3)),
        job(KILL_SWITCH, JobConclusion.SKIPPED, at(3)),
        waiting(CANARY),
    )

    decision = reconcile(stopping, PLAN, run, at(4))

    desktop = decision.rollout.track("desktop")
    assert desktop.state is TrackState.HALTED
    assert track_standing(desktop, PLAN.track("desktop")).startswith("halted before any ring")
    told = thread(decision)[-1]
    assert "nothing of Desktop app and CLI had been deployed, so there was nothing to halt" in told


def test_a_skipped_rollback_after_the_canary_deployed_still_leaves_the_track_failed() -> None:
    """The canary had deployed: a skipped rollback left it there, so the track failed."""
    stopping = abort(canary_observing(), PLAN, track="relay", actor="U1", reason="", now=at(20))
    run = snapshot(
        job(CANARY, completed_at=at(5)),
        job(HALF, JobConclusion.CANCELLED, at(21)),
        job(RELAY_ROLLBACK, JobConclusion.SKIPPED, at(21)),
    )

    decision = reconcile(stopping.rollout, PLAN, run, at(22))

    relay = decision.rollout.track("relay")
    assert relay.state is TrackState.FAILED
    told = thread(decision)[-1]
    assert "It never ran: nothing was rolled back, Hosted relay is on *5% canary*." in told


def test_a_roll_back_whose_rollback_job_failed_never_says_rolled_back() -> None:
    """Roll back by U1 while the canary observed, then the rollback job failed (or GitHub
    skipped it with the canary deployed): nothing was rolled back. The card's lane, `/rollout
    status` and the report said `failed: Relay auto-rollback ended `failure` (rolled back by
    @U1: bad)`: the stop, not what it did."""
    stopping = abort(canary_observing(), PLAN, track="relay", actor="U1", reason="bad", now=at(20))
    for outcome in (JobConclusion.FAILURE, JobConclusion.SKIPPED):
        run = snapshot(
            job(CANARY, completed_at=at(5)),
            job(HALF, JobConclusion.CANCELLED, at(21)),
            job(RELAY_ROLLBACK, outcome, at(21)),
        )

        relay = reconcile(stopping.rollout, PLAN, run, at(22)).rollout.track("relay")

        assert relay.state is TrackState.FAILED
        words = f"Relay auto-rollback ended `{outcome}` (Roll back by <@U1>: bad)"
        assert said(relay.ended_reason) == words
        assert track_standing(relay, PLAN.track("relay")) == f"failed: {words}"


def test_a_stop_after_100_was_approved_says_everywhere_it_reached_100() -> None:
    """Roll back came after 100% was approved on GitHub, before the bot looked: 100% deployed,
    nothing failed, GitHub skipped the rollback. The track ends failed (its status), but the
    card, `/rollout status` and the report said `failed: Relay auto-rollback ended skipped
    (rolled back by @U1)`: nothing was rolled back, the release is at 100%."""
    decision = landed_at_100(reason="bad")

    relay = decision.rollout.track("relay")
    assert relay.state is TrackState.FAILED
    assert relay.stages[-1].state is StageState.STOPPED
    words = (
        "the release reached 100% before the stop took hold; nothing was rolled back "
        "(Relay auto-rollback was skipped; the stop: Roll back by <@U1>: bad)"
    )
    assert said(relay.ended_reason) == words
    assert track_standing(relay, PLAN.track("relay")) == f"failed: {words}"
    assert "rolled back by" not in words


def test_only_a_newer_attempt_than_the_one_followed_ends_the_rollout() -> None:
    """A run linked at its attempt 2 is followed there; a rollout stored before attempts were
    kept learns its attempt at its next look; attempt 3 of either ends it."""
    base = canary_observing()
    linked = replace(base, attempt=2)
    stored_before = replace(base, attempt=None)
    at_two = replace(snapshot(job(CANARY, completed_at=at(5))), attempt=2)
    at_three = replace(at_two, attempt=3, waiting=frozenset({"relay-canary-5"}))

    assert reconcile(linked, PLAN, at_two, at(7)).rollout.phase is Phase.RUNNING
    learnt = reconcile(stored_before, PLAN, at_two, at(7)).rollout
    assert (learnt.phase, learnt.attempt) == (Phase.RUNNING, 2)
    for rollout in (linked, learnt):
        ended = reconcile(rollout, PLAN, at_three, at(8))
        assert ended.rollout.phase is Phase.ENDED
        assert {t.state for t in ended.rollout.tracks} == {TrackState.FAILED}
        assert CancelWindow("relay", "canary", at(35)) in ended.effects
        assert (
            "was re-run on GitHub (attempt 3) before the bot saw attempt 2 end"
            in (thread(ended)[0])
        )


def test_a_rollout_stored_before_attempts_were_kept_does_not_take_a_re_run_for_its_own() -> None:
    """Stored before the bot kept the attempt it follows (an upgrade), the canary seen deployed
    at T0+5m. While the bot was down for the upgrade the run ended and was re-run: attempt 2
    started at T0+20m, after the deploy the rollout saw. The bot learnt attempt 2 as its own
    and sat at the canary's window while attempt 2 waited at the canary, unanswered, and the
    thread never heard of the re-run. An attempt started after a deploy the rollout saw is
    not the one it followed; one started before (a run linked at attempt 2) is."""
    stored_before = replace(canary_observing(), attempt=None)
    rerun = replace(
        snapshot(job(PREFLIGHT), waiting(CANARY), waiting(INTERNAL)),
        attempt=2,
        started_at=at(20),
        waiting=frozenset({"relay-canary-5", "desktop-internal"}),
    )

    ended = reconcile(stored_before, PLAN, rerun, at(21))

    assert ended.rollout.phase is Phase.ENDED
    assert {t.state for t in ended.rollout.tracks} == {TrackState.FAILED}
    assert CancelWindow("relay", "canary", at(35)) in ended.effects
    assert not [e for e in ended.effects if isinstance(e, Review)]
    told = thread(ended)[0]
    assert "was re-run on GitHub (attempt 2) before the bot saw" in told, told
    # The attempt it was linked at, started before the canary it saw deployed: its own.
    linked_at_two = replace(snapshot(job(CANARY, completed_at=at(5))), attempt=2, started_at=at(1))
    learnt = reconcile(stored_before, PLAN, linked_at_two, at(7)).rollout
    assert (learnt.phase, learnt.attempt) == (Phase.RUNNING, 2)


def test_a_stage_job_the_bot_cannot_see_is_never_taken_for_nothing_deployed() -> None:
    """The canary's job was renamed in the workflow, not in the plan, and a person approved
    it on GitHub: it deployed 5%, unseen by the bot. Roll back; the run was cancelled on
    GitHub, so its rollback was skipped. The bot read the missing job as "nothing ran" and
    said the relay was rolled back with nothing deployed, while 5% ran the release. GitHub
    lists every job of a run once its failure job ended (its needs ended first): a stage
    job it does not list is one the bot cannot judge."""
    stopping = abort(running(), PLAN, track="relay", actor="U1", reason="", now=at(1)).rollout
    run = replace(
        snapshot(
            job(PREFLIGHT),
            replace(job(CANARY, completed_at=at(3)), name="Relay canary 5%"),  # renamed
            *(job(name, JobConclusion.SKIPPED, at(4)) for name in (HALF, FULL, RELAY_ROLLBACK)),
            job(INTERNAL, JobConclusion.CANCELLED, at(4)),
        ),
        status="completed",
        conclusion="cancelled",
    )

    decision = reconcile(stopping, PLAN, run, at(5))

    relay = decision.rollout.track("relay")
    assert relay.state is TrackState.FAILED
    standing = track_standing(relay, PLAN.track("relay"))
    assert "nothing was deployed" not in standing, standing
    assert not [t for t in thread(decision) if "nothing of Hosted relay" in t]
