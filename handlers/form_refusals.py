"""A form refused before Slack is answered (who sent it may not, or what they typed does not
read) is answered with its field errors, and audited as a refused command is: the audit trail
has one event for each command, click and form (docs/controls.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager

from bot.adapters.slack.mrkdwn import escape
from bot.domain.errors import InvalidCommand, NotAuthorized, RolloutError
from bot.domain.text import NOT_REPEATED, TOKEN_SHAPE
from bot.services.requests import Origin

Audited = Callable[..., AbstractAsyncContextManager[None]]
"""`ControlService.audited`: records the request's outcome as one audit event."""


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
