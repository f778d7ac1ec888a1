"""The services file (`ROLLOUT_SERVICES`): every service the bot releases, read from YAML into
the domain's `Service`s, every problem of a bad file worded at once under its dotted path
(`services.billing-api.release_channels[0]: 'general' is not a Slack channel id ...`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from bot.domain.errors import PlanError, ServicesError
from bot.domain.service import SERVICE_NAME, Service
from bot.plan_file import invalid_lines, load_plan, problem_lines, read_model, read_text

CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
APPROVER_ID = re.compile(r"[UWS][A-Z0-9]{2,}")
REPOSITORY = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/(?!\.\.?\Z)(?![A-Za-z0-9._-]*\.(?i:git|wiki)\Z)"
    r"[A-Za-z0-9._-]{1,100}"
)
"""`owner/name` as GitHub names a repository: never `.` or `..`, nor ending in `.git` (which
GitHub drops: a clone URL's tail) or `.wiki`; no delivery would name such a repository."""

CHANNEL_RULE = "not a Slack channel id (C... or G...)"
APPROVER_RULE = "not a Slack user id (U..., W...) or group (S...)"


def _matching(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r}: {rule}")
        return value

    return AfterValidator(check)


_Text = StringConstraints(strict=True)
ChannelId = Annotated[str, _Text, _matching(CHANNEL_ID, CHANNEL_RULE)]
ApproverId = Annotated[str, _Text, _matching(APPROVER_ID, APPROVER_RULE)]
REPOSITORY_RULE = "not owner/name (a GitHub repository's name does not end in .git or .wiki)"
Repository = Annotated[str, _Text, _matching(REPOSITORY, REPOSITORY_RULE)]
NAME_RULE = (
    "not a service name: a lowercase letter, then lowercase letters, digits or '-' (at most 63)"
)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    repository: Repository
    plan: Annotated[str, _Text] | None = None
    """The plan file, relative to the services file; the built-in plan when absent."""
    release_channels: tuple[ChannelId, ...] = Field(min_length=1)
    approvers: tuple[ApproverId, ...] = Field(min_length=1)
    failure_channel: ChannelId | None = None
    """Also told of every failure, with a link to the thread (the plan's
    `notifications.failure_channel`, for this service)."""


class _ServicesFile(BaseModel):
    """The file's shape; each service's keys are checked on their own (`_Entry`), so that one
    service's problems do not hide another's, nor the problems of the plan files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    services: dict[str, dict[str, Any]] = Field(min_length=1)


KEYS = "docs/services.md"


def load_services(path: Path) -> tuple[Service, ...]:
    """The services in the YAML file at `path`, in the file's order. Raises ServicesError
    listing every problem: of the file, of each service, and of each plan file it names."""
    what = f"the services file {path}"
    text = read_text(path, what, ServicesError)
    read = read_model(text, _ServicesFile, what=what, keys=KEYS, error=ServicesError)
    services: list[Service] = []
    problems: list[str] = []
    owners: dict[str, str] = {}
    for name, raw in read.services.items():
        at = f"services.{name}"
        if not SERVICE_NAME.fullmatch(name):
            problems.append(f"{at}: {name!r}: {NAME_RULE}")
        named = raw.get("plan")
        try:
            plan = load_plan(path.parent / named if isinstance(named, str) else None)
        except PlanError as error:
            problems.append(f"{at}.plan: {error.message}")
        try:
            entry = _Entry.model_validate(raw)
        except ValidationError as invalid:
            problems += [f"{at}.{line}" for line in problem_lines(invalid, raw, keys=KEYS)]
            continue
        owner = owners.setdefault(entry.repository.lower(), name)
        if owner != name:
            problems.append(
                f"{at}.repository: {entry.repository} is already services.{owner}'s "
                "(GitHub's webhooks name the repository, so one repository is one service)"
            )
        if problems:
            continue
        if entry.failure_channel is not None:
            told = plan.notifications.model_copy(update={"failure_channel": entry.failure_channel})
            plan = plan.model_copy(update={"notifications": told})
        services.append(
            Service(
                name=name,
                repository=entry.repository,
                plan=plan,
                release_channels=entry.release_channels,
                approvers=entry.approvers,
            )
        )
    if problems:
        raise ServicesError(invalid_lines(what, problems))
    return tuple(services)
