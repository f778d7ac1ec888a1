"""People's controls on a rollout, as pure rules: the identity of each effect (so it happens
once), whether a card's button still applies to the rollout as it stands, and what
Re-evaluate now does to a stage. Who may act (the two-person rule among them) is
`bot.domain.permissions`.

The effect key is the exactly-once guard's primary key (`storage.claims`). An effect that can
only happen once (promote stage X, roll back, dispatch) is keyed by what it acts on; one that
may be repeated (extend a window, re-evaluate) is keyed by the card version it was clicked on
as well, so a double click, a Slack retry or a second person on the same card is one effect,
and a click on the redrawn card is a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from bot.domain.errors import PromotedWhileStopping, RolloutError
from bot.domain.gate import GateVerdict, Verdict
from bot.domain.plan import ManualMetrics, RolloutPlan
from bot.domain.rollout import (
    Decision,
    InvalidTransition,
    Phase,
    Rollout,
    Stage,
    StageState,
    TrackState,
    gate_missed,
    window_runs,
)
from bot.domain.run_link import may_link


class Control(StrEnum):
    """A state-changing action a person takes on a rollout (button, modal or command)."""

    START = "start"
    CONFIRM_FLAGS = "confirm_flags"
    DISPATCH = "dispatch"
    CANCEL = "cancel"
    CANCEL_SCHEDULE = "cancel_schedule"
    """Cancel a dispatch scheduled for later; the preflight stays."""
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    KILL = "kill"
    EXTEND = "extend"
    EXTEND_BY = "extend_by"
    """Extend by a duration typed in the modal (a separate effect from the +15m button)."""
    REEVALUATE = "reevaluate"
    FIGURES = "figures"
    REDEPLOY = "redeploy"
    RECHECK = "recheck"
    """Run the preflight's GitHub checks again (after GitHub failed to answer them)."""
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    LOCK = "lock"
    UNLOCK = "unlock"
    LINK_RUN = "link_run"
    """Attach an existing run to a rollout whose dispatch could not be identified."""
    OVERRIDE_FREEZE = "override_freeze"
    """An approver's override of a freeze for one rollout's dispatch (from a refused Dispatch)."""
    ADOPT = "adopt"
    """Make a run the bot did not start (it waits on the App's rule) a rollout it follows."""
    REJECT_RUN = "reject_run"
    """Reject a run the bot did not start, through the App's rule."""
    ANSWER_RUN = "answer_run"
    """The one answer a run the bot did not start gets: Adopt, Reject or the default."""
    RUN_RELEASE = "run_release"
    """Dispatch the npm Release workflow from the NPM_TOKEN walkthrough (no rollout)."""
    RERUN_FAILURE_JOB = "rerun_failure_job"
    """Re-run a track's rollback (or kill-switch) job that failed on GitHub."""


class AlreadyDone(RolloutError):
    """Someone already did this (or is doing it right now): nothing more happens."""

    code = "already_done"


class BeingDone(AlreadyDone):
    """Someone is doing this right now (their claim is held): it may still fail."""


class NothingDone(RolloutError):
    """The request was interrupted before it acted (the database lost the answer to its
    claim): nothing happened, and it may be tried again."""

    code = "interrupted"


class DoneButOwed(RolloutError):
    """The effect was saved (the card and the thread show it), then a step after the save
    failed (a window's timer not written): done, and what is still owed is done by the bot's
    next look. Its claim is recorded done: a waiting or later click is told it was done."""

    code = "done_but_owed"


class StaleCard(RolloutError):
    """The button belongs to a card that no longer shows where the rollout stands."""

    code = "stale_card"


class Hold(StrEnum):
    """What a Promote button was drawn to confirm: a stage held after its gate passed (or
    with no gate), or the override of an INCONCLUSIVE gate (its button asks to confirm)."""

    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    INCONCLUSIVE = "inconclusive"
    UNGATED = "ungated"
    """Held because the window's timer gave up before its gate ran: Promote overrides."""


def hold_of(stage: Stage) -> Hold:
    """The hold a held stage is on, as its Promote button confirms it."""
    if gate_missed(stage):
        return Hold.UNGATED
    if stage.verdict is not None and stage.verdict.verdict is Verdict.INCONCLUSIVE:
        return Hold.INCONCLUSIVE
    return Hold.PASS


