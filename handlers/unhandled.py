"""Slack requests no listener takes: acknowledged (200, the Socket Mode ack), so Slack neither
retries them nor shows an error. A button of an older card: the person is told what to do,
after the ack; a form of an older version stays open with the reason under its first field.

Bolt answers the same way a request whose listener did not acknowledge it within 3 s (a form
whose checks an overloaded event loop held up), while that listener goes on. Such a request
was taken (`TAKEN`, marked by `handlers.routing`): it is marked answered (`LATE`), the person
is told the bot was too slow and nothing was done, and the listener's own ack, when it comes,
raises `AnsweredLate` (`unless_late`), so nothing is done for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond
from slack_bolt.response import BoltResponse

from bot.adapters.slack.actions import NOT_OURS, InvalidPayload
from bot.adapters.slack.control_views import notice_modal
from bot.domain.errors import RolloutError
from handlers.ack_first import CONTEXT_KEY, AckFirst

log = logging.getLogger(__name__)

Report = Callable[[Exception, dict[str, Any], AsyncRespond | None], Awaitable[None]]

TAKEN = "listener_took"
"""In a request's context: a listener of the bot took it (Bolt ran it)."""
LATE = "answered_late"
"""In a request's context: Bolt answered it as unhandled, its listener's ack not made in time."""
TOO_SLOW = (
    "The bot was too slow to take this within the 3 seconds Slack waits for it (it is busy), "
    "so nothing was done: try again."
)


class AnsweredLate(RolloutError):
    """A request Bolt answered before its listener did (after Slack's 3 s): nothing is done."""

    code = "answered_late"


def unless_late(ack: AsyncAck, context: AsyncBoltContext) -> Callable[..., Awaitable[Any]]:
    """The listener's `ack`, raising `AnsweredLate` once made if Bolt answered the request
    already: the listener stops there, before it acts."""

    async def acked(*args: Any, **kwargs: Any) -> BoltResponse:
        answered = await ack(*args, **kwargs)
        if context.get(LATE):
            raise AnsweredLate(TOO_SLOW)
        return answered

    return acked


class Unhandled:
    """The answers to requests no listener takes, for one app (`report` tells a person)."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._telling: set[asyncio.Task[None]] = set()

    def answer(
        self, body: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> BoltResponse:
        """Bolt's answer to the request; a button's person is told in a task of its own (Bolt
        answers Slack only once this returns, within Slack's 3 seconds)."""
        late = bool(context.get(TAKEN))
        if late:  # a listener took it, and did not acknowledge it in time
            context[LATE] = True
            log.warning("Slack %s not acknowledged within 3 s: told so", _described(body))
        else:
            log.info("Slack request acknowledged and ignored: %s", _described(body))
        refusal = AnsweredLate(TOO_SLOW) if late else InvalidPayload(NOT_OURS)
        if body.get("type") == "block_actions":
            told = asyncio.create_task(
                _told(self._report(refusal, body, respond), context.get(CONTEXT_KEY))
            )
            self._telling.add(told)
            told.add_done_callback(self._telling.discard)
        return BoltResponse(status=200, body=_form_refused(body, refusal.message, late=late))


async def _told(answer: Awaitable[None], acks: AckFirst | None) -> None:
    """An answer sent after the ack, counted as work (a shutdown lets it end)."""
    with acks.working() if acks is not None else contextlib.nullcontext():
        await answer


def _form_refused(body: dict[str, Any], reason: str, *, late: bool) -> str:
    """A submitted form's answer that keeps it open and says why (`response_action: errors`
    under its first input); for a form with no input, the form turned into the reason when
    it came `late`, else empty (as for anything else)."""
    view = body.get("view") if body.get("type") == "view_submission" else None
    if not isinstance(view, dict):
        return ""
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    if isinstance(values, dict) and values:
        return json.dumps({"response_action": "errors", "errors": {next(iter(values)): reason}})
    if late:
        return json.dumps({"response_action": "update", "view": notice_modal(reason)})
    return ""


def _described(body: dict[str, Any]) -> str:
    """What a request no listener takes is, in a few words (its type, and the id it names)."""
    event = body.get("event")
    actions = body.get("actions")
    view = body.get("view")
    named: object = None
    if isinstance(event, dict):
        named = event.get("type")
    elif isinstance(actions, list) and actions and isinstance(actions[0], dict):
        named = actions[0].get("action_id")
    elif isinstance(view, dict):
        named = view.get("callback_id")
    return f"{body.get('type', body.get('command'))!r:.40} {named!r:.64}"
