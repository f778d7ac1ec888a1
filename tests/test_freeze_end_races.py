"""A freeze's end is told once per hold, whatever runs first: a `/rollout unfreeze` racing the
end's timer, or a gate that read the lane frozen a moment before the end's timer fired on
another replica and saved its hold after. End to end: the real app, the sandbox's Slack."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sandbox_views import held
from test_freeze_all import outbox_emptied
from test_freeze_auto_promote import OTHER, WINDOW, auto_sandbox, held_in_a_freeze, in_thread
from test_freeze_ends import ENDED, held_2h, told

from bot.domain.freeze import FREEZE_END_TIMER, Freeze
from bot.domain.freeze_all import FREEZE_LIFTED_TIMER
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout, StageState
from bot.services.records import Timer
from sandbox.harness import Sandbox
from sandbox.slack_records import ChannelMessage

pytestmark = pytest.mark.story

LIFTED = "lifted the freeze"
__all__ = ["held_2h"]  # the fixture, shared with the freeze ends' stories


async def end_watch(box: Sandbox) -> Timer:
    """The pending timer watching the end of the freeze that holds the rollout."""
    timers = box.services.rollouts.effects.timers
    pending = [
        timer
        for timer in await timers.of_kind(kind=FREEZE_END_TIMER, due_since=box.clock() - WINDOW)
        if timer.is_pending
    ]
    assert len(pending) == 1, pending
    return pending[0]


async def test_an_end_timer_claimed_before_an_unfreeze_tells_nothing_after_it(
    held_2h: tuple[Sandbox, ChannelMessage],
) -> None:
    """The end's timer was claimed (its freeze ends now) as an approver unfroze: the unfreeze
    cancels a timer already being fired, which then finds the lane free. Told once: lifted."""
    box, card = held_2h
    watch = await end_watch(box)
    await box.command("unfreeze", user=OTHER)
    await in_thread(box, card, LIFTED)
    await outbox_emptied(box)  # no jump while its post is on its way (posted again)

    await box.services.rollouts.on_timer(watch)  # the firing that began before the cancel
    await box.pass_time(2 * WINDOW)
    assert told(card, ENDED) == []
    assert len(told(card, LIFTED)) == 1


async def test_an_unfreeze_after_the_end_was_told_tells_nothing_more(
    held_2h: tuple[Sandbox, ChannelMessage],
) -> None:
    """A replica whose clock is a minute ahead told the freeze's end; another, a minute behind,
    answers an unfreeze of the same freeze (still in force by its clock): the thread was told
    already, once. (A minute, not a second: the sandbox's clock runs in real time, and its waits
    skip up to 2 s to a timer due, so a second before the end was the end on a loaded machine.)"""
    box, card = held_2h
    watch = await end_watch(box)
    await box.pass_time(watch.due_at - box.clock() - timedelta(minutes=1))
    await box.services.rollouts.on_timer(watch)  # the replica a minute ahead
    await box.slack.wait_for(lambda: bool(told(card, ENDED)))

    answer = await box.command("unfreeze", user=OTHER)
    assert "lifted" in answer
    await box.pass_time(timedelta(minutes=5))
    assert told(card, LIFTED) == []
    assert len(told(card, ENDED)) == 1


async def test_a_hold_saved_after_its_freezes_end_was_told_is_told_too(
    tmp_path: Path, database_url: str
) -> None:
    """Two gates PASS in a freeze: the canary's is held (its end watched), then the internal
    ring's reads the lane frozen, and before it saves its hold another replica (its clock a
    moment ahead) fires the end's timer and tells the canary's end. The ring, held after that,
    is told at the end too, and the canary not twice."""
    async with auto_sandbox(tmp_path, database_url) as box:
        rollouts = box.services.rollouts
        timers = rollouts.effects.timers
        lane = box.services.lane
        reads: list[Freeze | None] = []
        fired: list[Freeze] = []

        async def read_then_end_fires(*, rollout_id: str) -> Freeze | None:
            freeze = await lane.holds_promotion(rollout_id=rollout_id)
            reads.append(freeze)
            rollout = await box.rollout()
            canary = rollout.track("relay").stage("canary").state
            ring = rollout.track("desktop").stage("internal").state
            second = canary is StageState.HOLDING and ring is not StageState.HOLDING
            if second and freeze is not None and not fired:  # the ring's gate: read, not saved
                fired.append(freeze)
                (watch,) = await timers.claim_due(
                    now=freeze.free_at,
                    owner="replica-ahead",
                    lease=timedelta(minutes=1),
                    kinds={FREEZE_END_TIMER},
                )
                await rollouts.on_timer(watch)
                await timers.complete(timer_id=watch.id, owner="replica-ahead", now=freeze.free_at)
            return freeze

        rollouts.promotions_frozen_with(read_then_end_fires)
        card = await held_in_a_freeze(box, "2h")
        rollout = await held(box, "desktop", "internal")
        assert fired, reads  # the end's timer fired between the ring's read and its save
        assert rollout.track("relay").stage("canary").state is StageState.HOLDING

        await box.pass_time(2 * WINDOW)
        await box.slack.wait_for(lambda: len(told(card, ENDED)) == 2)
        # Both watches fired again (a retry): nothing more. A second, well within the outbox's
        # lease: a longer jump while a post is on its way would post it again, by design.
        for watch in await timers.of_kind(kind=FREEZE_END_TIMER, due_since=rollout.created_at):
            await rollouts.on_timer(watch)
        await box.pass_time(timedelta(seconds=1))
        said = told(card, ENDED)
        assert len(said) == 2, "\n".join(said)
        assert sum("5% canary" in each for each in said) == 1, said
        assert sum("internal" in each.lower() for each in said) == 1, said


async def test_a_hold_saved_as_an_unfreeze_reads_the_rollouts_is_told_too(
    tmp_path: Path, database_url: str
) -> None:
    """The internal ring's gate reads the lane frozen; an approver unfreezes and the unfreeze's
    timer reads the rollouts (the canary held, the ring not yet); the ring's gate saves its hold and
    finds the end's watch still pending (not yet cancelled: nothing more to set); then the
    unfreeze cancels that watch. The ring's hold is told all the same: the unfreeze reads
    the rollout again once its watches are cancelled."""
    async with auto_sandbox(tmp_path, database_url) as box:
        rollouts = box.services.rollouts
        timers = rollouts.effects.timers
        lane = box.services.lane
        unfreeze_read, gate_looked = asyncio.Event(), asyncio.Event()
        unfreezes: list[asyncio.Task[str]] = []
        read_rollouts, get_timer = rollouts.active_with_plans, timers.get

        async def read_then_wait() -> list[tuple[Rollout, RolloutPlan]]:
            active = await read_rollouts()
            unfreeze_read.set()
            await asyncio.wait_for(gate_looked.wait(), 30)
            return active

        async def get_then_go_on(*, key: str) -> Timer | None:
            timer = await get_timer(key=key)
            if unfreezes and ":told:" not in key:
                gate_looked.set()
            return timer

        async def unfreeze() -> str:
            """The unfreeze, its timer fired at once by another replica."""
            said = await box.command("unfreeze", user=OTHER)
            since = box.clock() - WINDOW
            (lifted,) = await timers.of_kind(kind=FREEZE_LIFTED_TIMER, due_since=since)
            handler = rollouts.handler_of(FREEZE_LIFTED_TIMER)
            assert handler is not None
            await handler.on_timer(lifted)
            return said

        async def read_then_unfreeze(*, rollout_id: str) -> Freeze | None:
            freeze = await lane.holds_promotion(rollout_id=rollout_id)
            rollout = await box.rollout()
            canary = rollout.track("relay").stage("canary").state
            ring = rollout.track("desktop").stage("internal").state
            second = canary is StageState.HOLDING and ring is not StageState.HOLDING
            if second and freeze is not None and not unfreezes:  # the ring's gate: read
                unfreezes.append(asyncio.create_task(unfreeze()))
                await asyncio.wait_for(unfreeze_read.wait(), 30)
            return freeze

        rollouts.active_with_plans = read_then_wait  # type: ignore[method-assign]
        timers.get = get_then_go_on  # type: ignore[method-assign]
        rollouts.promotions_frozen_with(read_then_unfreeze)
        card = await held_in_a_freeze(box, "2h")
        await held(box, "desktop", "internal")
        # The ring's hold is saved a moment before its gate looks at the end's watch.
        await asyncio.wait_for(gate_looked.wait(), 30)
        assert unfreezes
        assert "lifted" in await unfreezes[0]
        # Its reply is written (by this firing or the scheduler's): posted before the jump
        # past the outbox's lease, which would post a reply on its way again, by design.
        await outbox_emptied(box)

        await box.pass_time(2 * WINDOW)
        said = told(card, LIFTED) + told(card, ENDED)
        assert sum("5% canary" in each for each in said) == 1, said
        assert sum("internal" in each.lower() for each in said) == 1, said
