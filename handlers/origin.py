"""Who sent a Slack request, from where, in which delivery: read from the payload and headers.

Bolt (over HTTP) hands a retried delivery to the listeners like any other; Slack marks it
with `X-Slack-Retry-Num`, and its body (with its `trigger_id`) is the one sent before. The
controls act on a delivery once, and record the retry number. A delivery is its `trigger_id`
and the digest of what Slack sent (over HTTP the signed body, `BODY_DIGEST`; in Socket Mode the
payload): a retry sends the same again, so it is the same delivery, while a trigger_id sent
again with another request (a client or a Slack double that reuses one) is another request,
not a repeat to refuse.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest

from bot.adapters.slack.actions import ButtonValue
from bot.domain.controls import CardRef
from bot.domain.text import whole_number
from bot.services.requests import Origin, Via
from handlers.payloads import BlockActions, ViewSubmission

RETRY_HEADER = "x-slack-retry-num"
BODY_DIGEST = "x-rollout-bot-body-sha256"
"""Set by `handlers.slack_events` (over any a client sent): the SHA-256 of the body as signed."""


def slack_retry(request: AsyncBoltRequest | None) -> int:
    """Slack's retry number of this delivery (0 for a first delivery)."""
    if request is None:
        return 0
    values = request.headers.get(RETRY_HEADER) or []
    first = values[0] if values else "0"
    return whole_number(first) or 0


def delivery(trigger_id: str | None, request: AsyncBoltRequest | None) -> str | None:
    """The delivery a request is: its trigger_id, and the digest of what Slack sent."""
    if not trigger_id:
        return None
    if request is None:
        return trigger_id
    digests = request.headers.get(BODY_DIGEST) or []
    digest = digests[0] if digests else _payload_digest(request.body)
    return f"{trigger_id}:{digest[:16]}"


def _payload_digest(payload: Mapping[str, Any]) -> str:
    """A Socket Mode request's: its payload has no signed bytes, so its JSON in one form."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def click_origin(click: BlockActions, request: AsyncBoltRequest | None) -> Origin:
    """The clicker of a button and the channel the payload names."""
    return Origin(
        click.user.id,
        click.channel_id,
        Via.CLICK,
        delivery(click.trigger_id, request),
        slack_retry(request),
    )


def form_origin(
    form: ViewSubmission, request: AsyncBoltRequest | None, *, channel_id: str | None
) -> Origin:
    """The submitter of a modal, with the channel its opening click came from."""
    return Origin(
        form.user.id,
        channel_id or "",
        Via.FORM,
        delivery(form.trigger_id, request),
        slack_retry(request),
    )


def command_origin(
    *, user_id: str, channel_id: str, trigger_id: str | None, request: AsyncBoltRequest | None
) -> Origin:
    return Origin(
        user_id, channel_id, Via.COMMAND, delivery(trigger_id, request), slack_retry(request)
    )


def card_of(value: ButtonValue) -> CardRef:
    """What the clicked button acts on, as its card showed it."""
    return CardRef(
        value.rollout_id,
        value.track,
        value.stage,
        value.version,
        value.hold,
        value.attempt,
        value.commit,
    )
