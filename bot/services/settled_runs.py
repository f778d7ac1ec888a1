"""Runs of kept protection-rule requests that nothing will answer any more: one GitHub reads
completed, or one it answers 404 for while its repository reads (deleted). Their open requests
are closed as `gone`, so that no sweep of kept requests reads the run again."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.errors import GitHubError
from bot.domain.protection_rules import RuleRequest
from bot.services.ports import GitHubGateway
from bot.services.store_ports import ProtectionRuleRequests

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SettledRuns:
    """Closes the open requests of a run that is over (`UnfollowedRuns`' reads of a run)."""

    rules: ProtectionRuleRequests
    gone_after: timedelta
    """How long GitHub may answer 404 for a run since its request before it is taken as
    deleted (GitHub may not serve a run it has just told of yet)."""

    async def completed(self, run_id: int, read_at: datetime) -> bool:
        """The run has completed (cancelled, or its rollout ended before it did): nothing of
        it waits, so no card; its requests are closed, so no sweep hands them over again."""
        await self.rules.close_run(run_id=run_id, asked_by=read_at, at=read_at)
        log.info("run %s has completed: its requests are closed, no card", run_id)
        return True

    async def unread(
        self, github: GitHubGateway, request: RuleRequest, read_at: datetime, error: GitHubError
    ) -> bool:
        """GitHub did not tell the request's run at `read_at`: whether the run is settled.
        Only when GitHub answers 404 for it `gone_after` its request or later and `run_gone`
        says it is not there (not out of reach): the run was deleted, and its open requests
        are closed, said once in the log. Otherwise the run is read again at the next sweep."""
        run_id = request.run_id
        waited = read_at - request.requested_at
        if error.status != 404 or waited < self.gone_after or not await github.run_gone(run_id):
            log.warning("could not read run %s: %s", run_id, error.message)
            return False
        closed = await self.rules.close_run(run_id=run_id, asked_by=read_at, at=read_at)
        log.warning(
            "run %s is gone from GitHub (404 for it %.0f s after its request, while its "
            "repository reads: deleted): its %d open protection rule requests are closed, and "
            "it is not read again",
            run_id,
            waited.total_seconds(),
            closed,
        )
        return True
