"""Domain rollouts survive the database exactly, and its conflicts come back as domain errors."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from cleared import cleared_rollout
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.adapters.slack.messages import reason_text
from bot.adapters.slack.rollout_card import rollout_card, rollout_text
from bot.domain.errors import ConcurrentChange, RolloutInProgress
from bot.domain.gate import GateReason, Verdict
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import (
    Check,
    CheckState,
    Phase,
    Preflight,
    Rollout,
    StageState,
    StopKind,
    StopReason,
    TrackState,
    begin_dispatch,
    cancel_preflight,
    confirm_flags,
    dispatched,
    event_from_json,
    verdict_to_json,
)
from bot.domain.rollout.events import GateInconclusive
from bot.domain.rollout.state import UNKNOWN_STOP
from bot.domain.run import RunRef
from bot.plan_file import load_plan
from bot.services.outbox_messages import CARD, card
from bot.services.records import NewTimer
from storage.errors import RolloutNotFound
from storage.models import RolloutTrackRow, StageRow
from storage.outbox import OutboxStore
from storage.rollout_repository import RolloutRepository
from storage.rollout_store import RolloutStore
from storage.timers import TimerStore

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SAVED_AT = NOW + timedelta(hours=3)
PLAN = load_plan(None)
PREFLIGHT = Preflight(
    flags=Check(CheckState.PENDING),
    migrations=Check(CheckState.PASS, "4 migration files, additive only"),
    image=Check(CheckState.SKIPPED, "not checked (check_image_published is off)"),
)
RUN = RunRef(9_876_543_210, "https://github.com/scriptum/scriptum/actions/runs/9876543210")


@pytest.fixture
def store(session_factory: async_sessionmaker[AsyncSession]) -> RolloutStore:
    return RolloutStore(session_factory, clock=lambda: SAVED_AT)


def _rollout(
    tag: str = "v1.4.2", *, rollout_id: str = "r-0000000000a1", now: datetime = NOW
) -> Rollout:
    return cleared_rollout(PLAN, now=now, preflight=PREFLIGHT, rollout_id=rollout_id, tag=tag)


def _running(rollout: Rollout) -> Rollout:
    """Confirmed, dispatched and given its Slack message, through the domain's own steps."""
    ready = begin_dispatch(
        confirm_flags(rollout, actor="U0MANAGER"), now=NOW + timedelta(minutes=2)
    )
    started = dispatched(ready, PLAN, RUN).rollout
    return replace(started, message_ts="1767355200.000100")


def _far_along(rollout: Rollout) -> Rollout:
    """Every field the domain keeps, set: windows, an extension, verdicts of three kinds, and a
    desktop track aborting toward its kill-switch."""
    relay_plan, desktop_plan = PLAN.track("relay"), PLAN.track("desktop")
    passed = relay_plan.evaluate_gate(
        baseline_crash=Decimal("0.0010"),
        current_crash=Decimal("0.0015"),
        current_error=Decimal("0.0040"),
        sample=12_000,
    )
    no_data = relay_plan.evaluate_gate(
        baseline_crash=Decimal("0.001"), current_crash=None, current_error=Decimal("0.002")
    )
    killed = desktop_plan.evaluate_gate(
        baseline_crash=Decimal("0.001"), current_crash=Decimal("0.0035"), sample=800
    )
    assert (passed.verdict, no_data.verdict, killed.verdict) == (
        Verdict.PASS,
        Verdict.INCONCLUSIVE,
        Verdict.KILL_SWITCH,
    )
    deployed_at = NOW + timedelta(minutes=9, seconds=13)
    relay = rollout.track("relay")
    relay = relay.with_stage(
        replace(
            relay.stage("canary"),
            state=StageState.PASSED,
            window_started_at=deployed_at,
            window_ends_at=deployed_at + timedelta(minutes=30),
            verdict=passed,
        )
    ).with_stage(
        replace(
            relay.stage("half"),
            state=StageState.OBSERVING,
            window_started_at=deployed_at + timedelta(minutes=45),
            window_ends_at=deployed_at + timedelta(minutes=135),
            extensions=1,
            observed_from=deployed_at + timedelta(minutes=75),
            cleared_at=deployed_at + timedelta(minutes=44),
            verdict=no_data,
        )
    )
    desktop = rollout.track("desktop")
    desktop = replace(
        desktop.with_stage(
            replace(desktop.stage("internal"), state=StageState.FAILED_GATE, verdict=killed)
        ).with_stage(replace(desktop.stage("beta"), state=StageState.REJECTED)),
        state=TrackState.ABORTING,
        ending=TrackState.HALTED,
        ended_reason=StopReason(
            StopKind.GATE_FAILED,
            subject="internal ring",
            outcome="KILL_SWITCH",
            detail=GateReason.CRASH_RATE.value,
        ),
    )
    return rollout.with_track(relay).with_track(desktop)


