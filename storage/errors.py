"""Errors the storage layer raises for conditions a caller is expected to handle."""

from __future__ import annotations


class StorageError(Exception):
    """Base of the storage errors."""


class RolloutNotFound(StorageError):
    """No rollout has this id."""

    def __init__(self, rollout_id: str) -> None:
        super().__init__(f"no rollout {rollout_id}")
        self.rollout_id = rollout_id


class StaleRollout(StorageError):
    """Someone else changed the rollout since it was read: reload it and decide again."""

    def __init__(self, rollout_id: str, expected_version: int, actual_version: int) -> None:
        super().__init__(
            f"rollout {rollout_id} is at version {actual_version}, not {expected_version}"
        )
        self.rollout_id = rollout_id
        self.expected_version = expected_version
        self.actual_version = actual_version


class TrackBusy(StorageError):
    """A track already has an open rollout; at most one runs per track."""

    def __init__(self, track: str, active_rollout_id: str | None) -> None:
        super().__init__(f"track {track} already has an open rollout ({active_rollout_id})")
        self.track = track
        self.active_rollout_id = active_rollout_id
