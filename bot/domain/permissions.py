"""Who may act on a rollout (who may promote, above all): the one rule every request passes.

A request is refused, in this order, when it comes from outside the release channels (a form
comes from the channel of the click that opened it, judged again when it is submitted), when
its person is not a release approver, when it types figures for a track whose gate reads them
from a metrics source (typed figures could pass a stage its live metrics fail), when its card
no longer applies to the rollout as it stands (a stale card: a Promote of a stage that moved
on, or drawn for another hold), and when the plan's two-person rule binds its person (the
starter). A Promote overrides an INCONCLUSIVE or missed gate only when its card was drawn for
that override (its button asked to confirm it); a command never overrides.
The service that applies this rule is `bot.services.access`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from bot.domain.controls import CardRef, Control, Hold, card_applies
from bot.domain.plan import (
    ManualMetrics,
    PrometheusMetrics,
    PromoteMode,
    RolloutPlan,
    SentryMetrics,
    TwoPersonAction,
)
from bot.domain.rollout import Rollout, StageState

VERBS = {
    Control.START: "start a rollout",
    Control.CONFIRM_FLAGS: "confirm feature flags",
    Control.DISPATCH: "dispatch a rollout",
    Control.CANCEL: "cancel a rollout",
    Control.CANCEL_SCHEDULE: "cancel a scheduled dispatch",
    Control.PROMOTE: "promote a rollout",
    Control.ROLLBACK: "roll back a rollout",
    Control.KILL: "trip the kill-switch",
    Control.EXTEND: "extend a window",
    Control.EXTEND_BY: "extend a window",
    Control.REEVALUATE: "re-evaluate a gate",
    Control.FIGURES: "enter gate figures",
    Control.REDEPLOY: "redeploy a release",
    Control.RECHECK: "re-check a preflight",
    Control.FREEZE: "freeze deploys",
    Control.UNFREEZE: "lift a freeze",
    Control.LOCK: "lock the release lane",
    Control.UNLOCK: "unlock the release lane",
    Control.LINK_RUN: "link a run to a rollout",
    Control.OVERRIDE_FREEZE: "override a freeze",
    Control.ADOPT: "adopt a run",
    Control.REJECT_RUN: "reject a run",
    Control.ANSWER_RUN: "answer a run",
    Control.RUN_RELEASE: "run the npm Release workflow",
    Control.RERUN_FAILURE_JOB: "re-run a rollback or kill-switch job",
}
"""What each control is called in an answer ("Only release approvers may promote a rollout")."""


class Refused(StrEnum):
    """Why a request is refused."""

    CHANNEL = "channel"
    """Not from a release channel."""
    APPROVER = "approver"
    """Its person is not a release approver."""
    STALE = "stale"
    """Its card no longer applies to the rollout as it stands."""
    READ_FIGURES = "read_figures"
    """It types figures for a track whose gate reads them from a metrics source."""
    TWO_PERSON = "two_person"
    """The plan's two-person rule binds its person."""


@dataclass(frozen=True)
class Asker:
    """Who asks, and from where, as far as the rule needs to know."""

    actor: str
    channel_id: str
    approver: bool
    """A release approver (ROLLOUT_APPROVERS, directly or through a user group)."""


@dataclass(frozen=True)
class TwoPersonRefusal:
    """The plan's two-person rule refuses `actor`, who started the rollout of `tag`, the
    action `control` (a promote names its track and stage); the edge words it."""

    actor: str
    tag: str
    control: Control
    track: str | None = None
    stage: str | None = None


@dataclass(frozen=True)
class Refusal:
    why: Refused
    message: str = ""
    """The answer to the person; empty when the service words it: CHANNEL (naming the release
    channels), STALE (who did it, or where the rollout stands now) and TWO_PERSON (the edge's
    words for `two_person`)."""
    two_person: TwoPersonRefusal | None = None


