"""Fuzzing the edge: hundreds of validly signed random commands, clicks, modal submissions and
webhooks (hypothesis) against the real app, the sandbox Slack and GitHub, on PostgreSQL (which
refuses what SQLite lets through, such as a NUL byte).

Every request is refused or answered; none may get a 5xx or leave a traceback in the log.
The fuzzed people are not approvers, or ask nothing that changes a rollout, so nothing may
reach GitHub as a write and nothing may be posted in a channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from string import ascii_letters
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.adapters.slack.actions import Action, Callback
from bot.domain.github_events import FOLLOWED
from bot.domain.npm import SECRET_NAME
from bot.domain.rollout_command import Subcommand
from bot.domain.text import clean_text
from sandbox.config import (
    BYSTANDER,
    GITHUB_WEBHOOK_SECRET,
    OTHER_CHANNEL,
    RELEASE_CHANNEL,
    RELEASE_MANAGER,
    REPOSITORY,
    SLACK_SIGNING_SECRET,
)
from sandbox.harness import Sandbox
from sandbox.signing import (
    block_actions_payload,
    github_signature_headers,
    slack_signature_headers,
    slash_command_payload,
    view_submission_payload,
)

BATCH = 8
EXAMPLES = int(os.environ.get("FUZZ_BATCHES", "100"))
"""Batches of BATCH requests of every kind: 800 in `make test` (FUZZ_BATCHES=260 sends over
two thousand, as before)."""

WRITES = ("chat.postMessage", "chat.update", "views.open", "files.completeUploadExternal")

# -- what people and Slack could send ----------------------------------------------------------

_any_text = st.text(st.characters(exclude_categories=()), max_size=16)
"""Anything a str holds, NUL and lone surrogates included (JSON can carry both)."""
_form_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=16)
"""Form bodies are UTF-8 on the wire: no lone surrogates, NUL included."""
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_any_text, inner, max_size=3),
    max_leaves=4,
)
LANE = (Subcommand.FREEZE, Subcommand.UNFREEZE, Subcommand.LOCK, Subcommand.UNLOCK)
"""An approver's freeze or lock changes the release lane, and is said in the channel."""
_users = st.sampled_from([BYSTANDER, "U0OUTSIDE1"]) | _form_text
_channels = st.sampled_from([RELEASE_CHANNEL, OTHER_CHANNEL]) | _form_text
_ids = st.sampled_from(["r-000000000001", "relay", "desktop", "canary", "half"]) | _any_text


