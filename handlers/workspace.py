"""Requests from another Slack workspace are refused before any listener runs.

The bot is installed in one workspace (`manifest.yml`: `org_deploy_enabled: false`). Its own is
the team `auth.test` answers for its token: Bolt asks once, at the first request, keeps the
answer for the process (`AsyncSingleTeamAuthorization`) and runs no listener while it cannot
ask. A request Slack signed for this app from elsewhere (the app installed in a second
workspace, a person of another organisation in a Slack Connect channel) is answered with why,
changes nothing, and is one log line (one a minute for a flood: `handlers.refusals`). A click
is answered at once and told why on its response_url afterwards (`Telling`): Slack waits 3
seconds for its answer, a response_url may take longer. On Enterprise Grid, a person's
`user.team_id` is the organisation's id (`E…`) instead of the workspace's: that one is the
bot's too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.response import BoltResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.adapters.slack.control_views import notice_modal
from bot.services.telemetry import Telemetry
from handlers import ack_first
from handlers.refusals import Kind, RefusalLog

log = logging.getLogger(__name__)

ELSEWHERE = (
    "rollout-bot steers releases for another Slack workspace only, so nothing was changed. "
    "Use it from the workspace it is installed in."
)
REFUSAL_CODE = "other_workspace"
"""The refusal's reason in `rollout_bot_refusals_total`."""


@dataclass(frozen=True)
class Workspace:
    """The bot's own workspace, as `auth.test` names it (`enterprise` on Enterprise Grid)."""

    team: str
    enterprise: str | None = None


def foreign(body: Mapping[str, Any], own: Workspace) -> str | None:
    """What names another workspace in a request, or None when everything it names is the
    bot's. A request that names no workspace at all is foreign too: Slack names one in every
    command (`team_id`), click and form (`team.id`) and event (`team_id`)."""
    team = body.get("team")
    team_id = team.get("id") if isinstance(team, Mapping) else body.get("team_id")
    if team_id != own.team:
        return f"team {team_id}" if team_id else "no team"
    user = body.get("user")
    user_team = user.get("team_id") if isinstance(user, Mapping) else None
    if user_team is not None and user_team not in (own.team, own.enterprise):
        return f"user's team {user_team}"
    enterprise = _enterprise(body)
    if enterprise is not None and enterprise != own.enterprise:
        return f"enterprise {enterprise}"
    return None


def _enterprise(body: Mapping[str, Any]) -> str | None:
    """The organisation a request names: `enterprise.id` (clicks, forms), `team.enterprise_id`
    (forms) or `enterprise_id` (commands, events); None outside Enterprise Grid."""
    enterprise = body.get("enterprise")
    team = body.get("team")
    for named in (
        enterprise.get("id") if isinstance(enterprise, Mapping) else None,
        team.get("enterprise_id") if isinstance(team, Mapping) else None,
        body.get("enterprise_id"),
    ):
        if named:
            return str(named)
    return None


TELL_WITHIN_S = 10.0
"""Seconds a refusal's post to a click's response_url may take, after Slack has its answer."""

TELLING_AT_ONCE = 16
"""Refusals on their way to response_urls at once: a click beyond them is answered and not told
why (a flood of clicks from another workspace keeps no more than this many posts open)."""


class Telling:
    """The refusals of clicks, posted to their response_urls after Slack was answered: at most
    `at_once` at a time, each `within` seconds at most; a post that fails is a line (one a
    minute, `refusals`) naming the kind of failure, never the response_url (the right to post)."""

    def __init__(
        self,
        refusals: RefusalLog,
        *,
        at_once: int = TELLING_AT_ONCE,
        within: float = TELL_WITHIN_S,
    ) -> None:
        self._refusals = refusals
        self._at_once = at_once
        self._within = within
        self._posts: set[asyncio.Task[None]] = set()

    def tell(self, context: AsyncBoltContext) -> None:
        """Tell the clicker why, in the background; the app's shutdown waits for the post
        (`ack_first`) as for a listener's work."""
        url = context.response_url
        if url is None or len(self._posts) >= self._at_once:
            return
        acks: ack_first.AckFirst | None = context.get(ack_first.CONTEXT_KEY)
        working = contextlib.ExitStack()  # counted from now: a shutdown now waits for it
        if acks is not None:
            working.enter_context(acks.working())
        post = asyncio.create_task(self._post(context, url))
        self._posts.add(post)
        post.add_done_callback(self._posts.discard)
        post.add_done_callback(lambda _: working.close())

    async def _post(self, context: AsyncBoltContext, url: str) -> None:
        # On the app's HTTP session; no retry: a post that may have gone through is not sent again.
        webhook = AsyncWebhookClient(url=url, session=context.client.session, retry_handlers=[])
        try:
            async with asyncio.timeout(self._within):
                sent = await webhook.send(
                    text=ELSEWHERE, response_type="ephemeral", replace_original=False
                )
        except (aiohttp.ClientError, TimeoutError) as lost:
            self._untold(type(lost).__name__)
            return
        if sent.status_code != 200:
            self._untold(f"its response_url answered {sent.status_code}")

    def _untold(self, why: str) -> None:
        self._refusals.warning(log, Kind.OTHER_WORKSPACE_UNTOLD, "a refusal was not told: %s", why)


def register(app: AsyncApp, telemetry: Telemetry, refusals: RefusalLog) -> None:
    """Refuse, before any other listener or middleware of the bot, what another workspace
    sends."""
    telling = Telling(refusals)

    @app.middleware
    async def own_workspace_only(
        context: AsyncBoltContext,
        body: dict[str, Any],
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse:
        authorized = context.authorize_result
        own = Workspace(
            team=(authorized.team_id if authorized else None) or "",
            enterprise=authorized.enterprise_id if authorized else None,
        )
        what = foreign(body, own) if own.team else "a bot whose auth.test named no team"
        if what is None:
            return await next()
        kind = str(body.get("command") or body.get("type") or "request")
        refusals.warning(
            log,
            Kind.OTHER_WORKSPACE,
            "Slack %s refused: it names %s, not this bot's workspace %s",
            kind[:32],
            what,
            own.team or "(unknown)",
        )
        telemetry.refused(reason=REFUSAL_CODE)
        return _answer(context, body, telling)


def _answer(context: AsyncBoltContext, body: Mapping[str, Any], telling: Telling) -> BoltResponse:
    """Slack's answer to a refused request: the words where Slack shows them (a command's
    ephemeral answer, a form turned into the reason, an ephemeral reply to a click, after
    this answer)."""
    if body.get("command"):
        return _json({"response_type": "ephemeral", "text": ELSEWHERE})
    if body.get("type") == "view_submission":
        return _json({"response_action": "update", "view": notice_modal(ELSEWHERE)})
    if body.get("type") == "block_actions":
        telling.tell(context)
    return BoltResponse(status=200, body="")


def _json(answer: Mapping[str, Any]) -> BoltResponse:
    return BoltResponse(
        status=200,
        body=json.dumps(answer),
        headers={"content-type": "application/json; charset=utf-8"},
    )
