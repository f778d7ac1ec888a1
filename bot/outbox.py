"""Announcements that survive Slack outages: what a rollout's card and thread must say is
written to the outbox with the state change it tells of (`storage.outbox`), then delivered
here, in order per rollout, with retries.

The service that saved a change delivers its messages at once (`flush`), so a person sees the
card change before their answer, as before; whatever Slack did not take is left to the loop
(`run`), which every replica runs beside the scheduler: woken at once by a flush that left
something, and looking every `idle` for what other replicas left. Messages to one channel go
one at a time through that channel's queue, which waits out Slack's 429 Retry-After; a card
redraw that a newer one supersedes is skipped (the card is drawn from the rollout as it stands
at delivery). Failures back off with jitter; after `max_attempts` a message is dead-lettered
and logged at ERROR once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from pydantic import TypeAdapter

from bot.domain.gate import GateVerdict
from bot.domain.metrics import Reading
from bot.domain.plan import Notifications, RolloutPlan
from bot.domain.rollout import Rollout, verdict_from_json, verdict_to_json
from bot.logs import rollout_context
from bot.ports import Clock, DeliveryFailed, Notifier
from bot.rollout_store import RolloutStore
from bot.wake import sleep_until_woken
from storage.outbox import NewMessage, OutboxMessage, OutboxStore

log = logging.getLogger(__name__)

CARD = "card"
THREAD = "thread"
FAILURE = "failure"
FIGURES = "figures"
GATE = "gate"

_READING: TypeAdapter[Reading] = TypeAdapter(Reading)

Drawn = tuple[Rollout, RolloutPlan]


# -- what a state change writes ------------------------------------------------------------------


def card(rollout: Rollout) -> NewMessage:
    """Draw the rollout's card as it stands when delivered (posted the first time)."""
    return NewMessage(kind=CARD, channel_id=rollout.channel_id, rollout_id=rollout.id)


def told(
    rollout: Rollout,
    text: str,
    *,
    notifications: Notifications | None = None,
    failure: bool = False,
    detail: bool = False,
) -> list[NewMessage]:
    """A reply in the rollout's thread, when the plan's notification level shows it (no
    `notifications`: always); a failure also goes to the failure channel, if set."""
    if notifications is not None and not notifications.shows(failure=failure, detail=detail):
        return []
    messages = [
        NewMessage(
            kind=THREAD,
            channel_id=rollout.channel_id,
            rollout_id=rollout.id,
            payload={"text": text},
        )
    ]
    elsewhere = notifications.failure_channel if notifications is not None else None
    if failure and elsewhere and elsewhere != rollout.channel_id:
        messages.append(
            NewMessage(
                kind=FAILURE, channel_id=elsewhere, rollout_id=rollout.id, payload={"text": text}
            )
        )
    return messages


def figures_request(rollout: Rollout, *, track: str, stage: str) -> NewMessage:
    """Ask the approvers in the thread for a stage's observed rates (manual metrics)."""
    return NewMessage(
        kind=FIGURES,
        channel_id=rollout.channel_id,
        rollout_id=rollout.id,
        payload={"track": track, "stage": stage},
    )


def gate_card(
    rollout: Rollout, *, track: str, stage: str, verdict: GateVerdict, reading: Reading | None
) -> NewMessage:
    """The gate's verdict with the figures (and series) behind it, as read at the time."""
    return NewMessage(
        kind=GATE,
        channel_id=rollout.channel_id,
        rollout_id=rollout.id,
        payload={
            "track": track,
            "stage": stage,
            "verdict": verdict_to_json(verdict),
            "reading": None if reading is None else _READING.dump_python(reading, mode="json"),
        },
    )


# -- delivering ----------------------------------------------------------------------------------


