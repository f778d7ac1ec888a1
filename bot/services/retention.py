"""Forgetting what is no longer needed: old action claims, webhook deliveries and protection
rules' requests (the audit trail stays)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.services.store_ports import Claims, Deliveries, ProtectionRuleRequests

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    """How long action claims, webhook deliveries and protection rules' requests are kept."""

    claims: Claims
    deliveries: Deliveries
    keep: timedelta = timedelta(days=30)
    rules: ProtectionRuleRequests | None = None

    async def prune(self, *, now: datetime) -> None:
        """Forget what is older than `keep` (deleting twice is harmless; a request still
        waiting is found again from its deployment)."""
        before = now - self.keep
        claims = await self.claims.prune(before=before)
        deliveries = await self.deliveries.prune(before=before)
        requests = await self.rules.prune(before=before) if self.rules is not None else 0
        if claims or deliveries or requests:
            log.info(
                "retention: forgot %d action claims, %d webhook deliveries and %d protection "
                "rule requests before %s",
                claims,
                deliveries,
                requests,
                before,
            )
