"""A service the bot releases: its name, repository, plan, release channels and approvers.

One bot serves many services (`ROLLOUT_SERVICES`); without that file it serves one, named
`DEFAULT_SERVICE`, built from `GITHUB_REPOSITORY`, `ROLLOUT_PLAN`, `RELEASE_CHANNELS` and
`ROLLOUT_APPROVERS`. Rows written before services existed belong to the default service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.domain.plan import RolloutPlan

DEFAULT_SERVICE = "default"
"""The service of a bot configured without ROLLOUT_SERVICES, and of rows older than services."""

SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
"""A service's name: lower case, digits and dashes, as it is typed after `/rollout start`."""


@dataclass(frozen=True)
class Service:
    """One releasable service and who steers its releases, where."""

    name: str
    repository: str
    """`owner/name` on GitHub: its webhooks are routed to this service by `repository.full_name`."""
    plan: RolloutPlan
    release_channels: tuple[str, ...]
    approvers: tuple[str, ...]
    """Slack user and user-group ids who may approve this service's steps."""
