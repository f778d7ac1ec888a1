"""What `rollout-bot doctor` asks Slack: who the token is and its scopes, the release
channels' members and the approvers' groups (`bot.services.doctor.SlackInstall`)."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.members import channel_members, group_members
from bot.services.authz import GroupResolver
from bot.services.doctor import InstallProblem, SlackIdentity


class SlackInstallReads:
    def __init__(self, slack: AsyncWebClient) -> None:
        self._slack = slack
        self._channels = channel_members(slack)
        self._groups = group_members(slack)

    async def identity(self) -> SlackIdentity:
        """`auth.test`; the scopes granted come in every Web API answer's X-OAuth-Scopes."""
        try:
            answer = await self._slack.auth_test()
        except SlackApiError as error:
            raise InstallProblem(f"auth.test answered {error.response.get('error')}") from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise InstallProblem(f"Slack unreachable ({type(error).__name__})") from None
        headers = {name.lower(): value for name, value in answer.headers.items()}
        scopes = headers.get("x-oauth-scopes", "")
        if isinstance(scopes, list):  # slack_sdk keeps a repeated header as a list
            scopes = ",".join(scopes)
        return SlackIdentity(
            user_id=str(answer.get("user_id", "")),
            name=str(answer.get("user", "")),
            team=str(answer.get("team", "")),
            scopes=frozenset(s.strip() for s in scopes.split(",") if s.strip()),
        )

    async def channel_members(self, channel: str) -> Sequence[str]:
        return await self._ask(self._channels, channel)

    async def group_members(self, group: str) -> Sequence[str]:
        return await self._ask(self._groups, group)

    @staticmethod
    async def _ask(members: GroupResolver, name: str) -> Sequence[str]:
        try:
            return await members(name)
        except LookupError as error:
            raise InstallProblem(str(error)) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise InstallProblem(f"Slack unreachable ({type(error).__name__})") from None
