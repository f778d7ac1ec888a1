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
from dataclasses import replace
from typing import TYPE_CHECKING

from bot.domain import rollout as machine
from bot.domain.errors import ConcurrentChange, GitHubError
from bot.domain.plan import RolloutPlan
from bot.domain.protection_rules import RuleRequest
from bot.domain.rollout import Announce, Review, Rollout
from bot.domain.rollout.events import ApprovalOvertaken, RejectionOvertaken
from bot.domain.run import RunSnapshot
from bot.services.outbox_messages import told
from bot.services.ports import ReviewAhead, ReviewState
from bot.services.records import BOT

if TYPE_CHECKING:
    from bot.services.effects import EffectRunner

log = logging.getLogger(__name__)

OVERTAKEN = "approval_overtaken"
"""The audit action of an ending told as a review (an approval, a stopped track's rejection) a
re-run overtook (`tell_overtaken`), and the action of the claim of that line told after
another replica's ending (`overtaken_key`)."""


def overtaken_key(rollout_id: str, attempt: int) -> str:
    """The claim that the rollout's thread was told its review a re-run (`attempt`)
    overtook, after another replica's look ended the rollout first: once, any replica."""
    return f"{OVERTAKEN}:{rollout_id}:{attempt}"


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
) -> tuple[Review, GitHubError] | Review | None:
    """Carry out a saved decision's review (`ahead`: see `send_review`): the review with
    GitHub's error when GitHub refused or failed it; the review alone when GitHub took it while
    the run was re-run (`overtaken`); None: taken, or not waiting."""
    try:
        sent = await send_review(effects, rollout, review, strict=True, ahead=ahead)
    except GitHubError as error:  # recorded, and asked again by the next reconcile
        return review, error
    return review if sent and await overtaken(effects, rollout) else None


async def overtaken(effects: EffectRunner, rollout: Rollout) -> bool:
    """Whether the run was re-run past the attempt the rollout follows, read back once GitHub
    took a review decided on it: the attempt was read just before it was sent, but GitHub's
    review names no attempt, and a re-run landing meanwhile takes it (an approval), or waits
    there again (a rejection that reached the attempt followed). Unread, the rollout's next
    look finds the re-run (told as one not followed)."""
    if rollout.run_id is None or rollout.attempt is None:
        return False
    try:
        latest = await effects.github.latest_attempt(rollout.run_id)
    except GitHubError as error:
        log.warning("run %s: its attempt not read back: %s", rollout.run_id, error.message)
        return False
    if latest <= rollout.attempt:
        return False
    log.warning(
        "run %s was re-run (attempt %s) while a review decided on attempt %s was sent: "
        "GitHub took it, and may have applied it to either",
        rollout.run_id,
        latest,
        rollout.attempt,
    )
    return True


async def tell_overtaken(
    effects: EffectRunner, rollout: Rollout, plan: RolloutPlan, review: Review
) -> Rollout:
    """End the rollout whose review `review` a re-run overtook (`overtaken`), its thread told
    so once: the ending is saved with it. A rejection's environment the re-run's job waits at
    is rejected there too first (`reject_again`). One another replica's look ended first (as a
    re-run not followed) is told it as well, unless that ending was this same one
    (`approval_overtaken` in the audit trail), once however many replicas read the re-run back
    (the line's claim). The rollout after."""
    assert rollout.run_id is not None
    try:
        snapshot = await effects.read_run(rollout.run_id)
    except GitHubError as error:
        log.warning("run %s not read after a re-run: %s", rollout.run_id, error.message)
        return rollout
    detail = {"environment": review.environment, "attempt": snapshot.attempt}
    audit = effects.event(BOT, OVERTAKEN, "ok", rollout, detail, track=review.track)
    waits = snapshot.is_waiting(review.environment)
    # An approval's only: what the App's rule holds may wait for another of its rules.
    untaken = review.approve and waits and not await on_rule(effects, rollout, review.environment)
    rejected = False
    if not review.approve and waits:  # a stopped track's: the stop stands on the re-run too
        rejected = await reject_again(effects, rollout, snapshot, review)
        snapshot = await read_again(effects, snapshot)

    def overtaken_on(before: Rollout) -> machine.Decision:
        return machine.review_overtaken(
            before, plan, snapshot, effects.clock(), review, untaken=untaken, rejected=rejected
        )

    said = [
        e.event
        for e in overtaken_on(rollout).effects
        if isinstance(e, Announce) and isinstance(e.event, ApprovalOvertaken | RejectionOvertaken)
    ]

    async def end() -> Rollout:
        now = await effects.get(rollout.id)
        decision = overtaken_on(now)
        if decision.rollout != now:
            # Audited only as told so: not when the review reached the followed attempt.
            return await effects.apply(now, decision, plan, audit=[audit] if said else [])
        trail = await effects.audit.list_for_rollout(rollout.id)
        if said and now.attempt == snapshot.attempt and all(e.action != OVERTAKEN for e in trail):
            # Another replica that sent the same review may be here too: the line's claim
            # and the line in one transaction, by whichever comes first.
            line = told(now, said[0], notifications=plan.notifications, failure=True)
            once = overtaken_key(rollout.id, snapshot.attempt)
            clock = effects.clock()
            if await effects.outbox.store.add_once(line, once=once, now=clock, action=OVERTAKEN):
                await effects.record(audit)
                await effects.outbox.send(line, written=True)
        return now

    return await effects.serialised(rollout.id, end)


