"""The buttons and forms reach Bolt as one listener each (`handlers.routing`): each id gets its
own listener with the arguments it declares, an unknown id stays Bolt's unhandled request,
and a click on the last button costs Bolt as many matchers as one on the first."""

from __future__ import annotations

import json
from typing import Any

import pytest
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest

from handlers.routing import Routes

BUTTONS = [f"button_{n}" for n in range(30)]


async def _authorize(**_: Any) -> AuthorizeResult:
    return AuthorizeResult(enterprise_id=None, team_id="T1", bot_token="xoxb-1", bot_user_id="U0")


def app_with(routes: Routes) -> AsyncApp:
    app = AsyncApp(authorize=_authorize, signing_secret="s", request_verification_enabled=False)
    routes.register(app)
    return app


def click(action_id: str) -> AsyncBoltRequest:
    body = {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": "U1"},
        "actions": [{"action_id": action_id, "type": "button", "value": "v"}],
    }
    return AsyncBoltRequest(body=json.dumps(body), headers={"content-type": "application/json"})


def hearing(heard: list[str]) -> Any:
    async def listener(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        heard.append(body["actions"][0]["action_id"])

    return listener


async def _acks(ack: AsyncAck) -> None:
    await ack()


async def test_each_button_gets_its_own_listener_with_what_it_declares() -> None:
    routes = Routes()
    heard: list[str] = []
    routes.action("only_acks")(_acks)  # declares `ack` alone: given nothing else
    for action_id in BUTTONS:
        routes.action(action_id)(hearing(heard))
    app = app_with(routes)

    answers = [await app.async_dispatch(click(a)) for a in ("button_29", "only_acks", "button_0")]

    assert [answer.status for answer in answers] == [200, 200, 200]
    assert heard == ["button_29", "button_0"]
    assert len(app._async_listeners) == 1  # one matcher for thirty-one buttons


async def test_an_unknown_button_is_bolts_unhandled_request() -> None:
    routes = Routes()
    routes.action("known")(_acks)

    answer = await app_with(routes).async_dispatch(click("known_not"))

    assert answer.status == 404


def test_an_id_registered_twice_or_a_listener_asking_for_more_is_refused() -> None:
    routes = Routes()
    routes.action("a")(_acks)
    with pytest.raises(ValueError, match="a is registered twice"):
        routes.action("a")(_acks)

    async def greedy(ack: AsyncAck, say: Any) -> None: ...

    routes.action("b")(greedy)
    with pytest.raises(TypeError, match="may declare only"):
        routes.register(app_with(Routes()))
