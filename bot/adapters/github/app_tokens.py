"""GitHub App installation tokens narrowed to what a call needs (`POST
/app/installations/{id}/access_tokens` with `repositories` or `repository_ids`, and
`permissions`; REST: "Create an installation access token for an app"): the one repository,
and the permissions of the call's endpoint, within what the installation was granted. Used by
`app_auth.RepositoryInstallation`, which keeps one token per set of permissions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from github import Auth, GithubException
from github.InstallationAuthorization import InstallationAuthorization

READS: Mapping[str, str] = {
    name: "read"
    for name in (
        "actions",
        "contents",
        "deployments",
        "environments",
        "members",
        "metadata",
        "repository_hooks",
        "secrets",
    )
}
"""What the bot's reads need (its runs and jobs, files, tags and releases, deployments
waiting, environments and their secrets' names, team membership, repository webhooks)."""
WRITES: Mapping[str, Mapping[str, str]] = {
    "dispatch": {**READS, "actions": "write"},
    "rerun": {**READS, "actions": "write"},
    "review": {**READS, "deployments": "write"},
}
"""What a call that writes needs, by the transport's endpoint: the reads, and the one write
(a review: a reviewer's or the App's protection rule's answer, and reading the deployments
waiting and the reviews back, in the same call)."""


def needed(endpoint: str, granted: Mapping[str, str]) -> dict[str, str]:
    """The permissions a token for a call of `endpoint` is asked with: what it needs
    (`READS`, `WRITES`) that the installation was `granted`, at most at the level granted
    (GitHub refuses a token asked for more than its installation has)."""
    wanted = WRITES.get(endpoint, READS)
    return {
        name: "write" if level == "write" and granted[name] in ("write", "admin") else "read"
        for name, level in wanted.items()
        if granted.get(name) in ("read", "write", "admin")
    }


class RepositoryNotIncluded(GithubException):
    """GitHub refused a token for the repository (422) and gives no installation of the App on
    it (404): the installation's owner took it out of the repositories the App may reach
    ("Only select repositories"). GitHub's 422 as it came."""


@dataclass
class TokenRepository:
    """The one repository the tokens are minted for: by its name until a mint's answer gives
    its id, then by its id (`repository_ids`), which a rename or a transfer keeps."""

    name: str
    id: int | None = None

    def named(self) -> dict[str, list[Any]]:
        return (
            {"repository_ids": [self.id]} if self.id is not None else {"repositories": [self.name]}
        )

    def learn(self, answer: Any) -> None:
        found = answer.get("repositories") if isinstance(answer, dict) else None
        if isinstance(found, list) and len(found) == 1 and isinstance(found[0], dict):
            number = found[0].get("id")
            self.id = number if isinstance(number, int) else self.id


class NarrowedAuth(Auth.AppInstallationAuth):
    """PyGithub's installation token, minted for one repository (`repositories`, which
    PyGithub does not send) and `permissions`; renewed near its expiry as PyGithub does."""

    def __init__(
        self,
        app: Auth.AppAuth,
        number: int,
        *,
        repository: TokenRepository,
        permissions: dict[str, str],
    ) -> None:
        super().__init__(app, number, permissions)
        self._repository, self._permissions = repository, permissions
        self._expires_at: datetime | None = None

    @property
    def due(self) -> bool:
        """Its token nears its expiry (within PyGithub's margin), or none was minted yet: the
        next is minted by its owner (`app_auth`), with the installation's permissions as they
        are then, not here with those of the first."""
        return self._expires_at is None or (
            self._expires_at - Auth.TOKEN_REFRESH_THRESHOLD_TIMEDELTA < datetime.now(UTC)
        )

    def _get_installation_authorization(self) -> InstallationAuthorization:
        body = {**self._repository.named(), "permissions": self._permissions}
        headers, answer = self.requester.requestJsonAndCheck(
            "POST", f"/app/installations/{self.installation_id}/access_tokens", input=body
        )
        self._repository.learn(answer)
        authorization = InstallationAuthorization(
            requester=self.requester, headers=headers, attributes=answer
        )
        self._expires_at = authorization.expires_at
        return authorization
