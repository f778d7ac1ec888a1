"""Deploy freezes and the release lane's lock: when `start` and `dispatch` are refused.

A freeze comes from the plan's calendar (`freezes:`, `bot.domain.plan.freezes`) or from an
approver's `/rollout freeze`; a lock is held by one person (`/rollout lock`). While frozen, a
start or a dispatch is refused naming who froze it, why and until when, unless an approver
overrides it with a reason (and, when the plan's two-person rule covers `override_freeze`, the
dispatch of an overridden rollout needs a second approver). An override is of the freezes
in force when it was given (their `Freeze.key`s): it never passes a freeze declared after it,
one that replaced them, or one in force alongside that it was not given for. A lock refuses
everyone else's start and dispatch. Neither ever stops a running rollout: promote, roll back
and the kill-switch are never judged here; nor a roll back of a completed release that goes as
a new rollout of the previous tag (its roll-back pass, `rollback:<rollout id>`: its dispatch
passes every freeze and lock while it is a roll back: until a newer release completes a track
after the roll back was clicked, and for ROLL_BACK_LASTS; `stale_roll_back`). The edge words
the refusals
(`bot.adapters.slack.lane_words`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.domain.durations import MAX_DURATION, format_duration, parse_duration
from bot.domain.errors import InvalidCommand
from bot.domain.plan.freezes import CalendarFreeze
from bot.domain.service import DEFAULT_SERVICE
from bot.domain.text import shown

LANE_FREEZE = "freeze"
LANE_LOCK = "lock"


@dataclass(frozen=True)
class LaneHold:
    """A freeze or the lock of the release lane, as stored: `kind` is LANE_FREEZE, LANE_LOCK,
    `override:<rollout id>` (an approver's override of a freeze for one rollout; `overrides`
    holds the `Freeze.key`s of the freezes in force it overrode, one a line) or
    `rollback:<rollout id>` (the rollout was started as a roll back of a completed release:
    `reason` names the tag it replaces, which `overrides` holds). Each service has its own
    lane (`service`)."""

    kind: str
    actor: str
    reason: str
    since: datetime
    until: datetime | None = None
    overrides: str | None = None
    service: str = DEFAULT_SERVICE


@dataclass(frozen=True)
class Freeze:
    """A freeze in force: by a person (`actor`), or by the calendar entry `calendar`. `key`
    names this one freeze (who froze and since when, or the calendar window), which an
    override records."""

    reason: str
    until: datetime
    actor: str | None = None
    calendar: str | None = None
    key: str = ""


@dataclass(frozen=True)
class Frozen:
    """A start (or, with `dispatch`, a dispatch; with `link` too, a run linked to a rollout
    back in its preflight) refused by a freeze; `at`: a start scheduled then, when the freeze
    is known to be in force."""

    freeze: Freeze
    dispatch: bool = False
    at: datetime | None = None
    link: bool = False
    adopt: bool = False
    """The start refused is the adoption of a run the bot did not start."""
    publish: bool = False
    """The start refused is the npm Release workflow's run (it publishes packages)."""
    stale: StaleRollBack | None = None
    """The dispatch refused is of a roll back whose pass no longer holds."""


@dataclass(frozen=True)
class TrackCompletion:
    """A rollout's track that completed (its release went out on it) at `at`."""

    rollout_id: str
    tag: str
    track: str
    """The track's label."""
    at: datetime


@dataclass(frozen=True)
class StaleRollBack:
    """A roll back that no longer passes the lane (`stale_roll_back`), clicked at `clicked`:
    a newer release went out after it (`newer`), or it is `lasts` old."""

    clicked: datetime
    lasts: timedelta
    newer: TrackCompletion | None = None


@dataclass(frozen=True)
class Locked:
    """A start or dispatch refused by someone else's lock."""

    lock: LaneHold
    stale: StaleRollBack | None = None
    """The dispatch refused is of a roll back whose pass no longer holds."""


@dataclass(frozen=True)
class SecondApproverNeeded:
    """The plan's two-person rule: the approver who overrode a freeze cannot dispatch alone."""

    override: LaneHold
    freeze: Freeze


LaneRefusal = Frozen | Locked | SecondApproverNeeded


def override_kind(rollout_id: str) -> str:
    return f"override:{rollout_id}"


def roll_back_kind(rollout_id: str) -> str:
    return f"rollback:{rollout_id}"


def roll_back_pass(holds: Sequence[LaneHold], rollout_id: str | None) -> LaneHold | None:
    """The roll-back pass of `rollout_id` (started as a roll back of a completed release: no
    freeze or lock holds its dispatch), or None."""
    if rollout_id is None:
        return None
    kind = roll_back_kind(rollout_id)
    return next((hold for hold in holds if hold.kind == kind), None)


