"""The answers to `/rollout freeze --all` and `/rollout unfreeze --all` (`bot.services.freeze_all`),
said in the channel where they were typed, for everyone."""

from __future__ import annotations

from collections.abc import Sequence

from bot.adapters.slack.lane_words import freeze_text, zone_read
from bot.adapters.slack.mrkdwn import channel, escape, person, slack_time
from bot.domain.freeze import Freeze, LaneHold


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def not_told(others: Sequence[str]) -> str:
    """The release channels the answer does not reach: said plainly (nothing posts there)."""
    if not others:
        return ""
    return (
        f" Only this channel is told: tell the other release channels "
        f"({', '.join(channel(one) for one in others)})."
    )


def frozen_all_answer(
    each: Sequence[tuple[str, LaneHold, LaneHold, Freeze | None]],
    *,
    zone: str | None,
    others: Sequence[str],
) -> str:
    """Every service frozen: `each` is (service, the freeze asked, the one in force afterwards,
    what its lane shows afterwards). A service whose freeze in force ends later keeps it (a
    freeze is never shortened by another), and is named with it."""
    asked = each[0][1]
    assert asked.until is not None  # a freeze always ends
    said = (
        f":snowflake: {person(asked.actor)} froze deploys of every service until "
        f"{slack_time(asked.until)}: {escape(asked.reason)}. `start` and `dispatch` are refused "
        f"for {_names([name for name, *_ in each])}; running rollouts go on (a `promote: auto` "
        "stage holds for a Promote)."
    )
    for name, mine, in_force, lane in each:
        assert in_force.until is not None
        if in_force != mine:
            said += (
                f" `{name}`: the freeze by {person(in_force.actor)} until "
                f"{slack_time(in_force.until)} stays in force ({escape(in_force.reason)}): it "
                "ends later, and a freeze is never shortened by another."
            )
        if lane is not None and lane.free_at > in_force.until:
            said += f" `{name}`: {freeze_text(lane)}."
    return said + zone_read(asked, zone) + not_told(others)


def unfrozen_all_answer(
    actor: str,
    lifted: Sequence[LaneHold],
    untouched: Sequence[str],
    still: Sequence[tuple[str, Freeze]],
    *,
    others: Sequence[str],
) -> str:
    """The freeze of every service that had one, lifted; those that had none, and the lanes
    that stay frozen (the plan's calendar), named."""
    each = ", ".join(
        f"`{hold.service}` (by {person(hold.actor)}: {escape(hold.reason)})" for hold in lifted
    )
    said = f":sunny: {person(actor)} lifted the freeze of {each}."
    if untouched:
        said += f" No `/rollout freeze` was in force for {_names(untouched)}."
    for name, freeze in still:
        said += f" `{name}`: {freeze_text(freeze)}."
    return said + not_told(others)
