"""What preflight reads from the repository on GitHub: directories and files at a ref (the
migrations, the plan's files) and whether a container image tag is published."""

from __future__ import annotations

import functools
import logging

from github import GithubException

from bot.adapters.github.pages import every_page
from bot.adapters.github.refusals import message
from bot.adapters.github.schema import PACKAGE_VERSIONS
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import GitHubError

_log = logging.getLogger(__name__)


def learn_repository_id(github: GitHubTransport, answer: object) -> None:
    """Keep the repository's id from GitHub's JSON of it (a repository, or a run's
    `repository`), read at the configured name. A rename or transfer keeps the id, so the
    webhooks of the repository under its new name are still known as the service's."""
    if isinstance(answer, dict) and isinstance(found := answer.get("id"), int):
        github.repository_id = found


class RepositoryReads:
    """Contents and packages of one repository."""

    def __init__(self, github: GitHubTransport) -> None:
        self._github = github

    async def list_directory(self, *, path: str, ref: str) -> list[str]:
        operation = f"list {path} at {ref}"
        try:
            contents = await self._github.run(
                functools.partial(self._github.repo.get_contents, path, ref=ref),
                endpoint="read",
                operation=operation,
            )
        except GithubException as exc:
            # A missing directory is a plain "Not Found"; a missing ref says so ("No commit
            # found for the ref ..."), and must not read as "no files here".
            if exc.status == 404 and message(exc) == "Not Found":
                _log.info("GitHub: %s: no such directory", operation)
                return []
            raise self._github.explain(operation, exc, kind="read") from exc
        except OSError as exc:
            raise self._github.unreachable(operation, exc) from exc
        if not isinstance(contents, list):
            raise GitHubError(f"Could not {operation}: it is a file, not a directory.")
        return sorted(entry.path for entry in contents if entry.type == "file")

    async def read_file(self, *, path: str, ref: str) -> str:
        operation = f"read {path} at {ref}"

        def read() -> str:
            content = self._github.repo.get_contents(path, ref=ref)
            if isinstance(content, list):
                raise GitHubError(f"Could not {operation}: it is a directory, not a file.")
            if content.encoding != "base64":
                # GitHub leaves `content` empty for files over 1 MB.
                raise GitHubError(
                    f"Could not {operation}: GitHub does not return its content "
                    f"({content.size} bytes is too large for the contents API)."
                )
            return content.decoded_content.decode("utf-8")

        return await self._github.call(operation, read, kind="read")

    async def image_published(self, *, package: str, tag: str) -> bool | None:
        """The repository owner's package, as an organisation's or else a user's. In App mode
        None without asking: the packages API answers an installation token 404, which would
        read as "not published"."""
        if self._github.installation is not None:
            return None
        owner = self._github.repository.split("/")[0]
        operation = f"look up the container image {package}:{tag}"

        def lookup() -> bool:
            for kind in ("orgs", "users"):
                url = f"/{kind}/{owner}/packages/container/{package}/versions"
                try:
                    # At most ten pages (the newest 1,000 versions at GitHub's 100 a page).
                    for page in every_page(self._github, url, {"per_page": 100}, most=10):
                        versions = PACKAGE_VERSIONS.validate_python(page or [])
                        if any(tag in version.tags for version in versions):
                            return True
                    return False
                except GithubException as exc:
                    if exc.status != 404:
                        raise
            return False  # no such package (yet) under the organisation or the user

        return await self._github.call(operation, lookup, kind="read")
