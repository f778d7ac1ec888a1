"""The bot's reviews of a run's waiting environments (`EffectRunner.review`), and what the
thread is told when GitHub refuses an approval or a rejection the bot made on its own path.

A stage that promotes itself (a gate's PASS with `promote: auto`, a reconcile approving the
next stage) or a stopping track's failure job is saved as deploying, with its thread line
"Approved … deploying", before GitHub is asked (`EffectRunner.apply`). A failure GitHub may
clear by itself (a 5xx read back not applied, a rate limit, no answer) is asked again at the
next look, and told once GitHub has failed it for GITHUB_UNREADABLE_SECONDS (the rollback or
kill-switch job of a stopping track cannot start meanwhile). A refusal (a 4xx: the bot's
account may not review the environment, the environment's rule changed) is asked again too,
and told to the thread once while the job waits, in GitHub's words
(`bot.domain.rollout.refused`): the card then says GitHub holds it. So is a stopping track's
rejection GitHub refuses (saved, and told "Rejected …", before GitHub was asked): the stage
still waits there, and the rollback or kill-switch job cannot start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.domain import rollout as machine
from bot.domain.errors import ConcurrentChange, GitHubError
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Review, Rollout
from bot.services.ports import ReviewAhead, ReviewState
from bot.services.records import BOT

if TYPE_CHECKING:
    from bot.services.effects import EffectRunner

log = logging.getLogger(__name__)


async def send_review(
    effects: EffectRunner,
    rollout: Rollout,
    review: Review,
    *,
    strict: bool = False,
    ahead: ReviewAhead | None = None,
) -> bool:
    """Send a review (True: GitHub took it; False: nothing waited for it). Its failure is
    recorded and asked again by the next reconcile, or raised when `strict` (one waits).
    `ahead`: what it reads on GitHub before it posts, read before the rollout's lock."""
    assert rollout.run_id is not None
    state: ReviewState = "approved" if review.approve else "rejected"
    try:
        sent = await effects.github.review(
            run_id=rollout.run_id,
            environments=[review.environment],
            state=state,
            comment=review.comment,
            attempt=rollout.attempt,
            ahead=ahead,
        )
    except GitHubError as error:
        # Level-triggered: the next reconcile asks again while GitHub still waits.
        log.warning(
            "could not %s %s: %s",
            "approve" if review.approve else "reject",
            review.environment,
            error.message,
        )
        await effects.record(
            effects.event(
                BOT,
                f"github_{state}",
                "error",
                rollout,
                {"environment": review.environment, "error": error.message},
                track=review.track,
            )
        )
        if strict:
            raise
        return False
    await effects.record(
        effects.event(
            BOT,
            f"github_{state}",
            "ok" if sent else "not_waiting",
            rollout,
            {"environment": review.environment},
            track=review.track,
        )
    )
    return sent


async def refusal_of(
    effects: EffectRunner, rollout: Rollout, review: Review, ahead: ReviewAhead | None
) -> tuple[Review, GitHubError] | None:
    """Carry out a saved decision's review (`ahead`: see `send_review`): the review with
    GitHub's error when GitHub refused or failed it (None: taken, or not waiting)."""
    try:
        await send_review(effects, rollout, review, strict=True, ahead=ahead)
    except GitHubError as error:  # recorded, and asked again by the next reconcile
        return review, error
    return None


async def tell_refused(
    effects: EffectRunner,
    rollout: Rollout,
    plan: RolloutPlan,
    refused: Sequence[tuple[Review, GitHubError]],
) -> Rollout:
    """Tell the thread of each review GitHub refused (`refused`: the review and GitHub's
    error), once per environment while its job waits, and redraw the card; of one GitHub
    failed without refusing it, once it has failed it for `EffectRunner.unanswered_after`
    (its first failure saved). The rollout after. Another replica's save meanwhile leaves it
    to the next look, refused (failed) again."""
    for review, error in refused:
        if error.refused:
            decision = machine.approval_refused(rollout, plan, review, error.message)
        else:
            decision = machine.review_failed(
                rollout,
                plan,
                review,
                error.cause,
                now=effects.clock(),
                after=effects.unanswered_after,
            )
        if decision.rollout == rollout:
            continue
        try:
            rollout = await effects.apply(rollout, decision, plan)
        except ConcurrentChange:
            log.info("rollout %s changed on another replica; a refusal is told later", rollout.id)
            break
    return rollout
