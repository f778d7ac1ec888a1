"""What the release contents read on GitHub: the comparison of the last release with the new
tag (one request) and the repository's latest GitHub Release (one request, only when the bot
has no completed rollout to compare with)."""

from __future__ import annotations

from urllib.parse import quote

from github import GithubException

from bot.adapters.github.schema import CommitComparison, Release
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import RefNotFound
from bot.domain.release_contents import Comparison


class RepositoryHistory:
    """`ChangesSource` for one repository."""

    def __init__(self, github: GitHubTransport) -> None:
        self._github = github

    async def compare(self, *, base: str, head: str) -> Comparison:
        refs = f"{quote(base, safe='')}...{quote(head, safe='')}"
        path = f"/repos/{self._github.repository}/compare/{refs}"

        def compared() -> CommitComparison:
            # No `page` parameter: unpaginated, GitHub lists up to 250 commits and 300 files.
            try:
                return CommitComparison.model_validate(self._github.get_json(path))
            except GithubException as exc:
                if exc.status == 404:
                    raise RefNotFound(
                        f"GitHub knows no tag or commit `{base}` or `{head}` to compare (404)"
                    ) from exc
                raise

        answer = await self._github.call(f"compare {base} with {head}", compared, kind="read")
        return answer.comparison()

    async def tag_exists(self, tag: str) -> bool:
        path = f"/repos/{self._github.repository}/git/ref/tags/{quote(tag, safe='')}"

        def found() -> bool:
            try:
                self._github.get_json(path)
            except GithubException as exc:
                if exc.status == 404:  # GitHub: no ref of that name
                    return False
                raise
            return True

        return await self._github.call(f"read the tag {tag}", found, kind="read")

    async def latest_release(self) -> str | None:
        path = f"/repos/{self._github.repository}/releases/latest"

        def latest() -> str | None:
            try:
                return Release.model_validate(self._github.get_json(path)).tag_name
            except GithubException as exc:
                if exc.status == 404:  # the repository has no published release
                    return None
                raise

        return await self._github.call("read the latest GitHub Release", latest, kind="read")
