"""Configuration from the environment (and a `.env` file), with the names of SPEC section 2.

`load_settings` validates everything at once: a bad configuration yields one `ConfigError`
listing every problem by its variable name, so an operator fixes them in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.config_checks import (
    SLACK_IDS,
    a_folder,
    given,
    loaded,
    metrics_sources,
    one_service_problem,
    service_owners,
    with_problems,
)
from bot.domain.errors import PlanError, ServicesError
from bot.domain.rollout import DISPATCH_SEARCH, UNREAD_AFTER
from bot.domain.service import DEFAULT_SERVICE, Service
from bot.github_credentials import (
    APP_SETTINGS,
    GitHubApp,
    KeyProblem,
    key_from_file,
    mode_problems,
    normalize_pem,
    rsa_key,
)
from bot.logs import password_forms
from bot.plan_file import load_plan
from bot.service_file import (
    REPOSITORY,
    load_services,
)
from storage.db import default_database_url, mask_database_url, normalize_database_url

CommaList = Annotated[tuple[str, ...], NoDecode]


class ConfigError(Exception):
    """Every problem with the configuration, each naming its environment variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


_BLANK_KEY_FIX = {
    "slack_signing_secret": "set the Slack app's Signing Secret (Basic Information)",
    "github_webhook_secret": (
        "set the webhook's secret, or leave GITHUB_WEBHOOK_SECRET unset to refuse every delivery"
    ),
}


