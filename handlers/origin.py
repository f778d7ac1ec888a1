"""Who sent a Slack request, from where, in which delivery: read from the payload and headers.

Bolt (over HTTP) hands a retried delivery to the listeners like any other; Slack marks it
with `X-Slack-Retry-Num`, and its body (with its `trigger_id`) is the one sent before. The
controls use the trigger_id to act on a delivery once, and record the retry number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest

from bot.controls import Origin, Via
from bot.domain.controls import CardRef
from handlers.actions import ButtonValue
from handlers.payloads import BlockActions, ViewSubmission, parse

RETRY_HEADER = "x-slack-retry-num"


def slack_retry(request: AsyncBoltRequest | None) -> int:
    """Slack's retry number of this delivery (0 for a first delivery)."""
    if request is None:
        return 0
    values = request.headers.get(RETRY_HEADER) or []
    first = values[0] if values else "0"
    return int(first) if first.isdigit() else 0


def click_origin(
    body: BlockActions | Mapping[str, Any], request: AsyncBoltRequest | None
) -> Origin:
    """The clicker of a `block_actions` payload and the channel the payload names (raises
    InvalidPayload when the body is not one)."""
    click = body if isinstance(body, BlockActions) else parse(BlockActions, body)
    return Origin(
        actor=click.user.id,
        channel_id=click.channel_id,
        via=Via.CLICK,
        delivery=click.trigger_id,
        retry=slack_retry(request),
    )


def form_origin(
    form: ViewSubmission, request: AsyncBoltRequest | None, *, channel_id: str | None
) -> Origin:
    """The submitter of a modal, with the channel its opening click came from."""
    return Origin(
        actor=form.user.id,
        channel_id=channel_id or "",
        via=Via.FORM,
        delivery=form.trigger_id,
        retry=slack_retry(request),
    )


def command_origin(
    *, user_id: str, channel_id: str, trigger_id: str | None, request: AsyncBoltRequest | None
) -> Origin:
    return Origin(
        actor=user_id,
        channel_id=channel_id,
        via=Via.COMMAND,
        delivery=trigger_id or None,
        retry=slack_retry(request),
    )


def card_of(value: ButtonValue) -> CardRef:
    """What the clicked button acts on, as its card showed it."""
    return CardRef(
        rollout_id=value.rollout_id,
        track=value.track,
        stage=value.stage,
        version=value.version,
        hold=value.hold,
    )