async def test_a_new_rollout_comes_back_as_it_was_created(
    store: RolloutStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    rollout = _rollout()

    created = await store.create(rollout=rollout, plan=PLAN)

    assert created == replace(rollout, version=1)
    assert await store.get(rollout.id) == created
    assert await store.get("r-000000000000") is None
    assert created.preflight.blocking() == ["Feature flags: pending"]
    # The plan snapshot is the plan the rollout started with, readable as a plan again.
    record = await RolloutRepository(session_factory).get(rollout.id)
    assert record is not None
    assert RolloutPlan.model_validate(record.plan) == PLAN
    assert [s.environment for s in record.track("relay").stages] == [
        "relay-canary-5",
        "relay-rollout-50",
        "relay-rollout-100",
    ]


async def test_a_rollout_keeps_the_plan_it_started_with(store: RolloutStore) -> None:
    created = await store.create(rollout=_rollout(), plan=PLAN)
    edited = PLAN.model_copy(update={"workflow": PLAN.workflow.model_copy(update={"ref": "v2"})})
    second = _rollout("v1.4.3", rollout_id="r-0000000000b2")
    await store.save(cancel_preflight(created, actor="U0MANAGER", now=NOW))
    await store.create(rollout=second, plan=edited)

    assert await store.plan(created.id) == PLAN
    assert (await store.plan(second.id)).workflow.ref == "v2"
    with pytest.raises(RolloutNotFound):
        await store.plan("r-000000000000")


async def test_every_field_survives_a_save(
    store: RolloutStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    created = await store.create(rollout=_rollout(), plan=PLAN)
    changed = _far_along(_running(created))

    saved = await store.save(changed)

    assert saved == replace(changed, version=2)
    loaded = await store.get(created.id)
    assert loaded == saved
    assert loaded is not None
    assert loaded.phase is Phase.RUNNING
    assert (loaded.run_id, loaded.run_url) == (RUN.run_id, RUN.html_url)
    assert loaded.dispatched_at == NOW + timedelta(minutes=2)
    assert loaded.preflight.flags == Check(CheckState.PASS, confirmed_by="U0MANAGER")
    assert loaded.preflight.blocking() == []
    canary = loaded.track("relay").stage("canary").verdict
    assert canary is not None and canary.verdict is Verdict.PASS
    assert canary.current_crash == Decimal("0.0015") and isinstance(canary.current_crash, Decimal)
    assert canary.crash_limit == Decimal("0.0020") and canary.sample == 12_000
    half = loaded.track("relay").stage("half")
    assert half.extensions == 1 and half.verdict is not None
    assert half.observed_from == NOW + timedelta(minutes=84, seconds=13)
    assert half.cleared_at == NOW + timedelta(minutes=53, seconds=13)
    assert (half.verdict.verdict, half.verdict.reason) == (Verdict.INCONCLUSIVE, GateReason.NO_DATA)
    assert half.verdict.current_crash is None
    desktop = loaded.track("desktop")
    assert (desktop.state, desktop.ending) == (TrackState.ABORTING, TrackState.HALTED)
    record = await RolloutRepository(session_factory).get(created.id)
    assert record is not None and record.updated_at == SAVED_AT


async def test_a_verdict_whose_reason_a_newer_version_wrote_still_loads(
    store: RolloutStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """A rolling upgrade: a replica of the next version decided a gate for a reason this one
    does not know. The rollout still loads here (its card, its buttons, its timers), the
    verdict kept, its reason unsaid, as in verdicts stored before reasons were."""
    created = await store.create(rollout=_rollout(), plan=PLAN)
    saved = await store.save(_far_along(_running(created)))
    detail = verdict_to_json(saved.track("relay").stage("half").verdict)
    async with session_factory.begin() as session:
        await session.execute(
            update(StageRow)
            .where(StageRow.rollout_id == created.id, StageRow.key == "half")
            .values(verdict_detail={**detail, "reason": "a_reason_of_the_next_version"})
        )

    loaded = await store.get(created.id)

    assert loaded is not None
    half = loaded.track("relay").stage("half").verdict
    assert half is not None and (half.verdict, half.reason) == (Verdict.INCONCLUSIVE, None)
    assert (
        loaded.track("relay").stage("canary").verdict
        == saved.track("relay").stage("canary").verdict
    )


def test_a_thread_event_whose_reason_a_newer_version_wrote_still_reads() -> None:
    """The outbox's message of a gate a newer replica decided is told here, its reason unsaid,
    instead of failing every delivery until it is dead-lettered."""
    stored = {"stage": "canary", "figures": "crash rate 0.0012", "reason": "of_the_next_version"}

    told = event_from_json({"kind": "GateInconclusive", "fields": stored})

    assert told == GateInconclusive(stage="canary", figures="crash rate 0.0012", reason=None)


async def test_a_stop_whose_kind_or_gate_reason_a_newer_version_wrote_still_loads(
    store: RolloutStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """A rolling upgrade: a replica of the next version stopped a track for a kind of stop this
    one does not know, and another for a gate reason it does not know. The rollout still
    loads here, and its card is drawn (the buttons, the timers and the thread need it): the
    unknown kind reads as a legacy stop, said in words of its own; the gate's reason unsaid."""
    created = await store.create(rollout=_rollout(), plan=PLAN)
    await store.save(_far_along(_running(created)))
    stored = {
        "desktop": '{"kind": "paused_by_the_next_version", "actor": "U0MANAGER"}',
        "relay": '{"kind": "gate_failed", "subject": "half", "outcome": "ROLLBACK", '
        '"detail": "a_reason_of_the_next_version"}',
    }
    async with session_factory.begin() as session:
        for track, reason in stored.items():
            await session.execute(
                update(RolloutTrackRow)
                .where(RolloutTrackRow.rollout_id == created.id, RolloutTrackRow.track == track)
                .values(ended_reason=reason)
            )

    loaded = await store.get(created.id)

    assert loaded is not None
    desktop, relay = loaded.track("desktop").ended_reason, loaded.track("relay").ended_reason
    assert desktop is not None and desktop.kind is StopKind.LEGACY
    assert reason_text(desktop) == UNKNOWN_STOP
    assert relay is not None and reason_text(relay) == "half gate ROLLBACK: failed"
    assert rollout_card(loaded, PLAN) and loaded.tag in rollout_text(loaded, PLAN)


async def test_what_a_newer_version_wrote_is_kept_when_this_one_saves_the_rollout(
    store: RolloutStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """A rolling upgrade: the next version stopped the desktop track for a kind of stop this
    one does not know, and its canary verdict carries a gate reason this one does not know.
    A replica of this version then moves the relay track on and saves the rollout: what it
    only read (as a legacy stop, a reason unsaid) is not written back over the newer words,
    so the next version, once rolled out, still says why the track stopped."""
    created = await store.create(rollout=_rollout(), plan=PLAN)
    await store.save(_far_along(_running(created)))
    newer_stop = '{"kind": "paused_by_the_next_version", "actor": "U0MANAGER", "subject": "beta"}'
    async with session_factory.begin() as session:
        await session.execute(
            update(RolloutTrackRow)
            .where(RolloutTrackRow.rollout_id == created.id, RolloutTrackRow.track == "desktop")
            .values(ended_reason=newer_stop)
        )
        canary = await session.scalar(
            select(StageRow).where(
                StageRow.rollout_id == created.id,
                StageRow.track == "relay",
                StageRow.key == "canary",
            )
        )
        assert canary is not None and canary.verdict_detail is not None
        newer_verdict = {**canary.verdict_detail, "reason": "a_reason_of_the_next_version"}
        canary.verdict_detail = newer_verdict
    loaded = await store.get(created.id)
    assert loaded is not None

    relay = loaded.track("relay")
    moved = relay.with_stage(replace(relay.stage("half"), extensions=2))
    await store.save(loaded.with_track(moved))

    async with session_factory() as session:
        kept = await session.scalar(
            select(RolloutTrackRow.ended_reason).where(
                RolloutTrackRow.rollout_id == created.id, RolloutTrackRow.track == "desktop"
            )
        )
        verdict = await session.scalar(
            select(StageRow.verdict_detail).where(
                StageRow.rollout_id == created.id,
                StageRow.track == "relay",
                StageRow.key == "canary",
            )
        )
    assert kept == newer_stop
    assert verdict == newer_verdict
    saved = await store.get(created.id)
    assert saved is not None and saved.track("relay").stage("half").extensions == 2


async def test_a_second_rollout_on_a_busy_track_names_the_active_one(store: RolloutStore) -> None:
    first = await store.create(rollout=_rollout(), plan=PLAN)

    with pytest.raises(RolloutInProgress) as refused:
        await store.create(rollout=_rollout("v1.4.3", rollout_id="r-0000000000b2"), plan=PLAN)

    assert refused.value.code == "rollout_in_progress"
    assert refused.value.active_rollout_id == first.id
    assert "`v1.4.2`" in refused.value.message
    assert await store.by_tag("v1.4.3") == []
    assert await store.active_on_track("relay") == first


async def test_a_save_from_a_stale_read_changes_nothing(store: RolloutStore) -> None:
    created = await store.create(rollout=_rollout(), plan=PLAN)
    flagged = await store.save(confirm_flags(created, actor="U0MANAGER"))
    assert flagged.version == 2

    with pytest.raises(ConcurrentChange) as conflict:
        await store.save(cancel_preflight(created, actor="U0OTHER", now=NOW))

    assert (conflict.value.code, conflict.value.rollout_id) == ("concurrent_change", created.id)
    assert await store.get(created.id) == flagged


async def test_the_timers_a_save_needs_are_written_with_it_and_never_without_it(
    store: RolloutStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """A window's timer goes in its save's transaction (`EffectRunner.apply`): written with its
    rollout's id and service, and not at all by a save that lost the race."""
    timers = TimerStore(session_factory)
    created = await store.create(rollout=_rollout(), plan=PLAN)
    window = NewTimer("window:saved", "window", SAVED_AT, {"track": "relay", "stage": "canary"})
    await store.save(confirm_flags(created, actor="U0MANAGER"), timers=[window])
    stale = NewTimer("window:stale", "window", SAVED_AT)

    with pytest.raises(ConcurrentChange):
        await store.save(cancel_preflight(created, actor="U0OTHER", now=NOW), timers=[stale])

    written = await timers.get(key=window.key)
    assert written is not None and written.is_pending, written
    assert (written.rollout_id, written.service) == (created.id, created.service)
    assert (written.due_at, written.payload) == (SAVED_AT, dict(window.payload))
    assert await timers.get(key=stale.key) is None


async def test_a_save_writes_each_timer_it_needs_once_per_key(
    store: RolloutStore, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """A save that starts two tracks' windows at once writes both timers; one whose key is
    stored already (a look wrote it, a replica claims it) stays as it is: its due time, its
    claim, its attempts."""
    timers = TimerStore(session_factory)
    created = await store.create(rollout=_rollout(), plan=PLAN)
    canary = NewTimer("window:canary", "window", SAVED_AT, {"track": "relay", "stage": "canary"})
    ring = NewTimer("window:internal", "window", SAVED_AT, {"track": "desktop", "stage": "ring"})
    await timers.schedule(key=canary.key, kind="window", due_at=NOW, now=NOW, rollout_id=created.id)
    (claimed,) = await timers.claim_due(now=NOW, owner="replica-b", lease=timedelta(minutes=1))

    await store.save(confirm_flags(created, actor="U0MANAGER"), timers=[canary, ring])

    kept = await timers.get(key=canary.key)
    assert kept is not None and (kept.id, kept.due_at, kept.attempts) == (claimed.id, NOW, 1)
    assert kept.claimed_by == "replica-b", kept
    written = await timers.get(key=ring.key)
    assert written is not None and written.is_pending and written.due_at == SAVED_AT, written


async def test_an_ended_rollout_frees_its_tracks(store: RolloutStore) -> None:
    created = await store.create(rollout=_rollout(), plan=PLAN)
    ended_at = NOW + timedelta(minutes=5)

    ended = await store.save(cancel_preflight(created, actor="U0MANAGER", now=ended_at))

    assert ended.phase is Phase.ENDED and ended.ended_at == ended_at
    assert [(t.state, t.ended_at) for t in ended.tracks] == [
        (TrackState.CANCELLED, ended_at),
        (TrackState.CANCELLED, ended_at),
    ]
    assert ended.track("relay").ended_reason == StopReason(StopKind.CANCELLED, actor="U0MANAGER")
    assert await store.active() == []
    assert await store.active_on_track("relay") is None
    second = await store.create(rollout=_rollout("v1.4.3", rollout_id="r-0000000000b2"), plan=PLAN)
    assert await store.active() == [second]


async def test_tracks_left_open_end_with_the_rollout(store: RolloutStore) -> None:
    created = await store.create(rollout=_rollout(), plan=PLAN)
    running = await store.save(_running(created))
    why = StopReason(StopKind.RUN_ENDED, outcome="cancelled")
    relay = replace(running.track("relay"), state=TrackState.FAILED, ended_reason=why)
    ended_at = NOW + timedelta(minutes=20)

    ended = await store.save(
        replace(running.with_track(relay), phase=Phase.ENDED, ended_at=ended_at)
    )

    assert ended.track("relay").ended_at == ended_at
    assert ended.track("desktop").ended_at == ended_at
    assert ended.track("relay").ended_reason == why
    assert await store.active_on_track("desktop") is None


async def test_a_rollout_is_found_by_its_run(store: RolloutStore) -> None:
    created = await store.create(rollout=_rollout(), plan=PLAN)
    assert await store.by_run_id(RUN.run_id) is None

    running = await store.save(_running(created))

    assert await store.by_run_id(RUN.run_id) == running
    assert await store.by_run_id(1) is None


async def test_recent_lists_newest_first(store: RolloutStore) -> None:
    ids = []
    for number in range(3):
        rollout = _rollout(
            f"v1.{number}.0",
            rollout_id=f"r-00000000000{number}",
            now=NOW + timedelta(hours=number),
        )
        created = await store.create(rollout=rollout, plan=PLAN)
        ids.append(created.id)
        if number < 2:
            await store.save(cancel_preflight(created, actor="U0MANAGER", now=rollout.created_at))

    assert [r.id for r in await store.recent(2)] == [ids[2], ids[1]]
    assert [r.id for r in await store.recent(limit=10)] == [ids[2], ids[1], ids[0]]
    assert [r.tag for r in await store.active()] == ["v1.2.0"]
    assert [r.id for r in await store.by_tag("v1.1.0")] == [ids[1]]


async def test_a_rollout_created_further_along_writes_its_card_again_with_its_second_save(
    store: RolloutStore,
    session_factory: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rollout created already following a run (an adopted one) is written pending, then
    saved as it is at once. Another replica's outbox delivered the first write's card in
    between, drawn at the version before; the second save wrote no card, and the card stayed
    behind the rollout (its clicks refused as out of date). The second save writes it again."""
    outbox = OutboxStore(session_factory)
    save = store.save

    async def card_delivered_first(rollout: Rollout, **written: Any) -> Rollout:
        (drawn,) = await outbox.claim(now=SAVED_AT, owner="other", lease=timedelta(minutes=1))
        assert drawn.kind == CARD
        assert await outbox.delivered(message_id=drawn.id, owner="other", now=SAVED_AT)
        return await save(rollout, **written)

    monkeypatch.setattr(store, "save", card_delivered_first)
    running = _far_along(_running(_rollout()))

    created = await store.create(rollout=running, plan=PLAN, outbox=[card(running)])

    assert created.version == 2 and created.phase is Phase.RUNNING
    assert [m.kind for m in await outbox.pending(created.id)] == [CARD]
