"""The release lane's words: a start or dispatch refused by a freeze or a lock, and the lane
in `/rollout status` and in the answers to freeze, unfreeze, lock and unlock."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from bot.adapters.slack.actions import Action
from bot.adapters.slack.blocks import BlockJson, actions, as_json, button, section
from bot.adapters.slack.mrkdwn import escape, person, slack_time
from bot.domain.durations import format_duration
from bot.domain.freeze import (
    Freeze,
    Frozen,
    LaneHold,
    LaneRefusal,
    Locked,
    SecondApproverNeeded,
    StaleRollBack,
)
from bot.domain.rollout.events import FreezeEnded, FreezeLiftedHolding
from bot.services.lane import LaneState


def freeze_text(freeze: Freeze) -> str:
    """`Deploys are frozen by @ann until <time>: reason` (or by the plan's calendar entry); when
    other freezes follow it with no gap, until the lane is next free, naming each in turn
    (`frozen beyond <time>` when they go on past the horizon, `FOLLOWED_FOR`)."""
    if not freeze.then and not freeze.beyond:
        return (
            f"Deploys are frozen by {freeze_name(freeze)} until {slack_time(freeze.until)}: "
            f"{escape(freeze.reason)}"
        )
    each = ", then ".join(
        f"{freeze_name(one)} ({escape(one.reason)}) until {slack_time(one.until)}"
        for one in (freeze, *freeze.then)
    )
    if freeze.beyond:
        return (
            f"Deploys are frozen beyond {slack_time(freeze.free_at)}: {each}, and freezes "
            "follow one another after it"
        )
    return f"Deploys are frozen until {slack_time(freeze.free_at)}: {each}"


def auto_held_text(following: str, freeze: Freeze) -> str:
    """A `promote: auto` stage held by a freeze (`GatePassed.frozen`): why, and who goes on."""
    return (
        f"Held, not promoted to *{following}* automatically: {freeze_text(freeze)}. An approver "
        "may click Promote to go on anyway; it stays held when the freeze ends or is lifted."
    )


def lane_event_text(event: FreezeLiftedHolding | FreezeEnded) -> str:
    """The thread of a rollout a freeze held is told it was lifted (`FreezeLiftedHolding`) or
    ended (`FreezeEnded`), and what still waits for a person: its held stages, or its
    scheduled dispatch that did not go."""
    if isinstance(event, FreezeLiftedHolding):
        still = f" {freeze_text(event.lane)}." if event.lane is not None else ""
        said = f":sunny: {person(event.lifted_by)} lifted the freeze by {person(event.froze)}."
        said += still
    else:
        said = f":sunny: The freeze that held this rollout ended at {slack_time(event.ended_at)}."
    if isinstance(event, FreezeEnded) and event.dispatch_at is not None:
        return (
            f"{said} The dispatch scheduled for {slack_time(event.dispatch_at)} did not go and "
            "does not go by itself now: an approver clicks Dispatch when ready."
        )
    stages = ", ".join(f"*{escape(each)}*" for each in event.held)
    return (
        f"{said} Still held, not promoted automatically: {stages}. An approver may click "
        "Promote when ready: nothing goes on by itself after a freeze."
    )


def freeze_name(freeze: Freeze) -> str:
    """Who or what froze: `@ann`, or `the plan's `weekend` freeze`."""
    return person(freeze.actor) if freeze.actor else f"the plan's `{freeze.calendar}` freeze"


def lock_text(lock: LaneHold) -> str:
    why = f": {escape(lock.reason)}" if lock.reason else ""
    return f"The release lane is locked by {person(lock.actor)} since {slack_time(lock.since)}{why}"


def stale_text(stale: StaleRollBack | None) -> str:
    """Why a roll back's dispatch is judged as any other (`This roll back is stale: …`), or
    nothing when it is not a stale roll back."""
    if stale is None:
        return ""
    clicked = slack_time(stale.clicked)
    if stale.newer is not None:
        newer = stale.newer
        why = (
            f"`{newer.tag}` ({newer.rollout_id}) completed {newer.track} at "
            f"{slack_time(newer.at)}, after it was clicked at {clicked}, so dispatching it "
            "would put back an older release than the one live"
        )
    else:
        why = f"it was clicked at {clicked}, more than {format_duration(stale.lasts)} ago"
    return f"This roll back is stale: {why}; the lane judges it as any dispatch. "


def lane_refusal_text(refused: LaneRefusal) -> str:
    if isinstance(refused, Locked):
        return (
            f"{stale_text(refused.stale)}{lock_text(refused.lock)}. Ask them to "
            "`/rollout unlock`, or an approver may unlock it with a reason."
        )
    if isinstance(refused, SecondApproverNeeded):
        return (
            f"{freeze_text(refused.freeze)}. You overrode it for this rollout "
            f"({escape(refused.override.reason)}); the plan's two-person rule needs another "
            "approver to dispatch it."
        )
    assert isinstance(refused, Frozen)
    if refused.link:
        return (
            f"{stale_text(refused.stale)}{freeze_text(refused.freeze)}. Linking a run approves "
            "its first stages, so it waits for the freeze to end or be lifted "
            "(`/rollout unfreeze`); then link the run again. Do not click Dispatch meanwhile: "
            "the run to link already exists."
        )
    if refused.publish:
        return (
            f"{freeze_text(refused.freeze)}. The npm Release workflow publishes packages, so it "
            "waits for the freeze to end or be lifted (`/rollout unfreeze`); then click Run "
            "Release again."
        )
    if refused.dispatch:
        override = "click Dispatch on the card, then *Override freeze…* with a reason"
    elif refused.adopt:
        override = "click *Override freeze…* below with a reason, which adopts the run"
    else:
        override = '`/rollout start &lt;tag&gt; --override-freeze "&lt;reason&gt;"`'

    when = f"At {slack_time(refused.at)}: " if refused.at is not None else ""
    return (
        f"{stale_text(refused.stale)}{when}{freeze_text(refused.freeze)}. Running rollouts "
        f"keep their gates and rollbacks. An approver may override: {override}."
    )


def frozen_answer(
    asked: LaneHold, in_force: LaneHold, *, lane: Freeze | None = None, zone: str | None = None
) -> str:
    """A `/rollout freeze`: the freeze `asked`, or, when a freeze `in_force` ends later, that
    it stays (a freeze is never shortened by another); and, when the `lane` stays frozen after
    it (the plan's calendar, freezes that follow), until when. `zone`: the asker's Slack time
    zone its end was read in (a time with no offset), said."""
    assert asked.until is not None and in_force.until is not None  # a freeze always ends
    after = f" {freeze_text(lane)}." if lane is not None and lane.free_at > in_force.until else ""
    return _frozen(asked, in_force) + after + zone_read(asked, zone)


def zone_read(asked: LaneHold, zone: str | None) -> str:
    """Which zone a freeze's end was read in (the asker's Slack time zone), if one was."""
    if zone is None or asked.until is None:
        return ""
    return (
        f" (The end was read in {person(asked.actor)}'s Slack time zone, {zone}: "
        f"{asked.until.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} there.)"
    )


def _frozen(asked: LaneHold, in_force: LaneHold) -> str:
    assert asked.until is not None and in_force.until is not None  # a freeze always ends
    if in_force != asked:
        return (
            f":snowflake: The freeze by {person(in_force.actor)} until "
            f"{slack_time(in_force.until)} stays in force: {escape(in_force.reason)}. "
            f"{person(asked.actor)}'s freeze until {slack_time(asked.until)} "
            f"({escape(asked.reason)}) "
            "ends before it, so it changes nothing: a freeze is never shortened by another "
            "(`/rollout unfreeze` lifts it)."
        )
    return (
        f":snowflake: {person(asked.actor)} froze deploys until {slack_time(asked.until)}: "
        f"{escape(asked.reason)}. `start` and `dispatch` are refused; running rollouts go on "
        "(a `promote: auto` stage holds for a Promote)."
    )


def unfrozen_answer(actor: str, removed: LaneHold, *, lane: Freeze | None = None) -> str:
    """A `/rollout unfreeze`: the freeze lifted, and the `lane`'s freeze that stays (the
    plan's calendar), if any."""
    still = f" {freeze_text(lane)}." if lane is not None else ""
    return (
        f":sunny: {person(actor)} lifted the freeze by {person(removed.actor)} "
        f"({escape(removed.reason)}).{still}"
    )


def locked_answer(hold: LaneHold) -> str:
    return f":lock: {lock_text(hold)}. Others' `start` and `dispatch` are refused."


def unlocked_answer(actor: str, removed: LaneHold, reason: str) -> str:
    why = f": {escape(reason)}" if reason else ""
    return (
        f":unlock: {person(actor)} unlocked the release lane held by {person(removed.actor)}{why}."
    )


def override_answer(
    actor: str, tag: str, freeze: Freeze, reason: str, *, at: datetime | None = None
) -> str:
    """An override of `freeze` for `tag` (`reason` as typed), and the time its dispatch is
    scheduled for."""
    scheduled = f" Its dispatch is scheduled for {slack_time(at)}." if at is not None else ""
    return (
        f":warning: {person(actor)} overrode the freeze for `{tag}`: {escape(reason)}. "
        f"({freeze_text(freeze)}.){scheduled}"
    )


def override_button(refused: str, value: str) -> list[BlockJson]:
    """The *Override freeze…* button under a Dispatch or an Adopt (`refused`) refused by a
    freeze, carrying the refused button's value (the card it was on); it opens the form asking
    for the reason. None under another button."""
    action = OVERRIDES.get(refused)
    if action is None:
        return []
    return as_json([*actions([button("Override freeze…", action, value)])])


OVERRIDES: dict[str, Action] = {
    Action.DISPATCH: Action.OVERRIDE_FREEZE,
    Action.ADOPT_RUN: Action.OVERRIDE_ADOPT,
}
"""The Override freeze… of each button a freeze may refuse."""


def lane_blocks(state: LaneState, *, service: str | None = None) -> list[BlockJson]:
    """The lane's freeze and lock on top of `/rollout status` (nothing when the lane is open),
    each naming `service` when given (a channel of several)."""
    of = f"*{service}*: " if service is not None else ""
    lines = [f":snowflake: {of}{freeze_text(state.freeze)}"] if state.freeze is not None else []
    lines += [f":lock: {of}{lock_text(state.lock)}"] if state.lock is not None else []
    return as_json([section(line) for line in lines])
