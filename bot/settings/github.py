"""The GitHub settings: a token or a GitHub App (never both), the API's URL, the repository of
a bot of one service and the webhook's secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.config_checks import (
    given,
    one_service_problem,
    service_owners,
    signing_key,
    with_problems,
)
from bot.github_credentials import (
    APP_SETTINGS,
    GitHubApp,
    KeyProblem,
    key_from_file,
    mode_problems,
    normalize_pem,
    rsa_key,
)
from bot.service_file import REPOSITORY


class GitHubSettings(BaseModel):
    """GITHUB_TOKEN or GITHUB_APP_*, GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_WEBHOOK_SECRET."""

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

    _github_app_key: SecretStr | None = PrivateAttr(default=None)
    """The App's key, from GITHUB_APP_PRIVATE_KEY or read once from its file at start."""

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
    def _github_mode(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
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

    @field_validator("github_api_url")
    @classmethod
    def _api_url(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        """No user or password: PyGithub does not send them, and the bot follows GitHub's page
        links and redirections only to the same host as this URL's (with them, to none)."""
        if value.username is not None or value.password is not None:
            raise ValueError(
                "has a user or password in it, which the GitHub client does not send (it "
                "signs in with GITHUB_TOKEN or the App), and with which the bot would read "
                "only the first page of GitHub's lists: remove them (`https://HOST/api/v3`)"
            )
        return value

    @field_validator("github_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        return signing_key(
            value,
            fix="set the webhook's secret, or leave GITHUB_WEBHOOK_SECRET unset to refuse every "
            "delivery",
        )

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

    def github_credentials(self) -> SecretStr | GitHubApp:
        """GITHUB_TOKEN, or the GitHub App (its key as read at start)."""
        if self.github_token is not None and self.github_token.get_secret_value():
            return self.github_token
        # `_github_mode` refuses a half-set App.
        assert self.github_app_id is not None and self._github_app_key is not None
        return GitHubApp(self.github_app_id, self._github_app_key, self.github_app_installation_id)
