"""Re-runs the bot sent and never recorded, followed by the bot on its own.

A Re-run rollback click whose re-run went out to GitHub and was never recorded (a shutdown
interrupted it, or the save that follows the new attempt failed) leaves its claim unrecorded
(`bot.services.exactly_once`). Once that claim's lease has run out, every poll of a replica
looks (once per claim and replica) at its run on GitHub: a run at the next attempt, started by
the bot's own account, is that re-run, and the rollout follows it as the click after the lease
would (`FailureJobReruns.rerun` with the earlier claim: nothing is sent to GitHub). A run still
at the attempt the rollout follows is left to a click (it may ask GitHub then: the thread said
so); anything else (a person's re-run on GitHub, a rollout moved on) is left as it is.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from bot.domain import rollout as machine
from bot.domain.controls import Control, effect_attempt
from bot.domain.errors import RerunLaneTaken
from bot.domain.rollout import InvalidTransition, Phase
from bot.services.directory import ServiceDirectory
from bot.services.failures import log_failure
from bot.services.polling import Sweep
from bot.services.ports import Clock
from bot.services.records import Claim
from bot.services.rollouts import RolloutService
from bot.services.store_ports import Claims

log = logging.getLogger(__name__)


class LapsedReruns:
    """Follows the re-runs whose claims lapsed unrecorded, once GitHub shows them made."""

    def __init__(self, *, directory: ServiceDirectory, claims: Claims, clock: Clock) -> None:
        self._directory = directory
        self._claims = claims
        self._clock = clock
        self._looked: set[tuple[str, str]] = set()

    async def sweep(self, may_call: Callable[[str], bool]) -> None:
        """Look at each lapsed, unrecorded re-run claim not looked at yet on this replica."""
        before = self._clock() - self._claims.lease
        for claim in await self._claims.unrecorded(Control.RERUN_FAILURE_JOB.value, before):
            if (claim.key, claim.holder) in self._looked or claim.rollout_id is None:
                continue
            rollout = await self._directory.rollouts.get(claim.rollout_id)
            services = self._directory.named(rollout.service) if rollout is not None else None
            if services is None or not may_call(services.service.name):
                continue
            self._looked.add((claim.key, claim.holder))
            try:
                await self._follow(services.rollouts, claim)
            except Exception as error:  # the next claim still gets its look
                log_failure(log, f"the lapsed re-run {claim.key} was not followed", error)

    async def _follow(self, rollouts: RolloutService, claim: Claim) -> None:
        rollout, plan = await rollouts.effects.with_plan(claim.rollout_id or "")
        track, attempt = claim.track or "", effect_attempt(claim.key)
        if rollout.phase is not Phase.ENDED or rollout.attempt != attempt or not rollout.run_id:
            return
        if machine.rerun_refusal(rollout, plan, track=track) is not None:
            return
        snapshot = await rollouts.effects.read_run(rollout.run_id)
        if snapshot.attempt != attempt + 1 or not snapshot.by_the_bot:
            return  # not the bot's re-run: left to a click, which says why
        mine = await self._claims.claim(
            key=claim.key,
            action=claim.action,
            actor=claim.actor,
            now=self._clock(),
            rollout_id=claim.rollout_id,
            track=claim.track,
            replacing=claim,
        )
        if mine is None:  # a click took it over meanwhile
            return
        log.info("following the re-run %s the bot sent before (attempt %s)", claim.key, attempt + 1)
        # Told in the thread when the lane was taken meanwhile, never sent again, as after a
        # click; anything else leaves the claim unrecorded (it lapses again: a click looks too).
        with contextlib.suppress(RerunLaneTaken):
            await rollouts.rerun_failure_job(
                rollout_id=rollout.id,
                track=track,
                actor=claim.actor,
                earlier=claim,
                sending=_never,
            )
        await self._claims.complete(mine, now=self._clock())


async def _never() -> datetime | None:
    """The sweep sends nothing to GitHub: only a re-run GitHub made is followed."""
    raise InvalidTransition("Not re-run: the bot follows only the re-run GitHub made.")


def lapsed_reruns_sweep(
    directory: ServiceDirectory, claims: Claims, clock: Clock, then: Sweep | None
) -> Sweep:
    """The poller's sweep: the lapsed re-runs (`LapsedReruns`), then `then`'s."""
    lapsed = LapsedReruns(directory=directory, claims=claims, clock=clock)

    async def sweep(may_call: Callable[[str], bool]) -> None:
        try:
            await lapsed.sweep(may_call)
        finally:
            if then is not None:
                await then(may_call)

    return sweep
