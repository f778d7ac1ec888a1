"""Errors with a home: known errors become a clear ephemeral answer, unknown ones a
reference id that appears in the log next to the traceback.

Listeners acknowledge first and work after (Slack wants an answer within 3 seconds), so
their errors are answered through `acknowledged`, not Bolt's error handler: Bolt's asyncio
runner drops an ack() made moments before a fast failure, and would answer Slack 404.
Bolt's handler stays registered for failures before any listener runs.

Every answer on a response_url goes through `LimitedRespond`: Slack takes at most 5 posts to
one response_url within 30 minutes, so further answers (many duplicate clicks at once) go to
the person with chat.postEphemeral instead, as does an answer the response_url refused (one
for the whole channel goes with chat.postMessage).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook import WebhookResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.adapters.slack import lane_words, views
from bot.adapters.slack.blocks import BlockJson, ViewJson
from bot.adapters.slack.limits import (
    FALLBACK_TEXT,
    RESPONSE_URL_LIFETIME,
    RESPONSE_URL_USES,
    clip,
)
from bot.adapters.slack.mrkdwn import escape_quoted
from bot.domain import rollout_command as commands
from bot.domain.controls import DoneButOwed
from bot.domain.errors import InvalidCommand, PartlyPromoted, PromotedWhileStopping, RolloutError
from bot.services.failures import TRANSIENT, database_timed_out, error_summary
from bot.services.lane import LaneClosed
from bot.services.telemetry import Handled, Telemetry
from handlers import ack_first, unhandled
from handlers.payloads import BlockActions, parse

log = logging.getLogger(__name__)

Listener = Callable[..., Awaitable[None]]


async def report(error: Exception, body: dict[str, Any], respond: AsyncRespond | None) -> None:
    """Answer the person whose command or click failed, ephemerally."""
    text, blocks = explain(error, body)
    await tell(text, blocks, body, respond)


async def tell(
    text: str, blocks: list[BlockJson], body: dict[str, Any], respond: AsyncRespond | None
) -> None:
    """Answer the person whose command or click this is, ephemerally."""
    if respond is None or not (body.get("response_url") or body.get("response_urls")):
        return
    try:
        await respond(response_type="ephemeral", replace_original=False, text=text, blocks=blocks)
    except (aiohttp.ClientError, TimeoutError) as lost:  # the answer is lost, not the request
        log.warning("could not answer through the response_url: %s", type(lost).__name__)


CARD_SHOWS = "The card shows what happened: look there before trying again."
LANE_SHOWS = (
    "`/rollout status` shows the release lane as it is now (its freezes and its lock): look "
    "there before trying again."
)
"""Where an interrupted freeze, unfreeze, lock or unlock is seen: they have no card."""
LANE_COMMANDS = frozenset(
    {
        commands.Subcommand.FREEZE,
        commands.Subcommand.UNFREEZE,
        commands.Subcommand.LOCK,
        commands.Subcommand.UNLOCK,
    }
)
INTERRUPTED = (
    "The bot lost its connection to its database or to a service while handling this, so it "
    f"cannot tell whether it went through. {CARD_SHOWS}"
)
UNANSWERED = (
    "The bot's database did not answer the bot in time while it handled this, so it cannot "
    f"tell whether it went through. {CARD_SHOWS}"
)
"""The answer when a wait for the database ran out (a burst of writers): its connection held."""


def explain(error: Exception, body: dict[str, Any]) -> tuple[str, list[BlockJson]]:
    """The answer to a failed request: a known error's message, the truth about an interrupted
    one (a database or network blip: one WARNING line), or a reference id that the log line of
    the unknown error carries next to its traceback."""
    what = body.get("command") or body.get("type")
    if isinstance(error, RolloutError):
        log.info("refused: %s (%s)", error.code, error.message)
        text = escape_quoted(error.message)  # a command's words are quoted as typed
        blocks = views.error_blocks(
            text, with_help=isinstance(error, InvalidCommand) and error.with_help
        )
        if isinstance(error, LaneClosed) and error.overridable and body.get("actions"):
            clicked = body["actions"][0]
            blocks += lane_words.override_button(
                str(clicked.get("action_id", "")), str(clicked.get("value", ""))
            )
    elif isinstance(error, TRANSIENT):
        log.warning("handling %s was interrupted: %s", what, error_summary(error))
        text = UNANSWERED if database_timed_out(error) else INTERRUPTED
        if body.get("command") and subcommand_name(str(body.get("text", ""))) in LANE_COMMANDS:
            text = text.replace(CARD_SHOWS, LANE_SHOWS)
        blocks = views.error_blocks(text)
    else:
        reference = uuid.uuid4().hex[:12]
        log.error(
            "unexpected error (ref %s) handling %s",
            reference,
            what,
            exc_info=error,
        )
        text = f"Something went wrong. Reference: `{reference}` (quote it to your bot admin)."
        blocks = views.error_blocks(text)
    return text, blocks


def subcommand_name(text: str) -> str:
    """The subcommand a command's text names (`unknown` when none), for its audit event and
    its metrics."""
    word = (text.split() or ["help"])[0].lower()
    return word if word in set(commands.Subcommand) else "unknown"


def _handled_as(body: dict[str, Any]) -> tuple[Handled, str]:
    """What was answered: a click by its action id, a command by its subcommand."""
    if body.get("type") == "block_actions":
        return "click", str(body["actions"][0]["action_id"])
    return "command", subcommand_name(str(body.get("text", "")))


def failure_outcome(error: Exception, telemetry: Telemetry) -> str:
    """How a request that failed ended, for the metrics (`refused`, `interrupted`, `error`,
    `promoted_while_stopping`, `partly_promoted`, `done_but_owed`); a refusal is counted by its
    reason. A Promote that GitHub took while the track was being stopped, a `/rollout promote`
    that promoted some lanes only, or an effect saved before a step after it failed, was done,
    not refused: each has an outcome of its own and is no refusal."""
    if isinstance(error, (PromotedWhileStopping, PartlyPromoted, DoneButOwed)):
        return error.code  # `/rollout promote` promoting some lanes only: done too
    if isinstance(error, RolloutError):
        telemetry.refused(reason=error.code)
        return "refused"
    return "interrupted" if isinstance(error, TRANSIENT) else "error"


def acknowledged(telemetry: Telemetry, *, waits: bool = True) -> Callable[[Listener], Listener]:
    """Acknowledge at once, then run the listener and answer its errors with `report`; count
    the command or click by how it ended.

    The listener declares `ack`, `body` and `request` (Bolt passes arguments by name; checked
    here) and does not call `ack` itself. Its work is counted by the app's `AckFirst` (so a
    shutdown waits for it) and, over HTTP and when `waits`, starts once the requests in
    flight are acknowledged (`handlers.ack_first`). A form's opener does not wait: Slack's
    trigger_id expires 3 seconds after the click.
    """

    def wrap(listener: Listener) -> Listener:
        missing = _NEEDED - set(inspect.signature(listener).parameters)
        if missing:
            raise TypeError(f"{listener.__qualname__} must declare {', '.join(sorted(missing))}")

        @functools.wraps(listener)
        async def run(**kwargs: Any) -> None:
            request: AsyncBoltRequest = kwargs["request"]
            acks: ack_first.AckFirst | None = request.context.get(ack_first.CONTEXT_KEY)
            with acks.working() if acks is not None else contextlib.nullcontext():
                await kwargs["ack"]()
                if acks is not None and waits and request.mode == "http":
                    await acks.acknowledged()
                await _answered(listener, kwargs, telemetry)

        return run

    return wrap


_NEEDED = frozenset({"ack", "body", "request"})
"""What a listener wrapped by `acknowledged` declares."""


def opens_form(
    telemetry: Telemetry, draw: Callable[[BlockActions, AsyncBoltRequest], Awaitable[ViewJson]]
) -> Listener:
    """A button that opens the form `draw` makes of its click: acknowledged, without waiting
    (the trigger_id expires 3 seconds after the click)."""

    async def opens(
        ack: AsyncAck,
        body: dict[str, Any],
        respond: AsyncRespond,
        request: AsyncBoltRequest,
        client: AsyncWebClient,
    ) -> None:
        click = parse(BlockActions, body)
        modal = await draw(click, request)
        try:
            await client.views_open(trigger_id=click.trigger_id or "", view=modal)
        except SlackApiError as error:
            if error.response.get("error") in _TRIGGER_SPENT:
                raise FormNotOpened(FORM_TOO_LATE) from None
            raise

    return acknowledged(telemetry, waits=False)(opens)


class FormNotOpened(RolloutError):
    """Slack would not open a form: the click's trigger_id was spent or too old."""

    code = "form_not_opened"