ROLL_BACK_LASTS = timedelta(hours=24)
"""How long after its click a roll back passes the lane. A roll back is dispatched at once, in
an incident; one left in its preflight for a day is a release like any other (production may
have been fixed forward meanwhile, outside the bot), judged by the freeze and the lock: an
approver may still override the freeze. A day still covers a roll back clicked on a Friday
evening and dispatched the next morning."""


def stale_roll_back(
    roll_back: LaneHold, completions: Sequence[TrackCompletion], now: datetime
) -> StaleRollBack | None:
    """Why the roll-back pass `roll_back` no longer passes at `now`, or None while it does:
    a rollout other than the roll back and the release it replaces (`overrides`) completed a
    track after the click (dispatching would put back an older release than the one live; the
    latest such completion is named), or the click is ROLL_BACK_LASTS old."""
    roll_back_id = roll_back.kind.removeprefix("rollback:")
    newer = [
        each
        for each in completions
        if each.rollout_id != roll_back_id
        and each.tag != roll_back.overrides
        and each.at > roll_back.since
    ]
    if newer:
        latest = max(newer, key=lambda each: each.at)
        return StaleRollBack(roll_back.since, ROLL_BACK_LASTS, newer=latest)
    if now >= roll_back.since + ROLL_BACK_LASTS:
        return StaleRollBack(roll_back.since, ROLL_BACK_LASTS)
    return None


def freezes_in_force(
    calendar: Sequence[CalendarFreeze], holds: Sequence[LaneHold], now: datetime
) -> list[Freeze]:
    """Every freeze at `now`: the approvers' (while they last) and the calendar's windows."""
    frozen = [
        Freeze(
            reason=hold.reason,
            until=hold.until,
            actor=hold.actor,
            key=f"freeze:{hold.actor}:{hold.since.isoformat()}",
        )
        for hold in holds
        if hold.kind == LANE_FREEZE and hold.until is not None and now < hold.until
    ]
    for entry in calendar:
        until = entry.covering(now)
        if until is not None:
            frozen.append(
                Freeze(
                    reason=entry.reason or entry.name,
                    until=until,
                    calendar=entry.name,
                    key=f"calendar:{entry.name}:{until.isoformat()}",
                )
            )
    return frozen


def freeze_in_force(
    calendar: Sequence[CalendarFreeze],
    holds: Sequence[LaneHold],
    now: datetime,
    *,
    rollout_id: str | None = None,
) -> Freeze | None:
    """The freeze at `now`: of those in force, the one that ends latest (the approver's on a
    tie). For the dispatch of `rollout_id`, a freeze its override does not cover comes first
    (an override never carries it through a freeze it was not given for)."""
    frozen = freezes_in_force(calendar, holds, now)
    if rollout_id is not None:
        kind = override_kind(rollout_id)
        covered = {key for hold in holds if hold.kind == kind for key in overridden(hold)}
        frozen = [freeze for freeze in frozen if freeze.key not in covered] or frozen
    return max(frozen, key=lambda freeze: freeze.until, default=None)


def overridden(hold: LaneHold) -> list[str]:
    """The keys of the freezes an override was given for (those in force then)."""
    return (hold.overrides or "").splitlines()


def override_covering(
    frozen: Sequence[Freeze], holds: Sequence[LaneHold], rollout_id: str, now: datetime
) -> LaneHold | None:
    """The override of `rollout_id` still in force when it was given for every freeze in
    `frozen` (those in force now); None when it has none, or a freeze it does not cover."""
    kind = override_kind(rollout_id)
    hold = next((hold for hold in holds if hold.kind == kind), None)
    if hold is None or not frozen or (hold.until is not None and now >= hold.until):
        return None
    covered = set(overridden(hold))
    return hold if all(freeze.key in covered for freeze in frozen) else None


def lock_of(holds: Sequence[LaneHold]) -> LaneHold | None:
    return next((hold for hold in holds if hold.kind == LANE_LOCK), None)


def lane_refusal(
    *,
    actor: str,
    freeze: Freeze | None,
    holds: Sequence[LaneHold],
    rollout_id: str | None,
    two_person: bool,
    now: datetime,
) -> LaneRefusal | None:
    """Why the release lane refuses `actor` a start (`rollout_id` None) or the dispatch of
    `rollout_id`, or None. An override for the rollout lets its dispatch through while the
    freeze it overrode is the one in force (`freeze.key`) and it lasts (`now` before its
    `until`); with `two_person`, only when another approver dispatches it."""
    lock = lock_of(holds)
    if lock is not None and lock.actor != actor:
        return Locked(lock)
    if freeze is None:
        return None
    if rollout_id is not None:
        kind = override_kind(rollout_id)
        override = next(
            (
                hold
                for hold in holds
                if hold.kind == kind
                and freeze.key in overridden(hold)
                and hold.until is not None
                and now < hold.until
            ),
            None,
        )
        if override is not None and two_person and override.actor == actor:
            return SecondApproverNeeded(override, freeze)
        if override is not None:
            return None
    return Frozen(freeze, dispatch=rollout_id is not None)


