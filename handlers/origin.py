"""Who sent a Slack request, from where, in which delivery: read from the payload and headers.

Bolt (over HTTP) hands a retried delivery to the listeners like any other; Slack marks it
with `X-Slack-Retry-Num`, and its body (with its `trigger_id`) is the one sent before. The
controls use the trigger_id to act on a delivery once, and record the retry number.
"""

from __future__ import annotations

from slack_bolt.request.async_request import AsyncBoltRequest

from bot.adapters.slack.actions import ButtonValue
from bot.domain.controls import CardRef
from bot.services.requests import Origin, Via
from handlers.payloads import BlockActions, ViewSubmission

RETRY_HEADER = "x-slack-retry-num"


def slack_retry(request: AsyncBoltRequest | None) -> int:
    """Slack's retry number of this delivery (0 for a first delivery)."""
    if request is None:
        return 0
    values = request.headers.get(RETRY_HEADER) or []
    first = values[0] if values else "0"
    return int(first) if first.isdigit() else 0


def click_origin(click: BlockActions, request: AsyncBoltRequest | None) -> Origin:
    """The clicker of a button and the channel the payload names."""
    return Origin(
        click.user.id, click.channel_id, Via.CLICK, click.trigger_id, slack_retry(request)
    )


def form_origin(
    form: ViewSubmission, request: AsyncBoltRequest | None, *, channel_id: str | None
) -> Origin:
    """The submitter of a modal, with the channel its opening click came from."""
    return Origin(form.user.id, channel_id or "", Via.FORM, form.trigger_id, slack_retry(request))


def command_origin(
    *, user_id: str, channel_id: str, trigger_id: str | None, request: AsyncBoltRequest | None
) -> Origin:
    return Origin(user_id, channel_id, Via.COMMAND, trigger_id or None, slack_retry(request))


def card_of(value: ButtonValue) -> CardRef:
    """What the clicked button acts on, as its card showed it."""
    return CardRef(value.rollout_id, value.track, value.stage, value.version, value.hold)
