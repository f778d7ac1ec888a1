"""A service the bot releases: its name, repository, plan, release channels and approvers.

One bot serves many services (`ROLLOUT_SERVICES`); without that file it serves one, named
`DEFAULT_SERVICE`, built from `GITHUB_REPOSITORY`, `ROLLOUT_PLAN`, `RELEASE_CHANNELS` and
`ROLLOUT_APPROVERS`. Rows written before services existed belong to the default service.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass

from bot.domain.plan import RolloutPlan
from bot.domain.text import CLOSING_QUOTE, clean_text, words_without_invisible_ends

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


def misspelt_service(text: str, names: Collection[str]) -> tuple[str, str] | None:
    """The word a command's text has right after its subcommand, when it is no service's name
    but close to one (a typo: `start billing-apl v1.4.2`), and that name; None otherwise (a
    quoted word too: a reason, as typed: `kill "relay calls time out"`)."""
    words = words_without_invisible_ends(clean_text(text)).split(maxsplit=2)
    if len(words) < 2 or words[1].lower() in names or words[1].startswith(tuple(CLOSING_QUOTE)):
        return None
    close = difflib.get_close_matches(words[1].lower(), names, n=1, cutoff=0.8)
    return (words[1], close[0]) if close else None
