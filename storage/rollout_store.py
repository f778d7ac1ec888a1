"""Rollouts kept in the database: the pure domain `Rollout` mapped to storage records and back.

The domain never sees a record and storage never sees a domain value; this is the one place
that knows both. What the domain holds beyond the columns (the preflight checks, the dispatch
time) lives in `rollouts.context`; gate verdicts in `stages.verdict` and `verdict_detail`.
Storage's conflicts come out as domain errors a Slack answer can explain."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.domain.errors import ConcurrentChange, RolloutInProgress
from bot.domain.plan import STORED_PLAN, RolloutPlan
from bot.domain.plan import Track as PlanTrack
from bot.domain.rollout import (
    Phase,
    Rollout,
    Stage,
    StageState,
    Track,
    TrackState,
    codec,
)
from bot.services.records import CARD, NewAuditEvent, NewMessage, NewTimer
from storage.db import from_row
from storage.errors import StaleRollout, TrackBusy
from storage.rollout_context import context_of, from_context
from storage.rollout_records import (
    NewStage,
    NewTrack,
    RolloutChange,
    RolloutRecord,
    StageRecord,
    TrackRecord,
)
from storage.rollout_repository import RolloutRepository

S = TypeVar("S")
V = TypeVar("V")


class RolloutStore:
    """Stores domain rollouts; at most one active rollout per track of a service, versions
    checked on save. A store of one `service` reads and writes that service's rollouts only
    (another's is not found); without one (the shared loops), every service's."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], datetime],
        service: str | None = None,
    ) -> None:
        self._repository = RolloutRepository(sessions, service=service)
        self._clock = clock

    async def create(
        self,
        *,
        rollout: Rollout,
        plan: RolloutPlan,
        outbox: Sequence[NewMessage] = (),
        timers: Sequence[NewTimer] = (),
    ) -> Rollout:
        """Store a new rollout with a snapshot of its plan (never changed afterwards), and the
        messages that tell of it and its `timers` (a scheduled dispatch) in the same
        transaction.

        Raises RolloutInProgress, naming the active rollout, when one of its tracks is busy.
        """
        try:
            record = await self._repository.create(
                rollout_id=rollout.id,
                tag=rollout.tag,
                channel_id=rollout.channel_id,
                started_by=rollout.started_by,
                state=rollout.phase.value,
                plan=plan.model_dump(mode="json", by_alias=True),
                tracks=[_new_track(track, plan.track(track.name)) for track in rollout.tracks],
                now=rollout.created_at,
                message_ts=rollout.message_ts,
                context=context_of(rollout),
                run=None if rollout.run_id is None else (rollout.run_id, rollout.run_url),
                outbox=outbox,
                timers=timers,
                service=rollout.service,
            )
        except TrackBusy as busy:
            raise await self._in_progress(busy) from None
        stored = _rollout(record)
        wanted = replace(rollout, version=stored.version)
        # A new rollout is usually all pending; anything further along is written at once,
        # its card drawn again (the first redraw may have been delivered in between).
        if stored == wanted:
            return stored
        return await self.save(wanted, outbox=[m for m in outbox if m.kind == CARD])

    async def get(self, rollout_id: str) -> Rollout | None:
        record = await self._repository.get(rollout_id)
        return None if record is None else _rollout(record)

    async def plan(self, rollout_id: str) -> RolloutPlan:
        """The plan the rollout was started with: a later change of ROLLOUT_PLAN never moves
        a rollout already under way. Raises RolloutNotFound for an unknown id."""
        return _stored_plan(await self._repository.plan(rollout_id))

    async def with_plan(self, rollout_id: str) -> tuple[Rollout, RolloutPlan] | None:
        """The rollout and its plan in one read (what drawing its card needs)."""
        record = await self._repository.get(rollout_id)
        if record is None:
            return None
        return _rollout(record), _stored_plan(record.plan)

    async def save(
        self,
        rollout: Rollout,
        *,
        outbox: Sequence[NewMessage] = (),
        audit: Sequence[NewAuditEvent] = (),
        timers: Sequence[NewTimer] = (),
    ) -> Rollout:
        """Write the rollout as it now stands, with the messages that tell of the change, the
        audit events that record it and the `timers` it needs (a window's end) in the same
        transaction (nothing is said, recorded or timed of a change that was not saved, and
        nothing a change must say or time is lost); returns it at its new version.

        Raises ConcurrentChange when it was changed since `rollout.version` was read, and
        RolloutInProgress when a track it opens again is another rollout's since.
        """
        change = RolloutChange(rollout.id, rollout.version, lambda stored: _record(rollout, stored))
        try:
            saved = await self._repository.save(
                rollout=change, now=self._clock(), outbox=outbox, audit=audit, timers=timers
            )
        except TrackBusy as busy:
            raise await self._in_progress(busy) from None
        except StaleRollout:
            raise ConcurrentChange(
                f"Rollout `{rollout.tag}` was changed by someone else a moment ago, so this "
                "action changed nothing. Look at its latest state and try again.",
                rollout_id=rollout.id,
            ) from None
        return _rollout(saved)

    async def set_message_ts(
        self, rollout_id: str, message_ts: str, *, replacing: str | None = None
    ) -> str:
        """Record the ts of the rollout's first card post, or (`replacing` the ts of a card
        someone deleted) of the card posted again; the ts stored (a card posted twice keeps
        the first)."""
        return await self._repository.set_message_ts(
            rollout_id=rollout_id, message_ts=message_ts, replacing=replacing
        )

    async def active(self) -> list[Rollout]:
        return [_rollout(record) for record in await self._repository.list_active()]

    async def active_with_plans(self) -> list[tuple[Rollout, RolloutPlan]]:
        """Rollouts that have not ended, oldest first, each with its plan, in one read (what
        a status view draws)."""
        return [
            (_rollout(record), _stored_plan(record.plan))
            for record in await self._repository.list_active()
        ]

    async def recent(self, limit: int = 10) -> list[Rollout]:
        return [_rollout(record) for record in await self._repository.list_recent(limit=limit)]

    async def ended_between(self, start: datetime, end: datetime) -> list[Rollout]:
        records = await self._repository.list_ended(start=start, end=end)
        return [_rollout(record) for record in records]

    async def last_released(self, *, before: datetime | None = None) -> Rollout | None:
        """The newest rollout that reached its last stage on every track (and was not rolled
        back after it): the release live now; with `before`, the newest that ended before."""
        record = await self._repository.find_last_released(before=before)
        return None if record is None else _rollout(record)

    async def by_run_id(self, run_id: int) -> Rollout | None:
        record = await self._repository.find_by_run_id(run_id)
        return None if record is None else _rollout(record)

    async def phase_by_run_id(self, run_id: int) -> tuple[str, Phase] | None:
        found = await self._repository.find_state_by_run_id(run_id)
        return None if found is None else (found[0], Phase(found[1]))

    async def by_tag(self, tag: str) -> list[Rollout]:
        return [_rollout(record) for record in await self._repository.list_by_tag(tag)]

    async def active_on_track(self, track: str) -> Rollout | None:
        """The rollout holding this track, if any (a track is free once it has ended)."""
        record = await self._repository.find_active_by_track(track)
        return None if record is None else _rollout(record)

    async def _in_progress(self, busy: TrackBusy) -> RolloutInProgress:
        active = (
            await self._repository.get(busy.active_rollout_id) if busy.active_rollout_id else None
        )
        what = f"`{active.tag}` ({active.id}) is" if active else "Another rollout is"
        return RolloutInProgress(
            f"{what} already rolling out on the {busy.track} track, and a track runs one "
            "rollout at a time: it has to end (or be rolled back) before another starts.",
            track=busy.track,
            active_rollout_id=busy.active_rollout_id,
        )


