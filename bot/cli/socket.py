"""`rollout-bot socket`: the bot over Slack Socket Mode (needs SLACK_APP_TOKEN, an xapp- token)."""

from __future__ import annotations

from bot.cli.serve import run
from bot.cli.settings import load, report
from bot.config import ConfigError, Settings


def main() -> int:
    settings = load(Settings)
    if settings is None:
        return 2
    token = settings.slack_app_token
    if token is None or not token.get_secret_value().startswith("xapp-"):
        return report(
            ConfigError(["SLACK_APP_TOKEN: Socket Mode needs an app-level token (xapp-...)"])
        )
    return run(settings, socket_mode=True)
