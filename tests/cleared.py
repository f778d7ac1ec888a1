"""A rollout to build test scenes on: `v1.4.2` in the release channel, its preflight all clear."""

from __future__ import annotations

from datetime import datetime

from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Check, CheckState, Preflight, Rollout, new_rollout
from sandbox.config import RELEASE_CHANNEL

ALL_CLEAR = Preflight(
    flags=Check(CheckState.PASS),
    migrations=Check(CheckState.PASS),
    image=Check(CheckState.PASS),
)


def cleared_rollout(
    plan: RolloutPlan,
    *,
    now: datetime,
    preflight: Preflight = ALL_CLEAR,
    rollout_id: str = "r-1",
    tag: str = "v1.4.2",
    started_by: str = "U0MANAGER",
    channel_id: str = RELEASE_CHANNEL,
) -> Rollout:
    """A new rollout `r-1` of `v1.4.2` in the release channel, started at `now` by U0MANAGER,
    every check passed; a test names what its scene needs otherwise."""
    return new_rollout(
        rollout_id=rollout_id,
        tag=tag,
        channel_id=channel_id,
        started_by=started_by,
        plan=plan,
        preflight=preflight,
        now=now,
    )