def refusal(
    control: Control,
    asker: Asker,
    *,
    release_channels: tuple[str, ...],
    rollout: Rollout | None = None,
    plan: RolloutPlan | None = None,
    card: CardRef | None = None,
) -> Refusal | None:
    """Why `asker` may not take `control` (on `card` of `rollout`, when given), or None when
    they may. Without a rollout, only who asks and from where are judged (a command that names
    no rollout, or before the rollout is loaded)."""
    if asker.channel_id not in release_channels:
        return Refusal(Refused.CHANNEL)
    if not asker.approver:
        return Refusal(Refused.APPROVER, not_an_approver(VERBS[control]))
    if rollout is None or plan is None or card is None:
        return None
    if control is Control.FIGURES and (read := figures_read(plan, card.track)) is not None:
        return Refusal(Refused.READ_FIGURES, read)
    if not card_applies(control, rollout, plan, card):
        return Refusal(Refused.STALE)
    two_person = two_person_refusal(
        plan, rollout, control=control, track=card.track, actor=asker.actor
    )
    if two_person is not None:
        return Refusal(Refused.TWO_PERSON, two_person=two_person)
    return None


def overrides(card: CardRef) -> bool:
    """Whether a Promote from this card overrides its stage's hold: only a card drawn for an
    INCONCLUSIVE (or missed) gate does (its button asked to confirm that)."""
    return card.hold in (Hold.INCONCLUSIVE, Hold.UNGATED)


def figures_read(plan: RolloutPlan, track: str | None) -> str | None:
    """Why nobody may type the figures of `track`'s gate, or None when people type them (its
    `metrics.source` is `manual`). A gate that reads its figures itself (Prometheus, Sentry,
    the plan's static figures) never takes typed ones: good figures typed by hand would pass
    a canary its live metrics fail."""
    try:
        plan_track = plan.track(track or "")
    except KeyError:
        return None  # no such track: the card is stale
    metrics = plan_track.metrics
    if isinstance(metrics, ManualMetrics):
        return None
    if isinstance(metrics, PrometheusMetrics):
        source = "Prometheus"
    elif isinstance(metrics, SentryMetrics):
        source = "Sentry"
    else:
        source = "the plan's static figures"
    return (
        f"{plan_track.label} reads its gate's figures from {source}: figures typed by hand are "
        "not taken, and nothing was changed. Use Re-evaluate now on the card to read them again."
    )


def not_an_approver(action: str) -> str:
    """The answer to a person who is not a release approver, saying what would allow it."""
    return (
        f"Only release approvers may {action}. Ask an approver, or ask your bot admin "
        "to add you (or your user group) to ROLLOUT_APPROVERS."
    )


def two_person_refusal(
    plan: RolloutPlan, rollout: Rollout, *, control: Control, track: str | None, actor: str
) -> TwoPersonRefusal | None:
    """Why the plan's two-person rule refuses `actor` this action, or None when it allows it.

    The rule binds the person who started the rollout: they cannot alone dispatch it (nor link
    a run to it), promote it (to the last stage, or into a stage marked
    `two_person`), or redeploy over it. Figures typed by hand for a stage that promotes itself
    on a PASS (`promote: auto`) are that promotion, so the starter cannot type them alone
    either; nor Re-evaluate such a stage once its window ended (held, by a freeze say, or
    evaluating): a PASS then promotes it. Stopping a rollout (roll back, kill-switch) never
    needs a second person.
    """
    if actor != rollout.started_by:
        return None
    rules = set(plan.two_person)
    refused = TwoPersonRefusal(actor, rollout.tag, control)
    # A link picks the run the bot approves (one the starter may have started on GitHub).
    if control in (Control.DISPATCH, Control.LINK_RUN) and TwoPersonAction.DISPATCH in rules:
        return refused
    if control is Control.REDEPLOY and TwoPersonAction.REDEPLOY in rules:
        return refused
    promoting = (Control.PROMOTE, Control.FIGURES, Control.REEVALUATE)
    if control in promoting and track is not None:
        plan_track = plan.track(track)
        stage = rollout.track(track).current
        following = plan_track.next_stage(stage.key) if stage is not None else None
        if control is not Control.PROMOTE and stage is not None:
            observe = plan_track.stage(stage.key).observe
            auto = observe is not None and observe.promote is PromoteMode.AUTO
            # A Re-evaluate of an observed stage never promotes it (`reevaluation`).
            judged = control is Control.FIGURES or stage.state is not StageState.OBSERVING
            following = following if auto and judged else None
        if following is not None:
            last = following.key == plan_track.stages[-1].key
            if (
                TwoPersonAction.PROMOTE in rules
                or (last and TwoPersonAction.PROMOTE_TO_LAST in rules)
                or following.two_person
            ):
                return replace(refused, track=plan_track.label, stage=following.label)
    return None