class Outbox:
    """Delivers the outbox to Slack: at once for the caller, and in the background loop."""

    def __init__(
        self,
        *,
        store: OutboxStore,
        rollouts: RolloutStore,
        notifier: Notifier,
        clock: Clock,
        owner: str,
        lease: timedelta = timedelta(minutes=1),
        backoff: timedelta = timedelta(seconds=2),
        max_backoff: timedelta = timedelta(minutes=5),
        max_attempts: int = 12,
        idle: timedelta = timedelta(seconds=5),
    ) -> None:
        self._store = store
        self._rollouts = rollouts
        self._notifier = notifier
        self._clock = clock
        self.owner = owner
        self._lease = lease
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_attempts = max_attempts
        self._idle = idle
        self._wake = asyncio.Event()
        """Set when a flush left messages behind: the loop looks now, not after its sleep."""
        self._queues: dict[str, asyncio.Lock] = {}
        self._paused: dict[str, datetime] = {}
        """Channels Slack rate-limited, until when (its Retry-After)."""

    async def add(self, messages: Sequence[NewMessage]) -> None:
        """Write messages that go with no state change of their own."""
        await self._store.add(messages, now=self._clock())

    async def send(self, messages: Sequence[NewMessage]) -> None:
        """Write messages and deliver them now, or as soon as Slack takes them."""
        await self.add(messages)
        for rollout_id in dict.fromkeys(m.rollout_id for m in messages if m.rollout_id):
            await self.flush(rollout_id)

    async def flush(self, rollout_id: str) -> None:
        """Deliver now, in order, what the rollout owes the channel. Never raises: what Slack
        (or the database) did not take waits in the outbox for the loop.

        The loop is not woken by the write itself: it would race this flush for the messages,
        and the person's answer could come before the card changed."""
        drawn: dict[str, Drawn] = {}
        try:
            while claimed := await self._store.claim(
                now=self._clock(), owner=self.owner, lease=self._lease, rollout_id=rollout_id
            ):
                if not await self._deliver(claimed[0], drawn):
                    self._wake.set()
                    return
        except Exception as error:
            log.warning("messages of %s left to the outbox loop: %r", rollout_id, error)
            self._wake.set()

    async def run(self) -> None:
        """Deliver due messages until cancelled."""
        log.info("outbox %s started", self.owner)
        while True:
            try:
                await self.deliver_due()
                await self._sleep()
            except Exception as error:
                # The database is away: the messages wait in it, so nothing is lost.
                log.warning("outbox delivery failed (%r); retrying in %s", error, self._idle)
                await asyncio.sleep(self._idle.total_seconds())

    async def deliver_due(self) -> int:
        """Deliver every due message this replica can claim, channels side by side and each
        channel in order; returns how many were delivered."""
        count = 0
        while claimed := await self._store.claim(
            now=self._clock(), owner=self.owner, lease=self._lease
        ):
            channels: dict[str, list[OutboxMessage]] = {}
            for message in claimed:
                channels.setdefault(message.channel_id, []).append(message)
            done = await asyncio.gather(*(self._deliver_in_turn(m) for m in channels.values()))
            count += sum(done)
        return count

    async def _deliver_in_turn(self, messages: list[OutboxMessage]) -> int:
        """One channel's messages of a claimed batch, one after another. The lease of each
        is renewed when its turn comes: a replica that died holds a message one lease at
        most, and a message whose lease ran out while it waited is left to its new owner."""
        drawn: dict[str, Drawn] = {}
        count = 0
        for turn, message in enumerate(messages):
            if turn and not await self._store.renew(
                message_id=message.id, owner=self.owner, now=self._clock(), lease=self._lease
            ):
                continue
            count += await self._deliver(message, drawn)
        return count

    async def _sleep(self) -> None:
        # Cleared before looking, so a message written meanwhile wakes the wait at once.
        self._wake.clear()
        due = await self._store.next_due()
        seconds = self._idle.total_seconds()
        if due is not None:
            seconds = min(seconds, max(0.0, (due - self._clock()).total_seconds()))
        await sleep_until_woken(self._wake, seconds)

    async def _deliver(self, message: OutboxMessage, drawn: dict[str, Drawn]) -> bool:
        """Send one claimed message through its channel's queue; True when it was delivered.
        `drawn` keeps the rollouts read for the messages before it in the same turn."""
        channel = message.channel_id
        queue = self._queues.setdefault(channel, asyncio.Lock())
        async with queue:
            paused = self._paused.get(channel)
            if paused is not None and paused > self._clock():
                await self._store.retry(
                    message_id=message.id,
                    owner=self.owner,
                    due_at=paused,
                    error="waiting for Slack's rate limit",
                    failed=False,
                )
                return False
            try:
                with rollout_context(message.rollout_id or "-"):
                    await self._send(message, drawn)
            except DeliveryFailed as failure:
                await self._failed(message, failure)
                return False
            except Exception as error:
                log.exception("message %s (%s) could not be rendered", message.id, message.kind)
                await self._failed(message, DeliveryFailed(f"bug: {type(error).__name__}"))
                return False
            return await self._store.delivered(
                message_id=message.id, owner=self.owner, now=self._clock()
            )

    async def _failed(self, message: OutboxMessage, failure: DeliveryFailed) -> None:
        now = self._clock()
        what = f"message {message.id} ({message.kind}) to {message.channel_id}"
        if failure.retry_after is not None:
            until = now + timedelta(seconds=failure.retry_after)
            self._paused[message.channel_id] = until
            log.warning("%s: %s; the channel waits until %s", what, failure.reason, until)
            await self._store.retry(
                message_id=message.id,
                owner=self.owner,
                due_at=until,
                error=failure.reason,
                failed=False,
            )
            return
        attempts = message.attempts + 1
        if failure.permanent or attempts >= self._max_attempts:
            log.error(
                "%s given up after %d attempt(s): %s. It stays in the outbox as a dead letter.",
                what,
                attempts,
                failure.reason,
            )
            await self._store.dead(
                message_id=message.id, owner=self.owner, now=now, error=failure.reason
            )
            return
        delay = min(self._backoff * 2 ** (attempts - 1), self._max_backoff)
        delay *= random.uniform(0.5, 1.0)  # jitter: replicas do not retry in step
        log.warning("%s: %s; retrying in %.1fs", what, failure.reason, delay.total_seconds())
        await self._store.retry(
            message_id=message.id, owner=self.owner, due_at=now + delay, error=failure.reason
        )

    async def _send(self, message: OutboxMessage, drawn: dict[str, Drawn]) -> None:
        rollout_id = message.rollout_id
        if rollout_id is None:
            raise DeliveryFailed("a message of no rollout", permanent=True)
        if message.kind == CARD or rollout_id not in drawn:
            found = await self._rollouts.with_plan(rollout_id)
            if found is None:
                raise DeliveryFailed(f"rollout {rollout_id} is gone", permanent=True)
            drawn[rollout_id] = found
        rollout, plan = drawn[rollout_id]
        payload = message.payload
        if message.kind == CARD:
            if rollout.message_ts is not None and await self._store.superseded(message):
                return  # a newer redraw follows: draw the card once
            drawn[rollout_id] = await self._card(rollout, plan), plan
            return
        if rollout.message_ts is None:
            rollout = await self._card(rollout, plan)
            drawn[rollout_id] = rollout, plan
        if message.kind == THREAD:
            await self._notifier.announce(rollout, str(payload["text"]))
        elif message.kind == FAILURE:
            await self._notifier.post_failure(
                rollout, str(payload["text"]), channel=message.channel_id
            )
        elif message.kind == FIGURES:
            await self._notifier.ask_for_figures(
                rollout, plan, track=str(payload["track"]), stage=str(payload["stage"])
            )
        elif message.kind == GATE:
            reading = payload.get("reading")
            await self._notifier.post_gate_card(
                rollout,
                plan,
                track=str(payload["track"]),
                stage=str(payload["stage"]),
                verdict=verdict_from_json(payload["verdict"]),
                reading=None if reading is None else _READING.validate_python(reading),
            )
        else:
            raise DeliveryFailed(f"unknown kind {message.kind!r}", permanent=True)

    async def _card(self, rollout: Rollout, plan: RolloutPlan) -> Rollout:
        """Draw the card; its first post records its ts, which thread replies need."""
        ts = await self._notifier.publish(rollout, plan)
        if rollout.message_ts is None:
            ts = await self._rollouts.set_message_ts(rollout.id, ts)
        return replace(rollout, message_ts=ts)
