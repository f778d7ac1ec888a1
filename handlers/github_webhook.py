"""`POST /github/webhook`: authenticate each delivery before reading it, then hand it over.

The signature is HMAC-SHA256 of the raw body with GITHUB_WEBHOOK_SECRET, compared in
constant time. Without a configured secret every delivery is refused: an endpoint that
cannot authenticate must not act on what it is sent. What cannot be signed (no secret
configured, no `X-Hub-Signature-256` or not one shaped as GitHub's) is answered 401 before a
byte of its body is read, and a body over GitHub's 25 MB is answered 413 unread when its
`Content-Length` says so, or one chunk past the cap when it comes chunked. A signed delivery
goes to the webhook service (`bot.services.webhooks`), which remembers it and acts on it after
this answer: GitHub waits 10 seconds at most for one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from functools import partial
from urllib.parse import parse_qs

from aiohttp import web

from bot.services.failures import TRANSIENT, error_summary
from bot.services.webhooks import Taken
from handlers.app_keys import DIRECTORY, REFUSALS, SETTINGS, TELEMETRY
from handlers.bodies import read_at_most
from handlers.refusals import Kind

log = logging.getLogger(__name__)

# GitHub caps webhook payloads at 25 MB.
MAX_BODY = 25 * 1024 * 1024

_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")
"""`X-Hub-Signature-256` as GitHub sends it: anything else cannot match, whatever the body."""
_DELIVERY = re.compile(r"[\x21-\x7e]{1,64}")
"""`X-GitHub-Delivery` as GitHub's GUIDs can be (a UUID): printable ASCII, 64 at most. The id is
outside the signature and is stored: one not UTF-8 (aiohttp keeps its bytes as surrogates)
cannot be written, and was answered 500 with a traceback."""


def signature_matches(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether `X-Hub-Signature-256` is the HMAC of this body with this secret."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode("utf-8", "replace"))


def _json_of(content_type: str, body: bytes) -> bytes | str:
    """The payload's JSON: the body, or its `payload` field when the hook sends
    `application/x-www-form-urlencoded` (a repository hook's other content type)."""
    if content_type != "application/x-www-form-urlencoded":
        return body
    fields = parse_qs(body.decode("utf-8"), max_num_fields=1)
    return fields.get("payload", [""])[0]


async def receive(request: web.Request) -> web.Response:
    secret = request.app[SETTINGS].github_webhook_secret
    header = request.headers.get("X-Hub-Signature-256")
    if secret is None or not _SIGNATURE.fullmatch(header or ""):
        return _unsigned(request, header)
    body = await read_at_most(request, MAX_BODY)
    if body is None:
        request.app[REFUSALS].warning(
            log, Kind.GITHUB_TOO_LARGE, "webhook refused: its body is over %d bytes", MAX_BODY
        )
        return _closing({"error": "request body too large"}, status=413)
    if not signature_matches(secret.get_secret_value().encode(), body, header):
        return _unsigned(request, header)
    event = request.headers.get("X-GitHub-Event", "")
    delivery = request.headers.get("X-GitHub-Delivery", "")
    try:
        payload = json.loads(_json_of(request.content_type, body))
    except ValueError:  # not UTF-8, not JSON, or a form of more than its payload
        return web.json_response(
            {"error": "body is not JSON (nor a form of one JSON `payload` field)"}, status=400
        )
    if not isinstance(payload, dict):
        return web.json_response({"error": "body is not a JSON object"}, status=400)
    if event == "ping":
        log.info("webhook ping (hook %s, delivery %s)", payload.get("hook_id"), delivery)
        return web.json_response({"ok": True, "event": "ping"})
    if not _DELIVERY.fullmatch(delivery):
        return web.json_response({"error": "missing or invalid X-GitHub-Delivery"}, status=400)
    webhooks = request.app[DIRECTORY].webhooks_of(payload)
    # The id is outside the signature: the body's digest tells the same body sent again.
    taken = partial(
        webhooks.take,
        delivery_id=delivery,
        event=event,
        payload=payload,
        body_digest=hashlib.sha256(body).hexdigest(),
    )
    try:
        intake = await taken()
    except TRANSIENT as error:
        # A database blip mid-intake. Taking a delivery in is idempotent (its id decides):
        # once more, on a fresh connection; GitHub does not redeliver a failed one by itself.
        log.warning("webhook %s (delivery %s): %s", event, delivery, error_summary(error))
        try:
            intake = await taken()
        except TRANSIENT as again:
            log.warning(
                "webhook %s (delivery %s) not taken in: %s", event, delivery, error_summary(again)
            )
            return web.json_response(
                {"error": "the bot could not take the delivery in: redeliver it"}, status=503
            )
    log.info("webhook %s (delivery %s): %s, %s", event, delivery, intake.taken, intake.reason)
    answer = {
        "ok": True,
        "event": event,
        "handled": intake.taken is Taken.FOLLOWED,
        "result": intake.taken.value,
        "reason": intake.reason,
    }
    return web.json_response(answer, status=200 if intake.taken is Taken.DUPLICATE else 202)


def _unsigned(request: web.Request, header: str | None) -> web.Response:
    """401 for a delivery without the bot's signature; counted when it carries one (signed with
    a secret the bot does not have, or has none)."""
    request.app[REFUSALS].warning(
        log, Kind.GITHUB_SIGNATURE, "webhook refused: missing or wrong signature"
    )
    if header:
        request.app[TELEMETRY].signature_refused(door="github")
    return _closing({"error": "invalid signature"}, status=401)


def _closing(answer: dict[str, str], *, status: int) -> web.Response:
    """A refusal after which the connection closes: what the sender still sends of a body the
    bot did not read is dropped as it comes (aiohttp's lingering close, `bodies.LINGER_S` at
    most), not kept."""
    response = web.json_response(answer, status=status)
    response.force_close()
    return response
