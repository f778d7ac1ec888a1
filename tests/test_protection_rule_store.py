"""The protection rules' requests in the database (SQLite and PostgreSQL): one open request per
run and environment, a redelivery known by its delivery id, a re-run asking again, an answer
GitHub took replacing a racing replica's `gone`, and environments spelled outside ASCII."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cleared import cleared_rollout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.domain.protection_rules import RuleRequest
from bot.domain.rollout import Phase
from bot.plan_file import load_plan
from bot.services.retention import Retention
from storage.claims import ClaimStore
from storage.deliveries import DeliveryLog
from storage.protection_rules import ProtectionRuleStore
from storage.rollout_store import RolloutStore

AT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
RUN = 4_200_001


async def test_a_rerun_asks_again_without_a_deployment_and_a_redelivery_changes_nothing(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    store = ProtectionRuleStore(session_factory)
    first = RuleRequest(RUN, "relay-canary-5", 0, AT)  # GitHub's `deployment` was null
    assert await store.remember(first, delivery_id="d-1")
    assert not await store.remember(first, delivery_id="d-1")  # the same delivery again
    assert not await store.remember(first, delivery_id="d-2")  # one open per environment
    await store.close(run_id=RUN, environment="relay-canary-5", answer="approved", at=AT)

    rerun = RuleRequest(RUN, "relay-canary-5", 0, AT + timedelta(minutes=5))

    assert await store.remember(rerun, delivery_id="d-3")
    assert [r.requested_at for r in await store.open_for_run(RUN)] == [rerun.requested_at]
    assert not await store.remember(first, delivery_id="d-1")  # still a redelivery


async def test_a_request_of_a_deployment_taken_in_before_is_not_reopened_under_a_new_id(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """GitHub asks once per deployment (a re-run's job gets a new one): the same deployment's
    request under a new delivery id (its signed body sent again; the id is outside the
    signature) is taken in before, answered or not, by any service's store."""
    store = ProtectionRuleStore(session_factory)
    first = RuleRequest(RUN, "relay-canary-5", 7, AT)
    assert await store.remember(first, delivery_id="d-1")
    await store.close(run_id=RUN, environment="relay-canary-5", answer="rejected", at=AT)

    assert not await store.remember(first, delivery_id="d-2")
    assert not await ProtectionRuleStore(session_factory, service="billing").remember(
        first, delivery_id="d-3"
    )
    assert await store.open_for_run(RUN) == []
    assert await store.remember(replace(first, deployment_id=8), delivery_id="d-4")  # a re-run


async def test_an_answer_github_took_replaces_a_racing_replicas_gone(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    store = ProtectionRuleStore(session_factory)
    await store.remember(RuleRequest(RUN, "relay-rollout-50", 7, AT))

    closed = [
        await store.close(run_id=RUN, environment="relay-rollout-50", answer=answer, at=AT)
        for answer in ("gone", "approved", "gone")
    ]

    assert closed == [1, 1, 0]
    assert await store.answer_of(run_id=RUN, environment="relay-rollout-50") == "approved"


async def test_an_environment_spelled_outside_ascii_closes(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    store = ProtectionRuleStore(session_factory)
    await store.remember(RuleRequest(RUN, "Déploiement-Ω", 7, AT))
    (request,) = await store.open_for_run(RUN)

    assert request.named("déploiement-ω")
    assert await store.close(run_id=RUN, environment=request.environment, answer="approved", at=AT)
    assert await store.open_for_run(RUN) == []


async def test_a_request_of_a_run_whose_rollout_ended_is_swept_and_the_newest_rollout_follows(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """A re-run of a run whose rollout ended asks again: the poll's sweep hands its request over
    (no active rollout follows the run), and a rollout adopting the re-run is the run's."""
    plan, rollouts = load_plan(None), RolloutStore(session_factory, clock=lambda: AT)
    first = await rollouts.create(
        rollout=replace(cleared_rollout(plan, now=AT, rollout_id="r-1"), run_id=RUN), plan=plan
    )
    store = ProtectionRuleStore(session_factory)
    assert await store.remember(RuleRequest(RUN, "relay-canary-5", 7, AT), delivery_id="d-1")
    assert await store.without_timer("rule") == []  # its rollout follows it

    await rollouts.save(replace(first, phase=Phase.ENDED, ended_at=AT))
    assert [r.run_id for r in await store.without_timer("rule")] == [RUN]

    later = AT + timedelta(hours=1)
    adopted = cleared_rollout(plan, now=later, rollout_id="r-2")
    await rollouts.create(rollout=replace(adopted, run_id=RUN), plan=plan)
    assert (await rollouts.phase_by_run_id(RUN) or ("",))[0] == "r-2"
    assert (found := await rollouts.by_run_id(RUN)) is not None and found.id == "r-2"


async def test_retention_prunes_answered_requests_and_open_ones_only_past_githubs_limit(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """RETENTION_DAYS=7: a request answered 10 days ago is forgotten, one still held since
    then is not (GitHub holds its job up to 30 days: forgetting it would lose its card and
    its answer); one held 31 days ago is past GitHub's limit and goes too."""
    store = ProtectionRuleStore(session_factory)
    now = AT + timedelta(days=40)
    answered = RuleRequest(RUN, "relay-canary-5", 7, now - timedelta(days=10))
    held = RuleRequest(RUN, "relay-rollout-50", 8, now - timedelta(days=10))
    expired = RuleRequest(RUN + 1, "relay-canary-5", 9, now - timedelta(days=31))
    fresh = RuleRequest(RUN + 2, "relay-canary-5", 10, now - timedelta(days=1))
    for request in (answered, held, expired, fresh):
        assert await store.remember(request)
    await store.close(run_id=RUN, environment="relay-canary-5", answer="approved", at=now)
    retention = Retention(
        claims=ClaimStore(session_factory),
        deliveries=DeliveryLog(session_factory),
        keep=timedelta(days=7),
        rules=store,
    )

    await retention.prune(now=now)

    assert [r.environment for r in await store.for_run(RUN)] == ["relay-rollout-50"]
    assert await store.for_run(RUN + 1) == []
    assert len(await store.open_for_run(RUN + 2)) == 1


async def test_the_answer_sent_marks_the_open_request_only_until_cleared(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """The bot's answer in flight is kept on the open request (read by every replica), cleared
    when GitHub clearly refused it; a closed request is never marked, and closing it keeps
    the answer it was closed with."""
    store = ProtectionRuleStore(session_factory)
    assert await store.remember(RuleRequest(RUN, "relay-rollout-50", 8, AT))

    await store.sending(run_id=RUN, environment="relay-rollout-50", answer="approved")
    assert [r.sent for r in await store.open_for_run(RUN)] == ["approved"]
    await store.sending(run_id=RUN, environment="relay-rollout-50", answer=None)
    assert [r.sent for r in await store.open_for_run(RUN)] == [None]

    await store.close(run_id=RUN, environment="relay-rollout-50", answer="gone", at=AT)
    await store.sending(run_id=RUN, environment="relay-rollout-50", answer="rejected")
    assert [(r.answer, r.sent) for r in await store.for_run(RUN)] == [("gone", None)]


async def test_an_unknown_answer_is_cleared_only_while_no_post_is_on_its_way(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """An answer whose outcome was never learned is dated; a read that saw the job still
    waiting after then clears it, but not once another post of an answer has begun (a click
    on another replica: its outcome is not known yet)."""
    store = ProtectionRuleStore(session_factory)
    assert await store.remember(RuleRequest(RUN, "relay-rollout-50", 8, AT))
    env, ended = "relay-rollout-50", AT + timedelta(seconds=5)
    await store.sending(run_id=RUN, environment=env, answer="approved")
    await store.unknown(run_id=RUN, environment=env, at=ended)
    assert [(r.sent, r.sent_at) for r in await store.open_for_run(RUN)] == [("approved", ended)]

    await store.sending(run_id=RUN, environment=env, answer="rejected")  # on its way
    assert await store.not_applied(run_id=RUN, environment=env, sent_at=ended) == 0
    assert [(r.sent, r.sent_at) for r in await store.open_for_run(RUN)] == [("rejected", None)]

    await store.unknown(run_id=RUN, environment=env, at=ended)
    assert await store.not_applied(run_id=RUN, environment=env, sent_at=ended) == 1
    assert [(r.sent, r.sent_at) for r in await store.open_for_run(RUN)] == [(None, None)]


async def test_a_request_closed_with_its_unknown_answer_keeps_the_mark(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """Closing a request with the answer whose outcome was never learned (its job found
    started) keeps `sent` and `sent_at`: a later look, on any replica, reads it as the bot's
    answer applied unseen, not as a start without the bot; nothing clears them once closed."""
    store = ProtectionRuleStore(session_factory)
    assert await store.remember(RuleRequest(RUN, "relay-rollout-50", 8, AT))
    env, ended = "relay-rollout-50", AT + timedelta(seconds=5)
    await store.sending(run_id=RUN, environment=env, answer="approved")
    await store.unknown(run_id=RUN, environment=env, at=ended)

    assert await store.close(run_id=RUN, environment=env, answer="approved", at=ended) == 1
    assert await store.not_applied(run_id=RUN, environment=env, sent_at=ended) == 0
    await store.sending(run_id=RUN, environment=env, answer=None)
    assert [(r.answer, r.sent, r.sent_at) for r in await store.for_run(RUN)] == [
        ("approved", "approved", ended)
    ]
