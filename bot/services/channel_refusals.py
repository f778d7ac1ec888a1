"""Telling the failure channel that the release channel refuses the bot.

While the bot is not in the release channel, or the channel is archived, Slack refuses every
post there: the outbox gives each message up (a dead letter, logged). Only failures reached a
person before (they go to the plan's failure channel too); passes, promotions and "Enter
figures" prompts were lost in the logs. The first message given up writes ONE notice to the
failure channel (once across replicas: `Outboxes.told_once`), naming the channel and its fix;
the notice, drawn when delivered, lists what was not delivered by then. Services that share
the release channel but not the failure channel are told each in their own, of their own
rollouts' messages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bot.services.outbox_messages import REFUSED, REPLIES
from bot.services.outbox_ports import Outboxes
from bot.services.ports import BeforePost, DeliveryFailed, Notifier, RefusalNotice, Undelivered
from bot.services.records import NewMessage, OutboxMessage
from bot.services.store_ports import Rollouts

log = logging.getLogger(__name__)


def refusal_notice(
    channel_id: str, *, refusing: str, refusal: str, replies: bool = False
) -> NewMessage:
    """The notice, in `channel_id`, that `refusing` refuses the bot (Slack's `refusal`; its
    thread replies only: `replies`); the outbox adds the message it follows (`after`,
    `Outboxes.told_once`)."""
    payload = {"channel": refusing, "refusal": refusal} | ({"replies": True} if replies else {})
    return NewMessage(kind=REFUSED, channel_id=channel_id, payload=payload)


def notice_of(payload: Mapping[str, Any]) -> tuple[str, str, int, bool]:
    """A stored notice's refusing channel, Slack's refusal, the message it follows, and
    whether it tells of thread replies only."""
    refusing, refusal = str(payload["channel"]), str(payload["refusal"])
    return refusing, refusal, int(payload.get("after", 0)), bool(payload.get("replies"))


class ChannelRefusals:
    """Writes the notice of a refusing channel once, and delivers it."""

    def __init__(self, *, store: Outboxes, rollouts: Rollouts, notifier: Notifier) -> None:
        self._store = store
        self._rollouts = rollouts
        self._notifier = notifier

    async def given_up(
        self, message: OutboxMessage, failure: DeliveryFailed, *, now: datetime
    ) -> None:
        """`message` was given up because its channel refuses the bot: tell the failure
        channel of its rollout's plan, unless told of this refusal already. A message of no
        rollout (the card of a run the bot did not start) names no plan, and a failure
        channel that is the refusing one cannot be told: logged only."""
        refusal = failure.channel_refused
        if refusal is None or message.kind == REFUSED or message.rollout_id is None:
            return
        found = await self._rollouts.with_plan(message.rollout_id)
        elsewhere = None if found is None else found[1].notifications.failure_channel
        if elsewhere is None or elsewhere == message.channel_id:
            log.error(
                "the bot cannot post in %s (%s) and no other failure channel can be told",
                message.channel_id,
                refusal,
            )
            return
        # Refused a thread reply only (the channel's posting permissions let the bot post, not
        # reply in threads): told as such, once for as long as no reply goes through there.
        replies = failure.replies_only
        notice = refusal_notice(
            elsewhere, refusing=message.channel_id, refusal=refusal, replies=replies
        )
        kinds = REPLIES if replies else None
        if await self._store.told_once(notice, refusing=message.channel_id, now=now, kinds=kinds):
            log.error(
                "the bot cannot %s in %s (%s): told in %s",
                "reply in threads" if replies else "post",
                message.channel_id,
                refusal,
                elsewhere,
            )

    async def tell(self, message: OutboxMessage, before_post: BeforePost) -> None:
        """Post the notice, with what its channel was not told since the refusal began
        (`before_post` awaited after the reads that word it, just before its post)."""
        refusing, refusal, after, replies = notice_of(message.payload)
        given_up = await self._store.refused(refusing, after=after)
        if replies:  # the cards posted meanwhile, or given up for another reason, are not its
            given_up = [lost for lost in given_up if lost.kind in REPLIES]
        undelivered: list[Undelivered] = []
        # Each rollout's tag, and whether its failures are told here: a release channel that
        # several services share may be told of in several failure channels, each of its own
        # services' rollouts only.
        tags: dict[str, tuple[str | None, bool]] = {}
        for lost in given_up:
            if lost.rollout_id is not None and lost.rollout_id not in tags:
                found = await self._rollouts.with_plan(lost.rollout_id)
                ours = found is None or found[1].notifications.failure_channel == message.channel_id
                tags[lost.rollout_id] = (None if found is None else found[0].tag, ours)
            tag, ours = (None, True) if lost.rollout_id is None else tags[lost.rollout_id]
            if ours:
                undelivered.append(Undelivered(kind=lost.kind, tag=tag))
        await self._notifier.tell_refused(
            RefusalNotice(
                channel=message.channel_id,
                refusing=refusing,
                refusal=refusal,
                undelivered=undelivered,
                key=message.id,
                look_since=message.created_at if message.attempts > 0 else None,
                replies_only=replies,
            ),
            before_post,
        )