def _mutated(payload: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """Some keys replaced by anything, or dropped."""
    for key in data.draw(st.lists(st.sampled_from(sorted(payload)), max_size=3)):
        if data.draw(st.booleans()):
            payload[key] = data.draw(_json)
        else:
            payload.pop(key, None)
    return payload


_button_values = (
    st.fixed_dictionaries(
        {"rollout_id": _ids},
        optional={
            "track": _ids,
            "stage": _ids,
            "version": st.integers() | _any_text,
            "hold": st.sampled_from(["pass", "inconclusive"]) | _any_text,
        },
    ).map(json.dumps)
    | _any_text
)


@st.composite
def commands(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    words = st.sampled_from([*Subcommand, "START", "kill", "--flags-ready", "v1.4.2"])
    text = " ".join(draw(st.lists(words | _form_text, max_size=4)))
    user = draw(st.sampled_from([RELEASE_MANAGER, BYSTANDER]))
    if user == RELEASE_MANAGER and clean_text(text).lower().split()[:1] in (
        [Subcommand.START],
        [Subcommand.NPM_TOKEN],
        *([lane] for lane in LANE),
    ):
        user = BYSTANDER  # the approver asks only what changes nothing without a rollout
    fields: dict[str, Any] = slash_command_payload(
        text=text, user_id=user, channel_id=draw(_channels), response_url=RESPONSE_URL
    )
    if draw(st.booleans()):
        fields.pop(draw(st.sampled_from(sorted(fields))))
    body = urlencode(fields).encode()
    return "/slack/events", body, slack_signature_headers(SLACK_SIGNING_SECRET, body)


@st.composite
def clicks(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    payload = block_actions_payload(
        user_id=draw(_users),
        channel_id=draw(_channels),
        action_id=draw(st.sampled_from([*Action, "npm_check_secret"]) | _any_text),
        value=draw(_button_values),
        response_url=RESPONSE_URL,
        message_ts=draw(st.sampled_from(["1.000001"]) | _any_text),
    )
    payload = _mutated(payload, draw(st.data()))
    body = ("payload=" + quote(json.dumps(payload), safe="")).encode()
    return "/slack/events", body, slack_signature_headers(SLACK_SIGNING_SECRET, body)


@st.composite
def submissions(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    view = {
        "id": "V0FUZZ",
        "type": "modal",
        "callback_id": draw(st.sampled_from(list(Callback)) | _any_text),
        "private_metadata": draw(_button_values),
    }
    values = draw(
        st.dictionaries(
            st.sampled_from(["crash_rate", "error_rate", "sample", "duration"]) | _any_text,
            st.dictionaries(
                st.sampled_from(["figure", "duration"]) | _any_text,
                st.fixed_dictionaries({"type": st.just("plain_text_input"), "value": _any_text}),
                max_size=2,
            ),
            max_size=3,
        )
    )
    payload = view_submission_payload(user_id=draw(_users), view=view, values=values)
    payload = _mutated(payload, draw(st.data()))
    body = ("payload=" + quote(json.dumps(payload), safe="")).encode()
    return "/slack/events", body, slack_signature_headers(SLACK_SIGNING_SECRET, body)


@st.composite
def webhooks(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    run_id = draw(st.integers(min_value=-(2**80), max_value=2**80) | _json)
    anything = draw(_json)
    payload: dict[str, Any] = {
        "action": draw(st.sampled_from(["completed", "waiting", "approved"]) | _any_text),
        "repository": {"full_name": draw(st.just(REPOSITORY) | _any_text)},
        "workflow_run": {"id": run_id, "conclusion": anything},
        "workflow_job": {"run_id": run_id, "name": anything},
        "deployment_status": {"target_url": anything, "state": anything},
        "environment": anything,
        "approver": {"login": anything},
    }
    payload = _mutated(payload, draw(st.data()))
    body = json.dumps(payload).encode()
    event = draw(st.sampled_from([*sorted(FOLLOWED), "ping"]) | st.text(ascii_letters, max_size=20))
    headers = github_signature_headers(GITHUB_WEBHOOK_SECRET, body, event=event)
    return "/github/webhook", body, headers


requests = st.one_of(commands(), clicks(), submissions(), webhooks())
Request = tuple[str, bytes, dict[str, str]]

RESPONSE_URL = "RESPONSEURL"
"""Replaced by a response_url of the sandbox Slack once it runs (it keeps the answers)."""

# -- the app, in a thread of its own, so hypothesis can drive it synchronously ------------------


class _Problems(logging.Handler):
    """Every record with a traceback, and every ERROR."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(f"{record.name}: {record.getMessage()}")


@contextmanager
def running(box: Sandbox) -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzzed app", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(box.__aenter__(), loop).result(timeout=60)
    try:
        yield loop
    finally:
        asyncio.run_coroutine_threadsafe(box.__aexit__(None, None, None), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def is_walkthrough(args: dict[str, Any]) -> bool:
    """A posted NPM_TOKEN walkthrough: `/rollout npm-token` is anyone's to ask, and what it
    posts changes nothing (a fuzzed command draws it often enough to post one)."""
    return str(args.get("text", "")).startswith(f"Set up and verify {SECRET_NAME}")


def send(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_hundreds_of_signed_random_requests_break_nothing(
    tmp_path: Path, postgres_database_url: str
) -> None:
    problems = _Problems()
    root = logging.getLogger()
    level = root.level
    root.addHandler(problems)
    root.setLevel(logging.INFO)  # thousands of requests: the libraries' DEBUG lines cost time
    statuses: Counter[int] = Counter()
    box = Sandbox(workdir=tmp_path, database_url=postgres_database_url)
    try:
        with running(box) as loop, ThreadPoolExecutor(BATCH) as pool:
            answers = quote(box.slack.new_response_url(channel=RELEASE_CHANNEL), safe="").encode()

            def one(request: Request) -> int:
                path, body, headers = request
                if b"RESPONSEURL" in body:  # sign again, with a response_url that answers
                    body = body.replace(b"RESPONSEURL", answers)
                    headers = slack_signature_headers(SLACK_SIGNING_SECRET, body)
                return send(box.url + path, body, headers)

            @settings(
                max_examples=EXAMPLES,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(batch=st.lists(requests, min_size=BATCH, max_size=BATCH))
            def batch_of(batch: list[Request]) -> None:
                """A batch at once, as Slack and GitHub would send them: concurrently."""
                answered = list(pool.map(one, batch))
                statuses.update(answered)
                failed = [(s, r) for s, r in zip(answered, batch, strict=True) if s >= 500]
                assert failed == []

            batch_of()
            # Listeners work after the answer: let the last ones finish before looking.
            asyncio.run_coroutine_threadsafe(asyncio.sleep(1.0), loop).result(timeout=10)
            writes = [
                call.method
                for call in box.slack.calls
                if call.method in WRITES and not is_walkthrough(call.args)
            ]
            github = (list(box.github.dispatches), list(box.github.reviews))
    finally:
        root.removeHandler(problems)
        root.setLevel(level)
    assert statuses.total() >= BATCH * EXAMPLES, statuses
    assert problems.records == [], problems.records[:5]
    assert writes == []
    assert github == ([], [])
