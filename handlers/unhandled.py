"""Slack requests no listener takes: acknowledged (200, the Socket Mode ack), so Slack neither
retries them nor shows an error. A button of an older card: the person is told what to do,
after the ack; a form of an older version stays open with the reason under its first field."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncRespond
from slack_bolt.response import BoltResponse

from bot.adapters.slack.actions import NOT_OURS, InvalidPayload
from handlers.ack_first import AckFirst

log = logging.getLogger(__name__)

Report = Callable[[Exception, dict[str, Any], AsyncRespond | None], Awaitable[None]]


class Unhandled:
    """The answers to requests no listener takes, for one app (`report` tells a person)."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._telling: set[asyncio.Task[None]] = set()

    def answer(
        self, body: dict[str, Any], respond: AsyncRespond, acks: AckFirst | None
    ) -> BoltResponse:
        """Bolt's answer to the request; a stale button's person is told in a task of its
        own (Bolt answers Slack only once this returns, within Slack's 3 seconds)."""
        log.info("Slack request acknowledged and ignored: %s", _described(body))
        if body.get("type") == "block_actions":
            told = asyncio.create_task(
                _told(self._report(InvalidPayload(NOT_OURS), body, respond), acks)
            )
            self._telling.add(told)
            told.add_done_callback(self._telling.discard)
        return BoltResponse(status=200, body=_form_refused(body))


async def _told(answer: Awaitable[None], acks: AckFirst | None) -> None:
    """An answer sent after the ack, counted as work (a shutdown lets it end)."""
    with acks.working() if acks is not None else contextlib.nullcontext():
        await answer


def _form_refused(body: dict[str, Any]) -> str:
    """A submitted form's answer that keeps it open and says why (`response_action: errors`
    under its first input); empty for anything else, or a form with no input."""
    view = body.get("view") if body.get("type") == "view_submission" else None
    state = view.get("state") if isinstance(view, dict) else None
    values = state.get("values") if isinstance(state, dict) else None
    if not isinstance(values, dict) or not values:
        return ""
    return json.dumps({"response_action": "errors", "errors": {next(iter(values)): NOT_OURS}})


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
