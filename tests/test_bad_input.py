"""Bad input never breaks a control: unsigned garbage costs a 401 and a line, signed requests
that are not shaped as Slack sends them get a 400 or a clear answer, text the database cannot
store is cleaned (a kill-switch goes through whatever its reason says), and a webhook about a
run id no 64-bit column holds is ignored. Signed requests against the real app.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from figures import every_gate_passes
from sandbox_views import dispatched
from test_controls import sandbox_for

from bot.domain.rollout import TrackState
from bot.domain.rollout_command import Kill, parse_command
from bot.domain.text import NOT_REPEATED, clean_text
from sandbox.config import (
    GITHUB_WEBHOOK_SECRET,
    RELEASE_CHANNEL,
    RELEASE_MANAGER,
    SLACK_SIGNING_SECRET,
)
from sandbox.harness import Sandbox
from sandbox.signing import (
    SANDBOX_TEAM_ID,
    block_actions_payload,
    github_signature_headers,
    slack_signature_headers,
)

pytestmark = pytest.mark.story


@pytest.fixture
async def box(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with sandbox_for(tmp_path, database_url) as sandbox:
        every_gate_passes(sandbox)
        yield sandbox


async def post(box: Sandbox, body: bytes | str, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{box.url}/slack/events", data=body, headers=headers) as response,
    ):
        return response.status


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_text_is_cleaned_of_nul_and_lone_surrogates_and_nothing_else() -> None:
    assert clean_text("bad build\x00 stop now") == "bad build stop now"
    assert clean_text("half \ud83d pair") == "half \ufffd pair"
    assert clean_text("ünïcödé 🚀 <@U1> `x`\t\n") == "ünïcödé 🚀 <@U1> `x`\t\n"
    assert parse_command("kill bad build\x00 stop now") == Kill(reason="bad build stop now")


async def test_a_kill_whose_reason_carries_a_nul_still_trips_the_kill_switch(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    await dispatched(box)
    await box.wait_until(lambda r: r.track("desktop").current is not None)

    answer = await box.command("kill bad build\x00 stop now")

    assert "Kill-switch tripped" in answer
    stopped = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
    assert any(
        (env, r.state) == ("desktop-kill-switch", "approved")
        for r in box.github.reviews
        for env in r.environments
    ), box.github.reviews
    events = await box.audit.list_for_rollout(stopped.id)
    kills = [e for e in events if e.action == "abort_desktop" and e.result == "ok"]
    detail = kills[0].detail if kills else None
    # With the claim it was done under (`Stops.put_back_of` reads by it).
    assert detail is not None and detail["reason"] == "bad build stop now", detail
    assert set(detail) == {"reason", "claim"}, detail
    assert tracebacks(caplog) == []


async def test_a_kill_whose_reason_is_a_pasted_token_trips_the_kill_switch_without_it(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """The kill-switch goes through whatever its reason says; a token pasted as its reason was
    said in the thread for everyone and kept in the audit trail."""
    token = "npm_" + "K1ll" * 9
    caplog.set_level(logging.DEBUG)
    await dispatched(box)
    await box.wait_until(lambda r: r.track("desktop").current is not None)

    answer = await box.command(f"kill crashes {token}")

    assert "Kill-switch tripped" in answer
    stopped = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
    await box.slack.wait_for(lambda: any(NOT_REPEATED in line for line in box.thread()))
    assert not [call for call in box.slack.calls if token[4:12] in json.dumps(call.args)]
    events = await box.audit.list_for_rollout(stopped.id)
    kills = [e for e in events if e.action == "abort_desktop" and e.result == "ok"]
    detail = kills[0].detail if kills else None
    # With the claim it was done under (`Stops.put_back_of` reads by it).
    assert detail is not None and detail["reason"] == f"crashes {NOT_REPEATED}", detail
    assert set(detail) == {"reason", "claim"}, detail
    assert token[4:12] not in repr(await box.audit.list_for_actor(RELEASE_MANAGER))
    assert token[4:12] not in repr(await box.rollouts())
    assert not [r for r in caplog.records if token[4:12] in r.getMessage()]


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\x00not utf-8 at all",
        b"payload=%7B%22type%22%3A",
        b"payload=%FF%FE",
        b'{"type": "event_callback", "event": [',
        b"user_id=&&&===%",
    ],
)
async def test_unsigned_garbage_is_refused_before_it_is_read(
    box: Sandbox, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    headers = {
        "X-Slack-Request-Timestamp": str(int(time.time())),
        "X-Slack-Signature": "v0=" + "0" * 64,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    caplog.clear()
    assert await post(box, body, headers) == 401
    lines = [r for r in caplog.records if r.name.startswith(("bot", "handlers", "slack_bolt"))]
    assert len(lines) <= 1 and tracebacks(caplog) == []
    assert box.slack.calls == []


def _click(**changes: Any) -> dict[str, Any]:
    payload = block_actions_payload(
        user_id=RELEASE_MANAGER,
        channel_id=RELEASE_CHANNEL,
        action_id="promote",
        value=json.dumps({"rollout_id": "r-000000000001"}),
        response_url="http://127.0.0.1:9/none",
        message_ts="1.000001",
    )
    payload.update(changes)
    return payload


@pytest.mark.parametrize(
    "payload",
    [
        _click(actions=[]),  # was IndexError
        _click(user=[]),  # was AttributeError: 'list' object has no attribute 'get'
        _click(team=["T1"], channel="C0RELEASES"),
        _click(channel={"id": "I"}),  # no conversation id: was named as the mention <#I>
        _click(channel={"id": "c0releases"}),  # Slack writes ids in capitals
        {"type": "view_submission", "user": {"id": "U0RELMGR01"}, "view": []},
        [],
    ],
)
async def test_signed_payloads_not_shaped_as_slack_sends_them_get_a_400(
    box: Sandbox, caplog: pytest.LogCaptureFixture, payload: object
) -> None:
    body = "payload=" + quote(json.dumps(payload), safe="")
    assert await post(box, body, slack_signature_headers(SLACK_SIGNING_SECRET, body)) == 400
    assert tracebacks(caplog) == []
    assert box.slack.calls == []


async def test_a_form_without_state_is_answered_not_crashed(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Was `KeyError: 'state'`: a figures form without state or metadata gets its errors."""
    payload = {
        "type": "view_submission",
        "team": {"id": SANDBOX_TEAM_ID},
        "user": {"id": RELEASE_MANAGER},
        "trigger_id": "1.2.abc",
        "view": {"id": "V1", "callback_id": "figures", "private_metadata": "{"},
    }
    body = "payload=" + quote(json.dumps(payload), safe="")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{box.url}/slack/events",
            data=body,
            headers=slack_signature_headers(SLACK_SIGNING_SECRET, body),
        ) as response,
    ):
        assert response.status == 200
        answer = await response.json()
    assert answer["response_action"] == "errors"
    assert tracebacks(caplog) == []


