"""Credentials and configuration of the sandbox: the tests and the demo configure the bot
with these. The secrets are distinctive on purpose: the test suite scans every log line of a
run for them. `write_services` writes a `ROLLOUT_SERVICES` file for a bot of several services.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sandbox.yaml_text import yaml_text

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


@dataclass(frozen=True)
class SandboxService:
    """One service of a `ROLLOUT_SERVICES` file: a name, its repository, the plan file (None:
    the built-in plan), its release channels, approvers (user or user group ids) and the
    channel also told of its failures."""

    name: str
    repository: str
    release_channels: tuple[str, ...] = (RELEASE_CHANNEL,)
    approvers: tuple[str, ...] = (RELEASE_MANAGER,)
    plan: Path | None = None
    failure_channel: str | None = None


def numbered_services(
    count: int, *, owner: str = "scriptum", approvers: tuple[str, ...] = (RELEASE_MANAGER,)
) -> list[SandboxService]:
    """`count` services `svc-001`, `svc-002`... in repositories `<owner>/svc-001`..., each
    releasing in a channel of its own (`C0SVC001`...)."""
    return [
        SandboxService(
            name=f"svc-{number:03d}",
            repository=f"{owner}/svc-{number:03d}",
            release_channels=(f"C0SVC{number:03d}",),
            approvers=approvers,
        )
        for number in range(1, count + 1)
    ]


def services_yaml(services: Iterable[SandboxService], *, directory: Path) -> str:
    """The `ROLLOUT_SERVICES` file's text for `services`, written in `directory`: each plan is
    named relative to it. Written as given, so a test of the loader can write a bad file."""
    entries: dict[str, dict[str, object]] = {}
    for service in services:
        entry: dict[str, object] = {"repository": service.repository}
        if service.plan is not None:
            entry["plan"] = os.path.relpath(service.plan, directory)
        entry["release_channels"] = list(service.release_channels)
        entry["approvers"] = list(service.approvers)
        if service.failure_channel is not None:
            entry["failure_channel"] = service.failure_channel
        entries[service.name] = entry
    return yaml_text({"services": entries}, sort_keys=False)


def write_services(path: Path, services: Iterable[SandboxService]) -> Path:
    """Write the `ROLLOUT_SERVICES` file at `path` (see `services_yaml`); returns `path`."""
    path.write_text(services_yaml(services, directory=path.parent), encoding="utf-8")
    return path
