"""A followed run GitHub does not let the bot read: since when is remembered on the rollout, and
the thread is told once after a while (`bot.domain.rollout.unread`), saved with the rollout so
that replicas and restarts do not tell it again."""

from __future__ import annotations

from datetime import timedelta

from bot.domain import rollout as machine
from bot.domain.errors import GitHubError, GitHubRateLimited
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Phase, Rollout
from bot.services.effects import EffectRunner


async def unread(
    effects: EffectRunner,
    error: GitHubError,
    *,
    rollout_id: str,
    held: tuple[Rollout, RolloutPlan] | None,
    after: timedelta,
) -> int:
    """Remember that GitHub failed a read of the rollout's run with `error`, and tell the
    thread once the run has been unreadable for `after` (or a rate limit says it will be);
    the rollout's version after. `held`: the rollout and its plan as read under its lock
    (None: the lock is taken and the rollout read here)."""
    if held is not None:
        return await _unread_locked(effects, error, held, after=after)

    async def locked() -> int:
        return await _unread_locked(
            effects, error, await effects.with_plan(rollout_id), after=after
        )

    async with effects.lock(rollout_id):
        return await effects.serialised(rollout_id, locked)


async def _unread_locked(
    effects: EffectRunner,
    error: GitHubError,
    held: tuple[Rollout, RolloutPlan],
    *,
    after: timedelta,
) -> int:
    rollout, plan = held
    if rollout.phase is not Phase.RUNNING:
        return rollout.version
    now = effects.clock()
    wait = error.retry_after if isinstance(error, GitHubRateLimited) else None
    decision = machine.read_failed(
        rollout,
        now=now,
        cause=error.message,
        after=after,
        rate_limited=isinstance(error, GitHubRateLimited),
        until=None if wait is None else now + timedelta(seconds=wait),
    )
    return (await effects.apply(rollout, decision, plan)).version
