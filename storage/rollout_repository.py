"""Rollouts with their tracks and stages in the database, as frozen records.

Each method is one transaction. The save checks the version the rollout was read at, so two
replicas acting on the same rollout cannot both win; at most one open rollout of a service
holds a track. A repository of one service (`service`) reads and writes that service's
rollouts only; without one, every service's.

Reading a rollout with its tracks and stages is `storage.rollout_loader`'s; writing the rows
a save changed, `storage.rollout_saving`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.rollout_summary import DONE, REDEPLOY
from bot.domain.service import DEFAULT_SERVICE
from bot.services.records import NewAuditEvent, NewMessage, NewTimer, new_rollout_id
from storage.audit_log import audit_row
from storage.db import ServiceStore
from storage.errors import RolloutNotFound, TrackBusy
from storage.models import AuditEventRow, RolloutRow, RolloutTrackRow, StageRow
from storage.outbox import enqueue
from storage.rollout_loader import load, load_by_id, load_one, load_plan, load_state
from storage.rollout_records import NewTrack, RolloutChange, RolloutRecord, TrackRecord
from storage.rollout_saving import bump_version, save_changes
from storage.timers import new_timer_insert


class RolloutRepository(ServiceStore):
    """Stores rollouts; at most one open rollout per track of a service, enforced by the
    database."""

    service_column = RolloutRow.service

    async def create(
        self,
        *,
        tag: str,
        channel_id: str,
        started_by: str,
        state: str,
        plan: Mapping[str, Any],
        tracks: Sequence[NewTrack],
        now: datetime,
        rollout_id: str | None = None,
        message_ts: str | None = None,
        context: Mapping[str, Any] | None = None,
        run: tuple[int, str | None] | None = None,
        outbox: Sequence[NewMessage] = (),
        timers: Sequence[NewTimer] = (),
        service: str | None = None,
    ) -> RolloutRecord:
        """Store a new rollout of `service` (default: the repository's, else the default
        service) with its tracks and stages (and the messages that tell of it, and its
        timers) in one transaction; `run`: the run (id, url) it follows already (an adopted
        run).

        Raises TrackBusy when one of its tracks already has an open rollout of that service
        (also when another replica opened it a moment ago).
        """
        service = self._service_of(service)
        rollout_id = rollout_id or new_rollout_id()
        try:
            async with self._sessions.begin() as session:
                await session.execute(
                    insert(RolloutRow).values(
                        id=rollout_id,
                        service=service,
                        tag=tag,
                        channel_id=channel_id,
                        message_ts=message_ts,
                        started_by=started_by,
                        state=state,
                        plan=dict(plan),
                        context=dict(context) if context is not None else None,
                        run_id=run[0] if run is not None else None,
                        run_url=run[1] if run is not None else None,
                        created_at=now,
                        updated_at=now,
                        version=1,
                    )
                )
                if tracks:
                    await session.execute(
                        insert(RolloutTrackRow),
                        [
                            {
                                "rollout_id": rollout_id,
                                "track": track.name,
                                "service": service,
                                "position": position,
                                "state": track.state,
                                "current_stage": track.current_stage,
                            }
                            for position, track in enumerate(tracks)
                        ],
                    )
                stage_rows = [
                    {
                        "rollout_id": rollout_id,
                        "track": track.name,
                        "key": stage.key,
                        "position": position,
                        "state": stage.state,
                        "environment": stage.environment,
                        "extensions": 0,
                        "updated_at": now,
                    }
                    for track in tracks
                    for position, stage in enumerate(track.stages)
                ]
                if stage_rows:
                    await session.execute(insert(StageRow), stage_rows)
                await enqueue(session, outbox, now=now)
                await _write_timers(session, timers, service, rollout_id, now)
                created = await load_by_id(session, rollout_id)
        except IntegrityError as error:
            raise await _busy(error, tracks, self._active_on_track, service) from None
        assert created is not None
        return created

    def _service_of(self, service: str | None) -> str:
        """The service a new rollout is written for: the one asked, which must be the
        repository's when it has one."""
        return self._written_for(service, "a rollout") or DEFAULT_SERVICE

    async def get(self, rollout_id: str) -> RolloutRecord | None:
        async with self._sessions() as session:
            return await load_by_id(session, rollout_id, service=self._service)

    async def find_active_by_track(self, track: str) -> RolloutRecord | None:
        """The open rollout on this track, if any (without a service: the oldest of any)."""
        return await self._active_on_track(track, self._scope)

    async def _active_on_track(
        self, track: str, scope: Sequence[ColumnElement[bool]]
    ) -> RolloutRecord | None:
        open_on_track = select(RolloutTrackRow.rollout_id).where(
            RolloutTrackRow.track == track, RolloutTrackRow.ended_at.is_(None)
        )
        ids = select(RolloutRow.id).where(
            RolloutRow.id.in_(open_on_track), RolloutRow.ended_at.is_(None), *scope
        )
        async with self._sessions() as session:
            found = await load(session, ids, newest_first=False)
        return found[0] if found else None

    async def find_by_run_id(self, run_id: int) -> RolloutRecord | None:
        """The newest rollout driving this GitHub Actions run (an adopted re-run's), if any."""
        async with self._sessions() as session:
            return await load_one(session, RolloutRow.run_id == run_id, *self._scope, newest=True)

    async def find_state_by_run_id(self, run_id: int) -> tuple[str, str] | None:
        """The id and state of the rollout driving this run (the one `find_by_run_id` finds),
        without the rest of it: what a webhook's intake asks of every delivery."""
        async with self._sessions() as session:
            return await load_state(session, RolloutRow.run_id == run_id, *self._scope, newest=True)

    async def plan(self, rollout_id: str) -> dict[str, Any]:
        """The rollout's plan as stored, alone; raises RolloutNotFound for an unknown id."""
        async with self._sessions() as session:
            plan = await load_plan(session, RolloutRow.id == rollout_id, *self._scope)
        if plan is None:
            raise RolloutNotFound(rollout_id)
        return plan

    async def list_active(self) -> list[RolloutRecord]:
        """Rollouts that have not ended, oldest first."""
        ids = select(RolloutRow.id).where(RolloutRow.ended_at.is_(None), *self._scope)
        async with self._sessions() as session:
            return await load(session, ids, newest_first=False)

    async def list_recent(self, *, limit: int = 10) -> list[RolloutRecord]:
        """The latest rollouts, active or ended, newest first."""
        ids = (
            select(RolloutRow.id)
            .where(*self._scope)
            .order_by(RolloutRow.created_at.desc(), RolloutRow.id.desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            return await load(session, ids, newest_first=True)

    async def list_ended(self, *, start: datetime, end: datetime) -> list[RolloutRecord]:
        """The rollouts that ended in [start, end), newest first."""
        ids = select(RolloutRow.id).where(
            RolloutRow.ended_at >= start, RolloutRow.ended_at < end, *self._scope
        )
        async with self._sessions() as session:
            return await load(session, ids, newest_first=True)

    async def list_by_tag(self, tag: str) -> list[RolloutRecord]:
        """Every rollout of this tag, newest first."""
        ids = select(RolloutRow.id).where(RolloutRow.tag == tag, *self._scope)
        async with self._sessions() as session:
            return await load(session, ids, newest_first=True)

    async def find_last_released(self, *, before: datetime | None = None) -> RolloutRecord | None:
        """The newest ended rollout whose every track completed, and none was rolled back
        after it completed (the previous release redeployed over it): the release live; with
        `before`, the newest such that ended before then."""
        unfinished = select(RolloutTrackRow.rollout_id).where(RolloutTrackRow.state != "completed")
        # Correlated, so it reads each candidate's own events (their index leads with
        # rollout_id), not the whole audit trail.
        redeployed = select(AuditEventRow.id).where(
            AuditEventRow.rollout_id == RolloutRow.id,
            AuditEventRow.action == REDEPLOY,
            AuditEventRow.result.in_(DONE),
        )
        released: list[ColumnElement[bool]] = [
            RolloutRow.ended_at.is_not(None),
            RolloutRow.id.not_in(unfinished),
            ~redeployed.exists(),
        ]
        if before is not None:
            released.append(RolloutRow.ended_at < before)
        newest = select(RolloutRow.id).where(*released, *self._scope)
        latest = newest.order_by(RolloutRow.ended_at.desc(), RolloutRow.id.desc()).limit(1)
        async with self._sessions() as session:
            return await load_one(session, RolloutRow.id == latest.scalar_subquery())

    async def update_state(
        self,
        *,
        rollout_id: str,
        expected_version: int,
        state: str,
        now: datetime,
        ended: bool = False,
    ) -> RolloutRecord:
        """Set the rollout's state; `ended` also closes it and every track still open.

        Raises StaleRollout when the rollout is no longer at `expected_version`.
        """
        values: dict[str, Any] = {"state": state}
        if ended:
            values["ended_at"] = now
        async with self._sessions.begin() as session:
            await bump_version(session, rollout_id, expected_version, now, values, self._scope)
            if ended:
                await session.execute(
                    update(RolloutTrackRow)
                    .where(
                        RolloutTrackRow.rollout_id == rollout_id,
                        RolloutTrackRow.ended_at.is_(None),
                    )
                    .values(
                        ended_at=now,
                        ended_reason=func.coalesce(RolloutTrackRow.ended_reason, state),
                    )
                )
            updated = await load_by_id(session, rollout_id)
        assert updated is not None
        return updated

    async def set_message_ts(
        self, *, rollout_id: str, message_ts: str, replacing: str | None = None
    ) -> str:
        """Record the ts of the rollout's card once (its first post), or in place of
        `replacing` (a deleted card, posted again); returns the ts stored.

        No version bump: nothing the domain decides changes, and a save made from a copy read
        before keeps the ts (see `save`).
        """
        unset = RolloutRow.message_ts.is_(None)
        was = unset if replacing is None else or_(unset, RolloutRow.message_ts == replacing)
        async with self._sessions.begin() as session:
            await session.execute(
                update(RolloutRow)
                .where(RolloutRow.id == rollout_id, was, *self._scope)
                .values(message_ts=message_ts)
            )
            stored = await session.scalar(
                select(RolloutRow.message_ts).where(RolloutRow.id == rollout_id, *self._scope)
            )
        if stored is None:
            raise RolloutNotFound(rollout_id)
        return stored

    async def save(
        self,
        *,
        rollout: RolloutRecord | RolloutChange,
        now: datetime,
        outbox: Sequence[NewMessage] = (),
        audit: Sequence[NewAuditEvent] = (),
        timers: Sequence[NewTimer] = (),
    ) -> RolloutRecord:
        """Write every changed field of the rollout, its tracks and its stages at once, with
        the messages that tell of the change (`storage.outbox`), the audit events that record
        it (none is on record for a change that was not saved) and the `timers` it needs (once
        per key: none is written for a change that was not saved, nor the change without them).

        `rollout.version` is the version it was read at; raises StaleRollout when someone
        saved in between. A `RolloutChange` derives the record to write from the stored one,
        read in the same transaction once the version is checked (so nothing is read before).
        Tracks and stages must be the stored ones (none added or removed), and an ended
        rollout must have no open track (TrackBusy: one it opens again is another's since).
        """
        try:  # `opened`: its service, and the tracks it has open (before any write)
            async with self._sessions.begin() as session:
                await bump_version(session, rollout.id, rollout.version, now, {}, self._scope)
                stored = await load_by_id(session, rollout.id)
                assert stored is not None
                wanted = rollout.derive(stored) if isinstance(rollout, RolloutChange) else rollout
                opened = (stored.service, [t for t in wanted.tracks if t.is_open])
                await save_changes(session, stored, wanted, now)
                await enqueue(session, outbox, now=now)
                session.add_all([audit_row(event, service=stored.service) for event in audit])
                await _write_timers(session, timers, stored.service, rollout.id, now)
                saved = await load_by_id(session, rollout.id)
        except IntegrityError as error:
            raise await _busy(error, opened[1], self._active_on_track, opened[0]) from None
        assert saved is not None
        return saved


async def _write_timers(
    session: AsyncSession,
    timers: Sequence[NewTimer],
    service: str,
    rollout_id: str,
    now: datetime,
) -> None:
    """Write `timers` of the rollout `rollout_id` (of `service`), in the caller's transaction."""
    for timer in timers:
        await session.execute(
            new_timer_insert(session, timer, service=service, now=now, rollout_id=rollout_id)
        )


async def _busy(
    error: IntegrityError,
    tracks: Sequence[NewTrack] | Sequence[TrackRecord],
    active_on_track: Callable[
        [str, Sequence[ColumnElement[bool]]], Awaitable[RolloutRecord | None]
    ],
    service: str,
) -> Exception:
    """After a write the database refused (`error`): TrackBusy naming the open rollout of
    `service` that holds one of `tracks` (the open-track index), else `error` itself."""
    for track in tracks:
        active = await active_on_track(track.name, (RolloutRow.service == service,))
        if active is not None:
            return TrackBusy(track.name, active.id)
    return error
