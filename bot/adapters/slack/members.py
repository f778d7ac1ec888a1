"""Who is in a Slack user group or a channel, asked of Slack's Web API (the approvers' groups,
the release channels' audience)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.services.authz import GroupResolver

log = logging.getLogger(__name__)


def group_members(slack: AsyncWebClient) -> GroupResolver:
    """The members of a user group (`usergroups.users.list`)."""

    async def members(group: str) -> list[str]:
        try:
            answer = await slack.usergroups_users_list(usergroup=group)
        except SlackApiError as error:
            raise _unknown("usergroups.users.list", group, error) from None
        users: list[str] = answer.get("users") or []
        return users

    return members


def channel_members(slack: AsyncWebClient) -> GroupResolver:
    """The members of a channel (`conversations.members`, every page)."""

    async def members(channel: str) -> list[str]:
        found: list[str] = []
        try:
            # Slack takes a limit under 1000 and advises 200 at most a page.
            async for page in await slack.conversations_members(channel=channel, limit=200):
                found.extend(page.get("members") or [])
        except SlackApiError as error:
            raise _unknown("conversations.members", channel, error) from None
        return found

    return members


def time_zone(slack: AsyncWebClient) -> Callable[[str], Awaitable[str | None]]:
    """A person's IANA time zone (`users.info`'s `user.tz`); None when Slack cannot say (a
    time without an offset is then refused, asking for one; the log says Slack's error, such
    as `missing_scope` on an install that predates the `users:read` scope)."""

    async def zone(user: str) -> str | None:
        try:
            answer = await slack.users_info(user=user)
        except SlackApiError as error:
            log.warning("users.info %s: %s", user, _slack_error(error))
            return None
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("users.info %s: %s", user, type(error).__name__)
            return None
        found = (answer.get("user") or {}).get("tz")
        return str(found) if found else None

    return zone


def _unknown(method: str, name: str, error: SlackApiError) -> LookupError:
    return LookupError(f"{method} {name}: {_slack_error(error)}")


def _slack_error(error: SlackApiError) -> str:
    """Slack's `error` when it answered JSON; else its HTTP status (a 5xx from its edge has
    no JSON body, and reading one from it raises)."""
    data = error.response.data
    if isinstance(data, dict):
        return str(data.get("error"))
    return f"HTTP {error.response.status_code}"
