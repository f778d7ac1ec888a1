"""The release lane: freezes (the plan's calendar and `/rollout freeze`), the lock, and an
approver's override of a freeze, applied where a start or a dispatch is admitted.

`ReleaseLane.judge` is called where a start (`bot.services.lane_controls`) or a dispatch
(`bot.services.access`) is admitted; the rules are `bot.domain.freeze`'s. The holds live in
the database (`storage.lane_holds`), so every replica and a restarted bot see the same lane.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from bot.domain.errors import RolloutError
from bot.domain.freeze import (
    LANE_LOCK,
    Freeze,
    Frozen,
    LaneHold,
    LaneRefusal,
    Locked,
    TrackCompletion,
    followed,
    freeze_in_force,
    freezes_in_force,
    lane_refusal,
    lock_of,
    override_covering,
    override_kind,
    roll_back_kind,
    roll_back_pass,
    stale_roll_back,
)
from bot.domain.plan import RolloutPlan, TwoPersonAction
from bot.domain.rollout import Phase, Rollout, TrackState
from bot.domain.service import DEFAULT_SERVICE
from bot.services.ports import Clock
from bot.services.records import NewTimer
from bot.services.requests import current_entry


class LaneHolds(Protocol):
    """The port of the release lane's freezes, lock and overrides (`storage.lane_holds`)."""

    async def current(self) -> list[LaneHold]: ...
    async def take(
        self,
        hold: LaneHold,
        *,
        replace: bool = False,
        later: bool = False,
        timer: NewTimer | None = None,
    ) -> LaneHold: ...
    async def release(
        self,
        kind: str,
        *,
        actor: str | None = None,
        timer: Callable[[LaneHold], NewTimer | None] = ...,
    ) -> LaneHold | None: ...
    async def forget_ended(self) -> int: ...

    # Here rather than in ports.py, which is at the 400-line limit.


class RecentRollouts(Protocol):
    """The service's latest rollouts, newest first (`storage.rollout_store`): a roll back's
    pass ends once a newer release completes a track."""

    async def recent(self, limit: int = 10) -> list[Rollout]: ...


RECENT_DEPTH = 50
"""How many of the latest rollouts are searched for a release newer than a roll back (more
than are started in a day, ROLL_BACK_LASTS, which bounds a roll back anyway)."""


class LaneClosed(RolloutError):
    """A start or dispatch refused by a freeze or a lock; the message says by whom and why.
    `overridable`: a dispatch refused by a freeze alone, which an approver may override from
    the card (*Override freeze…*)."""

    code = "lane_closed"

    def __init__(self, message: str, *, overridable: bool = False) -> None:
        super().__init__(message)
        self.overridable = overridable


class LaneWords(Protocol):
    """The edge's words for the lane (`bot.adapters.slack.lane_words`)."""

    def lane_refusal_text(self, refused: LaneRefusal) -> str: ...


@dataclass(frozen=True)
class LaneState:
    """What `/rollout status` shows of the lane."""

    freeze: Freeze | None
    lock: LaneHold | None