# -- domain -> storage -------------------------------------------------------------------------


def _new_track(track: Track, plan_track: PlanTrack) -> NewTrack:
    return NewTrack(
        name=track.name,
        state=track.state.value,
        current_stage=_current_stage(track),
        stages=tuple(
            NewStage(
                key=stage.key,
                environment=plan_track.stage(stage.key).environment,
                state=stage.state.value,
            )
            for stage in track.stages
        ),
    )


def _current_stage(track: Track) -> str | None:
    current = track.current
    return None if current is None else current.key


def _record(rollout: Rollout, stored: RolloutRecord) -> RolloutRecord:
    """The stored record with everything the domain decides replaced by the rollout's values."""
    return replace(
        stored,
        state=rollout.phase.value,
        version=rollout.version,
        message_ts=rollout.message_ts,
        run_id=rollout.run_id,
        run_url=rollout.run_url,
        ended_at=rollout.ended_at,
        context=context_of(rollout),
        tracks=tuple(
            _track_record(track, stored.track(track.name), rollout.ended_at)
            for track in rollout.tracks
        ),
    )


def _track_record(
    track: Track, stored: TrackRecord, rollout_ended_at: datetime | None
) -> TrackRecord:
    return replace(
        stored,
        state=track.state.value,
        current_stage=_current_stage(track),
        ending=None if track.ending is None else track.ending.value,
        ended_reason=_kept(
            stored.ended_reason, track.ended_reason, codec.reason_from_json, codec.reason_to_json
        ),
        # Storage keeps no open track in an ended rollout.
        ended_at=track.ended_at or rollout_ended_at,
        stages=tuple(_stage_record(stage, stored.stage(stage.key)) for stage in track.stages),
    )