@dataclass(frozen=True)
class CardRef:
    """What a button acts on, as the card showed it when it was drawn."""

    rollout_id: str
    track: str | None = None
    stage: str | None = None
    version: int | None = None
    hold: Hold | None = None
    """For Promote: the hold the card showed (a command names none and overrides nothing)."""
    attempt: int | None = None
    """For Re-run: the run attempt whose failure job failed, as the button was drawn."""
    commit: str | None = None
    """For Confirm flags: the commit the preflight read the tag at, as the card showed it ("":
    no such tag); None on a card drawn without one (an older version's, or none was read)."""


# What tells one effect of a control from another: once per rollout (no parts), per track,
# per stage; repeatable controls also by the card version they were clicked on.
_SCOPE: dict[Control, tuple[str, ...]] = {
    Control.START: (),
    # The starter confirms the flags once per card: a Re-check that finds the tag moved asks
    # again on a new one, also for a commit confirmed before (a tag deleted and pushed back).
    Control.CONFIRM_FLAGS: ("version",),
    # A dispatch is once per preflight card: after a dispatch whose run never appeared, the
    # rollout is back in preflight on a new card, and may be dispatched again from it.
    Control.DISPATCH: ("version",),
    Control.CANCEL: (),
    # A rollout is scheduled once, with its start.
    Control.CANCEL_SCHEDULE: (),
    Control.ROLLBACK: (),
    Control.KILL: (),
    Control.REDEPLOY: ("track",),
    Control.PROMOTE: ("track", "stage"),
    Control.EXTEND: ("track", "stage", "version"),
    Control.EXTEND_BY: ("track", "stage", "version"),
    Control.REEVALUATE: ("track", "stage", "version"),
    Control.FIGURES: ("track", "stage", "version"),
    Control.RECHECK: ("version",),
    # A rollout follows one run: once linked it never waits for one again.
    Control.LINK_RUN: (),
    # Once per preflight card, like its Dispatch.
    Control.OVERRIDE_FREEZE: ("version",),
    # A run the bot did not start is answered once (its "rollout" is `run-<id>`).
    Control.ADOPT: (),
    Control.REJECT_RUN: (),
    Control.ANSWER_RUN: (),
    Control.RUN_RELEASE: (),
    # The failure job of one attempt of the rollout's run (a rollout follows one run, a track
    # has one failure job) is re-run once: its re-run is the next attempt, re-run once again.
    Control.RERUN_FAILURE_JOB: ("track", "attempt"),
}
_PREFLIGHT = frozenset(
    {
        Control.CONFIRM_FLAGS,
        Control.DISPATCH,
        Control.CANCEL,
        Control.RECHECK,
        Control.OVERRIDE_FREEZE,
    }
)


def effect_key(control: Control, card: CardRef) -> str:
    """The identity of the effect a control asks for: two requests with one key are one effect."""
    parts = {
        "track": card.track,
        "stage": card.stage,
        "version": card.version,
        "attempt": card.attempt,
    }
    scoped = [str(parts[name]) if parts[name] is not None else "-" for name in _SCOPE[control]]
    return ":".join([control.value, card.rollout_id, *scoped])


def effect_attempt(key: str) -> int:
    """The run attempt a Re-run's effect key names (`effect_key`: its last part)."""
    return int(key.rsplit(":", 1)[-1])


def once_per_version(control: Control) -> bool:
    """Whether the control's effect is once per version of its card (`effect_key`): acting
    again on a rollout saved since would do it twice (another 15 minutes, another gate)."""
    return "version" in _SCOPE[control]


def figures_card(rollout: Rollout, card: CardRef) -> CardRef:
    """The card figures typed for the card's stage act on: keyed by the end of the stage's
    window, not by the card's version. One evaluation per window end: a window extended after
    INCONCLUSIVE asks again, and a rollout saved since for another track asks nothing new."""
    observed = rollout.track(card.track or "").stage(card.stage) if card.stage else None
    return CardRef(card.rollout_id, card.track, card.stage or "", window_key(observed))


def window_key(stage: Stage | None) -> int:
    """The evaluation figures typed for `stage` are for: its window's end, in epoch seconds
    (0: none), as `figures_card` keys them and a figures form names it."""
    ends = stage.window_ends_at if stage is not None else None
    return int(ends.timestamp()) if ends else 0