async def on_rule(effects: EffectRunner, rollout: Rollout, environment: str) -> bool:
    """Whether the App's rule asked for `environment` on the rollout's run (answered or not):
    the bot's answer there goes through the rule, and a job still waiting there after it may
    wait for another of its protection rules. Otherwise (token mode) a review of the bot's
    account is all that holds it: one still waiting was not reached by it."""
    if effects.rule_requests is None or rollout.run_id is None:
        return False
    requests = await effects.rule_requests.for_run(rollout.run_id)
    return any(request.named(environment) for request in requests)


async def reject_again(
    effects: EffectRunner, rollout: Rollout, snapshot: RunSnapshot, review: Review
) -> bool:
    """Reject `review`'s environment (a stopped track's: the stop stands) on the re-run's
    attempt too, its job found waiting there (`snapshot`, read after a re-run overtook the
    rejection): whether GitHub took it. The attempt is read again just before it is sent (a
    later re-run: not sent)."""
    again = replace(rollout, attempt=snapshot.attempt)
    try:
        return await send_review(effects, again, review, strict=True)
    except GitHubError:
        return False  # recorded; the thread says it still waits there


async def read_again(effects: EffectRunner, snapshot: RunSnapshot) -> RunSnapshot:
    """The run of `snapshot` read again after the bot's review of its attempt: what it did
    (the job it rejected failed, and the rollback or kill-switch job that follows waits; one a
    person approved first went on). `snapshot` when unread, or when re-run again."""
    try:
        again = await effects.read_run(snapshot.run_id)
    except GitHubError as error:
        log.warning("run %s not read again after a review: %s", snapshot.run_id, error.message)
        return snapshot
    return again if again.attempt == snapshot.attempt else snapshot


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
    held = await rule_held(effects, rollout)
    for review, error in refused:
        by_rule = any(request.named(review.environment) for request in held)
        if error.refused:
            decision = machine.approval_refused(
                rollout, plan, review, error.message, by_rule=by_rule
            )
        else:
            decision = machine.review_failed(
                rollout,
                plan,
                review,
                error.cause,
                now=effects.clock(),
                after=effects.unanswered_after,
                by_rule=by_rule,
            )
        if decision.rollout == rollout:
            continue
        try:
            rollout = await effects.apply(rollout, decision, plan)
        except ConcurrentChange:
            log.info("rollout %s changed on another replica; a refusal is told later", rollout.id)
            break
    return rollout


async def rule_held(effects: EffectRunner, rollout: Rollout) -> list[RuleRequest]:
    """The App's open protection rule requests of the rollout's run (none in token mode): the
    environments the App's rule holds, which no required reviewer answers."""
    if effects.rule_requests is None or rollout.run_id is None:
        return []
    return await effects.rule_requests.open_for_run(rollout.run_id)
