"""Scheduled starts in words: the thread's lines when a dispatch is scheduled, held at its time
or cancelled, the card's line while it waits, and the answer to the starter."""

from __future__ import annotations

from bot.adapters.slack.audit_reasons import reason_mrkdwn
from bot.adapters.slack.lane_words import freeze_name, freeze_text, lane_refusal_text
from bot.adapters.slack.mrkdwn import escape, person, slack_time
from bot.domain.freeze import Frozen
from bot.domain.rollout.events import (
    DispatchScheduled,
    RunDispatched,
    ScheduleCancelled,
    ScheduleHeld,
)
from bot.domain.schedule import Held, Schedule


def held_text(held: Held) -> str:
    """Why a scheduled dispatch did not go, in a sentence or two."""
    if held.lane is not None:
        return lane_refusal_text(held.lane)
    if held.blocking:
        return "Dispatch is blocked by: " + "; ".join(held.blocking) + "."
    if held.not_approver is not None:
        return (
            f"{person(held.not_approver)}, who scheduled it, is no longer a release approver: "
            "another approver dispatches it."
        )
    if held.two_person:
        return "The plan's two-person rule needs an approver other than the starter to dispatch."
    if held.error is None:
        return "it could not be dispatched."
    return f"{reason_mrkdwn(held.error)}."


def schedule_event_text(event: DispatchScheduled | ScheduleHeld | ScheduleCancelled) -> str:
    if isinstance(event, DispatchScheduled):
        return (
            f":alarm_clock: {person(event.actor)} scheduled the dispatch for "
            f"{slack_time(event.at)} (read in {event.zone}). The preflight is checked again "
            "then; it dispatches only if all checks are clear and deploys are not frozen."
        )
    if isinstance(event, ScheduleHeld):
        return (
            f":warning: The dispatch scheduled for {slack_time(event.at)} did not go: "
            f"{held_text(event.held)} The preflight waits: an approver clicks Dispatch when "
            "it is clear."
        )
    return (
        f":heavy_minus_sign: {person(event.actor)} cancelled the dispatch scheduled for "
        f"{slack_time(event.at)}; the preflight waits for Dispatch."
    )


def went_late(event: RunDispatched) -> str:
    """How late a scheduled dispatch went, after `Dispatched ... for <tag>` (nothing when it
    went on time, or was not scheduled)."""
    minutes = int(event.late.total_seconds() // 60)
    if not minutes:
        return ""
    return f" {minutes} minute{'s' if minutes != 1 else ''} after the time it was scheduled for"


def card_line(schedule: Schedule) -> str:
    """The preflight card's line about its schedule."""
    if schedule.held is None:
        return (
            f":alarm_clock: *Scheduled:* dispatch at {slack_time(schedule.at)} "
            f"(by {person(schedule.by)}), if the preflight is clear and deploys are not frozen."
        )
    return (
        f":warning: The dispatch scheduled for {slack_time(schedule.at)} did not go: "
        f"{held_text(schedule.held)}"
    )


def held_then_text(held: Frozen, *, lifted_by: str | None = None) -> str:
    """A scheduled dispatch that a freeze known now covers: it will be held at its time; or
    (`lifted_by`) that freeze was lifted, and it goes then."""
    at = slack_time(held.at) if held.at is not None else "its time"
    if lifted_by is not None:
        return (
            f":sunny: {person(lifted_by)} lifted the freeze by {freeze_name(held.freeze)} "
            f"({escape(held.freeze.reason)}): the dispatch scheduled for {at} goes then, if "
            "the preflight is clear and deploys are not frozen then."
        )
    if held.freeze.calendar is not None:
        # `/rollout unfreeze` lifts only a `/rollout freeze`: the plan's window stays.
        goes = (
            f"It goes only if the plan's `{held.freeze.calendar}` freeze is changed to leave "
            "that time free (`/rollout unfreeze` does not lift a freeze of the plan); once it "
            "is held, an approver may click Dispatch, then *Override freeze…* with a reason."
        )
    else:
        goes = "It goes only if that freeze is lifted (`/rollout unfreeze`) or ends before then."
    return (
        f":warning: The dispatch scheduled for {at} will be held then: "
        f"{freeze_text(held.freeze)}. {goes}"
    )


def scheduled_answer(tag: str, rollout_id: str, schedule: Schedule, *, posted: bool = True) -> str:
    """The starter's answer: when, in everyone's own time, and the zone it was read in (or
    the offset they typed); whether its card is in the channel (`posted`)."""
    read = (
        f"at the offset you gave, {schedule.zone}"
        if schedule.offset_given
        else f"read in your Slack time zone, {schedule.zone}"
    )
    when = f"dispatch scheduled for {slack_time(schedule.at)} ({read})."
    if not posted:
        return f"{started_answer(tag, rollout_id, posted=False)} Its {when}"
    return f"Preflight of `{tag}` posted ({rollout_id}); {when}"


def started_answer(tag: str, rollout_id: str, *, posted: bool) -> str:
    """The starter's answer to a start: its card is in the channel (`posted`), or Slack did
    not take it (the bot is not a member of the channel, the channel is archived, or Slack is
    away): then the starter is told, not that it was posted."""
    if posted:
        return f"Preflight of `{tag}` posted ({rollout_id})."
    return (
        f"Preflight of `{tag}` started ({rollout_id}), but its card is not in this channel "
        "yet: Slack has not taken it (the bot tries again while Slack is busy). If the bot is "
        "not a member here, `/invite` it, then type the same `/rollout start` again: that "
        "posts the card of this rollout."
    )
