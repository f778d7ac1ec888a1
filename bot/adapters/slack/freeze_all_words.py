"""The answers to `/rollout freeze --all` and `/rollout unfreeze --all` (`bot.services.freeze_all`),
said in the channel where they were typed, for everyone; the notice each other release channel
is told (`bot.domain.freeze_all`), and what the asker is told of a channel that refuses it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.adapters.slack.lane_words import freeze_text, zone_read
from bot.adapters.slack.limits import MESSAGE_TEXT, clip
from bot.adapters.slack.mrkdwn import channel, escape, person, slack_time
from bot.adapters.slack.refusal_words import refusal_fix
from bot.domain.freeze import Freeze, LaneHold
from bot.domain.freeze_all import LanesFrozen, LanesTold


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _froze_every(
    actor: str, until: datetime, reason: str, names: Sequence[str], *, where: str = ""
) -> str:
    return (
        f":snowflake: {person(actor)} froze deploys of every service until "
        f"{slack_time(until)}{where}: {escape(reason)}. `start` and `dispatch` are refused for "
        f"{_names(names)}; running rollouts go on (a `promote: auto` stage holds for a Promote)."
    )


def _lifted(lifted: Sequence[LaneHold]) -> str:
    return ", ".join(
        f"`{hold.service}` (by {person(hold.actor)}: {escape(hold.reason)})" for hold in lifted
    )


def _kept(hold: LaneHold) -> str:
    assert hold.until is not None  # a freeze always ends
    return (
        f" `{hold.service}`: the freeze by {person(hold.actor)} until {slack_time(hold.until)} "
        f"stays in force ({escape(hold.reason)}): it ends later, and a freeze is never "
        "shortened by another."
    )


def _told_too(told: Sequence[str]) -> str:
    """The other release channels the command is told in (`lanes_text`), named: said before
    the notices are posted, so not as done (one that refuses the bot: `lanes_refused_text`)."""
    if not told:
        return ""
    return (
        f" Telling {', '.join(channel(one) for one in told)} too (a channel that refuses the "
        "bot is named to you alone)."
    )


def frozen_all_answer(
    each: Sequence[tuple[str, LaneHold, LaneHold, Freeze | None]],
    *,
    zone: str | None,
    told: Sequence[str],
) -> str:
    """Every service frozen: `each` is (service, the freeze asked, the one in force afterwards,
    what its lane shows afterwards). A service whose freeze in force ends later keeps it (a
    freeze is never shortened by another), and is named with it."""
    asked = each[0][1]
    assert asked.until is not None  # a freeze always ends
    said = _froze_every(asked.actor, asked.until, asked.reason, [name for name, *_ in each])
    for name, mine, in_force, lane in each:
        assert in_force.until is not None
        if in_force != mine:
            said += _kept(in_force)
        if lane is not None and lane.free_at > in_force.until:
            said += f" `{name}`: {freeze_text(lane)}."
    return said + zone_read(asked, zone) + _told_too(told)


def unfrozen_all_answer(
    actor: str,
    lifted: Sequence[LaneHold],
    untouched: Sequence[str],
    still: Sequence[tuple[str, Freeze]],
    *,
    told: Sequence[str],
) -> str:
    """The freeze of every service that had one, lifted; those that had none, and the lanes
    that stay frozen (the plan's calendar), named."""
    said = f":sunny: {person(actor)} lifted the freeze of {_lifted(lifted)}."
    if untouched:
        said += f" No `/rollout freeze` was in force for {_names(untouched)}."
    for name, freeze in still:
        said += f" `{name}`: {freeze_text(freeze)}."
    return said + _told_too(told)


def lanes_text(told: LanesTold) -> str:
    """What another release channel is told of a `/rollout freeze --all` or `unfreeze --all`
    typed in `told.typed_in`, of the services released there."""
    if isinstance(told, LanesFrozen):
        where = f" (`/rollout freeze --all` in {channel(told.typed_in)})"
        said = _froze_every(told.actor, told.until, told.reason, told.here, where=where)
        said += "".join(_kept(hold) for hold in told.kept)
    else:
        said = (
            f":sunny: {person(told.actor)} lifted the freeze of {_lifted(told.lifted)} "
            f"(`/rollout unfreeze --all` in {channel(told.typed_in)}). A plan's calendar "
            "freeze stays: `/rollout status` shows the lane."
        )
    return clip(said, MESSAGE_TEXT)


def lanes_refused_text(told: LanesTold, refusing: str, refusal: str) -> str:
    """What the person who typed the command is told when the release channel `refusing`
    refuses the bot (Slack's `refusal`): it was not told there, and how to fix that."""
    what = "freeze" if isinstance(told, LanesFrozen) else "unfreeze"
    return (
        f":no_entry: {channel(refusing)} was not told of your `/rollout {what} --all` (Slack "
        f"answers `{refusal}`): {refusal_fix(refusal)}. Tell the people there yourself: the "
        "bot does not post it later."
    )
