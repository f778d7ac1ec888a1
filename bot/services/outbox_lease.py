"""The lease an outbox replica holds on a message while it sends it. chat.postMessage takes no
idempotency key, so a post still on its way when its lease runs out can be posted again by the
replica that takes the message over (it looks in the thread first, and the post is not there
yet). So a message is sent only while its owner holds the lease for a Slack request's timeout
beyond the first renewal while it is sent (a third of the lease): renewed first when less is
left, not sent when the lease was lost. The request timeout is below the lease (checked here)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from bot.services.leases import holding
from bot.services.outbox_ports import Outboxes
from bot.services.ports import Clock
from bot.services.records import OutboxMessage

log = logging.getLogger(__name__)


@dataclass
class Sending:
    """A message being sent under its lease; `lost` once a renewal found the lease lost."""

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

    async def held(self, message: OutboxMessage) -> bool:
        """Whether the claimed message may be sent now: its lease lasts until the first renewal
        while it is sent (a third of the lease) and a request's timeout beyond, renewed first
        when it does not. False when the lease was lost (it ran out and another replica took
        the message over): that replica delivers it."""
        until = message.lease_until
        enough = self._lease / 3 + self._request_timeout
        if until is not None and until - self._clock() >= enough:
            return True
        if await self._renew(message):
            return True
        log.warning(
            "message %s (%s) lost its lease before it was sent; left to the replica that took "
            "it over",
            message.id,
            message.kind,
        )
        return False

    @asynccontextmanager
    async def holding(self, message: OutboxMessage) -> AsyncIterator[Sending]:
        """Renew the message's lease every third of it while it is sent. A lease found lost
        is logged at once: what was sent cannot be unsent, and the replica that took the
        message over may post it again."""
        sending = Sending()

        def lost() -> None:
            sending.lost = True
            log.warning(
                "message %s (%s) lost its lease while sent: the replica that took it over may "
                "post it again",
                message.id,
                message.kind,
            )

        async with holding(
            lambda: self._renew(message),
            lease=self._lease,
            name=f"lease:outbox:{message.id}",
            failed=lambda error: log.warning(
                "could not renew the lease of message %s: %r", message.id, error
            ),
            lost=lost,
        ):
            yield sending

    async def _renew(self, message: OutboxMessage) -> bool:
        return await self._store.renew(
            message_id=message.id, owner=self._owner, now=self._clock(), lease=self._lease
        )
