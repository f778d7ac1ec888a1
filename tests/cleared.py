"""A rollout to build test scenes on: `v1.4.2` in the release channel, its preflight all clear;
and one stored as ended, for the history a scene needs (`ended_rollout`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from bot.domain.plan import RolloutPlan
from bot.domain.rollout import (
    Check,
    CheckState,
    Phase,
    Preflight,
    Rollout,
    TrackState,
    new_rollout,
)
from bot.services.store_ports import Rollouts
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


async def ended_rollout(
    store: Rollouts,
    plan: RolloutPlan,
    *,
    tag: str,
    rollout_id: str,
    at: datetime,
    ends: tuple[TrackState, ...],
    started_by: str = "U0MANAGER",
) -> Rollout:
    """A rollout of `tag` stored as started and ended `at`, its tracks in the states `ends`
    (in the plan's order): history written directly, without running it."""
    created = await store.create(
        rollout=cleared_rollout(
            plan, now=at, rollout_id=rollout_id, tag=tag, started_by=started_by
        ),
        plan=plan,
    )
    tracks = tuple(
        replace(track, state=state, ended_at=at)
        for track, state in zip(created.tracks, ends, strict=True)
    )
    return await store.save(replace(created, phase=Phase.ENDED, ended_at=at, tracks=tracks))
