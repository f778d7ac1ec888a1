"""`rollout-bot socket`: the bot over Slack Socket Mode (needs SLACK_APP_TOKEN, an xapp- token)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from bot.cli.serve import run
from bot.cli.settings import load
from bot.config import Settings


class SocketSettings(Settings):
    """The bot's settings and an app-level token, checked with every other setting so that
    one run lists every problem."""

    slack_app_token: SecretStr | None = Field(default=None, validate_default=True)

    @field_validator("slack_app_token")
    @classmethod
    def _app_level(cls, value: SecretStr | None) -> SecretStr:
        if value is None or not value.get_secret_value().startswith("xapp-"):
            raise ValueError("Socket Mode needs an app-level token (xapp-...)")
        return value


def main() -> int:
    settings = load(SocketSettings)
    if settings is None:
        return 2
    return run(settings, socket_mode=True)
