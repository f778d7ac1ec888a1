"""`Settings` is put together from the groups of `bot.settings`: every variable keeps its name
and its place (the order `check-config` lists them in, and the order they are validated in:
a setting checked against ROLLOUT_SERVICES or ROLLOUT_PLAN comes after them)."""

from __future__ import annotations

from bot.config import Settings

VARIABLES = [
    "DATABASE_URL",
    *("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL"),
    "ROLLOUT_SERVICES",
    *("GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_PRIVATE_KEY_FILE"),
    *("GITHUB_APP_INSTALLATION_ID", "GITHUB_TOKEN", "GITHUB_API_URL", "GITHUB_REPOSITORY"),
    "GITHUB_WEBHOOK_SECRET",
    *("GITHUB_POLL_INTERVAL", "TIMER_MAX_ATTEMPTS", "DISPATCH_SEARCH_SECONDS"),
    *("GITHUB_UNREADABLE_SECONDS", "UNFOLLOWED_RUN_TIMEOUT", "UNFOLLOWED_RUN_DEFAULT"),
    *("LEASE_SECONDS", "CLAIM_LEASE_SECONDS", "RETENTION_DAYS", "SHUTDOWN_GRACE_SECONDS"),
    *("GITHUB_TIMEOUT", "GITHUB_RETRIES", "GITHUB_RETRY_BACKOFF"),
    "GITHUB_DISPATCH_LOOK_INTERVAL",
    *("ROLLOUT_PLAN", "RELEASE_CHANNELS", "ROLLOUT_APPROVERS"),
    *("PROMETHEUS_URL", "SENTRY_URL", "SENTRY_ORG", "SENTRY_PROJECT", "SENTRY_TOKEN"),
    "GATE_METRICS_TIMEOUT",
    *("METRICS_TOKEN", "HOST", "PORT", "LOG_LEVEL", "LOG_FORMAT"),
]


def test_every_variable_keeps_its_name_and_its_place() -> None:
    assert [name.upper() for name in Settings.model_fields] == VARIABLES
