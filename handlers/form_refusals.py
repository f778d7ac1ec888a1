"""A form refused before Slack is answered (who sent it may not, or what they typed does not
read) is answered with its field errors, and audited as a refused command is: the audit trail
has one event for each command, click and form (docs/controls.md). The look-up of the form's
rollout and the check of its sender have until `check_deadline` together: past it, the form
is answered "try again" and nothing is done."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from bot.adapters.slack.mrkdwn import escape
from bot.domain.controls import Control
from bot.domain.errors import InvalidCommand, NotAuthorized, RolloutError
from bot.domain.text import NOT_REPEATED, TOKEN_SHAPE
from bot.services.controls import ControlService
from bot.services.requests import Origin
from handlers.payloads import ViewSubmission

log = logging.getLogger(__name__)

Audited = Callable[..., AbstractAsyncContextManager[None]]
"""`ControlService.audited`: records the request's outcome as one audit event."""

CHECK_SLOW = (
    "Slack did not say in time whether you may do this (it is rate-limiting the bot): "
    "try again in a moment."
)
LOOKUP_SLOW = (
    "The bot could not look this form's rollout up in time (its database is slow to answer): "
    "nothing was done; try again in a moment."
)
FORM_CHECK_S = 2.0
"""Seconds the look-up of a form's rollout and the check of its sender may take together
before the form is answered: Slack waits 3 for the answer (and Bolt, after 3, answers a form
not acknowledged yet as one no listener took, while the listener goes on), a statement held up
by a lock waits out its bound, and asking Slack who is in an approvers' group waits out its
rate limit."""


def check_deadline() -> float:
    """The loop time by which a form just received is to be answered."""
    return asyncio.get_running_loop().time() + FORM_CHECK_S


async def sender_refusal(
    controls: ControlService,
    form: ViewSubmission,
    metadata: Any,
    control: Control | None,
    *,
    until: float,
) -> str | None:
    """Why the form's sender may not submit it, or None; "try again" when Slack is slow to
    say who is an approver (by the loop time `until`), rather than answer the form after Slack
    stopped waiting."""
    try:
        async with asyncio.timeout_at(until):
            return await controls.form_refusal(
                actor=form.user.id, channel_id=metadata.channel_id or "", control=control
            )
    except TimeoutError:
        log.warning("the sender of a %s form was not checked in time", form.view.callback_id)
        return CHECK_SLOW


async def audit_form(
    audited: Audited,
    origin: Origin,
    name: str,
    metadata: object,
    refused: str | None,
    errors: Mapping[str, str],
) -> None:
    """Audit the form `name` answered with `errors`: `refused` (the sender may not submit it,
    the answer in mrkdwn), else what was typed (its errors, plain text, which may quote it: a
    token pasted there is not kept), on the form's rollout."""
    typed = TOKEN_SHAPE.sub(NOT_REPEATED, " ".join(errors.values()))
    error = NotAuthorized(refused) if refused else InvalidCommand(escape(typed))
    with contextlib.suppress(RolloutError):
        async with audited(origin, name, rollout_id=getattr(metadata, "rollout_id", None)):
            raise error
