"""Who may change a rollout (the ROLLOUT_APPROVERS, given as user ids and user-group ids) and
who may see them (the approvers and the members of the release channels).

Groups and channels are resolved through Slack (`usergroups.users.list`,
`conversations.members`) and cached for a short while, so a person added to the
release-managers group or a release channel is seen within a minute without a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from bot.domain.errors import NotAuthorized
from bot.domain.permissions import not_an_approver

log = logging.getLogger(__name__)

GroupResolver = Callable[[str], Awaitable[list[str]]]
"""Members of a user group (or a channel); raises LookupError when Slack cannot say."""


class Memberships:
    """The members of Slack user groups or channels, looked up when asked and kept briefly."""

    def __init__(
        self,
        resolve: GroupResolver | None,
        *,
        kind: str,
        cache_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        keep_failures: bool = False,
    ) -> None:
        self._keep_failures = keep_failures
        """Whether a failed lookup is kept (as empty) like an answer: the channels of the App
        Home, asked for each service that releases in them; a group of approvers is asked
        again at the next click."""
        self._resolve = resolve
        self._kind = kind
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def members(self, group: str) -> frozenset[str]:
        cached = self._cache.get(group)
        now = self._monotonic()
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        if self._resolve is None:
            return frozenset()
        try:
            members = frozenset(await self._resolve(group))
        except LookupError:  # a failed lookup denies, it never grants
            log.warning("could not resolve %s %s; treating it as empty", self._kind, group)
            if not self._keep_failures:
                return frozenset()
            members = frozenset()
        self._cache[group] = (now, members)
        return members


class Approvers:
    """Answers whether a Slack user is an approver, directly or through a user group."""

    def __init__(
        self,
        ids: Iterable[str],
        *,
        resolve_group: GroupResolver | None = None,
        cache_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        entries = tuple(ids)
        self._users = frozenset(i for i in entries if not i.startswith("S"))
        self._groups = tuple(i for i in entries if i.startswith("S"))
        self._members = Memberships(
            resolve_group, kind="user group", cache_seconds=cache_seconds, monotonic=monotonic
        )

    async def is_approver(self, user_id: str) -> bool:
        if user_id in self._users:
            return True
        for group in self._groups:
            if user_id in await self._members.members(group):
                return True
        return False

    async def require(self, user_id: str, action: str) -> None:
        """Raise NotAuthorized (saying what would allow it) unless the user is an approver."""
        if not await self.is_approver(user_id):
            raise NotAuthorized(not_an_approver(action))


class Audience:
    """Who may see the rollouts outside a release channel (the App Home): the approvers and
    the members of a release channel, as `/rollout status` shows them to those channels."""

    def __init__(
        self, *, approvers: Approvers, release_channels: tuple[str, ...], members: Memberships
    ) -> None:
        self._approvers = approvers
        self._release_channels = release_channels
        self._members = members

    async def admits(self, user_id: str) -> bool:
        if await self._approvers.is_approver(user_id):
            return True
        for channel in self._release_channels:
            if user_id in await self._members.members(channel):
                return True
        return False