@pytest.mark.parametrize(
    "value",
    [
        '{"rollout_id": "r-1\\u0000"}',
        json.dumps({"rollout_id": "r-" + "0" * 40}),
        json.dumps({"rollout_id": "r-1", "version": 2**70}),
        json.dumps({"rollout_id": "r-1", "hold": "maybe"}),
    ],
)
async def test_a_button_value_the_bot_did_not_make_is_answered_clearly(
    box: Sandbox, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    url = box.slack.new_response_url(channel=RELEASE_CHANNEL, user=RELEASE_MANAGER)
    payload = _click(response_url=url)
    payload["actions"][0]["value"] = value
    body = "payload=" + quote(json.dumps(payload), safe="")
    assert await post(box, body, slack_signature_headers(SLACK_SIGNING_SECRET, body)) == 200
    (answer,) = await box.slack.wait_for_response(url)
    assert "does not carry a value the bot made" in json.dumps(answer.body)
    assert tracebacks(caplog) == []


async def test_a_slash_command_text_with_nul_is_answered_not_crashed(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    answer = await box.command("st\x00art v1\x00.4.2")
    assert "Preflight of `v1.4.2` posted" in answer
    assert tracebacks(caplog) == []


async def test_a_command_slack_sends_longer_once_escaped_is_answered_clearly(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack takes 4,000 typed characters and sends each `&`, `<`, `>` of them as an entity
    (`&lt;` is four): 2,005 typed arrive as 8,005, which the bot refused as no Slack request
    (HTTP 400: Slack shows the person its own failure, nothing audited)."""
    typed = "lock " + "<>" * 1000
    answer = await box.command(typed)
    assert "The lock reason is too long (at most 500 characters)." in answer, answer
    assert (await box.services.lane.state()).lock is None
    (refused,) = [
        e for e in await box.audit.list_for_actor(RELEASE_MANAGER) if e.action == "command:lock"
    ]
    assert refused.result == "invalid_command"
    assert tracebacks(caplog) == []


async def test_a_webhook_about_a_run_id_beyond_64_bits_is_ignored(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    payload = {
        "action": "completed",
        "repository": {"full_name": "scriptum/scriptum"},
        "workflow_run": {"id": 2**70, "conclusion": "success"},
    }
    body = json.dumps(payload).encode()
    headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, body, event="workflow_run")
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{box.url}/github/webhook", data=body, headers=headers) as response,
    ):
        assert response.status in (200, 202, 400)
        answer = await response.json()
    assert answer.get("result", "ignored") == "ignored"
    assert tracebacks(caplog) == []


async def test_slacks_url_verification_and_ssl_check_are_still_answered(box: Sandbox) -> None:
    challenge = json.dumps({"type": "url_verification", "token": "t", "challenge": "c-123"})
    headers = slack_signature_headers(SLACK_SIGNING_SECRET, challenge, content_type=None)
    headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{box.url}/slack/events", data=challenge, headers=headers) as response,
    ):
        assert response.status == 200
        assert "c-123" in await response.text()
    check = "ssl_check=1&token=t"
    assert await post(box, check, slack_signature_headers(SLACK_SIGNING_SECRET, check)) == 200
