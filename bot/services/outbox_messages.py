"""The messages a state change writes to the outbox, how their payloads read back, and how
each is posted."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from bot.domain.freeze_all import LanesTold, told_from_json, told_to_json
from bot.domain.gate import GateVerdict
from bot.domain.metrics import Reading
from bot.domain.plan import Notifications, RolloutPlan
from bot.domain.rollout import (
    Event,
    NewerEvent,
    Rollout,
    event_from_json,
    event_to_json,
    verdict_from_json,
    verdict_to_json,
)
from bot.domain.rollout_summary import summarize
from bot.services.outbox_ports import Outboxes
from bot.services.ports import BeforePost, DeliveryFailed, LaneNotice, Notifier
from bot.services.records import CARD as CARD
from bot.services.records import SUMMARY as SUMMARY
from bot.services.records import NewMessage, OutboxMessage, is_machine
from bot.services.store_ports import AuditLog

log = logging.getLogger(__name__)

THREAD = "thread"
FAILURE = "failure"
FIGURES = "figures"
GATE = "gate"
UNFOLLOWED = "unfollowed_run"
"""The card of a run the bot did not start (`bot.services.unfollowed_runs`), of no rollout."""
REFUSED = "channel_refused"
"""The notice, in a failure channel, that a release channel refuses the bot
(`bot.services.channel_refusals`), of no rollout."""

LANES = "freeze_all"
"""The notice, in another release channel, of a `/rollout freeze --all` or `unfreeze --all`
(`bot.services.freeze_all`), of no rollout."""

REPLIES = frozenset({THREAD, FIGURES, GATE, SUMMARY})
"""The kinds posted in a rollout's thread (replies to its card)."""

KINDS = frozenset({CARD, THREAD, FAILURE, FIGURES, GATE, SUMMARY, UNFOLLOWED, REFUSED, LANES})
"""Every kind of message this version writes and posts."""


class NewerKind(LookupError):
    """A message of a kind this version does not know: a newer version's replica wrote it (a
    rolling upgrade under way), and only such a replica can post it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"a message of kind {kind!r}, which a newer version wrote")


def of_no_rollout(kind: str) -> NewerKind | DeliveryFailed:
    """Why a message of no rollout, and of none of the kinds that have none, is not posted: a
    newer version's kind is left to its replicas; one of this version's wants its rollout."""
    if kind not in KINDS:
        return NewerKind(kind)
    return DeliveryFailed("a message of no rollout", permanent=True)


class Reopened(Exception):
    """A summary whose rollout a re-run reopened since it was claimed: it is given back, no
    attempt counted, and waits for the rollout's next end (`storage.outbox` passes it by)."""


_READING: TypeAdapter[Reading] = TypeAdapter(Reading)
LEFT_TO_NEWER = timedelta(minutes=1)
"""How often a message only a newer version can word is looked at again (`NewerEvent`)."""
LEFT_TO_NEWER_AT_MOST = timedelta(hours=1)
"""How long after it was written such a message is left to a newer replica: past it, none has
come (the upgrade was rolled back), and it is given up, so that the rollout's later messages
(its card's updates too) go on."""


def card(rollout: Rollout) -> NewMessage:
    """Draw the rollout's card as it stands when delivered (posted the first time)."""
    return NewMessage(kind=CARD, channel_id=rollout.channel_id, rollout_id=rollout.id)


def summary(rollout: Rollout) -> NewMessage:
    """The report of a rollout that has ended, drawn from its state and audit trail when
    delivered."""
    return NewMessage(kind=SUMMARY, channel_id=rollout.channel_id, rollout_id=rollout.id)