FORM_TOO_LATE = (
    "The form could not open: Slack opens one form per click, within 3 seconds of it, and this "
    "click's time was up. Nothing was changed; click the button again."
)
_TRIGGER_SPENT = frozenset({"expired_trigger_id", "exchanged_trigger_id"})
"""views.open's answers for a trigger_id older than 3 seconds, or used already."""


async def _answered(listener: Listener, kwargs: dict[str, Any], telemetry: Telemetry) -> None:
    """Run the listener, answer its error, count how it ended."""
    body = kwargs["body"]
    outcome = "ok"
    try:
        await listener(**kwargs)
    except Exception as error:
        outcome = failure_outcome(error, telemetry)
        await report(error, body, kwargs.get("respond"))
    kind, name = _handled_as(body)
    telemetry.handled(kind=kind, name=name, outcome=outcome)


class ResponseUrlUses:
    """How often each response_url was used, within Slack's limit.

    Counted in the process: a response_url belongs to one interaction payload, which Slack
    sends to one replica (it never re-sends a click). Should a replay reach two replicas, the
    answers Slack refuses beyond its limit fall back to chat.postEphemeral all the same.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._uses: dict[str, tuple[float, int]] = {}

    def take(self, url: str) -> bool:
        """Count one use of `url`; False when Slack would refuse it (the limit is spent)."""
        now = self._clock()
        # Forget the response_urls Slack no longer takes, oldest first: the dict keeps the
        # order of first uses, so each answer looks at the expired ones only.
        while self._uses:
            oldest = next(iter(self._uses))
            if now - self._uses[oldest][0] < RESPONSE_URL_LIFETIME:
                break
            del self._uses[oldest]
        first, count = self._uses.get(url, (now, 0))
        if count >= RESPONSE_URL_USES:
            return False
        self._uses[url] = (first, count + 1)
        return True


class LimitedRespond(AsyncRespond):
    """Bolt's `respond`, within Slack's response_url limit: beyond it (or when the
    response_url refuses), an ephemeral answer goes through chat.postEphemeral and a change
    of the original message is skipped."""

    def __init__(
        self,
        *,
        response_url: str,
        uses: ResponseUrlUses,
        client: AsyncWebClient,
        channel_id: str | None,
        user_id: str | None,
    ) -> None:
        super().__init__(response_url=response_url)
        self._url = response_url
        self._uses = uses
        self._client = client
        self._channel_id = channel_id
        self._user_id = user_id

    async def __call__(  # type: ignore[override]
        self, text: str | dict[str, Any] = "", **more: Any
    ) -> WebhookResponse:
        """Bolt's `respond(text, blocks=..., response_type=..., replace_original=..., ...)`.
        Beside blocks the text is only the notification's fallback: kept to Slack's advice."""
        if more.get("blocks") and isinstance(text, str):
            text = clip(text, FALLBACK_TEXT)
        whole = {"text": text, **more}
        unclear = False  # whether the response_url may have taken the answer all the same
        if self._uses.take(self._url):
            # On the app's HTTP session (the Web API client's), where Bolt's `respond` would
            # open a session and a connection for each answer.
            # No retry of its own: after a dropped connection it could post an answer twice
            # (in the channel, too) and spend two of the 5 uses where `take` counted one.
            webhook = AsyncWebhookClient(
                url=self._url, session=self._client.session, retry_handlers=[]
            )
            try:
                sent = await (
                    webhook.send_dict(text) if isinstance(text, dict) else webhook.send(**whole)
                )
            except (aiohttp.ClientError, TimeoutError) as error:
                log.warning("response_url failed (%s); answering with the Web API", error)
                unclear = True
            else:
                if sent.status_code == 200:
                    return sent
                unclear = sent.status_code >= 500  # it may have posted it all the same
                log.warning(
                    "response_url answered %s; answering with the Web API", sent.status_code
                )
        return await self._instead(whole, unclear=unclear)

    async def _instead(self, whole: dict[str, Any], *, unclear: bool) -> WebhookResponse:
        """The answer through the Web API: an ephemeral one with chat.postEphemeral, one for
        the whole channel with chat.postMessage (unless the response_url may have posted it:
        said twice to everyone is worse than a lost answer to one); a change of the original
        message is skipped."""
        skipped = WebhookResponse(url=self._url, status_code=429, body="skipped", headers={})
        text = whole["text"]
        changes_original = whole.get("replace_original") or whole.get("delete_original")
        in_channel = whole.get("response_type") == "in_channel"
        if changes_original or not isinstance(text, str) or not self._user_id:
            log.info("an answer beyond the response_url's limit was skipped")
            return skipped
        if in_channel and (unclear or not self._channel_id):
            log.info("an answer for the channel that may have been posted was not sent again")
            return skipped
        try:
            if in_channel:
                await self._client.chat_postMessage(
                    channel=self._channel_id or "", text=text, blocks=whole.get("blocks")
                )
            else:
                await self._client.chat_postEphemeral(
                    channel=self._channel_id or "",
                    user=self._user_id,
                    text=text,
                    blocks=whole.get("blocks"),
                )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.warning("an answer could not be sent: %s", type(error).__name__)
            return skipped
        method = "chat.postMessage" if in_channel else "chat.postEphemeral"
        return WebhookResponse(url=method, status_code=200, body="ok", headers={})


def register(app: AsyncApp) -> None:
    uses = ResponseUrlUses()

    @app.middleware
    async def limit_response_urls(
        context: AsyncBoltContext, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        if context.response_url is not None:
            context["respond"] = LimitedRespond(
                response_url=context.response_url,
                uses=uses,
                client=context.client,
                channel_id=context.channel_id,
                user_id=context.user_id,
            )
        return await next()

    unused = unhandled.Unhandled(report)

    @app.error
    async def on_error(
        error: Exception, body: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> BoltResponse | None:
        if isinstance(error, BoltUnhandledRequestError):
            return unused.answer(body, respond, context)
        await report(error, body, respond)
        return None
