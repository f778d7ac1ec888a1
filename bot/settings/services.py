"""The settings that say which services the bot releases: a services file (ROLLOUT_SERVICES),
or one service from GITHUB_REPOSITORY, ROLLOUT_PLAN, RELEASE_CHANNELS and ROLLOUT_APPROVERS.

Two groups, because the services file is read first: the settings of one service, GitHub's and
the metrics' are checked against it (`bot.config_checks`), and pydantic validates the settings
in the order they are declared (`bot.config.Settings` keeps that order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from bot.config_checks import SLACK_IDS, loaded, one_service_problem
from bot.domain.errors import PlanError, ServicesError
from bot.plan_file import load_plan
from bot.service_file import load_services

CommaList = Annotated[tuple[str, ...], NoDecode]


class ServicesFileSettings(BaseModel):
    """ROLLOUT_SERVICES."""

    rollout_services: Path | None = None
    """The services file (docs/services.md); without it, one service from GITHUB_REPOSITORY,
    ROLLOUT_PLAN, RELEASE_CHANNELS and ROLLOUT_APPROVERS."""

    @field_validator("rollout_services")
    @classmethod
    def _services(cls, value: Path | None) -> Path | None:
        return None if value is None else loaded(value, load_services, ServicesError)


class OneServiceSettings(BaseModel):
    """ROLLOUT_PLAN, RELEASE_CHANNELS and ROLLOUT_APPROVERS of a bot of one service (its
    repository is GITHUB_REPOSITORY, with the GitHub settings)."""

    rollout_plan: Path | None = None
    release_channels: CommaList = Field(default=(), validate_default=True)
    rollout_approvers: CommaList = Field(default=(), validate_default=True)

    @field_validator("rollout_plan")
    @classmethod
    def _plan(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if one_service_problem(value, info, required=False) or value is None:
            return value
        return loaded(value, load_plan, PlanError)

    @field_validator("release_channels", "rollout_approvers", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("release_channels", "rollout_approvers")
    @classmethod
    def _slack_ids(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        assert info.field_name is not None
        rule = SLACK_IDS[info.field_name]
        if one_service_problem(value, info):
            return value
        bad = [item for item in value if not rule.pattern.fullmatch(item)]
        if bad:
            raise ValueError(f"{', '.join(bad)}: {rule.bad}")
        return value
