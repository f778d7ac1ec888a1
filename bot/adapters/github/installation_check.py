"""Whether a protection rule request's installation is the App's on the service's repository
(the `AppInstallation` port), asked of GitHub when the bot does not know it yet.

A request is signed with the App's webhook secret, and names the installation it comes from.
Until a replica has looked its service's installation up (its first call to GitHub does), it
cannot compare; and after the App was uninstalled and installed again, the id in hand is the
old one until a call meets the 404. Either way the bot asks GitHub
(`GET /repos/{owner}/{repo}/installation`, the App's JWT) before a request is kept: one lookup
at a time, at most one a minute (`EVERY`; the first when nothing is known, whenever it comes),
and a webhook's answer waits for it at most `WAIT` seconds (GitHub gives a receiver 10).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.adapters.github.app_auth import RepositoryInstallation
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import GitHubError
from bot.services.ports import Clock

_log = logging.getLogger(__name__)

EVERY = timedelta(minutes=1)
"""At most one lookup this often, whatever the requests name."""

WAIT = 5.0
"""Seconds a webhook's answer waits for the lookup (it goes on in the background)."""


@dataclass(kw_only=True, eq=False)
class InstallationCheck:
    """The `AppInstallation` of one service's transport (App mode)."""

    transport: GitHubTransport
    clock: Clock
    every: timedelta = EVERY
    wait: float = WAIT
    _looking: asyncio.Task[int | None] | None = field(default=None, init=False)
    _looked_at: datetime | None = field(default=None, init=False)
    _unanswered: bool = field(default=False, init=False)
    """The last lookup got no answer: within the minute after it, nothing is known."""

    @property
    def _installation(self) -> RepositoryInstallation:
        installation = self.transport.installation
        assert installation is not None, "App mode only"
        return installation

    async def is_ours(self, installation_id: int) -> bool:
        installation = self._installation
        if installation.installation_id == installation_id:
            return True
        if installation.configured_id is not None:
            return False  # GITHUB_APP_INSTALLATION_ID is the operator's word
        looking = self._looking
        if looking is None:
            now = self.clock()
            if self._looked_at is not None and now - self._looked_at < self.every:
                if self._unanswered:
                    # Not the id in hand either: GitHub may have replaced it.
                    raise GitHubError(
                        f"GitHub was asked for the App's installation on "
                        f"{self.transport.repository} less than "
                        f"{self.every.total_seconds():.0f} s ago and did not tell it"
                    )
                return False
            self._looked_at = now
            looking = self._looking = asyncio.create_task(self._look_up())
            # A lookup that outlived its wait may fail unawaited: its error was logged.
            looking.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            found = await asyncio.wait_for(asyncio.shield(looking), self.wait)
        except TimeoutError:
            raise GitHubError(
                f"GitHub did not tell the App's installation on {self.transport.repository} "
                f"within {self.wait:g} s"
            ) from None
        return found == installation_id

    async def _look_up(self) -> int | None:
        self._unanswered = True
        try:
            found = await self.transport.call(
                f"read the GitHub App's installation on {self.transport.repository}",
                self._installation.found_again,
                kind="app",
            )
            self._unanswered = False
        finally:
            self._looking = None
        _log.info(
            "GitHub App installation on %s: %s",
            self.transport.repository,
            found if found is not None else "none (not installed)",
        )
        return found