_OFFSET = re.compile(r"[+-][0-9]{2}:?[0-9]{2}$")
_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?(?:Z|[+-].*)?")


_UTC_WORDS = frozenset({"UTC", "GMT", "Z"})
_ZONE_ABBREVIATIONS = frozenset(
    {"CET", "CEST", "EET", "EEST", "WET", "WEST", "BST", "IST", "EST", "EDT", "CST", "CDT"}
    | {"MST", "MDT", "PST", "PDT", "AKST", "AKDT", "HST", "JST", "KST", "AEST", "AEDT"}
    | {"ACST", "ACDT", "AWST", "NZST", "NZDT", "MSK", "SGT", "HKT"}
)
"""Zone abbreviations a person may type after a freeze's end (`18:00 CET`, `18:00 pst`: in any
case): ambiguous (IST, CST, BST name several zones), so they are refused rather than read as
UTC."""
_ENGLISH_WORDS = frozenset({"wet", "west"})
"""Abbreviations that are English words: unless in capitals, they begin a reason (`West
region move`)."""
_TYPED_OFFSET = re.compile(r"(?:UTC|GMT)?[+-][0-9]{1,2}(?::?[0-9]{2})?", re.IGNORECASE)
"""An offset typed apart from the end (`18:00 +01:00`, `18:00 GMT-5`): refused too, since the
end would be read as UTC with the offset taken for the reason."""


def zone_after_end(until: str, reason: str) -> str:
    """The reason of `/rollout freeze <until> <reason>`, once a zone typed after an end time
    is taken off it: `UTC` or `GMT` (the end is UTC anyway); a zone abbreviation (`CET`), an
    IANA name (`Europe/Berlin`) or an offset apart from the time (`+01:00`, `GMT-5`) raises
    InvalidCommand, since the end would be read as UTC."""
    word, _, rest = reason.partition(" ")
    if not _ISO.fullmatch(until) or until.endswith("Z") or _OFFSET.search(until[10:]):
        return reason
    if word.upper() in _UTC_WORDS:
        return rest.strip()
    english = not word.isupper() and word.lower() in _ENGLISH_WORDS
    abbreviation = word.upper() in _ZONE_ABBREVIATIONS and not english
    if abbreviation or _TYPED_OFFSET.fullmatch(word) or _is_zone_name(word):
        raise InvalidCommand(
            f"`{shown(word)}` is not a time zone I read: a freeze's end is read in UTC, or give "
            f"its offset, such as `{until.replace(' ', 'T')}+01:00`."
        )
    return reason


def _is_zone_name(word: str) -> bool:
    if "/" not in word:
        return False
    try:
        ZoneInfo(word)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return False
    return True


def freeze_end(text: str, now: datetime) -> datetime:
    """When an ad hoc freeze ends: `now` plus a duration (`2h`, `72h`), or a time
    (`2026-12-24 18:00`, UTC unless it names an offset such as `+01:00`). Raises
    InvalidCommand for an unreadable text or an end that is not in the future or is more than
    MAX_DURATION (30 days) away."""
    if _ISO.fullmatch(text):
        too_far = InvalidCommand(
            f"`{text}` is too far ahead: a freeze lasts at most 30 days "
            f"(`{format_duration(MAX_DURATION)}`)."
        )
        try:
            # `9:00`, which `_ISO` takes, as `fromisoformat` reads it: `09:00`.
            until = datetime.fromisoformat(re.sub(r"T([0-9]):", r"T0\1:", text.replace(" ", "T")))
            until = (until if until.tzinfo is not None else until.replace(tzinfo=UTC)).astimezone(
                UTC
            )
        except ValueError:
            raise InvalidCommand(f"`{text}` is not a date and time I can read.") from None
        except OverflowError:  # past datetime's last year once in UTC
            raise too_far from None
        if until <= now:
            raise InvalidCommand(f"`{text}` is in the past: a freeze must end in the future.")
        if until > now + MAX_DURATION:
            raise too_far
        return until
    try:
        return now + parse_duration(text)
    except ValueError as error:
        raise InvalidCommand(
            f"{error}; or give an end time such as `2026-12-24 18:00` (UTC) or "
            "`2026-12-24T18:00+01:00`."
        ) from None
