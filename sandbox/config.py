"""Credentials and configuration of the sandbox: the tests and the demo configure the bot
with these. The secrets are distinctive on purpose: the test suite scans every log line of a
run for them.
"""

from __future__ import annotations

SLACK_BOT_TOKEN = "xoxb-sandbox-7c1e5f0a9d2b"
SLACK_APP_TOKEN = "xapp-1-sandbox-3e8d1c7b5a09"
SLACK_SIGNING_SECRET = "sandbox-signing-4f9a2c6e1b8d"
GITHUB_TOKEN = "ghp_sandbox2d7f4a9c1e6b3"
GITHUB_WEBHOOK_SECRET = "sandbox-webhook-9b3e7a1d5c2f"
SENTRY_TOKEN = "sntrys_sandbox_5e2a8c1f7b3d"
SECRETS = (
    SLACK_BOT_TOKEN,
    SLACK_APP_TOKEN,
    SLACK_SIGNING_SECRET,
    GITHUB_TOKEN,
    GITHUB_WEBHOOK_SECRET,
    SENTRY_TOKEN,
)

REPOSITORY = "scriptum/scriptum"
RELEASE_CHANNEL = "C0RELEASES"
OTHER_CHANNEL = "C0RANDOM00"
RELEASE_MANAGER = "U0RELMGR01"
BYSTANDER = "U0BYSTAND1"


def bot_environment(
    *, slack_api_url: str, github_api_url: str, database_url: str, port: int = 3000
) -> dict[str, str]:
    """The environment variables of a bot wired to the sandbox servers."""
    return {
        "SLACK_BOT_TOKEN": SLACK_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SLACK_SIGNING_SECRET,
        "SLACK_APP_TOKEN": SLACK_APP_TOKEN,
        "SLACK_API_URL": slack_api_url,
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "GITHUB_API_URL": github_api_url,
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_WEBHOOK_SECRET": GITHUB_WEBHOOK_SECRET,
        "DATABASE_URL": database_url,
        "RELEASE_CHANNELS": RELEASE_CHANNEL,
        "ROLLOUT_APPROVERS": RELEASE_MANAGER,
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
