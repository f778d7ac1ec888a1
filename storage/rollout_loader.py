"""Rollouts read from the database with their tracks and stages, each in one statement, as
frozen records (`storage.rollout_repository` reads and saves through it).

A read is the bot's most frequent statement (every delivery, window end and outbox message
reads its rollout), so it is a Core `select` of the columns the records hold, built once:
no ORM entities to load, and each rollout's JSON (its plan, its context), which the join
repeats on every stage's row, is decoded once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, bindparam, cast, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import RolloutRow, RolloutTrackRow, StageRow
from storage.rollout_records import RolloutRecord, StageRecord, TrackRecord

_ROLLOUT = (
    RolloutRow.id,
    RolloutRow.tag,
    RolloutRow.channel_id,
    RolloutRow.started_by,
    RolloutRow.state,
    # As text, decoded here once per rollout rather than once per joined row by the driver.
    cast(RolloutRow.plan, Text),
    RolloutRow.created_at,
    RolloutRow.updated_at,
    RolloutRow.version,
    RolloutRow.message_ts,
    RolloutRow.run_id,
    RolloutRow.run_url,
    RolloutRow.ended_at,
    cast(RolloutRow.context, Text),
    RolloutRow.service,
)
_TRACK = (
    RolloutTrackRow.track,
    RolloutTrackRow.position,
    RolloutTrackRow.state,
    RolloutTrackRow.current_stage,
    RolloutTrackRow.ending,
    RolloutTrackRow.ended_reason,
    RolloutTrackRow.ended_at,
)
_STAGE = (
    StageRow.key,
    StageRow.position,
    StageRow.environment,
    StageRow.state,
    StageRow.updated_at,
    StageRow.window_started_at,
    StageRow.window_ends_at,
    StageRow.extensions,
    StageRow.observed_from,
    StageRow.cleared_at,
    StageRow.verdict,
    StageRow.verdict_detail,
)
_TRACK_AT = len(_ROLLOUT)
_STAGE_AT = _TRACK_AT + len(_TRACK)

_JOINED = (
    select(*_ROLLOUT, *_TRACK, *_STAGE)
    .outerjoin(RolloutTrackRow, RolloutTrackRow.rollout_id == RolloutRow.id)
    .outerjoin(
        StageRow,
        (StageRow.rollout_id == RolloutTrackRow.rollout_id)
        & (StageRow.track == RolloutTrackRow.track),
    )
)
_IN_ORDER = (RolloutTrackRow.position, StageRow.position)
_BY_ID = _JOINED.where(RolloutRow.id == bindparam("rollout_id")).order_by(*_IN_ORDER)
_BY_ID_OF_SERVICE = _JOINED.where(
    RolloutRow.id == bindparam("rollout_id"), RolloutRow.service == bindparam("service")
).order_by(*_IN_ORDER)
"""The same statement object at every read: SQLAlchemy then neither adapts its cached
compilation's result columns to a new statement's nor builds the statement again."""


async def load_by_id(
    session: AsyncSession, rollout_id: str, *, service: str | None = None
) -> RolloutRecord | None:
    """The rollout `rollout_id` (of `service`, when given)."""
    connection = await session.connection()
    if service is None:
        rows = await connection.execute(_BY_ID, {"rollout_id": rollout_id})
    else:
        rows = await connection.execute(
            _BY_ID_OF_SERVICE, {"rollout_id": rollout_id, "service": service}
        )
    found = _assemble(rows)
    return found[0] if found else None


async def load_one(
    session: AsyncSession, *criteria: ColumnElement[bool], newest: bool = False
) -> RolloutRecord | None:
    """The oldest rollout that meets `criteria` (the newest with `newest`)."""
    found = await load(session, select(RolloutRow.id).where(*criteria), newest_first=newest)
    return found[0] if found else None


async def load_state(
    session: AsyncSession, *criteria: ColumnElement[bool], newest: bool = False
) -> tuple[str, str] | None:
    """The id and state of the rollout `load_one` would read, alone."""
    order = (
        (RolloutRow.created_at.desc(), RolloutRow.id.desc())
        if newest
        else (RolloutRow.created_at, RolloutRow.id)
    )
    found = await session.execute(
        select(RolloutRow.id, RolloutRow.state).where(*criteria).order_by(*order).limit(1)
    )
    row = found.first()
    return None if row is None else (row.id, row.state)


async def load_plan(session: AsyncSession, *criteria: ColumnElement[bool]) -> dict[str, Any] | None:
    """The plan of the rollout `load_one` would read, alone."""
    plan: dict[str, Any] | None = await session.scalar(select(RolloutRow.plan).where(*criteria))
    return plan


async def load(
    session: AsyncSession, ids: Select[Any], *, newest_first: bool
) -> list[RolloutRecord]:
    """Rollouts whose id is in the `ids` query, with tracks and stages, in one statement.

    One statement reads one snapshot, so a rollout never comes back half-updated.
    """
    created = RolloutRow.created_at.desc() if newest_first else RolloutRow.created_at.asc()
    tie_break = RolloutRow.id.desc() if newest_first else RolloutRow.id.asc()
    connection = await session.connection()
    rows = await connection.execute(
        _JOINED.where(RolloutRow.id.in_(ids.scalar_subquery())).order_by(
            created, tie_break, *_IN_ORDER
        )
    )
    return _assemble(rows)


def _assemble(rows: Iterable[Sequence[Any]]) -> list[RolloutRecord]:
    rollouts: dict[str, Sequence[Any]] = {}
    tracks: dict[str, dict[str, Sequence[Any]]] = {}
    stages: dict[tuple[str, str], list[StageRecord]] = {}
    for row in rows:
        rollout_id = row[0]
        rollouts.setdefault(rollout_id, row)
        lanes = tracks.setdefault(rollout_id, {})
        track = row[_TRACK_AT]
        if track is None:
            continue
        lanes.setdefault(track, row)
        if row[_STAGE_AT] is not None:
            stages.setdefault((rollout_id, track), []).append(_stage(track, row[_STAGE_AT:]))
    return [
        _rollout(
            row,
            tuple(
                _track(lane[_TRACK_AT:_STAGE_AT], tuple(stages.get((rollout_id, name), ())))
                for name, lane in tracks[rollout_id].items()
            ),
        )
        for rollout_id, row in rollouts.items()
    ]


def _rollout(row: Sequence[Any], tracks: tuple[TrackRecord, ...]) -> RolloutRecord:
    (id_, tag, channel_id, started_by, state, plan, created_at, updated_at, version) = row[:9]
    (message_ts, run_id, run_url, ended_at, context, service) = row[9:_TRACK_AT]
    return RolloutRecord(
        id=id_,
        tag=tag,
        channel_id=channel_id,
        started_by=started_by,
        state=state,
        plan=json.loads(plan),
        created_at=created_at,
        updated_at=updated_at,
        version=version,
        message_ts=message_ts,
        run_id=run_id,
        run_url=run_url,
        ended_at=ended_at,
        context=None if context is None else json.loads(context),
        tracks=tracks,
        service=service,
    )


def _track(columns: Sequence[Any], stages: tuple[StageRecord, ...]) -> TrackRecord:
    name, position, state, current_stage, ending, ended_reason, ended_at = columns
    return TrackRecord(
        name=name,
        position=position,
        state=state,
        current_stage=current_stage,
        ending=ending,
        ended_reason=ended_reason,
        ended_at=ended_at,
        stages=stages,
    )


def _stage(track: str, columns: Sequence[Any]) -> StageRecord:
    (
        key,
        position,
        environment,
        state,
        updated_at,
        started,
        ends,
        extensions,
        observed_from,
        cleared_at,
        verdict,
        detail,
    ) = columns
    return StageRecord(
        track=track,
        key=key,
        position=position,
        environment=environment,
        state=state,
        updated_at=updated_at,
        window_started_at=started,
        window_ends_at=ends,
        extensions=extensions,
        observed_from=observed_from,
        cleared_at=cleared_at,
        verdict=verdict,
        verdict_detail=detail,
    )
