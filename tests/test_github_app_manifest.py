"""`github-app.yml`, the App manifest: it parses, has GitHub's manifest keys, and asks for
exactly the permissions and events the bot needs (what `doctor` checks the installation for)."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.services.doctor_app import APP_EVENTS, APP_PERMISSIONS

MANIFEST = Path(__file__).resolve().parent.parent / "github-app.yml"


def test_the_manifest_asks_for_exactly_what_the_bot_needs() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert set(manifest) == {
        "name",
        "url",
        "description",
        "hook_attributes",
        "redirect_url",
        "public",
        "default_permissions",
        "default_events",
    }
    assert manifest["default_permissions"] == {
        "actions": "write",
        "deployments": "write",
        "contents": "read",
        "secrets": "read",
        # The NPM_TOKEN walkthrough reads the secret of the npm job's environment: GitHub
        # answers an App without Environments read 403 there ("Permissions required for
        # GitHub Apps": environment secrets are under Environments, not Secrets).
        "environments": "read",
        "metadata": "read",
    }
    assert manifest["default_permissions"] == dict(APP_PERMISSIONS)
    # GitHub's packages API takes only a personal access token (classic): an App asking for
    # Packages would get nothing for it (preflight says the image cannot be checked instead).
    assert "packages" not in manifest["default_permissions"]
    assert sorted(manifest["default_events"]) == [
        "deployment_protection_rule",
        "deployment_status",
        "workflow_job",
        "workflow_run",
    ]
    assert set(manifest["default_events"]) == APP_EVENTS
    assert manifest["hook_attributes"]["url"].endswith("/github/webhook")
    assert manifest["hook_attributes"]["active"] is True
    assert manifest["public"] is False
