"""The buttons and forms reach Bolt as one listener each, which finds the id's own in a dict.

Bolt tries its listeners one after another until one matches, and for each it builds every
argument a listener could ask for (`build_async_required_kwargs`: a few microseconds per
listener, before the ack). With one Bolt listener per button and form, a click on the last of
them paid for some thirty matchers before it was acknowledged. The modules register their
buttons (`action`) and forms (`view`) here by id instead; `register` gives Bolt one listener for
the buttons and one for the forms, each matching exactly the ids registered, so an unknown id
is still Bolt's unhandled request. Each marks its request taken, and gives its listener an
`ack` that stops it once made too late (`handlers.unhandled`).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from handlers import unhandled
from handlers.errors import Listener

log = logging.getLogger(__name__)


class Routes:
    """The app's buttons by action id and forms by callback id, each with its listener."""

    def __init__(self) -> None:
        self._actions: dict[str, Listener] = {}
        self._views: dict[str, Listener] = {}

    def action(self, action_id: str) -> Callable[[Listener], Listener]:
        """Like Bolt's `app.action(action_id)`, for a block action."""
        return lambda listener: _add(self._actions, action_id, listener)

    def view(self, callback_id: str) -> Callable[[Listener], Listener]:
        """Like Bolt's `app.view(callback_id)`, for a view submission."""
        return lambda listener: _add(self._views, callback_id, listener)

    def register(self, app: AsyncApp) -> None:
        if self._actions:
            app.action({"type": "block_actions", "action_id": _exactly(self._actions)})(
                _routed(self._actions, lambda body: body["actions"][0]["action_id"])
            )
        if self._views:
            app.view({"type": "view_submission", "callback_id": _exactly(self._views)})(
                _routed(self._views, lambda body: body["view"]["callback_id"])
            )


def _add(table: dict[str, Listener], key: str, listener: Listener) -> Listener:
    if key in table:
        raise ValueError(f"{key} is registered twice")
    table[key] = listener
    return listener


def _exactly(table: dict[str, Listener]) -> re.Pattern[str]:
    return re.compile("^(?:" + "|".join(re.escape(key) for key in table) + ")$")


def _routed(table: dict[str, Listener], key_of: Callable[[dict[str, Any]], str]) -> Listener:
    """One Bolt listener for the table: it hands each request to its id's listener, with the
    arguments that listener declares (Bolt passes them by name)."""
    declared = {key: tuple(inspect.signature(one).parameters) for key, one in table.items()}
    if {name for names in declared.values() for name in names} - _GIVEN:
        raise TypeError(f"a routed listener may declare only {', '.join(sorted(_GIVEN))}")

    async def routed(
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        request: AsyncBoltRequest,
        client: AsyncWebClient,
    ) -> None:
        request.context[unhandled.TAKEN] = True
        given = {
            "ack": unhandled.unless_late(ack, request.context),
            "body": body,
            "respond": respond,
            "request": request,
            "client": client,
        }
        key = key_of(body)
        try:
            await table[key](**{name: given[name] for name in declared[key]})
        except unhandled.AnsweredLate:
            log.warning("%s answered after Slack's 3 s, Bolt's answer sent: nothing done", key)

    return routed


_GIVEN = frozenset({"ack", "body", "respond", "request", "client"})
"""The arguments a routed listener may declare: those `routed` asks Bolt for."""