def _stage_record(stage: Stage, stored: StageRecord) -> StageRecord:
    verdict = stage.verdict
    return replace(
        stored,
        state=stage.state.value,
        window_started_at=stage.window_started_at,
        window_ends_at=stage.window_ends_at,
        extensions=stage.extensions,
        observed_from=stage.observed_from,
        cleared_at=stage.cleared_at,
        verdict=None if verdict is None else verdict.verdict.value,
        verdict_detail=_kept(
            stored.verdict_detail, verdict, codec.verdict_from_json, codec.verdict_to_json
        ),
    )


def _kept(
    stored: S | None, value: V | None, read: Callable[[S], V], write: Callable[[V], S]
) -> S | None:
    """`value` as stored: the stored form itself while it still reads as `value`, else written
    anew. A newer version's replica (a rolling upgrade) may have stored what this one reads only
    in part (a stop's kind read as legacy, a gate's reason unsaid): saving the rollout for
    another change must not write that back in this version's poorer words."""
    if value is None:
        return None
    if stored is not None and read(stored) == value:
        return stored
    return write(value)


# -- storage -> domain -------------------------------------------------------------------------


def _rollout(record: RolloutRecord) -> Rollout:
    if record.context is None:
        raise ValueError(f"rollout {record.id} was stored without its context")
    return from_row(
        Rollout,
        record,
        phase=Phase(record.state),
        tracks=tuple(_track(track) for track in record.tracks),
        **from_context(record.context),
    )


def _track(record: TrackRecord) -> Track:
    return from_row(
        Track,
        record,
        state=TrackState(record.state),
        stages=tuple(_stage(stage) for stage in record.stages),
        ending=None if record.ending is None else TrackState(record.ending),
        ended_reason=(
            None if record.ended_reason is None else codec.reason_from_json(record.ended_reason)
        ),
    )


def _stage(record: StageRecord) -> Stage:
    detail = record.verdict_detail
    return from_row(
        Stage,
        record,
        state=StageState(record.state),
        verdict=None if detail is None else codec.verdict_from_json(detail),
    )


def _stored_plan(data: object) -> RolloutPlan:
    """The plan a rollout started with, as saved: rules added to plan files since (rates are
    fractions) do not lock a rollout under way out of its card or its Roll back."""
    return RolloutPlan.model_validate(data, context=STORED_PLAN)
