"""How the outbox sends one message it holds the lease of (`bot.services.outbox`): the card
drawn from the rollout as it stands, a thread line under it (the card posted first when it has
none yet).

A post whose earlier attempt may have reached Slack (it failed unclearly, or its replica died or
lost its lease before recording the answer) is first looked for in Slack, by the marker each
post carries: found, it is recorded as delivered instead of posted again. A card's redraw needs
no look. Each post or redraw is preceded by a look at the message's lease (`before_post`, which
the notifier awaits after its own look in Slack): a read, the card or a look before it may have
outlasted the lease, and the replica that took the message over (its look finding nothing yet)
posts it.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Rollout
from bot.domain.unfollowed_runs import UnfollowedRun
from bot.services.channel_refusals import ChannelRefusals
from bot.services.outbox_messages import (
    CARD,
    FAILURE,
    LANES,
    REFUSED,
    UNFOLLOWED,
    of_no_rollout,
    post,
    tell_lane,
)
from bot.services.outbox_ports import Outboxes
from bot.services.ports import BeforePost, DeliveryFailed, Notifier
from bot.services.records import OutboxMessage
from bot.services.store_ports import AuditLog, Rollouts

log = logging.getLogger(__name__)

Drawn = tuple[Rollout, RolloutPlan]


class MessageSender:
    """Sends the outbox's messages to Slack, one at a time."""

    def __init__(
        self,
        *,
        store: Outboxes,
        rollouts: Rollouts,
        audit: AuditLog,
        notifier: Notifier,
        refusals: ChannelRefusals,
    ) -> None:
        self._store = store
        self._rollouts = rollouts
        self._audit = audit
        self._notifier = notifier
        self._refusals = refusals

    async def send(
        self,
        message: OutboxMessage,
        drawn: dict[str, Drawn],
        before_post: BeforePost,
    ) -> None:
        """Send one message (under its lease). `drawn` keeps the rollouts read for the
        messages before it in the same turn; `before_post` is awaited just before each post or
        redraw of the send, and raises `LeaseLost` when the message's lease no longer lasts
        for one."""
        rollout_id = message.rollout_id
        if message.kind == UNFOLLOWED:
            await self._notifier.draw_unfollowed(
                UnfollowedRun.from_json(dict(message.payload)),
                channel=message.channel_id,
                before_post=before_post,
            )
            return
        if message.kind == REFUSED:
            await self._refusals.tell(message, before_post)
            return
        if message.kind == LANES:
            await tell_lane(self._notifier, message, before_post)
            return
        if rollout_id is None:
            raise of_no_rollout(message.kind)
        if message.kind == CARD or rollout_id not in drawn:
            found = await self._rollouts.with_plan(rollout_id)
            if found is None:
                raise DeliveryFailed(f"rollout {rollout_id} is gone", permanent=True)
            drawn[rollout_id] = found
        rollout, plan = drawn[rollout_id]
        unclear = message.attempts > 0
        if message.kind == CARD:
            if rollout.message_ts is not None and await self._store.superseded(message):
                return  # a newer redraw follows: draw the card once
            drawn[rollout_id] = (
                await self._card(rollout, plan, before_post, look=unclear, gone=unclear),
                plan,
            )
            return
        if rollout.message_ts is None and message.kind != FAILURE:
            # A thread line needs its card. A failure told elsewhere does not (it links the
            # thread when there is one): a card its channel refuses does not silence it there.
            rollout = await self._card(rollout, plan, before_post, look=unclear)
            drawn[rollout_id] = rollout, plan
        if unclear and await self._notifier.posted(
            rollout, key=message.id, channel=message.channel_id, since=message.created_at
        ):
            log.info("message %s (%s) was posted by an earlier attempt", message.id, message.kind)
            return
        try:
            await post(self._notifier, self._audit, message, rollout, plan, before_post)
        except DeliveryFailed as failure:
            if not failure.card_gone or message.kind == FAILURE:
                raise
            # The thread's card was deleted: it is posted again (or found, when an earlier
            # attempt or another replica posted it already), and the reply goes under it.
            rollout = await self._card(rollout, plan, before_post, look=True, gone=True)
            drawn[rollout_id] = rollout, plan
            await post(self._notifier, self._audit, message, rollout, plan, before_post)

    async def _card(
        self,
        rollout: Rollout,
        plan: RolloutPlan,
        before_post: BeforePost,
        *,
        look: bool,
        gone: bool = False,
    ) -> Rollout:
        """Draw the card; its first post records its ts, which thread replies need. With
        `look`, a card an earlier attempt posted (or, for a card `gone` or maybe gone, posted
        again) is found and redrawn, not posted again."""
        if look and (gone or rollout.message_ts is None):
            found = await self._notifier.find_card(rollout)
            if found is not None and found != rollout.message_ts:
                log.info("the card of %s was posted by an earlier attempt", rollout.id)
                found = await self._rollouts.set_message_ts(
                    rollout.id, found, replacing=rollout.message_ts
                )
                rollout = replace(rollout, message_ts=found)
        ts = await self._notifier.publish(rollout, plan, before_post)
        if ts != rollout.message_ts:  # its first post, or a deleted card posted again
            ts = await self._rollouts.set_message_ts(rollout.id, ts, replacing=rollout.message_ts)
        return replace(rollout, message_ts=ts)