def typed_for_another_window(stage: Stage, first: timedelta | None, window: int | None) -> bool:
    """Whether figures typed in a form opened for the evaluation `window` (the stage's window
    end then, `window_key`) are for another window than the one `stage` evaluates
    now: extended since (INCONCLUSIVE, or by hand), it asks again. A form a 38840bf replica
    opened names none (None): taken while the window never moved (it ends where the deploy and
    the plan's window `first` put it, never extended), as no other evaluation can have opened
    it; refused once it has moved, which window it was for unknown."""
    if window is not None:
        return window != window_key(stage)
    started, ends = stage.window_started_at, stage.window_ends_at
    unmoved = started is not None and first is not None and ends == started + first
    return stage.extensions > 0 or not unmoved


def delivery_key(delivery: str) -> str:
    """The identity of one Slack delivery (its trigger_id and body): a retry acts once."""
    return f"delivery:{delivery}"


def card_applies(control: Control, rollout: Rollout, plan: RolloutPlan, card: CardRef) -> bool:
    """Whether the button still applies to the rollout as it stands now (False: a stale card,
    for example a Promote of a stage that already moved on)."""
    if control in _PREFLIGHT:
        return rollout.phase is Phase.PREFLIGHT
    if control is Control.LINK_RUN:
        return may_link(rollout)
    if control is Control.CANCEL_SCHEDULE:
        scheduled = rollout.schedule is not None and rollout.schedule.pending
        return rollout.phase is Phase.PREFLIGHT and scheduled
    if control in (Control.ROLLBACK, Control.KILL):
        return rollout.phase is not Phase.ENDED
    if card.track is None:
        return False
    try:
        track = rollout.track(card.track)
        plan_track = plan.track(card.track)
    except KeyError:
        return False
    if control is Control.REDEPLOY:
        return track.state is TrackState.COMPLETED
    if control is Control.RERUN_FAILURE_JOB:
        # The failure job of the attempt the button was drawn for, still failed: a re-run
        # since (the next attempt) makes the button stale; the rest is `rerun_refusal`'s.
        return track.state is TrackState.FAILED and card.attempt == rollout.attempt
    stage = track.current
    if track.state is not TrackState.ACTIVE or stage is None or stage.key != card.stage:
        return False
    wanted = {
        Control.PROMOTE: (StageState.HOLDING,),
        Control.EXTEND: (StageState.OBSERVING,),
        Control.EXTEND_BY: (StageState.OBSERVING,),
        Control.FIGURES: (StageState.EVALUATING,),
        Control.REEVALUATE: (StageState.OBSERVING, StageState.EVALUATING, StageState.HOLDING),
    }.get(control, ())
    if control is Control.REEVALUATE and isinstance(plan_track.metrics, ManualMetrics):
        return False
    if control in (Control.EXTEND, Control.EXTEND_BY) and gate_missed(stage):
        return True  # its timer gave up: the window may be observed again
    if control is Control.PROMOTE and stage.state is StageState.HOLDING and card.hold is not None:
        # Re-evaluate may have put the stage on another hold since the card was drawn: a
        # click confirms only the hold its card showed (never skips an override's dialog).
        return card.hold is hold_of(stage)
    return stage.state in wanted


def reevaluation(
    rollout: Rollout, plan: RolloutPlan, *, track: str, verdict: GateVerdict, now: datetime
) -> Decision | None:
    """What Re-evaluate now does at `now` with a fresh verdict on the track's current stage.

    Held (or evaluating past its window's end): the verdict is applied exactly as at the
    window's end, so the stage is put back to evaluating for `gate_evaluated`. Observing, or
    left evaluating while its window runs (a failing verdict's save was lost): only a failing
    verdict acts at once (the window stops and the track rolls back or trips its kill-switch);
    a PASS or INCONCLUSIVE is shown and the window runs on, so a re-evaluation never promotes
    early. Returns the decision that readies the stage for `gate_evaluated`, or None when the
    verdict is only shown.
    """
    if (refused := not_reevaluable(rollout, plan, track=track)) is not None:
        raise InvalidTransition(refused)
    current_track, plan_track = rollout.track(track), plan.track(track)
    stage = current_track.current
    assert stage is not None
    failing = verdict.verdict not in (Verdict.PASS, Verdict.INCONCLUSIVE)
    running = stage.state is StageState.EVALUATING and window_runs(stage, now, plan_track.metrics)
    if (stage.state is StageState.OBSERVING or running) and not failing:
        return None
    # An observed stage's window timer is kept: should the verdict's save be lost (the replica
    # dies, the database blinks), the stage evaluating still gets its gate at the window's end.
    # Once the verdict is saved the timer finds the stage decided, and changes nothing.
    evaluating = replace(stage, state=StageState.EVALUATING)
    return Decision(rollout.with_track(current_track.with_stage(evaluating)))


