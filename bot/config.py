"""Configuration from the environment (and a `.env` file), with the names of SPEC section 2.

`Settings` puts together the groups of `bot.settings` (Slack, the services, GitHub, timing,
metrics) and the server's own settings. `load_settings` validates everything at once: a bad
configuration yields one `ConfigError` listing every problem by its variable name, so an
operator fixes them in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.domain.errors import RolloutError
from bot.domain.service import DEFAULT_SERVICE, Service
from bot.logs import password_forms
from bot.plan_file import load_plan, read_text
from bot.service_file import load_services
from bot.settings.github import GitHubSettings
from bot.settings.metrics import READ_WITHIN, GateMetricsTimeout, MetricsSettings
from bot.settings.services import OneServiceSettings, ServicesFileSettings
from bot.settings.slack import SlackSettings
from bot.settings.timing import TimingSettings
from storage.db import default_database_url, mask_database_url, normalize_database_url


class ConfigError(Exception):
    """Every problem with the configuration, each naming its environment variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class DatabaseSettings(BaseSettings):
    """Just DATABASE_URL: all that `rollout-bot migrate` needs. Its kinds show their secrets
    masked (`describe`), in their repr too."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    database_url: str = Field(default_factory=default_database_url)

    @field_validator("*", mode="before")
    @classmethod
    def _without_surrounding_whitespace(cls, value: object) -> object:
        """A value's surrounding whitespace is no part of it, whatever its kind (a secret, a
        word such as LOG_LEVEL's, a number): a Kubernetes Secret made with `echo` or
        `--from-file` ends each value with a newline, and with it every Slack request failed
        its signature and every GitHub call was refused before it was sent."""
        return value.strip() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalize_database_url(value)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        """As `describe` shows the settings (a traceback or a holder's repr may show them):
        the passwords inside URLs masked, as the secrets are; so for every kind of settings
        (`migrate`, `audit` and `backtest` load a part of them)."""
        return [(name.lower(), shown) for name, shown in self.describe()]

    def describe(self) -> list[tuple[str, str]]:
        """Every setting as (ENV_NAME, value) with secrets masked, for `check-config`."""
        rows: list[tuple[str, str]] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = "******** (set)" if value.get_secret_value() else "(empty)"
            elif value is None:
                shown = "(not set)"
            elif isinstance(value, tuple):
                shown = ", ".join(value)
            elif name == "database_url":
                shown = mask_database_url(value)
            elif isinstance(value, AnyHttpUrl) and value.password:
                shown = str(value).replace(f":{value.password}@", ":***@", 1)
            else:
                shown = str(value)
            rows.append((name.upper(), shown))
        return rows


class PrometheusSettings(DatabaseSettings):
    """Just PROMETHEUS_URL and GATE_METRICS_TIMEOUT: all that `rollout-bot backtest` needs."""

    prometheus_url: AnyHttpUrl
    gate_metrics_timeout: GateMetricsTimeout = READ_WITHIN
    """How long each window's reading may take in all, as a gate's."""


class Settings(
    MetricsSettings,
    OneServiceSettings,
    TimingSettings,
    GitHubSettings,
    ServicesFileSettings,
    SlackSettings,
    DatabaseSettings,
):
    """The bot's configuration. Secrets are `SecretStr`: they print as asterisks, and so do
    the passwords inside its URLs.

    The groups stand in reverse: pydantic takes the fields of the last base first, and
    validates (and `check-config` lists) them in that order: DATABASE_URL, Slack's, then
    ROLLOUT_SERVICES before the GitHub, one-service and metrics settings checked against it.
    """

    metrics_token: SecretStr | None = None
    """When set, `GET /metrics` wants `Authorization: Bearer <METRICS_TOKEN>`."""

    host: str = "0.0.0.0"  # noqa: S104 - a server that Slack and GitHub must reach
    port: int = Field(default=3000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[!-~]+", value.get_secret_value()):
            raise ValueError(
                "must be printable ASCII without spaces (a bearer token); leave it unset to "
                "serve /metrics without one"
            )
        return value

    def services(self) -> tuple[Service, ...]:
        """Every service the bot releases: those of ROLLOUT_SERVICES, or the one service of
        GITHUB_REPOSITORY, ROLLOUT_PLAN (or the built-in plan), RELEASE_CHANNELS and
        ROLLOUT_APPROVERS, named `default`."""
        if self.rollout_services is not None:
            return load_services(self.rollout_services)
        assert self.github_repository is not None  # `_repository` refuses its absence
        return (
            Service(
                name=DEFAULT_SERVICE,
                repository=self.github_repository,
                plan=load_plan(self.rollout_plan),
                release_channels=self.release_channels,
                approvers=self.rollout_approvers,
            ),
        )

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log scrubber: the SecretStr settings, the passwords
        inside URLs (a Prometheus or database URL may carry credentials), and each line of the
        GitHub App's private key (a line alone is part of the key too)."""
        secrets = [
            value.get_secret_value()
            for name in type(self).model_fields
            if isinstance(value := getattr(self, name), SecretStr) and value.get_secret_value()
        ]
        urls = [
            str(url)
            for name in type(self).model_fields
            if isinstance(url := getattr(self, name), AnyHttpUrl)
        ]
        passwords = [form for url in (*urls, self.database_url) for form in password_forms(url)]
        key = self._github_app_key.get_secret_value() if self._github_app_key is not None else ""
        key_lines = [line for line in key.splitlines() if not line.startswith("-----")]
        return secrets + passwords + key_lines


S = TypeVar("S", bound=DatabaseSettings)


def _problem(error: Mapping[str, Any]) -> str:
    name = str(error["loc"][0]).upper() if error["loc"] else "CONFIGURATION"
    if error["type"] == "missing":
        return f"{name}: missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{name}: {message}"


def load_settings(kind: type[S], *, env_file: Path | None = Path(".env")) -> S:
    """Read and validate `Settings` (or `DatabaseSettings`), or raise ConfigError listing
    every problem."""
    if (unreadable := _unreadable(env_file)) is not None:
        raise ConfigError([unreadable])
    try:
        return kind(_env_file=env_file)
    except ValidationError as error:
        raise ConfigError([_problem(item) for item in error.errors()]) from None


def _unreadable(env_file: Path | None) -> str | None:
    """Why the `.env` file there is cannot be read, or None (none there, or it reads):
    pydantic-settings reads it before any setting is checked, and failed with a traceback."""
    if env_file is None or not env_file.is_file():
        return None
    try:
        read_text(env_file, f"the file {env_file}", RolloutError)
    except RolloutError as error:
        return (
            f"{env_file}: {error.message}; nothing was read from it: save it as UTF-8 text "
            "that the bot's user may read"
        )
    return None
