"""What the other release channels are told of a `/rollout freeze --all` or `unfreeze --all`
(`bot.services.freeze_all`): one notice a channel, of the services released there; worded at
the edge (`bot.adapters.slack.freeze_all_words`), stored in the outbox as JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.domain.freeze import LANE_FREEZE, LaneHold, freeze_key
from bot.domain.rollout.codec import kind_from_json, kind_to_json, kinds_of


@dataclass(frozen=True)
class LanesFrozen:
    """Every service frozen by `actor` until `until` for `reason`, typed in `typed_in`; `here`:
    the services released in the channel told, `kept`: the freezes of those that stay in force
    instead (they end later: a freeze is never shortened by another)."""

    actor: str
    reason: str
    until: datetime
    typed_in: str
    here: tuple[str, ...]
    kept: tuple[LaneHold, ...] = ()


@dataclass(frozen=True)
class LanesUnfrozen:
    """The `/rollout freeze` of each service released in the channel told that had one
    (`lifted`), lifted by `actor` with `/rollout unfreeze --all` typed in `typed_in`."""

    actor: str
    typed_in: str
    lifted: tuple[LaneHold, ...]


LanesTold = LanesFrozen | LanesUnfrozen

FREEZE_ALL_TOLD_TIMER = "freeze_all_told"
"""The durable timer, written with the hold of a `/rollout freeze` (one service's, or each of a
`--all`), that tells the threads of a service's scheduled dispatches its freeze will hold
(`bot.services.freeze_all_told`). Its name is kept from `--all`, which wrote it first."""


def told_timer(hold: LaneHold) -> tuple[str, dict[str, str]]:
    """The key and payload of the FREEZE_ALL_TOLD_TIMER of `hold`, a freeze just stored: one
    per service and freeze."""
    assert hold.until is not None
    key = f"{FREEZE_ALL_TOLD_TIMER}:{hold.service}:{hold.since.isoformat()}:{hold.actor}"
    since, until = hold.since.isoformat(), hold.until.isoformat()
    return key, {"actor": hold.actor, "since": since, "until": until}


def told_freeze(payload: Mapping[str, Any]) -> tuple[str, datetime]:
    """The key of the freeze a FREEZE_ALL_TOLD_TIMER's payload names (`told_timer`:
    `Freeze.key`, who froze it and since when) and its end: a retry of the timer after that
    freeze was lifted, and another declared by the same person to the same end, tells the
    threads of that other freeze nothing (its own timer tells them)."""
    since = datetime.fromisoformat(str(payload["since"]))
    return freeze_key(str(payload["actor"]), since), datetime.fromisoformat(str(payload["until"]))


FREEZE_LIFTED_TIMER = "freeze_lifted"
"""The durable timer, written with the removal of a `/rollout freeze` by `/rollout unfreeze`
(one service's, or each of a `--all`), that tells the threads of the rollouts that freeze held
(`bot.services.freeze_lifted`)."""


def lifted_timer(lifted: LaneHold, *, by: str, at: datetime) -> tuple[str, dict[str, str]]:
    """The key and payload of the FREEZE_LIFTED_TIMER of `lifted`, a freeze `by` lifted `at`:
    one per freeze (a freeze is lifted once)."""
    assert lifted.until is not None
    key = f"{FREEZE_LIFTED_TIMER}:{lifted.service}:{lifted.since.isoformat()}:{lifted.actor}"
    return key, {
        "by": by,
        "at": at.isoformat(),
        "actor": lifted.actor,
        "reason": lifted.reason,
        "since": lifted.since.isoformat(),
        "until": lifted.until.isoformat(),
    }


def lifted_freeze(payload: Mapping[str, Any], service: str) -> tuple[str, datetime, LaneHold]:
    """Who lifted the freeze of a FREEZE_LIFTED_TIMER's payload (`lifted_timer`), when, and
    that freeze (of `service`)."""
    lifted = LaneHold(
        LANE_FREEZE,
        str(payload["actor"]),
        str(payload["reason"]),
        datetime.fromisoformat(str(payload["since"])),
        datetime.fromisoformat(str(payload["until"])),
        service=service,
    )
    return str(payload["by"]), datetime.fromisoformat(str(payload["at"])), lifted


def thread_told_key(timer_key: str, rollout_id: str) -> str:
    """The claim that the timer `timer_key` told `rollout_id`'s thread: whoever fires it first."""
    return ":".join((timer_key, "told", rollout_id))


def elsewhere(
    channels: Sequence[tuple[str, Sequence[str]]], typed_in: str
) -> dict[str, tuple[str, ...]]:
    """Each release channel but `typed_in`, in the order first met, with the services released
    there (`channels`: each service's name and release channels, in the configured order)."""
    each: dict[str, list[str]] = {}
    for service, theirs in channels:
        for channel in theirs:
            if channel != typed_in:
                each.setdefault(channel, []).append(service)
    return {channel: tuple(services) for channel, services in each.items()}


def frozen_elsewhere(
    channels: Mapping[str, tuple[str, ...]],
    typed_in: str,
    asked: Sequence[LaneHold],
    in_force: Sequence[LaneHold],
) -> dict[str, LanesFrozen]:
    """What each channel of `channels` (`elsewhere`) is told of the freezes `asked` (one a
    service, alike but for it), with the freeze each service holds afterwards (`in_force`)."""
    first = asked[0]
    assert first.until is not None  # a freeze always ends
    kept = {mine.service: held for mine, held in zip(asked, in_force, strict=True) if held != mine}
    return {
        channel: LanesFrozen(
            first.actor,
            first.reason,
            first.until,
            typed_in,
            here,
            tuple(kept[name] for name in here if name in kept),
        )
        for channel, here in channels.items()
    }


def unfrozen_elsewhere(
    channels: Mapping[str, tuple[str, ...]], typed_in: str, actor: str, lifted: Sequence[LaneHold]
) -> dict[str, LanesUnfrozen]:
    """What each channel of `channels` (`elsewhere`) where a freeze was `lifted` is told (a
    channel whose services had none is not)."""
    told = {}
    for channel, here in channels.items():
        theirs = tuple(hold for hold in lifted if hold.service in here)
        if theirs:
            told[channel] = LanesUnfrozen(actor, typed_in, theirs)
    return told


_KINDS = kinds_of(LanesTold)


def told_to_json(told: LanesTold) -> dict[str, Any]:
    """A notice as the outbox stores it: its kind and its fields."""
    return kind_to_json(_KINDS, told)


def told_from_json(data: Mapping[str, Any]) -> LanesTold:
    """A stored notice; one of a kind a newer version added is left to its replicas."""
    told: LanesTold = kind_from_json(_KINDS, data)
    return told
