"""`POST /slack/events`: authenticate the raw bytes, then validate, then hand over to Bolt.

The signature (slack_sdk's `SignatureVerifier`, on the body exactly as received) is checked
before anything parses the body, so an unsigned request costs a 401 (and a log line a minute,
`handlers.refusals`), whatever it holds: one without the signature's headers is not even read,
and a body over `MAX_BODY` is not read in full (413). A signed body is then
validated into one of `handlers.payloads`' models; what does not fit (nothing Slack itself
sends) is refused with a 400 and one line, and what fits reaches Bolt as that model again, so
no listener meets a shape it does not expect. A signed request of a kind no listener takes (an
event the bot does not use, `app_rate_limited`, a `view_closed`) is answered 200 unread: Slack
retries an event answered otherwise, and disables the subscriptions of an app that answers
more than 5% of them so (https://docs.slack.dev/reference/events/app_rate_limited/).
Bolt's own verification is off: it would check the rebuilt body, and this check came first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from handlers.app_keys import ACKS, BOLT, REFUSALS, SETTINGS, TELEMETRY
from handlers.bodies import read_at_most
from handlers.origin import BODY_DIGEST
from handlers.payloads import (
    HANDLED_EVENTS,
    HANDLED_INTERACTIONS,
    BlockActions,
    EventCallback,
    SlashCommand,
    UrlVerification,
    ViewSubmission,
)
from handlers.refusals import Kind

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
"""Slack's requests are a few kilobytes; anything near this is not from Slack."""

FRESH_S = 5 * 60
"""How old a signature Slack's verifier takes: an older one is a replay, not another secret."""

# Slack sends seconds since the epoch. Anything else is refused before the verifier sees it:
# it calls int() on the header, which raises on "abc" and accepts "+1_0".
_TIMESTAMP = re.compile(r"[0-9]{1,12}")

_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
"""`X-Slack-Signature` as Slack sends it (slack_sdk's verifier makes the same): anything else
cannot match, whatever the body. Refused before the verifier sees it: it compares strings, and
raises on one that is not ASCII (a 500 and a traceback for each such request)."""

_Interaction = TypeAdapter(Annotated[BlockActions | ViewSubmission, Field(discriminator="type")])
_Event = TypeAdapter(Annotated[EventCallback | UrlVerification, Field(discriminator="type")])


class Refused(Exception):
    """A signed request the bot cannot read: answered 400 with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def receive(request: web.Request) -> web.Response:
    if _signature_headers(request) is None:
        unsigned = _unsigned(request)
        unsigned.force_close()  # what is sent of its body is dropped, not read
        return unsigned
    # The app's limit is the webhook's 25 MB, which an unsigned sender must not make it take in.
    body = await read_at_most(request, MAX_BODY)
    if body is None:
        request.app[REFUSALS].warning(
            log, Kind.SLACK_TOO_LARGE, "Slack request refused: its body is over %d bytes", MAX_BODY
        )
        return web.json_response({"error": "request body too large"}, status=413)
    text = _signed(request, body)
    if text is None:
        return _unsigned(request)
    try:
        payload = _validated(text, request.content_type)
    except Refused as refused:
        log.info("Slack request refused: %s", refused.reason)
        return web.json_response({"error": refused.reason}, status=400)
    if payload is None:  # Slack's SSL check, or a kind of request the bot has no use for
        return web.Response(status=200)
    headers: dict[str, str | Sequence[str]] = {
        name.lower(): value for name, value in request.headers.items()
    }
    headers["content-type"] = "application/json"
    headers[BODY_DIGEST] = hashlib.sha256(body).hexdigest()  # what Slack signed, not the rebuild
    acks = request.app[ACKS]
    bolt_request = AsyncBoltRequest(
        body=json.dumps(payload.model_dump(mode="json", exclude_none=True)),
        query=request.query_string,
        headers=headers,
    )
    with acks.acknowledging():  # until Bolt answers: the listeners' work waits (`ack_first`)
        answer = await request.app[BOLT].async_dispatch(bolt_request)
    return await to_aiohttp_response(answer)


def _unsigned(request: web.Request) -> web.Response:
    request.app[REFUSALS].warning(
        log, Kind.SLACK_SIGNATURE, "Slack request refused: missing, stale or wrong signature"
    )
    return web.json_response({"error": "invalid request signature"}, status=401)


def _signature_headers(request: web.Request) -> tuple[str, str] | None:
    """`X-Slack-Request-Timestamp` and `X-Slack-Signature`, or None when one is missing or not
    shaped as Slack's: then the request is unsigned, and its body is not read."""
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
        return None
    return timestamp, signature


def _signed(request: web.Request, body: bytes) -> str | None:
    """The body as text, if Slack signed exactly these bytes recently (slack_sdk's verifier);
    None otherwise."""
    headers = _signature_headers(request)
    if headers is None:
        return None
    timestamp, signature = headers
    try:
        text = body.decode("utf-8")  # the verifier signs text: a body that is not UTF-8
    except UnicodeDecodeError:  # cannot have been signed by Slack
        return None
    secret = request.app[SETTINGS].slack_signing_secret.get_secret_value()
    verifier = SignatureVerifier(secret)
    if verifier.is_valid(body=text, timestamp=timestamp, signature=signature):
        return text
    if abs(verifier.clock.now() - int(timestamp)) <= FRESH_S:  # signed now, another secret
        request.app[TELEMETRY].signature_refused(door="slack")
    return None


def _validated(text: str, content_type: str) -> BaseModel | None:
    """The request as a model; None for Slack's SSL check and for a kind of request no listener
    takes; raises Refused otherwise."""
    try:
        if content_type == "application/json" or text.startswith("{"):
            return None if _unused(text, events=True) else _Event.validate_json(text)
        form = dict(parse_qsl(text, keep_blank_values=True))
        if "ssl_check" in form:
            return None
        if "payload" in form:
            raw = form["payload"]
            return None if _unused(raw, events=False) else _Interaction.validate_json(raw)
        return SlashCommand.model_validate(form)
    except ValidationError as error:
        raise Refused(_problem(error)) from None


def _unused(raw: str, *, events: bool) -> bool:
    """Whether `raw` is an Events API delivery (`events`) or an interaction payload of a kind
    no listener takes. What is not JSON or names no type is not: the validation refuses it."""
    try:
        data = json.loads(raw)
    except ValueError:
        return False
    kind = data.get("type") if isinstance(data, dict) else None
    if not isinstance(kind, str):
        return False
    if events and kind == "event_callback":
        event = data.get("event")
        kind = event.get("type") if isinstance(event, dict) else None
        unused = isinstance(kind, str) and kind not in HANDLED_EVENTS
    elif events:
        unused = kind not in ("event_callback", "url_verification")
    else:
        unused = kind not in HANDLED_INTERACTIONS
    if unused:
        log.info("Slack request answered and ignored: the bot has no use for %.64r", kind)
    return unused


def _problem(error: ValidationError) -> str:
    """The first thing wrong with a request, in a line (no input echoed back)."""
    first: Any = error.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"not a Slack request this app handles ({where}: {first.get('msg', 'invalid')})"
