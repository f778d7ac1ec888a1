"""Announcements that survive Slack outages: what a rollout's card and thread must say is
written to the outbox with the state change it tells of (`storage.outbox`; the messages are
drawn up in `outbox_messages`), then delivered here, in order per rollout, with retries.

The service that saved a change delivers its messages at once (`flush`), so a person sees the
card change before their answer, as before; whatever Slack did not take is left to the loop
(`run`), which every replica runs beside the scheduler: woken at once by a flush that left
something, and looking every `idle` for what other replicas left. Messages to one channel go
one at a time through that channel's queue, which waits out Slack's 429 Retry-After; a card
redraw that a newer one supersedes is skipped (the card is drawn from the rollout as it stands
at delivery). Failures back off with jitter; after `max_attempts` a message is dead-lettered
and logged at ERROR once.

A message is sent (`outbox_send`) only under its lease, with enough of it left for its first
renewal and a Slack request beyond, looked at again before each of its posts (`outbox_lease`);
a post whose earlier attempt may have reached Slack is first looked for there.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Sequence
from datetime import datetime, timedelta
from functools import partial

from bot.domain.rollout import NewerEvent
from bot.logs import rollout_context
from bot.services.channel_refusals import ChannelRefusals
from bot.services.clock import Background, LoopClock, sleep_until_woken
from bot.services.failures import TRANSIENT, error_summary
from bot.services.outbox_lease import LeaseLost, MessageLeases
from bot.services.outbox_messages import (
    LEFT_TO_NEWER_AT_MOST,
    NewerKind,
    Reopened,
    left_to_newer,
)
from bot.services.outbox_ports import Outboxes
from bot.services.outbox_send import Drawn, MessageSender
from bot.services.ports import DeliveryFailed, Notifier
from bot.services.records import NewMessage, OutboxMessage
from bot.services.store_ports import AuditLog, Rollouts
from bot.services.telemetry import UNTRACKED, Telemetry

log = logging.getLogger(__name__)


class Outbox:
    """Delivers the outbox to Slack: at once for the caller, and in the background loop."""

    def __init__(
        self,
        *,
        store: Outboxes,
        rollouts: Rollouts,
        audit: AuditLog,
        notifier: Notifier,
        clock: LoopClock,
        owner: str,
        request_timeout: timedelta,
        lease: timedelta = timedelta(minutes=1),
        backoff: timedelta = timedelta(seconds=2),
        max_backoff: timedelta = timedelta(minutes=5),
        max_attempts: int = 12,
        idle: timedelta = timedelta(seconds=5),
        telemetry: Telemetry = UNTRACKED,
    ) -> None:
        self.store = store
        self._telemetry = telemetry
        self._clock = clock
        self.owner = owner
        self._lease = lease
        self._leases = MessageLeases(
            store=store, clock=clock, owner=owner, lease=lease, request_timeout=request_timeout
        )
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_attempts = max_attempts
        self._idle = idle
        self._wake = asyncio.Event()
        """Set when a flush left messages behind: the loop looks now, not after its sleep."""
        self._queues: dict[str, asyncio.Lock] = {}
        self._in_hand = _InHand()
        self._paused: dict[str, datetime] = {}
        """Channels Slack rate-limited, until when (its Retry-After)."""
        self._newer: set[tuple[str, str]] = set()  # kinds of a newer version's, said once
        self._loop = Background("outbox", wake=self._wake)
        self._refusals = ChannelRefusals(store=store, rollouts=rollouts, notifier=notifier)
        self._sender = MessageSender(
            store=store, rollouts=rollouts, audit=audit, notifier=notifier, refusals=self._refusals
        )

    async def add(self, messages: Sequence[NewMessage]) -> None:
        await self.store.add(messages, now=self._clock())

    async def send(self, messages: Sequence[NewMessage], *, written: bool = False) -> None:
        """Write messages (unless `written` already) and deliver them now, or once Slack can."""
        if not written:
            await self.add(messages)
        for rollout_id in dict.fromkeys(m.rollout_id for m in messages if m.rollout_id):
            await self.flush(rollout_id)
        if any(m.rollout_id is None for m in messages):
            self._wake.set()  # of no rollout: the loop delivers them

    async def flush(self, rollout_id: str, *, known: Drawn | None = None) -> None:
        """Deliver now, in order, what the rollout owes the channel. Never raises: what Slack
        (or the database) did not take waits in the outbox for the loop. `known`: the rollout
        and plan held under its lock, for replies once its card has a ts (a card is read anew).

        The loop is not woken by the write itself: it would race this flush for the messages,
        and the person's answer could come before the card changed. A message the loop claimed
        anyway (it was looking already) is waited for, then the flush goes on; for one lease at
        most, since the caller may hold the rollout's lock."""
        drawn = {rollout_id: known} if known is not None and known[0].message_ts else {}
        waited_until = asyncio.get_running_loop().time() + self._lease.total_seconds()
        try:
            while True:
                claimed = await self.store.claim(
                    now=self._clock(), owner=self.owner, lease=self._lease, rollout_id=rollout_id
                )
                if claimed:
                    if not await self._deliver(claimed[0], drawn):
                        self._wake.set()
                        return
                    continue
                loop = self._in_hand.waiting_on(rollout_id)
                if loop is None:
                    return
                async with asyncio.timeout_at(waited_until):
                    await loop.wait()
        except Exception as error:
            log.warning("messages of %s left to the outbox loop: %r", rollout_id, error)
            self._wake.set()

    def start(self) -> None:
        self._loop.start(self.run())

    async def stop(self, *, grace: timedelta) -> None:
        """Let the delivery in hand end within `grace`; what is left waits for a replica."""
        await self._loop.stop(grace=grace)

    async def run(self) -> None:
        """Deliver due messages until `stop` (or cancelled)."""
        log.info("outbox %s started", self.owner)
        while not self._loop.stopping.is_set():
            try:
                await self.deliver_due()
                await self._sleep()
            except Exception as error:
                # The database is away: the messages wait in it, so nothing is lost.
                log.warning("outbox delivery failed (%r); retrying in %s", error, self._idle)
                await sleep_until_woken(self._loop.stopping, self._idle.total_seconds())

    async def deliver_due(self) -> int:
        """Deliver every due message this replica can claim, channels side by side and each
        channel in order; returns how many were delivered."""
        count = 0
        while claimed := await self._in_hand.claim(
            self.store.claim(now=self._clock(), owner=self.owner, lease=self._lease)
        ):
            channels: dict[str, list[OutboxMessage]] = {}
            for message in claimed:
                channels.setdefault(message.channel_id, []).append(message)
            in_hand = {m.rollout_id for m in claimed if m.rollout_id}
            try:
                done = await asyncio.gather(*(self._deliver_in_turn(m) for m in channels.values()))
            finally:
                for rollout_id in in_hand:
                    self._in_hand.dealt_with(rollout_id)
            count += sum(done)
        return count

    async def _deliver_in_turn(self, messages: list[OutboxMessage]) -> int:
        """One channel's messages of a claimed batch, one after another (a message whose
        lease ran out while it waited is left to its new owner)."""
        drawn: dict[str, Drawn] = {}
        count = 0
        for message in messages:
            try:
                count += await self._deliver(message, drawn)
            finally:
                self._in_hand.dealt_with(message.rollout_id)
        return count

    async def _sleep(self) -> None:
        # Cleared before looking, so a message written meanwhile wakes the wait at once.
        self._wake.clear()
        if self._loop.stopping.is_set():
            return
        due = await self.store.next_due()
        until = self._clock() + self._idle
        await self._clock.sleep_until(min(until, due) if due is not None else until, self._wake)

    async def _deliver(self, message: OutboxMessage, drawn: dict[str, Drawn]) -> bool:
        """Send one claimed message through its channel's queue; True when it was delivered.
        `drawn` keeps the rollouts read for the messages before it in the same turn.

        It is sent only under its lease, renewed while it is sent and looked at again before
        each post: a slow send is not taken over (its new owner would not find a post still on
        its way, and would post it again), and one whose lease ran out does not post."""
        channel = message.channel_id
        queue = self._queues.setdefault(channel, asyncio.Lock())
        async with queue:
            paused = self._paused.get(channel)
            if paused is not None and paused > self._clock():
                await self._waits(message, paused, "waiting for Slack's rate limit")
                return False
            if (sending := await self._leases.held(message)) is None:
                return False
            try:
                with rollout_context(message.rollout_id or "-"):
                    async with self._leases.holding(message, sending):
                        before_post = partial(self._leases.before_post, message, sending)
                        await self._sender.send(message, drawn, before_post)
            except LeaseLost:  # logged: the replica that took the message over posts it
                return False
            except DeliveryFailed as failure:
                await self._failed(message, failure)
                return False
            except TRANSIENT as error:  # the database or the network, for a moment
                await self._failed(message, DeliveryFailed(error_summary(error)))
                return False
            except (NewerEvent, NewerKind) as newer:  # left to a newer replica, an hour at most
                said, now = self._newer, self._clock()
                if now - message.created_at < LEFT_TO_NEWER_AT_MOST:
                    await left_to_newer(self.store, message, newer, self.owner, now, said)
                else:  # none came (the upgrade was rolled back): the later messages go on
                    await self._failed(message, DeliveryFailed(str(newer), permanent=True))
                return False
            except Reopened as reopened:  # not a failure: it waits, the thread goes on
                await self._waits(message, self._clock(), str(reopened))
                return False
            except Exception as error:
                log.exception("message %s (%s) could not be rendered", message.id, message.kind)
                await self._failed(message, DeliveryFailed(f"bug: {type(error).__name__}"))
                return False
            if await self.store.delivered(
                message_id=message.id, owner=self.owner, now=self._clock()
            ):
                return True
            if not sending.lost:  # else logged when it was found lost
                log.warning(
                    "message %s (%s) was taken over while sent: the replica that took it over "
                    "may post it again",
                    message.id,
                    message.kind,
                )
            return False

    async def _waits(self, message: OutboxMessage, until: datetime, why: str) -> None:
        """Give the message back, due `until`, without counting an attempt."""
        await self.store.retry(
            message_id=message.id, owner=self.owner, due_at=until, error=why, failed=False
        )

    async def _failed(self, message: OutboxMessage, failure: DeliveryFailed) -> None:
        now = self._clock()
        what = f"message {message.id} ({message.kind}) to {message.channel_id}"
        if failure.retry_after is not None:
            until = now + timedelta(seconds=failure.retry_after)
            self._paused[message.channel_id] = until
            log.warning("%s: %s; the channel waits until %s", what, failure.reason, until)
            await self._waits(message, until, failure.reason)
            return
        attempts = message.attempts + 1
        if failure.permanent or attempts >= self._max_attempts:
            # Told and counted by the replica that gave it up: one whose lease ran out
            # meanwhile did not (the message is the other's, which tries it again).
            if await self.store.dead(
                message_id=message.id, owner=self.owner, now=now, error=failure.reason
            ):
                log.error(
                    "%s given up after %d attempt(s): %s. It stays in the outbox as a dead letter.",
                    what,
                    attempts,
                    failure.reason,
                )
                self._telemetry.outbox_dead()
                try:
                    await self._refusals.given_up(message, failure, now=now)
                except TRANSIENT as error:  # told by the next message given up there
                    log.warning("the refusal of %s was not written: %r", what, error)
            return
        delay = min(self._backoff * 2 ** (attempts - 1), self._max_backoff)
        delay *= random.uniform(0.5, 1.0)  # jitter: replicas do not retry in step
        log.warning("%s: %s; retrying in %.1fs", what, failure.reason, delay.total_seconds())
        await self.store.retry(
            message_id=message.id, owner=self.owner, due_at=now + delay, error=failure.reason
        )


class _InHand:
    """What the outbox loop has claimed and not dealt with yet, for a flush to wait on rather
    than answer before the card it owes was posted: the rollouts whose next message the loop
    holds, and the loop's claim while it is on its way (its rows taken, not known here yet)."""

    def __init__(self) -> None:
        self._rollouts: dict[str, asyncio.Event] = {}
        self._claiming: asyncio.Event | None = None

    async def claim(self, claiming: Awaitable[list[OutboxMessage]]) -> list[OutboxMessage]:
        on_its_way = self._claiming = asyncio.Event()
        try:
            claimed = await claiming
            for message in claimed:
                if message.rollout_id:
                    self._rollouts.setdefault(message.rollout_id, asyncio.Event())
            return claimed
        finally:
            self._claiming = None
            on_its_way.set()

    def waiting_on(self, rollout_id: str) -> asyncio.Event | None:
        """What a flush that found nothing of the rollout to claim waits for, if anything."""
        return self._rollouts.get(rollout_id) or self._claiming

    def dealt_with(self, rollout_id: str | None) -> None:
        """The loop is done with the rollout's claimed message: a flush waiting on it goes on."""
        if rollout_id is not None and (waiting := self._rollouts.pop(rollout_id, None)):
            waiting.set()
