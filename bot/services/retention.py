"""Forgetting what is no longer needed: old action claims, webhook deliveries, protection
rules' requests, the ended looks at npm Release runs and asks after an unconfirmed request's
installation, and the lane's holds of ended rollouts (the audit trail stays)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.npm import RELEASE_TIMER
from bot.domain.protection_rules import GITHUB_WAIT_LIMIT, UNCONFIRMED_TIMER
from bot.services.lane import LaneHolds
from bot.services.store_ports import Claims, Deliveries, ProtectionRuleRequests, Timers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    """How long action claims, webhook deliveries, protection rules' requests and the ended
    looks at npm Release runs (a timer each, `bot.services.npm_release`) and asks after an
    unconfirmed request's installation (`bot.services.unconfirmed_rules`) are kept; the
    overrides and roll-back passes of ended rollouts (`holds`, every service's) go at the
    first prune after their rollout ended."""

    claims: Claims
    deliveries: Deliveries
    keep: timedelta = timedelta(days=30)
    rules: ProtectionRuleRequests | None = None
    timers: Timers | None = None
    holds: LaneHolds | None = None

    async def prune(self, *, now: datetime) -> None:
        """Forget what is older than `keep` (deleting twice is harmless). A protection rule's
        request still open is kept until GitHub's own limit has passed too: GitHub may still
        hold its job, and the request is what its card, its answer and its dedup go by."""
        before = now - self.keep
        claims = await self.claims.prune(before=before)
        deliveries = await self.deliveries.prune(before=before)
        requests = (
            await self.rules.prune(before=before, open_before=now - GITHUB_WAIT_LIMIT)
            if self.rules is not None
            else 0
        )
        looks = (
            await self.timers.prune(kinds={RELEASE_TIMER, UNCONFIRMED_TIMER}, before=before)
            if self.timers is not None
            else 0
        )
        holds = await self.holds.forget_ended() if self.holds is not None else 0
        if claims or deliveries or requests or looks:
            log.info(
                "retention: forgot %d action claims, %d webhook deliveries, %d protection "
                "rule requests and %d ended looks and asks (timers) before %s",
                claims,
                deliveries,
                requests,
                looks,
                before,
            )
        if holds:
            log.info("retention: forgot %d lane holds of ended rollouts", holds)
