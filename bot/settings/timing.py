"""The timing settings: how often the bot looks at GitHub and how long it waits for it, how
long replicas hold their work, how long records are kept, how long a shutdown may take."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from bot.domain.rollout import DISPATCH_SEARCH, UNREAD_AFTER


class TimingSettings(BaseModel):
    """Every one has a default (README, Configuration, lists them)."""

    github_poll_interval: float = Field(default=15.0, gt=0, le=3600)
    """Seconds between two looks at each running rollout's run on GitHub."""
    timer_max_attempts: int = Field(default=8, ge=1, le=100)
    """Tries of a window's end before its timer is dead-lettered and the stage held."""
    dispatch_search_seconds: float = Field(default=DISPATCH_SEARCH.total_seconds(), ge=10, le=86400)
    """How long the bot looks for the run of a dispatch GitHub answered unclearly before it
    gives up and a person may dispatch again."""
    github_unreadable_seconds: float = Field(default=UNREAD_AFTER.total_seconds(), ge=0, le=86400)
    """How long GitHub may fail every read of a followed run before its thread is told."""
    unfollowed_run_timeout: float = Field(default=1800.0, ge=60, le=86400 * 7)
    """Seconds a protection-rule request of a run no rollout follows waits for Adopt or
    Reject before UNFOLLOWED_RUN_DEFAULT answers it (docs/protection-rules.md)."""
    unfollowed_run_default: Literal["reject", "approve"] = "reject"
    """What answers such a run nobody adopted or rejected in time."""
    lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    """How long a replica holds a window timer or an outbox message it works on (renewed
    while the work runs); a dead replica's work is taken over once its lease runs out."""
    claim_lease_seconds: float = Field(default=300.0, ge=1, le=86400)
    """How long a person's action claim is held before a dead replica's claim is taken
    over (not renewed: longer than the slowest action)."""
    retention_days: int = Field(default=30, ge=1, le=3650)
    """Days action claims and webhook deliveries are kept (the audit trail stays)."""
    shutdown_grace_seconds: float = Field(default=30.0, ge=0, le=600)
    """On SIGTERM, how long `serve` waits for the timer in hand and the requests in flight
    before it exits (keep it under the orchestrator's kill timeout)."""
    # GitHub's API: seconds to wait for an answer, and how often a read is tried again
    # (with backoff and jitter, base GITHUB_RETRY_BACKOFF seconds); writes never are.
    github_timeout: int = Field(default=15, ge=1, le=300)
    github_retries: int = Field(default=4, ge=0, le=10)
    github_retry_backoff: float = Field(default=0.5, ge=0, le=60)
    github_dispatch_look_interval: float = Field(default=1.0, gt=0, le=60)
    """Seconds between the ten looks for the run a dispatch started, right after it (GitHub
    lists a new run only after a moment)."""
