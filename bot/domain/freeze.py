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

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.domain.plan.freezes import CalendarFreeze
from bot.domain.service import DEFAULT_SERVICE

LANE_FREEZE = "freeze"
LANE_LOCK = "lock"
FREEZE_END_TIMER = "freeze_end"
"""The durable timer that tells a rollout's thread, when the freeze holding it ends, what still
waits for a person (`bot.services.freeze_ends`)."""


def freeze_end_timer_key(rollout_id: str, freeze: Freeze) -> str:
    """One timer per rollout and end, and the freeze that ends then (`Freeze.ending`): a
    freeze extended or followed is watched again at its new end, under a new key, and so is
    one declared again to the same end after an unfreeze cancelled the first one's watch."""
    return f"freeze_end:{rollout_id}:{freeze.free_at.isoformat()}:{freeze.ending.key}"


def freeze_end_timer_payload(freeze: Freeze) -> dict[str, str]:
    """What a freeze end's timer carries: when the lane is free (`bot.services.freeze_ends`)."""
    return {"free_at": freeze.free_at.isoformat()}


def hold_watch_timer(watch: str, hold: str, free_at: datetime) -> tuple[str, dict[str, str]]:
    """The key and payload of the second timer under the freeze end's `watch` that tells the
    end of `hold` (`track:stage`), saved held after the watch began firing."""
    return f"{watch}:{hold}", {"free_at": free_at.isoformat(), "watch": watch}


def hold_told_key(watch: str, hold: str) -> str:
    """The claim that the end of `watch`'s freeze was told for `hold` (`track:stage`, or
    the scheduled dispatch): whoever writes it first tells, the timer or the unfreeze."""
    return ":".join((watch, "told", hold))


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
    then: tuple[Freeze, ...] = ()
    """The freezes that follow this one with no gap, in order (`followed`): each in force as
    the one before ends (the one of them that ends latest). Shown, never judged: an override
    covers the freezes in force when it was given, by key."""
    beyond: bool = False
    """Freezes still follow one another FOLLOWED_FOR after the moment judged: the lane is
    frozen past `free_at`, and when it is free again is not worked out."""

    @property
    def ending(self) -> Freeze:
        """The freeze that ends as the lane is next free (`free_at`): this one, or the last
        that follows it."""
        return self.then[-1] if self.then else self

    @property
    def free_at(self) -> datetime:
        """When the lane is next free (or, with `beyond`, frozen at least until)."""
        return self.ending.until


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


CALENDAR_FREEZE = "calendar"
"""How the `Freeze.key` of a plan's window begins (`calendar:<name>:<its end>`)."""


def freeze_key(actor: str, since: datetime) -> str:
    """The `Freeze.key` of the `/rollout freeze` by `actor` taken at `since`: that one freeze
    (one extended, or declared again after an unfreeze, is another)."""
    return f"freeze:{actor}:{since.isoformat()}"


def freezes_in_force(
    calendar: Sequence[CalendarFreeze], holds: Sequence[LaneHold], now: datetime
) -> list[Freeze]:
    """Every freeze at `now`: the approvers' (while they last) and the calendar's windows."""
    frozen = [
        Freeze(
            reason=hold.reason,
            until=hold.until,
            actor=hold.actor,
            key=freeze_key(hold.actor, hold.since),
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
                    key=f"{CALENDAR_FREEZE}:{entry.name}:{until.isoformat()}",
                )
            )
    return frozen


FOLLOWED_FOR = timedelta(days=14)
"""How far after the moment judged `followed` chains freezes that leave no gap (a weekly one
that never does, or a weekly and a dated one that meet week after week, would otherwise be
followed forever). The scheduling horizon (`bot.domain.schedule.MAX_AHEAD`): whether a start
scheduled within it goes is answered exactly; past it, `frozen beyond` that date is enough to
plan by."""


def freeze_in_force(
    calendar: Sequence[CalendarFreeze],
    holds: Sequence[LaneHold],
    now: datetime,
    *,
    rollout_id: str | None = None,
) -> Freeze | None:
    """The freeze at `now`: of those in force, the one that ends latest (the approver's on a
    tie), with the freezes that follow it (`followed`). For the dispatch of `rollout_id`, a
    freeze its override does not cover comes first (an override never carries it through a
    freeze it was not given for), and those it covers are not followed."""
    frozen = freezes_in_force(calendar, holds, now)
    covered: set[str] = set()
    if rollout_id is not None:
        kind = override_kind(rollout_id)
        covered = {key for hold in holds if hold.kind == kind for key in overridden(hold)}
        uncovered = [freeze for freeze in frozen if freeze.key not in covered]
        frozen, covered = (uncovered, covered) if uncovered else (frozen, set())
    latest = max(frozen, key=lambda freeze: freeze.until, default=None)
    return None if latest is None else followed(latest, calendar, holds, now, skip=covered)


def followed(
    freeze: Freeze,
    calendar: Sequence[CalendarFreeze],
    holds: Sequence[LaneHold],
    now: datetime,
    *,
    skip: set[str] | frozenset[str] = frozenset(),
) -> Freeze:
    """`freeze` (in force at `now`) with the freezes that keep the lane frozen after it ends,
    overlapping or touching, calendar and declared alike (`then`), so that `free_at` is when
    the lane is next free; `beyond` once they reach FOLLOWED_FOR past `now`. Each step ends
    later than the one before and each window is met once, so the walk ends."""
    then: list[Freeze] = []
    end = freeze.until
    while after := [
        each for each in freezes_in_force(calendar, holds, end) if each.key not in skip
    ]:
        if end >= now + FOLLOWED_FOR:
            return replace(freeze, then=tuple(then), beyond=True)
        then.append(max(after, key=lambda each: each.until))
        end = then[-1].until
    return replace(freeze, then=tuple(then))


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
