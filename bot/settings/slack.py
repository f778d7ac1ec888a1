"""The Slack settings: the app's tokens, its signing secret and the Web API's base URL."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, SecretStr, field_validator

from bot.config_checks import a_folder, given, signing_key


class SlackSettings(BaseModel):
    """SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_APP_TOKEN (Socket Mode), SLACK_API_URL."""

    slack_bot_token: SecretStr
    slack_signing_secret: SecretStr
    slack_app_token: SecretStr | None = None
    slack_api_url: Annotated[AnyHttpUrl, AfterValidator(a_folder)] = AnyHttpUrl(
        "https://slack.com/api/"
    )

    @field_validator("slack_signing_secret")
    @classmethod
    def _signing_secret(cls, value: SecretStr | None) -> SecretStr | None:
        return signing_key(value, fix="set the Slack app's Signing Secret (Basic Information)")

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr) -> SecretStr:
        """An empty token (a Secret's key left blank) is no token: Bolt refuses to start
        without one, a traceback after every other check had passed."""
        if not given(value):
            raise ValueError(
                "empty: set the Slack app's Bot User OAuth Token (OAuth & Permissions, xoxb-...)"
            )
        return value
