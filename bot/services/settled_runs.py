"""Runs of kept protection-rule requests that nothing will answer any more: one GitHub reads
completed, or one it answers 404 for while its repository reads (deleted). Their open requests
are closed as `gone`, so that no sweep of kept requests reads the run again. While the
repository itself does not read (out of the credentials' reach), one sweep reads it once
(`Reach`), however many of its runs' requests are kept. And where a run's tag is: before its
card is posted (`tag_of`), and again before the card's Adopt or `approve` default acts on it
(`moved_off`: the tag may have moved since)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from bot.domain.errors import GitHubError, InvalidCommand, TagTooDeep
from bot.domain.plan import RolloutPlan
from bot.domain.protection_rules import RuleRequest
from bot.domain.rollout import InvalidTransition, Rollout
from bot.domain.run_link import LinkableRun
from bot.domain.unfollowed_runs import (
    TagUnread,
    UnfollowedRun,
    approve_refusal,
    follows_run,
    moved_refusal,
    tag_moved,
    tag_named,
)
from bot.services.failures import log_failure
from bot.services.ports import GitHubGateway
from bot.services.store_ports import ProtectionRuleRequests, Rollouts

log = logging.getLogger(__name__)


@dataclass
class Reach:
    """What one sweep of kept requests found of the repository: out of reach once its own
    read failed, and then not read again in that sweep. A read that succeeded is not kept:
    each run's 404 is followed by a read of the repository of its own, so that access lost
    between the two is never taken for a deletion."""

    out_of_reach: bool = field(default=False)


async def sweep_each(
    requests: Sequence[RuleRequest],
    settle: Callable[[RuleRequest, Reach], Awaitable[bool]],
    swept: set[int],
) -> None:
    """One sweep of a service's kept requests: each whose run is not in `swept` is handed to
    `settle` (with the sweep's `Reach`), and its run joins `swept` once settled. One that fails
    (its run's statement, a GitHub call) is logged and tried again at the next poll: it holds
    up neither the requests after it nor the services swept after this one."""
    reach = Reach()
    for request in requests:
        if request.run_id in swept:
            continue
        try:
            if await settle(request, reach):
                swept.add(request.run_id)
        except Exception as error:
            said = f"the kept request of run {request.run_id} was not handed over; next poll"
            log_failure(log, said, error)


@dataclass(frozen=True)
class SettledRuns:
    """Closes the open requests of a run that is over (`UnfollowedRuns`' reads of a run)."""

    rules: ProtectionRuleRequests
    gone_after: timedelta
    """How long GitHub may answer 404 for a run since its request before it is taken as
    deleted (GitHub may not serve a run it has just told of yet)."""

    async def read(
        self, github: GitHubGateway, request: RuleRequest, at: datetime, reach: Reach
    ) -> LinkableRun | bool:
        """The request's run as GitHub tells it `at`, not completed; else whether the run is
        settled (`completed`, or `unread` and deleted) or is to be read again (False)."""
        try:
            run = await github.linkable_run(request.run_id)
        except GitHubError as error:
            return await self.unread(github, request, at, error, reach)
        if run.status == "completed":
            return await self.completed(request.run_id, at)
        return run

    async def completed(self, run_id: int, read_at: datetime) -> bool:
        """The run has completed (cancelled, or its rollout ended before it did): nothing of
        it waits, so no card; its requests are closed, so no sweep hands them over again."""
        await self.rules.close_run(run_id=run_id, asked_by=read_at, at=read_at)
        log.info("run %s has completed: its requests are closed, no card", run_id)
        return True

    async def unread(
        self,
        github: GitHubGateway,
        request: RuleRequest,
        read_at: datetime,
        error: GitHubError,
        reach: Reach,
    ) -> bool:
        """GitHub did not tell the request's run at `read_at`: whether the run is settled.
        Only when GitHub answers 404 for it `gone_after` its request or later and `run_gone`
        says it is not there (not out of reach): the run was deleted, and its open requests
        are closed, said once in the log. Otherwise the run is read again at the next sweep
        (and the repository not again in this one when it did not read: `reach`)."""
        run_id = request.run_id
        waited = read_at - request.requested_at
        gone = (
            error.status == 404
            and waited >= self.gone_after
            and not reach.out_of_reach
            and await github.run_gone(run_id)
        )
        if gone is None:
            reach.out_of_reach = True
        if not gone:
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


async def tag_of(
    github: GitHubGateway, run: LinkableRun, plan: RolloutPlan, *, ended: Rollout | None
) -> str | TagUnread | Literal[False] | None:
    """The commit GitHub says the release tag the run's ref names is at (`unfollowed_card`'s
    `tagged`: a branch, or a fork's, may bear a tag's name); None when the ref names no tag
    GitHub has, or the run is a re-run of an ended rollout's (its release is known); False
    when GitHub did not say (the run's card waits for the next sweep); `TagUnread` when GitHub
    answered with a tag the bot cannot follow to its commit (asking again reads the same: the
    card is posted at once, saying so)."""
    tag = tag_named(run, plan) if ended is None else ""
    if not tag:
        return None
    try:
        return await github.tag_commit(tag)
    except TagTooDeep as error:
        log.warning("run %s: tag %s cannot be followed: %s", run.run_id, tag, error.message)
        return TagUnread(error.message)
    except GitHubError as error:
        log.warning("run %s: tag %s not read, its card waits: %s", run.run_id, tag, error.message)
        return False


async def moved_off(github: GitHubGateway, card: UnfollowedRun) -> str:
    """Look before acting on a card's release: why its run is no longer at its tag's commit
    (the tag moved since the card was posted, `tag_moved`); "" when it still is, or when its
    release did not come from its ref (a re-run of an ended rollout's). A failed read raises."""
    if not card.tag or card.ended_rollout:
        return ""
    run = await github.linkable_run(card.run_id)
    return "" if await github.tag_commit(card.tag) == run.head_sha else tag_moved(card)


async def still_at_its_tag(github: GitHubGateway, card: UnfollowedRun) -> None:
    """Before Adopt: the card's run is still at its tag's commit (`moved_off`); refused, nothing
    changed, when the tag moved since the card was posted."""
    if moved := await moved_off(github, card):
        raise InvalidTransition(moved_refusal(card, moved))


async def approve_refused(github: GitHubGateway, plan: RolloutPlan, card: UnfollowedRun) -> str:
    """Why an `approve` default rejects the card's run: the plan's rule (`approve_refusal`),
    or its tag moved since the card was posted (`moved_off`); "" when neither holds."""
    return approve_refusal(plan, card) or await moved_off(github, card)


async def reject_rest(github: GitHubGateway, run_id: int, environments: list[str]) -> None:
    """Reject what else of the run `run_id` waits (`environments`): the run was rejected."""
    if environments:
        await github.review(
            run_id=run_id,
            environments=environments,
            state="rejected",
            comment=f"rollout-bot: run {run_id} was rejected; so is the rest of it",
        )


async def still_waiting(
    rollouts: Rollouts, rules: ProtectionRuleRequests, run_id: int
) -> list[str]:
    """The environments of the run `run_id` that wait for the App's answer; refused when none
    does, or when a rollout follows the run."""
    if follows_run(await rollouts.by_run_id(run_id)):
        raise InvalidCommand(f"Run {run_id} is followed by a rollout already.")
    waiting = [r.environment for r in await rules.open_for_run(run_id)]
    if not waiting:
        raise InvalidCommand(f"Run {run_id} no longer waits for the bot's answer.")
    return waiting
