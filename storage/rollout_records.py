"""Rollouts, their tracks and stages as stored: plain frozen records, never ORM rows.

Callers (and the mapping to the pure domain, `storage.rollout_store`) hold values that no
session can change under them. A rollout is changed by deriving a new record
(`dataclasses.replace`, `with_stage`, `with_track`) and saving it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from bot.domain.members import member, replaced
from bot.domain.service import DEFAULT_SERVICE


@dataclass(frozen=True, slots=True)
class StageRecord:
    """One stage as stored: its state, its observation window and its gate verdict."""

    track: str
    key: str
    position: int
    environment: str
    state: str
    updated_at: datetime
    window_started_at: datetime | None = None
    window_ends_at: datetime | None = None
    extensions: int = 0
    observed_from: datetime | None = None
    cleared_at: datetime | None = None
    verdict: str | None = None
    verdict_detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TrackRecord:
    """One track (lane) of a rollout and its stages in plan order."""

    name: str
    position: int
    state: str
    current_stage: str | None = None
    ending: str | None = None
    """While the track aborts: the state it ends in once its failure job is done."""
    ended_reason: str | None = None
    ended_at: datetime | None = None
    stages: tuple[StageRecord, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    def stage(self, key: str) -> StageRecord:
        return member(
            self.stages, key, by=lambda s: s.key, missing=f"track {self.name} has no stage {key}"
        )


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """A rollout as stored, with its tracks; `version` is the one it was read at."""

    id: str
    tag: str
    channel_id: str
    started_by: str
    state: str
    plan: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    version: int
    message_ts: str | None = None
    run_id: int | None = None
    run_url: str | None = None
    ended_at: datetime | None = None
    context: dict[str, Any] | None = None
    """What the caller keeps beyond the columns (preflight checks, dispatch time), as JSON."""
    tracks: tuple[TrackRecord, ...] = ()
    service: str = DEFAULT_SERVICE
    """The service released (`bot.domain.service`)."""

    @property
    def is_active(self) -> bool:
        return self.ended_at is None

    def track(self, name: str) -> TrackRecord:
        return member(
            self.tracks, name, by=lambda t: t.name, missing=f"rollout {self.id} has no track {name}"
        )

    def with_track(self, track: TrackRecord) -> RolloutRecord:
        """A copy with the track of the same name replaced."""
        self.track(track.name)
        return replace(self, tracks=replaced(self.tracks, track, by=lambda t: t.name))

    def with_stage(self, stage: StageRecord) -> RolloutRecord:
        """A copy with the stage of the same track and key replaced."""
        track = self.track(stage.track)
        track.stage(stage.key)
        return self.with_track(
            replace(track, stages=replaced(track.stages, stage, by=lambda s: s.key))
        )


@dataclass(frozen=True, slots=True)
class RolloutChange:
    """What a save writes, derived from the stored record it reads once the version is
    checked (`RolloutRepository.save`): the caller need not read the rollout first."""

    id: str
    version: int
    """The version the change was decided on."""
    derive: Callable[[RolloutRecord], RolloutRecord]


@dataclass(frozen=True, slots=True)
class NewStage:
    key: str
    environment: str
    state: str


@dataclass(frozen=True, slots=True)
class NewTrack:
    name: str
    state: str
    stages: Sequence[NewStage] = field(default_factory=tuple)
    current_stage: str | None = None
