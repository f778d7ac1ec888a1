"""`rollout-bot doctor` in GitHub App mode: what the App's installation must have for the bot.

The permissions and events are the ones `github-app.yml` asks for (a test keeps them equal):
Actions write (dispatch, re-run), Deployments write (answer protection rules), Contents read
(the workflow file, what's in a release), Secrets read (the NPM_TOKEN walkthrough sees that the
secret exists, never its value), Environments read (the same for the secret of the npm job's
environment: GitHub keeps environment secrets under Environments, not Secrets), Metadata read
(every App has it). An installation without Environments read is a warning, not a failure:
only that walkthrough check needs it (an App registered before it was asked for, or whose owner
has not yet accepted it). No Packages permission:
GitHub's packages API takes only a personal access token (classic), so an App cannot see
whether the relay image is published (preflight says so instead of checking).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.services.findings import Finding, failed, passed, warned

APP_PERMISSIONS: Mapping[str, str] = {
    "actions": "write",
    "contents": "read",
    "deployments": "write",
    "metadata": "read",
    "secrets": "read",
    "environments": "read",
}
WALKTHROUGH_ONLY = frozenset({"environments"})
"""Permissions only the NPM_TOKEN walkthrough needs: lacking them is a warning."""
APP_EVENTS = frozenset(
    {"deployment_protection_rule", "deployment_status", "workflow_job", "workflow_run"}
)
_SETTINGS = "the App's settings → Permissions & events"
_ACCEPT = "then accept the new permissions on the installation (Settings → GitHub Apps → Configure)"
WEBHOOK_PATH = "/github/webhook"
UNSUSPEND = (
    "whoever suspended it lifts the suspension (the account's Settings → GitHub Apps → the App "
    "→ Configure → Unsuspend; or, when the App's owner suspended it, the App's settings → "
    "Advanced → Unsuspend): until then GitHub refuses every call of the App there (403) and "
    "sends it no webhook from that account"
)
"""What to do about a suspended installation (GitHub: the App's "access to the GitHub API or
webhook events is blocked for that account"), said by doctor and by each refused call."""


@dataclass(frozen=True)
class AppWebhook:
    """The App's webhook configuration (`GET /app/hook/config`): GitHub never shows the
    secret, only whether one is set."""

    url: str
    content_type: str
    secret_set: bool


@dataclass(frozen=True)
class AppInstallation:
    """The App's installation on the repository, as GitHub describes it."""

    id: int
    configured_id: int | None
    """GITHUB_APP_INSTALLATION_ID (None: the bot finds the installation from the repository)."""
    slug: str
    permissions: Mapping[str, str]
    events: frozenset[str]
    webhook: AppWebhook
    suspended: bool = False
    """GitHub answers it with a `suspended_at`: its tokens are refused (403) until lifted."""


def grants(permissions: Mapping[str, str], name: str, level: str) -> bool:
    granted = permissions.get(name)
    return granted == "write" or (granted == "read" and level == "read")


def _words(name: str, level: str) -> str:
    """A permission as GitHub's settings page names it: `Actions: Read and write`."""
    title = name.replace("_", " ").capitalize()
    return f"{title}: {'Read and write' if level == 'write' else 'Read-only'}"


def missing_permissions(installation: AppInstallation, *, walkthrough: bool = False) -> list[str]:
    """The permissions the installation lacks: those rollouts need (or, `walkthrough`, those
    only the NPM_TOKEN walkthrough needs)."""
    return [
        _words(name, level)
        for name, level in APP_PERMISSIONS.items()
        if (name in WALKTHROUGH_ONLY) == walkthrough
        and not grants(installation.permissions, name, level)
    ]


def wrong_installation(installation: AppInstallation, repository: str) -> Finding | None:
    """GITHUB_APP_INSTALLATION_ID set to another installation than the App's on the
    repository: the bot's tokens would be minted for it (None when it is right or unset)."""
    configured = installation.configured_id
    if configured is None or configured == installation.id:
        return None
    return failed(
        f"GITHUB_APP_INSTALLATION_ID is {configured}; the App's installation on {repository} "
        f"is {installation.id}",
        f"set GITHUB_APP_INSTALLATION_ID={installation.id} (or unset it: the bot then finds it)",
    )


def installation_findings(installation: AppInstallation, repository: str) -> list[Finding]:
    """Installed (and not suspended), its permissions, its events, its webhook."""
    installed = f"is installed on {repository} (installation {installation.id})"
    findings = [
        failed(f"GitHub App {installation.slug} {installed}, but suspended", UNSUSPEND)
        if installation.suspended
        else passed(f"GitHub App {installation.slug} authenticates and {installed}")
    ]
    missing = missing_permissions(installation)
    optional = missing_permissions(installation, walkthrough=True)
    if missing:
        findings.append(
            failed(
                f"GitHub App lacks the permissions {', '.join(missing)}",
                f"grant them in {_SETTINGS}, {_ACCEPT}; without them GitHub answers 403 "
                "'Resource not accessible by integration'",
            )
        )
    elif optional:
        needed = len(APP_PERMISSIONS) - len(WALKTHROUGH_ONLY)
        findings.append(passed(f"GitHub App has the {needed} permissions rollouts need"))
    else:
        findings.append(
            passed(f"GitHub App has the {len(APP_PERMISSIONS)} permissions the bot needs")
        )
    if optional:
        findings.append(
            warned(
                f"GitHub App lacks {', '.join(optional)}, which the NPM_TOKEN walkthrough needs "
                "to read the secret of the npm job's environment",
                f"grant it in {_SETTINGS}, {_ACCEPT}; until then step 3 says it cannot check "
                "that environment",
            )
        )
    events = sorted(APP_EVENTS - installation.events)
    findings.append(
        passed(f"GitHub App receives the {len(APP_EVENTS)} events the bot follows")
        if not events
        else failed(
            f"GitHub App is not subscribed to {', '.join(events)}",
            f"tick them under {_SETTINGS} → Subscribe to events",
        )
    )
    return [*findings, webhook_finding(installation.webhook)]


def webhook_finding(hook: AppWebhook) -> Finding:
    """App mode: GitHub delivers the App's events to the App's own webhook: its URL, its
    content type, and that it has a secret (GitHub shows `********`, never the secret, so
    whether it equals GITHUB_WEBHOOK_SECRET is not checked here)."""
    general = "in the App's settings (General → Webhook)"
    problems = []
    if not hook.url.endswith(WEBHOOK_PATH):
        problems.append(
            (
                f"posts to {hook.url}" if hook.url else "is not set",
                f"set the Webhook URL {general} to https://YOUR-HOST{WEBHOOK_PATH}",
            )
        )
    if hook.content_type != "json":
        problems.append(
            (f"sends {hook.content_type or 'no'} content", "the bot reads JSON: content type json")
        )
    if not hook.secret_set:
        problems.append(
            ("has no secret", f"set the Webhook secret {general} to the GITHUB_WEBHOOK_SECRET")
        )
    if not problems:
        return passed(f"GitHub App webhook posts JSON to {hook.url}, with a secret")
    return failed(
        "GitHub App webhook " + ", ".join(what for what, _ in problems),
        "; ".join(fix for _, fix in problems),
    )


def environment_finding(name: str, rule_apps: list[str] | None, slug: str) -> Finding:
    """An environment must have the App's custom deployment protection rule (App mode)."""
    enable = f"Settings → Environments → {name} → Deployment protection rules: enable {slug}"
    if rule_apps is None:
        return failed(f"environment {name} does not exist", f"create it; then {enable}")
    if slug not in rule_apps:
        return failed(
            f"environment {name} does not wait for the App's rule",
            f"{enable}: without it the job does not wait for the bot",
        )
    return passed(f"environment {name} waits for the App's rule ({slug})")