class DatabaseSettings(BaseSettings):
    """Just DATABASE_URL: all that `rollout-bot migrate` needs. Its kinds show their secrets
    masked (`describe`), in their repr too."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = Field(default_factory=default_database_url)

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
    """Just PROMETHEUS_URL: all that `rollout-bot backtest` needs."""

    prometheus_url: AnyHttpUrl


class Settings(DatabaseSettings):
    """The bot's configuration. Secrets are `SecretStr`: they print as asterisks, and so do
    the passwords inside its URLs."""

    slack_bot_token: SecretStr
    slack_signing_secret: SecretStr
    slack_app_token: SecretStr | None = None
    slack_api_url: Annotated[AnyHttpUrl, AfterValidator(a_folder)] = AnyHttpUrl(
        "https://slack.com/api/"
    )

    rollout_services: Path | None = None
    """The services file (docs/services.md); without it, one service from GITHUB_REPOSITORY,
    ROLLOUT_PLAN, RELEASE_CHANNELS and ROLLOUT_APPROVERS."""

    # A token or a GitHub App, never both: `_github_mode` checks them together.
    github_app_id: int | None = Field(default=None, gt=0)
    github_app_private_key: SecretStr | None = None
    """The App's private key, PEM text (or GITHUB_APP_PRIVATE_KEY_FILE, its path)."""
    github_app_private_key_file: Path | None = None
    github_app_installation_id: int | None = Field(default=None, gt=0)
    """Found from GITHUB_REPOSITORY (`GET /repos/{owner}/{repo}/installation`) when unset."""
    github_token: SecretStr | None = None
    github_api_url: AnyHttpUrl = AnyHttpUrl("https://api.github.com")
    github_repository: str | None = Field(default=None, validate_default=True)
    github_webhook_secret: SecretStr | None = None
    github_poll_interval: float = Field(default=15.0, gt=0, le=3600)
    """Seconds between two looks at each running rollout's run on GitHub."""
    timer_max_attempts: int = Field(default=8, ge=1, le=100)
    """Tries of a window's end before its timer is dead-lettered and the stage held."""
    dispatch_search_seconds: float = Field(default=DISPATCH_SEARCH.total_seconds(), ge=10, le=86400)
    """How long the bot looks for the run of a dispatch GitHub answered unclearly before it
    gives up and a person may dispatch again."""
    github_unreadable_seconds: float = Field(default=UNREAD_AFTER.total_seconds(), ge=0, le=86400)
    """How long GitHub may fail every read of a followed run before its thread is told."""
    unfollowed_run_timeout: float = Field(default=1800.0, ge=60, le=86400 * 7)
    """Seconds a protection-rule request of a run no rollout follows waits for Adopt or
    Reject before UNFOLLOWED_RUN_DEFAULT answers it (docs/protection-rules.md)."""
    unfollowed_run_default: Literal["reject", "approve"] = "reject"
    """What answers such a run nobody adopted or rejected in time."""
    lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    """How long a replica holds a window timer or an outbox message it works on (renewed
    while the work runs); a dead replica's work is taken over once its lease runs out."""
    claim_lease_seconds: float = Field(default=300.0, ge=1, le=86400)
    """How long a person's action claim is held before a dead replica's claim is taken
    over (not renewed: longer than the slowest action)."""
    retention_days: int = Field(default=30, ge=1, le=3650)
    """Days action claims and webhook deliveries are kept (the audit trail stays)."""
    shutdown_grace_seconds: float = Field(default=30.0, ge=0, le=600)
    """On SIGTERM, how long `serve` waits for the timer in hand and the requests in flight
    before it exits (keep it under the orchestrator's kill timeout)."""
    # GitHub's API: seconds to wait for an answer, and how often a read is tried again
    # (with backoff and jitter, base GITHUB_RETRY_BACKOFF seconds); writes never are.
    github_timeout: int = Field(default=15, ge=1, le=300)
    github_retries: int = Field(default=4, ge=0, le=10)
    github_retry_backoff: float = Field(default=0.5, ge=0, le=60)
    github_dispatch_look_interval: float = Field(default=1.0, gt=0, le=60)
    """Seconds between the ten looks for the run a dispatch started, right after it (GitHub
    lists a new run only after a moment)."""

    rollout_plan: Path | None = None
    release_channels: CommaList = Field(default=(), validate_default=True)
    rollout_approvers: CommaList = Field(default=(), validate_default=True)
    prometheus_url: AnyHttpUrl | None = Field(default=None, validate_default=True)
    sentry_url: AnyHttpUrl = AnyHttpUrl("https://sentry.io")
    sentry_org: str | None = None
    sentry_project: str | None = Field(default=None, pattern=r"^[0-9]+$")
    """The numeric project id: Sentry's sessions API filters projects by id."""
    sentry_token: SecretStr | None = Field(default=None, validate_default=True)

    metrics_token: SecretStr | None = None
    """When set, `GET /metrics` wants `Authorization: Bearer <METRICS_TOKEN>`."""

    host: str = "0.0.0.0"  # noqa: S104 - a server that Slack and GitHub must reach
    port: int = Field(default=3000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    _github_app_key: SecretStr | None = PrivateAttr(default=None)
    """The App's key, from GITHUB_APP_PRIVATE_KEY or read once from its file at start."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("github_app_private_key")
    @classmethod
    def _app_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        pem = normalize_pem(value.get_secret_value())
        try:
            rsa_key(pem, source="the value")
        except KeyProblem as problem:
            raise ValueError(str(problem)) from None
        return SecretStr(pem)

    @model_validator(mode="wrap")
    @classmethod
    def _github_mode(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """The GitHub settings together (a token or an App), each problem under the variable
        it concerns and listed with every other setting's; the key file is read here, once."""
        raw = data if isinstance(data, dict) else {}
        names = ("GITHUB_TOKEN", *APP_SETTINGS)
        problems = mode_problems({name for name in names if given(raw.get(name.lower()))})
        key_file, key = raw.get("github_app_private_key_file"), None
        if given(key_file) and "GITHUB_APP_PRIVATE_KEY_FILE" not in problems:
            try:
                key = SecretStr(key_from_file(Path(str(key_file))))
            except KeyProblem as problem:
                problems["GITHUB_APP_PRIVATE_KEY_FILE"] = str(problem)
        try:
            settings = handler(data)
        except ValidationError as error:
            raise with_problems(error.title, error.errors(), problems) from None
        if problems:
            raise with_problems(cls.__name__, [], problems)
        settings._github_app_key = key or settings.github_app_private_key
        return settings

    @field_validator("slack_signing_secret", "github_webhook_secret")
    @classmethod
    def _signing_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """A blank key signs what anyone sends: refused, never taken as a key."""
        if value is not None and not value.get_secret_value().strip():
            fix = _BLANK_KEY_FIX[str(info.field_name)]
            raise ValueError(f"empty: anyone can sign with an empty key; {fix}")
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[!-~]+", value.get_secret_value()):
            raise ValueError(
                "must be printable ASCII without spaces (a bearer token); leave it unset to "
                "serve /metrics without one"
            )
        return value

    @field_validator("rollout_services")
    @classmethod
    def _services(cls, value: Path | None) -> Path | None:
        return None if value is None else loaded(value, load_services, ServicesError)

    @field_validator("github_app_installation_id")
    @classmethod
    def _installation(cls, value: int | None, info: ValidationInfo) -> int | None:
        owners = service_owners(info)
        if value is not None and len(owners) > 1:
            raise ValueError(
                f"an App has one installation per owner, and the services' repositories have "
                f"{len(owners)} ({', '.join(sorted(owners))}): leave it unset, the bot finds "
                "each repository's installation"
            )
        return value

    @field_validator("github_repository")
    @classmethod
    def _repository(cls, value: str | None, info: ValidationInfo) -> str | None:
        if one_service_problem(value, info) or value is None:
            return value
        if not REPOSITORY.fullmatch(value):
            raise ValueError(f"{value!r} is not owner/name")
        return value

    @field_validator("rollout_plan")
    @classmethod
    def _plan(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if one_service_problem(value, info, required=False) or value is None:
            return value
        return loaded(value, load_plan, PlanError)

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus(cls, value: AnyHttpUrl | None, info: ValidationInfo) -> AnyHttpUrl | None:
        if value is None and "prometheus" in metrics_sources(info):
            raise ValueError("missing: the rollout plan reads metrics from Prometheus")
        return value

    @field_validator("sentry_token")
    @classmethod
    def _sentry(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if "sentry" in metrics_sources(info):
            given = {
                "SENTRY_ORG": info.data.get("sentry_org"),
                "SENTRY_PROJECT": info.data.get("sentry_project"),
                "SENTRY_TOKEN": value.get_secret_value() if value else None,
            }
            missing = [name for name, setting in given.items() if not setting]
            if missing:
                raise ValueError(
                    f"the rollout plan reads crash rates from Sentry: set {', '.join(missing)}"
                )
        return value

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

    def github_credentials(self) -> SecretStr | GitHubApp:
        """GITHUB_TOKEN, or the GitHub App (its key as read at start)."""
        if self.github_token is not None and self.github_token.get_secret_value():
            return self.github_token
        # `_github_mode` refuses a half-set App.
        assert self.github_app_id is not None and self._github_app_key is not None
        return GitHubApp(self.github_app_id, self._github_app_key, self.github_app_installation_id)

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
    try:
        return kind(_env_file=env_file)
    except ValidationError as error:
        raise ConfigError([_problem(item) for item in error.errors()]) from None
