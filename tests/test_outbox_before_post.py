"""An outbox replica looks at a message's lease just before each post, after everything that
comes before it: the read of a summary's audit trail, the reads that word a refusal notice,
the look in Slack for an earlier attempt's post. Any of them can outlast the lease (a database
blink for that replica only, Slack slow to answer); the replica that took the message over
meanwhile looks, finds nothing yet, and posts it. The first must then leave the post to it:
chat.postMessage takes no idempotency key, and the message would show twice."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from stored_kinds import CARD
from test_outbox import (  # noqa: F401 - fixtures
    CHANNEL,
    FAILURES,
    LEASE,
    Renewals,
    Scene,
    refused_rollout,
    scene,
    slack,
)

from bot.adapters.slack.notifier import SlackNotifier
from bot.domain.rollout import Phase
from bot.services.outbox_messages import UNFOLLOWED, summary
from bot.services.records import NewMessage, OutboxMessage
from storage.audit_log import AuditLog
from storage.rollout_store import RolloutStore


class Stall:
    """A read the test holds: `reading` once it has begun, it ends when `let_through` is set."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.let_through = asyncio.Event()

    async def __call__(self) -> None:
        self.reading.set()
        await self.let_through.wait()


async def taken_over_while_stalled(
    world: Scene, store: Renewals, stall: Stall, sent: asyncio.Task[Any]
) -> None:
    """Replica "a" stalls in `stall` past its message's lease (no renewal of its on its way
    meanwhile); "b" takes the message over and delivers it; then "a" goes on."""
    await stall.reading.wait()
    async with store.renewing:
        world.clock.advance(LEASE + timedelta(seconds=1))
        assert await world.replica("b").deliver_due() == 1
    stall.let_through.set()
    await sent


def lost_before_post(caplog: pytest.LogCaptureFixture, message_id: int, kind: str) -> None:
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"message {message_id} ({kind}) lost its lease before it was sent; left to the replica "
        "that took it over"
    ]


class _SlowAudit(AuditLog):
    def __init__(self, world: Scene, stall: Stall) -> None:
        super().__init__(world.sessions)
        self._stall = stall

    async def list_for_rollout(self, rollout_id: str) -> Any:
        await self._stall()
        return await super().list_for_rollout(rollout_id)


async def test_a_summary_whose_audit_read_outlasted_its_lease_is_left_to_its_new_owner(
    scene: Scene,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The summary reads the rollout's audit trail after the rollout: that read, too, comes
    before the look at the lease."""
    rollout, _ = await scene.card_posted()
    rollouts = RolloutStore(scene.sessions, clock=scene.clock)
    found = await rollouts.get(rollout.id)
    assert found is not None
    await rollouts.save(
        replace(found, phase=Phase.ENDED, ended_at=scene.clock()), outbox=[summary(found)]
    )
    (report,) = await scene.store.pending(rollout.id)
    store, stall = Renewals(scene, hold=False), Stall()
    a = scene.replica("a", store=store, audit=_SlowAudit(scene, stall))
    caplog.set_level(logging.WARNING, logger="bot.services")

    await taken_over_while_stalled(scene, store, stall, asyncio.create_task(a.flush(rollout.id)))

    reports = [
        call
        for call in scene.slack.calls_to("chat.postMessage")
        if "Report of" in str(call.args.get("text"))
    ]
    assert len(reports) == 1
    assert await scene.store.pending() == []
    lost_before_post(caplog, report.id, "summary")


class _SlowRefusals(Renewals):
    def __init__(self, world: Scene, stall: Stall) -> None:
        super().__init__(world, hold=False)
        self._stall = stall

    async def refused(self, channel_id: str, *, after: int) -> list[OutboxMessage]:
        await self._stall()
        return await super().refused(channel_id, after=after)


async def test_a_refusal_notice_whose_reads_outlasted_its_lease_is_left_to_its_new_owner(
    scene: Scene,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The notice is worded from what its channel was not told (read when it is sent)."""
    scene.slack.shut_out[CHANNEL] = "not_in_channel"
    rollout = await refused_rollout(scene, 1)
    for _ in range(2):
        await scene.replica("a").flush(rollout.id)  # the card, then the prompt, given up
    (notice,) = await scene.store.pending()
    stall = Stall()
    store = _SlowRefusals(scene, stall)
    a = scene.replica("a", store=store)
    caplog.clear()  # the card and the prompt given up, logged
    caplog.set_level(logging.WARNING, logger="bot.services")

    await taken_over_while_stalled(scene, store, stall, asyncio.create_task(a.deliver_due()))

    (told,) = scene.slack.messages(FAILURES)
    assert "`v1.1.0`" in told.text
    assert await scene.store.pending() == []
    lost_before_post(caplog, notice.id, "channel_refused")


class _SlowLook(SlackNotifier):
    """A look at the top of a channel that read it, then answered late (Slack slow)."""

    stall = Stall()

    async def _at_top(self, channel: str, event_type: str, **looked: Any) -> Any:
        found = await super()._at_top(channel, event_type, **looked)
        await _SlowLook.stall()
        return found


async def test_a_run_card_whose_look_outlasted_its_lease_is_left_to_its_new_owner(
    scene: Scene,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run's card is looked for at the top of its channel before it is posted: that look
    found nothing, and answered after the replica taking the card over had posted it."""
    store = Renewals(scene, hold=False)
    await store.add(
        [NewMessage(kind=UNFOLLOWED, channel_id=CHANNEL, payload=CARD.to_json())],
        now=scene.clock(),
    )
    (drawn,) = await scene.store.pending()
    _SlowLook.stall = stall = Stall()
    a = scene.replica("a", store=store, notifier=_SlowLook)
    caplog.set_level(logging.WARNING, logger="bot.services")

    await taken_over_while_stalled(scene, store, stall, asyncio.create_task(a.deliver_due()))

    assert len(scene.slack.messages(CHANNEL)) == 1
    assert await scene.store.pending() == []
    lost_before_post(caplog, drawn.id, UNFOLLOWED)


class _SlowRollouts(RolloutStore):
    def __init__(self, world: Scene, stall: Stall) -> None:
        super().__init__(world.sessions, clock=world.clock)
        self._stall = stall

    async def with_plan(self, rollout_id: str) -> Any:
        await self._stall()
        return await super().with_plan(rollout_id)


async def test_a_lease_a_renewal_found_lost_before_any_post_is_told_as_left_to_its_new_owner(
    scene: Scene,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A renewal while "a" reads the rollout finds the line taken over: "a" will not post it
    (its look before the post refuses), so it must not tell of a line that may show twice."""
    rollout, _ = await scene.card_posted("promoted")
    (line,) = await scene.store.pending(rollout.id)
    store, stall = Renewals(scene, hold=False), Stall()
    lease = timedelta(seconds=0.3)  # renewed every 100 ms of real time while sent
    a = scene.replica("a", store=store, rollouts=_SlowRollouts(scene, stall), lease=lease)
    caplog.set_level(logging.WARNING, logger="bot.services")
    sent = asyncio.create_task(a.flush(rollout.id))
    await stall.reading.wait()
    async with store.renewing:
        scene.clock.advance(timedelta(seconds=1))
        assert await scene.replica("b").deliver_due() == 1

    await asyncio.wait_for(store.lost.wait(), 60)  # "a"'s next renewal; bounds a hang
    stall.let_through.set()
    await sent

    assert scene.thread() == ["promoted"]
    lost_before_post(caplog, line.id, "thread")