@dataclass(kw_only=True, eq=False)
class ReleaseLane:
    """Judges starts and dispatches against the freezes and the lock; keeps the holds."""

    holds: LaneHolds
    plan: RolloutPlan
    clock: Clock
    words: LaneWords
    rollouts: RecentRollouts
    service: str = DEFAULT_SERVICE
    """The service whose lane this is: its holds are written for it."""

    async def state(self, *, at: datetime | None = None) -> LaneState:
        """The lane now, or the freeze known now to be in force `at` a later time."""
        holds = await self.holds.current()
        freeze = freeze_in_force(self.plan.freezes, holds, at or self.clock())
        return LaneState(freeze, lock_of(holds))

    async def refusal(
        self,
        *,
        actor: str,
        rollout_id: str | None = None,
        override: str | None = None,
        at: datetime | None = None,
    ) -> LaneRefusal | None:
        """Why the lane refuses `actor` a start (`rollout_id` None) or the dispatch of
        `rollout_id`, or None. The lock is judged now; the freeze now, or for a start scheduled
        `at` a later time, as it is known now to be then. A rollout started as a roll back of a
        completed release (`roll_back_for`) passes both while its pass is not stale
        (`stale_roll_back`): the request's audit event says what it passed, or why the roll
        back was judged as any dispatch."""
        holds, now = await self.holds.current(), self.clock()
        freeze = freeze_in_force(self.plan.freezes, holds, at or now, rollout_id=rollout_id)
        refused = lane_refusal(
            actor=actor,
            freeze=None if override is not None else freeze,
            holds=holds,
            rollout_id=rollout_id,
            two_person=TwoPersonAction.OVERRIDE_FREEZE in self.plan.two_person,
            now=now,
        )
        current = current_entry.get()
        roll_back = roll_back_pass(holds, rollout_id)
        if refused is not None and roll_back is not None:
            stale = stale_roll_back(roll_back, await self.completions(), now)
            if stale is None:
                if current is not None:
                    current.detail.update(
                        roll_back_passed(freeze, lock_of(holds), actor), roll_back=roll_back.reason
                    )
                return None
            if isinstance(refused, Frozen | Locked):
                refused = replace(refused, stale=stale)
            if current is not None:
                current.detail.update(stale_roll_back=roll_back.reason)
        if isinstance(refused, Frozen) and at is not None:
            return replace(refused, at=at)
        if refused is None and override is not None and freeze is not None and current:
            current.detail.update(override_freeze=override, freeze=freeze.reason)
        return refused

    async def judge(
        self,
        *,
        actor: str,
        rollout_id: str | None = None,
        override: str | None = None,
        at: datetime | None = None,
        linking: bool = False,
        adopting: bool = False,
        publishing: bool = False,
    ) -> None:
        """Raise LaneClosed when the lane refuses (`refusal`). A start with `override` (the
        reason) while frozen passes; the caller records the override with `override_for` once
        the rollout exists. `linking`: the dispatch judged is a run linked by hand (its
        refusal says so, and offers no Override freeze… that would dispatch again).
        `adopting`: the start judged is the adoption of a run the bot did not start (its
        refusal offers Override freeze…, which adopts it). `publishing`: the start judged is a
        run of the npm Release workflow, which publishes packages (no override: it waits)."""
        refused = await self.refusal(actor=actor, rollout_id=rollout_id, override=override, at=at)
        if isinstance(refused, Frozen) and (linking or adopting or publishing):
            refused = replace(refused, link=linking, adopt=adopting, publish=publishing)
        if refused is not None:
            overridable = (
                isinstance(refused, Frozen)
                and (refused.dispatch or refused.adopt)
                and not refused.link
            )
            raise LaneClosed(self.words.lane_refusal_text(refused), overridable=overridable)

    async def holds_promotion(self, *, rollout_id: str) -> Freeze | None:
        """The freeze that holds an automatic promotion of `rollout_id` now (a `promote: auto`
        stage waits for a person's Promote while it lasts), or None. What lets the rollout's
        dispatch through a freeze lets its stages go on too: its override of the freeze in
        force, its roll-back pass (while not stale). The lock never holds a promotion."""
        holds, now = await self.holds.current(), self.clock()
        freeze = freeze_in_force(self.plan.freezes, holds, now, rollout_id=rollout_id)
        if freeze is None:
            return None
        unlocked = [hold for hold in holds if hold.kind != LANE_LOCK]
        refused = lane_refusal(
            actor="",
            freeze=freeze,
            holds=unlocked,
            rollout_id=rollout_id,
            two_person=False,
            now=now,
        )
        if refused is None:
            return None
        roll_back = roll_back_pass(holds, rollout_id)
        if (
            roll_back is not None
            and stale_roll_back(roll_back, await self.completions(), now) is None
        ):
            return None
        return freeze

    async def held_then(
        self, rollouts: Sequence[Rollout], *, lifted: LaneHold | None = None
    ) -> dict[str, Frozen]:
        """The scheduled dispatches a freeze known now will hold at their time (a freeze
        declared after they were scheduled, or a calendar window), by rollout id: the freeze,
        as the scheduled dispatch will judge it then (the rollout's override or roll-back pass
        counted). A lock is left out: it is judged at the time, and may be gone by then.
        `lifted`: a freeze just lifted, judged as if it were still held (what it held)."""
        holds = [hold for hold in await self.holds.current() if hold.kind != LANE_LOCK]
        holds += [lifted] if lifted is not None else []
        held: dict[str, Frozen] = {}
        completions: list[TrackCompletion] | None = None
        for rollout in rollouts:
            schedule = rollout.schedule
            if schedule is None or not schedule.pending or rollout.phase is not Phase.PREFLIGHT:
                continue
            at = schedule.at
            roll_back = roll_back_pass(holds, rollout.id)
            if roll_back is not None:
                completions = await self.completions() if completions is None else completions
                if stale_roll_back(roll_back, completions, at) is None:
                    continue
            refused = lane_refusal(
                actor=rollout.started_by,
                freeze=freeze_in_force(self.plan.freezes, holds, at, rollout_id=rollout.id),
                holds=holds,
                rollout_id=rollout.id,
                two_person=TwoPersonAction.OVERRIDE_FREEZE in self.plan.two_person,
                now=at,
            )
            if isinstance(refused, Frozen):
                held[rollout.id] = replace(refused, at=at)
        return held

    async def roll_back_for(self, *, rollout_id: str, actor: str, replaced: str) -> LaneState:
        """Record that `rollout_id` was started by `actor` as a roll back of `replaced`, a
        completed release: no freeze or lock holds its dispatch (or the link of its run) while
        it is a roll back (`stale_roll_back`). The lane now, which it passes (for the
        thread)."""
        hold = LaneHold(
            roll_back_kind(rollout_id),
            actor,
            f"a roll back of `{replaced}`",
            since=self.clock(),
            overrides=replaced,
            service=self.service,
        )
        await self.holds.take(hold, replace=True)
        return await self.state()

    async def completions(self) -> list[TrackCompletion]:
        """The tracks the service's latest rollouts completed, labelled by the plan."""
        labels = {name: track.label for name, track in self.plan.tracks.items()}
        return [
            TrackCompletion(rollout.id, rollout.tag, labels.get(track.name, track.name), ended)
            for rollout in await self.rollouts.recent(RECENT_DEPTH)
            for track in rollout.tracks
            if track.state is TrackState.COMPLETED and (ended := track.ended_at) is not None
        ]

    async def overridden_for(self, *, rollout_id: str) -> LaneHold | None:
        """The override already given for `rollout_id` when it covers every freeze in force
        now (a repeat of the override whose claim lapsed unrecorded), None otherwise."""
        now = self.clock()
        holds = await self.holds.current()
        frozen = freezes_in_force(self.plan.freezes, holds, now)
        return override_covering(frozen, holds, rollout_id, now)

    async def override_for(
        self, *, rollout_id: str, actor: str, reason: str, at: datetime | None = None
    ) -> Freeze | None:
        """Record an approver's override of the freezes in force for one rollout (its dispatch
        then passes while one of them is the freeze judged; for a dispatch scheduled `at` a
        later time, those known then): the freeze overridden that ends latest (with those that
        follow it, for its words), or None when nothing is frozen."""
        now = self.clock()
        holds = await self.holds.current()
        frozen = freezes_in_force(self.plan.freezes, holds, at or now)
        latest = max(frozen, key=lambda each: each.until, default=None)
        freeze = None if latest is None else followed(latest, self.plan.freezes, holds, at or now)
        if freeze is not None:
            hold = LaneHold(
                override_kind(rollout_id),
                actor,
                reason,
                since=now,
                until=freeze.until,
                overrides="\n".join(each.key for each in frozen),
                service=self.service,
            )
            await self.holds.take(hold, replace=True)
        return freeze


def roll_back_passed(freeze: Freeze | None, lock: LaneHold | None, actor: str) -> dict[str, str]:
    """What a roll back by `actor` passes, for its audit events: the freeze, someone else's
    lock, or both (empty when neither holds the lane)."""
    passed: dict[str, str] = {}
    held = []
    if freeze is not None:
        held.append("the freeze")
        passed["freeze"] = freeze.reason
    if lock is not None and lock.actor != actor:
        held.append("the lock")
        passed["locked_by"] = lock.actor
    return {"lane": f"a roll back: not held by {' or '.join(held)}", **passed} if held else {}
