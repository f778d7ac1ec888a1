"""Which credential a path of the GitHub simulator takes when a GitHub App is registered: the
App's JWT (its own endpoints), and the permission an installation token needs for each path,
from GitHub's REST reference ("Fine-grained access tokens" / GitHub App permissions of each
endpoint). Used by `sandbox.github_app`."""

from __future__ import annotations

import fnmatch

# (method, path pattern relative to the API base, permission, level): the first match decides.
# From GitHub's REST reference ("Fine-grained access tokens" / GitHub App permissions of each
# endpoint). A path that matches nothing needs no permission (rate_limit, public users).
_PERMISSIONS = (
    ("POST", "/repos/*/*/actions/runs/*/pending_deployments", "deployments", "write"),
    ("POST", "/repos/*/*/actions/runs/*/deployment_protection_rule", "deployments", "write"),
    ("POST", "/repos/*/*/actions/**", "actions", "write"),
    ("GET", "/repos/*/*/actions/secrets/**", "secrets", "read"),
    ("GET", "/repos/*/*/actions/organization-secrets", "secrets", "read"),
    ("GET", "/repos/*/*/actions/**", "actions", "read"),
    ("GET", "/repos/*/*/environments/*/secrets/**", "environments", "read"),
    ("GET", "/repos/*/*/environments/**", "actions", "read"),
    ("GET", "/repos/*/*/hooks/**", "repository_hooks", "read"),
    ("GET", "/repos/*/*/deployments/**", "deployments", "read"),
    ("GET", "/repos/*/*/contents/**", "contents", "read"),
    ("GET", "/repos/*/*/compare/**", "contents", "read"),
    ("GET", "/repos/*/*/releases/**", "contents", "read"),
    ("GET", "/repos/*/*/**", "metadata", "read"),
)
_APP_PATHS = ("/app", "/app/**", "/repos/*/*/installation")
NO_INSTALLATION_TOKEN = ("/user",)  # a person's endpoints: an App is no person
CLASSIC_TOKEN_ONLY = ("/orgs/*/packages/**", "/users/*/packages/**", "/user/packages/**")


def path_matches(path: str, pattern: str) -> bool:
    """Whether `path` matches `pattern` segment by segment: `*` is one segment (or part of
    one), a last `**` any number of segments, none included (`fnmatch` alone lets `*` cross
    a `/`: `/repos/*/*/installation` would take `/repos/o/r/environments/installation`)."""
    parts, wanted = path.strip("/").split("/"), pattern.strip("/").split("/")
    if wanted[-1] == "**":
        wanted = wanted[:-1]
        parts = parts[: len(wanted)]
    return len(parts) == len(wanted) and all(
        fnmatch.fnmatchcase(part, want) for part, want in zip(parts, wanted, strict=True)
    )


def needed_permission(method: str, path: str) -> tuple[str, str] | None:
    for rule_method, pattern, permission, level in _PERMISSIONS:
        if method == rule_method and path_matches(path, pattern):
            return permission, level
    return None


def is_app_path(path: str) -> bool:
    return any(path_matches(path, pattern) for pattern in _APP_PATHS)