def told(
    rollout: Rollout,
    event: Event,
    *,
    notifications: Notifications | None = None,
    failure: bool = False,
    detail: bool = False,
) -> list[NewMessage]:
    """A reply in the rollout's thread telling of `event` (stored as JSON, worded at
    delivery), when the plan's notification level shows it (no `notifications`: always); a
    failure also goes to the failure channel, if set."""
    if notifications is not None and not notifications.shows(failure=failure, detail=detail):
        return []
    payload = {"event": event_to_json(event)}
    messages = [
        NewMessage(
            kind=THREAD,
            channel_id=rollout.channel_id,
            rollout_id=rollout.id,
            payload=payload,
        )
    ]
    elsewhere = notifications.failure_channel if notifications is not None else None
    if failure and elsewhere and elsewhere != rollout.channel_id:
        messages.append(
            NewMessage(kind=FAILURE, channel_id=elsewhere, rollout_id=rollout.id, payload=payload)
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
    """The gate's verdict with the figures (and series) behind it, as read at the time, and
    the window they were for (the save that writes it may extend the window: INCONCLUSIVE)."""
    judged = rollout.track(track).stage(stage)
    since, ends = judged.observed_since, judged.window_ends_at
    window = {"window": [since.isoformat(), ends.isoformat()]} if since and ends else {}
    return NewMessage(
        kind=GATE,
        channel_id=rollout.channel_id,
        rollout_id=rollout.id,
        payload={
            "track": track,
            "stage": stage,
            "verdict": verdict_to_json(verdict),
            "reading": None if reading is None else _READING.dump_python(reading, mode="json"),
            **window,
        },
    )


def lanes_notice(channel: str, told: LanesTold) -> NewMessage:
    """The notice, in the release channel `channel`, of a `/rollout freeze --all` or
    `unfreeze --all` typed in another."""
    return NewMessage(kind=LANES, channel_id=channel, payload=told_to_json(told))


async def tell_lane(notifier: Notifier, message: OutboxMessage, before_post: BeforePost) -> None:
    """Post a notice of `lanes_notice` (not if an earlier attempt did). A channel that refuses
    the bot (not a member, archived) will not take it however often it is tried: the person
    who typed the command is told instead, in the channel they typed it in."""
    notice = LaneNotice(
        channel=message.channel_id,
        told=told_from_json(message.payload),
        key=message.id,
        look_since=message.created_at if message.attempts > 0 else None,
    )
    try:
        await notifier.tell_lane(notice, before_post)
    except DeliveryFailed as failure:
        if failure.channel_refused is None:
            raise
        await before_post()
        await notifier.tell_asker(notice, refusal=failure.channel_refused)
        log.warning(
            "the bot cannot post in %s (%s): told %s in %s instead",
            notice.channel,
            failure.channel_refused,
            notice.told.actor,
            notice.told.typed_in,
        )


def told_event(payload: dict[str, Any]) -> Event | str:
    """What a thread message tells: its event, or the text a previous version wrote."""
    return event_from_json(payload["event"]) if "event" in payload else str(payload["text"])


def stage_of(payload: dict[str, Any]) -> tuple[str, str]:
    """The track and stage a figures request or a gate card is about."""
    return str(payload["track"]), str(payload["stage"])


def gate_reading(payload: dict[str, Any]) -> Reading | None:
    """The figures a gate card was written with (`gate_card`), if any."""
    reading = payload.get("reading")
    return None if reading is None else _READING.validate_python(reading)


def gate_window(payload: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """The window a gate card's figures were for (`gate_card`); None when a 38840bf replica
    wrote it (the card then names the stage's window as delivered)."""
    window = payload.get("window")
    if not window:
        return None
    since, ends = window
    return datetime.fromisoformat(since), datetime.fromisoformat(ends)


async def post(
    notifier: Notifier,
    audit: AuditLog,
    message: OutboxMessage,
    rollout: Rollout,
    plan: RolloutPlan,
    before_post: BeforePost,
) -> None:
    """Post a message of the rollout's thread (or its failure elsewhere), `before_post` awaited
    just before (after the read of a summary's audit trail)."""
    payload = message.payload
    if message.kind == SUMMARY:
        if rollout.ended_at is None:
            raise Reopened(f"rollout {rollout.id} was reopened: its summary waits for its end")
        events = await audit.list_for_rollout(rollout.id)
        done = summarize(rollout, plan, events, machine=is_machine)
        await before_post()
        await notifier.post_summary(rollout, done, key=message.id)
        return
    await before_post()
    if message.kind == THREAD:
        await notifier.announce(rollout, told_event(payload), key=message.id)
    elif message.kind == FAILURE:
        await notifier.post_failure(
            rollout, told_event(payload), channel=message.channel_id, key=message.id
        )
    elif message.kind == FIGURES:
        track, stage = stage_of(payload)
        await notifier.ask_for_figures(rollout, plan, track=track, stage=stage, key=message.id)
    elif message.kind == GATE:
        track, stage = stage_of(payload)
        await notifier.post_gate_card(
            rollout,
            plan,
            track=track,
            stage=stage,
            verdict=verdict_from_json(payload["verdict"]),
            reading=gate_reading(payload),
            window=gate_window(payload),
            key=message.id,
        )
    else:
        raise NewerKind(message.kind)


async def left_to_newer(
    store: Outboxes,
    message: OutboxMessage,
    newer: NewerEvent | NewerKind,
    owner: str,
    now: datetime,
    said: set[tuple[str, str]],
) -> None:
    """A message only a newer version can word or post (a rolling upgrade under way): given
    back without counting an attempt, and looked at again until a newer replica delivers it
    (the rollout's later messages wait behind it, in order; the outbox gives it up past
    `LEFT_TO_NEWER_AT_MOST`). Each kind is logged once (`said`)."""
    what = "thread messages" if isinstance(newer, NewerEvent) else "messages"
    if (what, newer.kind) not in said:
        said.add((what, newer.kind))
        log.warning("%s of kind %r are due: left to a newer version's replicas", what, newer.kind)
    await store.retry(
        message_id=message.id,
        owner=owner,
        due_at=now + LEFT_TO_NEWER,
        error=str(newer),
        failed=False,
    )
