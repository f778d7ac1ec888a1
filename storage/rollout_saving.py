"""Writing a changed rollout in the save's transaction (`storage.rollout_repository`): the
version check that takes the row's lock first, then only the rows whose fields changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import RolloutNotFound, StaleRollout
from storage.models import RolloutRow, RolloutTrackRow, StageRow
from storage.rollout_records import RolloutRecord, TrackRecord


async def bump_version(
    session: AsyncSession,
    rollout_id: str,
    expected_version: int,
    now: datetime,
    values: Mapping[str, Any],
    scope: Sequence[ColumnElement[bool]],
) -> None:
    """Update the rollout row (of the service `scope` names) only if it is still at
    `expected_version`.

    Written first in the transaction on purpose: it takes the row's write lock (PostgreSQL)
    or the database's (SQLite) before anything is read, so the rest of the save sees the
    version it checked.
    """
    bumped = await session.scalar(
        update(RolloutRow)
        .where(RolloutRow.id == rollout_id, RolloutRow.version == expected_version, *scope)
        .values(**values, updated_at=now, version=RolloutRow.version + 1)
        .returning(RolloutRow.version)
    )
    if bumped is not None:
        return
    actual = await session.scalar(
        select(RolloutRow.version).where(RolloutRow.id == rollout_id, *scope)
    )
    if actual is None:
        raise RolloutNotFound(rollout_id)
    raise StaleRollout(rollout_id, expected_version, actual)


async def save_changes(
    session: AsyncSession, stored: RolloutRecord, wanted: RolloutRecord, now: datetime
) -> None:
    """Write what differs between the `stored` rollout (read after `bump_version`) and the
    `wanted` one: its row's fields, then each track's and each stage's."""
    if wanted.ended_at is not None and any(t.is_open for t in wanted.tracks):
        raise ValueError(f"rollout {wanted.id} ends with open tracks")
    if {t.name for t in stored.tracks} != {t.name for t in wanted.tracks}:
        raise ValueError(f"rollout {wanted.id}: tracks cannot be added or removed")
    fields = {
        "state": wanted.state,
        # Set by the card's post (`set_message_ts`: the first, or one replacing a deleted
        # card), which a stale copy must not undo.
        "message_ts": stored.message_ts if stored.message_ts is not None else wanted.message_ts,
        "run_id": wanted.run_id,
        "run_url": wanted.run_url,
        "ended_at": wanted.ended_at,
        "context": wanted.context,
    }
    if any(getattr(stored, name) != value for name, value in fields.items()):
        await session.execute(update(RolloutRow).where(RolloutRow.id == wanted.id).values(**fields))
    for track in wanted.tracks:
        await _save_track(session, wanted.id, stored.track(track.name), track, now)


async def _save_track(
    session: AsyncSession,
    rollout_id: str,
    stored: TrackRecord,
    wanted: TrackRecord,
    now: datetime,
) -> None:
    track_fields = {
        "state": wanted.state,
        "current_stage": wanted.current_stage,
        "ending": wanted.ending,
        "ended_reason": wanted.ended_reason,
        "ended_at": wanted.ended_at,
    }
    if any(getattr(stored, name) != value for name, value in track_fields.items()):
        await session.execute(
            update(RolloutTrackRow)
            .where(RolloutTrackRow.rollout_id == rollout_id, RolloutTrackRow.track == wanted.name)
            .values(**track_fields)
        )
    if {s.key for s in stored.stages} != {s.key for s in wanted.stages}:
        raise ValueError(f"rollout {rollout_id}: stages of {wanted.name} cannot change")
    for stage in wanted.stages:
        stage_fields = {
            "state": stage.state,
            "window_started_at": stage.window_started_at,
            "window_ends_at": stage.window_ends_at,
            "extensions": stage.extensions,
            "observed_from": stage.observed_from,
            "cleared_at": stage.cleared_at,
            "verdict": stage.verdict,
            "verdict_detail": stage.verdict_detail,
        }
        current = stored.stage(stage.key)
        if all(getattr(current, name) == value for name, value in stage_fields.items()):
            continue
        await session.execute(
            update(StageRow)
            .where(
                StageRow.rollout_id == rollout_id,
                StageRow.track == wanted.name,
                StageRow.key == stage.key,
            )
            .values(**stage_fields, updated_at=now)
        )
