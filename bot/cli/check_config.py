"""`rollout-bot check-config`: the effective configuration with secrets masked, the GitHub App's
key fingerprint (App mode), and each service with its plan's tracks; or every problem with the
configuration."""

from __future__ import annotations

import sys

from bot.cli.settings import load
from bot.config import Settings
from bot.domain.durations import format_duration
from bot.github_credentials import GitHubApp


def main() -> int:
    settings = load(Settings)
    if settings is None:
        return 2
    rows = settings.describe()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        sys.stdout.write(f"{name.ljust(width)}  {value}\n")
    credentials = settings.github_credentials()
    if isinstance(credentials, GitHubApp):
        repositories = [service.repository for service in settings.services()]
        found = repositories[0] if len(repositories) == 1 else "each service's repository"
        installation = credentials.installation_id or f"found from {found}"
        sys.stdout.write(
            f"\nGitHub App {credentials.app_id} (installation {installation}): private key "
            f"{credentials.fingerprint}\n  (GitHub shows each key's fingerprint in the App's "
            "settings → Private keys: this one must be listed there)\n"
        )
    for service in settings.services():
        sys.stdout.write(
            f"\nservice {service.name}: {service.repository}, channels "
            f"{', '.join(service.release_channels)}, approvers {', '.join(service.approvers)}\n"
        )
        if (failures := service.plan.notifications.failure_channel) is not None:
            sys.stdout.write(f"  failures also told in {failures}\n")
        for name, track in service.plan.tracks.items():
            stages = " -> ".join(
                stage.label + (f" ({format_duration(stage.window)})" if stage.window else "")
                for stage in track.stages
            )
            sys.stdout.write(f"  {name}: {stages}; on failure {track.on_failure.environment}\n")
    return 0