def not_reevaluable(rollout: Rollout, plan: RolloutPlan, *, track: str) -> str | None:
    """Why Re-evaluate has no gate to run on the track now (its refusal), or None: its
    current stage observes, evaluates or holds."""
    current_track = rollout.track(track)
    stage = current_track.current
    plan_track = plan.track(track)
    if current_track.state is not TrackState.ACTIVE or stage is None:
        return f"{plan_track.label} is {current_track.state}: no gate to run."
    if stage.state not in (StageState.OBSERVING, StageState.EVALUATING, StageState.HOLDING):
        spec = plan_track.stage(stage.key)
        return (
            f"{spec.label} ({plan_track.label}) is {stage.state}: its gate runs once it is "
            "deployed and observed."
        )
    return None


def describe(control: Control, rollout: Rollout, plan: RolloutPlan, card: CardRef) -> str:
    """The effect in a few words, for answers: `promote Hosted relay from 5% canary to 50%`."""
    tag = f"`{rollout.tag}`"
    simple = {
        Control.START: f"start {tag}",
        Control.CONFIRM_FLAGS: f"confirm the feature flags of {tag}",
        Control.DISPATCH: f"dispatch {tag}",
        Control.CANCEL: f"cancel {tag}",
        Control.CANCEL_SCHEDULE: f"cancel the scheduled dispatch of {tag}",
        Control.ROLLBACK: f"roll back {tag}",
        Control.KILL: f"trip the kill-switch of {tag}",
        Control.RECHECK: f"re-check the preflight of {tag}",
        Control.LINK_RUN: f"link a run to {tag}",
        Control.OVERRIDE_FREEZE: f"override the freeze for {tag}",
    }
    if control in simple:
        return simple[control]
    try:
        plan_track = plan.track(card.track or "")
    except KeyError:
        return f"{control.value.replace('_', ' ')} {tag}"
    if control is Control.REDEPLOY:
        return f"redeploy the previous release of {plan_track.label} over {tag}"
    if control is Control.RERUN_FAILURE_JOB:
        return f"re-run {plan_track.on_failure.job} of {plan_track.label} for {tag}"
    try:
        spec = plan_track.stage(card.stage or "")
    except KeyError:
        return f"{control.value.replace('_', ' ')} {plan_track.label} of {tag}"
    following = plan_track.next_stage(spec.key)
    return {
        Control.PROMOTE: f"promote {plan_track.label} of {tag} from {spec.label}"
        + (f" to {following.label}" if following is not None else ""),
        Control.EXTEND: f"extend the {spec.label} window of {tag}",
        Control.EXTEND_BY: f"extend the {spec.label} window of {tag}",
        Control.REEVALUATE: f"re-evaluate the {spec.label} gate of {tag}",
        Control.FIGURES: f"enter the {spec.label} figures of {tag}",
    }.get(control, f"{control.value} {tag}")


def promoted_words(plan: RolloutPlan, track: str, stage: str) -> str:
    """`Hosted relay to 50%`: a promotion `/rollout promote` made, from the held `stage`."""
    plan_track = plan.track(track)
    following = plan_track.next_stage(stage)
    return f"{plan_track.label} to {following.label if following else stage}"


def partly_promoted(
    done: list[str],
    stopping: PromotedWhileStopping | None,
    refused: list[tuple[str, RolloutError]],
    owed: Sequence[DoneButOwed] = (),
) -> str:
    """The answer of a `/rollout promote` that promoted some held tracks and not others; `owed`:
    promotions among `done` saved before a step after them failed (what each still owes)."""
    said = [f"Promoted {' and '.join(done)}: see the thread."] if done else []
    said.extend(saved.message for saved in owed)
    if stopping is not None:
        said.append(stopping.message)
    said.extend(f"Not promoted: {label}: {error.message}" for label, error in refused)
    return " ".join(said)
