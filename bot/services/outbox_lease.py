"""The lease an outbox replica holds on a message while it sends it. chat.postMessage takes no
idempotency key, so a post still on its way when its lease runs out can be posted again by the
replica that takes the message over (it looks in the thread first, and the post is not there
yet). So a message is sent only while its owner holds the lease for a Slack request's timeout
beyond the first renewal while it is sent (a third of the lease): renewed first when less is
left, not sent when the lease was lost. It is looked at again before each post of the send
(`before_post`): what comes before a post (a read of the rollout, the card, a look in the
thread) may outlast it. The request timeout is below the lease (checked here)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.services.leases import holding
from bot.services.outbox_ports import Outboxes
from bot.services.ports import Clock
from bot.services.records import OutboxMessage

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The message's lease was lost before a post: the replica that took it over sends it."""


@dataclass
class Sending:
    """A message being sent under its lease: until when it is held as last known here (its
    claim's end, then its latest renewal's), `posting` once a post of its send began, and
    `lost` once the lease was found lost."""

    until: datetime | None
    posting: bool = False
    lost: bool = False


class MessageLeases:
    """One replica's leases on the outbox messages it sends."""

    def __init__(
        self,
        *,
        store: Outboxes,
        clock: Clock,
        owner: str,
        lease: timedelta,
        request_timeout: timedelta,
    ) -> None:
        if request_timeout >= lease:
            raise ValueError(
                f"a Slack request may take {request_timeout}, the outbox lease is {lease}: a "
                "post still on its way after its lease could be taken over and posted twice"
            )
        self._store = store
        self._clock = clock
        self._owner = owner
        self._lease = lease
        self._request_timeout = request_timeout

    async def held(self, message: OutboxMessage) -> Sending | None:
        """The lease to send the claimed message under, when it may be sent now: it lasts
        until the first renewal while it is sent (a third of the lease) and a request's
        timeout beyond, renewed first when it does not. None when the lease was lost (it ran
        out and another replica took the message over): that replica delivers it."""
        sending = Sending(message.lease_until)
        return sending if await self._enough(message, sending) else None

    async def before_post(self, message: OutboxMessage, sending: Sending) -> None:
        """Raise `LeaseLost` unless the lease still lasts as `held` asks, renewed first when
        it does not (without a database call while it does): what came before this post may
        have outlasted it, and the replica that took the message over posts it."""
        if not await self._enough(message, sending):
            raise LeaseLost(f"message {message.id} lost its lease")
        sending.posting = True

    async def _enough(self, message: OutboxMessage, sending: Sending) -> bool:
        if sending.lost:
            return False  # logged when it was found lost
        until = sending.until
        if until is not None and until - self._clock() >= self._lease / 3 + self._request_timeout:
            return True
        if await self._renew(message, sending):
            return True
        _lost(message, sending)
        return False

    @asynccontextmanager
    async def holding(self, message: OutboxMessage, sending: Sending) -> AsyncIterator[None]:
        """Renew the message's lease every third of it while it is sent. A lease found lost
        is logged at once: what was sent cannot be unsent, and the replica that took the
        message over may post it again (nothing more is posted here: `before_post`)."""

        def lost() -> None:
            if not sending.lost:  # else found lost before a post, and logged
                _lost(message, sending)

        async with holding(
            lambda: self._renew(message, sending),
            lease=self._lease,
            name=f"lease:outbox:{message.id}",
            failed=lambda error: log.warning(
                "could not renew the lease of message %s: %r", message.id, error
            ),
            lost=lost,
        ):
            yield

    async def _renew(self, message: OutboxMessage, sending: Sending) -> bool:
        now = self._clock()
        if not await self._store.renew(
            message_id=message.id, owner=self._owner, now=now, lease=self._lease
        ):
            return False
        sending.until = now + self._lease
        return True


def _lost(message: OutboxMessage, sending: Sending) -> None:
    """Mark the lease lost, and say what it means: before any post of the send, the replica
    that took the message over posts it; after one began, that post may show twice."""
    sending.lost = True
    if sending.posting:
        log.warning(
            "message %s (%s) lost its lease while sent: the replica that took it over may post "
            "it again",
            message.id,
            message.kind,
        )
    else:
        log.warning(
            "message %s (%s) lost its lease before it was sent; left to the replica that took "
            "it over",
            message.id,
            message.kind,
        )
