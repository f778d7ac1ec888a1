"""Rollouts read from the database with their tracks and stages, each in one statement, as
frozen records (`storage.rollout_repository` reads and saves through it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import from_row
from storage.models import RolloutRow, RolloutTrackRow, StageRow
from storage.rollout_records import RolloutRecord, StageRecord, TrackRecord


async def load_one(session: AsyncSession, *criteria: ColumnElement[bool]) -> RolloutRecord | None:
    found = await load(session, select(RolloutRow.id).where(*criteria), newest_first=False)
    return found[0] if found else None


async def load(
    session: AsyncSession, ids: Select[Any], *, newest_first: bool
) -> list[RolloutRecord]:
    """Rollouts whose id is in the `ids` query, with tracks and stages, in one statement.

    One statement reads one snapshot, so a rollout never comes back half-updated;
    `populate_existing` because a save reloads rows its session already holds.
    """
    created = RolloutRow.created_at.desc() if newest_first else RolloutRow.created_at.asc()
    tie_break = RolloutRow.id.desc() if newest_first else RolloutRow.id.asc()
    rows = await session.execute(
        select(RolloutRow, RolloutTrackRow, StageRow)
        .outerjoin(RolloutTrackRow, RolloutTrackRow.rollout_id == RolloutRow.id)
        .outerjoin(
            StageRow,
            (StageRow.rollout_id == RolloutTrackRow.rollout_id)
            & (StageRow.track == RolloutTrackRow.track),
        )
        .where(RolloutRow.id.in_(ids.scalar_subquery()))
        .order_by(created, tie_break, RolloutTrackRow.position, StageRow.position)
        .execution_options(populate_existing=True)
    )
    return _assemble(rows)


def _assemble(
    rows: Iterable[tuple[RolloutRow, RolloutTrackRow | None, StageRow | None]],
) -> list[RolloutRecord]:
    rollouts: dict[str, RolloutRow] = {}
    tracks: dict[str, dict[str, RolloutTrackRow]] = {}
    stages: dict[tuple[str, str], list[StageRecord]] = {}
    for rollout, track, stage in rows:
        rollouts.setdefault(rollout.id, rollout)
        lanes = tracks.setdefault(rollout.id, {})
        if track is not None:
            lanes.setdefault(track.track, track)
        if stage is not None:
            stages.setdefault((stage.rollout_id, stage.track), []).append(_stage_record(stage))
    return [
        from_row(
            RolloutRecord,
            row,
            tracks=tuple(
                from_row(
                    TrackRecord,
                    track,
                    name=track.track,
                    stages=tuple(stages.get((row.id, track.track), ())),
                )
                for track in tracks[row.id].values()
            ),
        )
        for row in rollouts.values()
    ]


def _stage_record(row: StageRow) -> StageRecord:
    return from_row(StageRecord, row)
