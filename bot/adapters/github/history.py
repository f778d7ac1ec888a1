"""What the release contents read on GitHub: the comparison of the last release with the new
tag (one request) and the repository's latest GitHub Release (one request, only when the bot
has no completed rollout to compare with); and the commit a tag is at, which tells a run on a
release tag from a run on a branch of the same name (`bot.domain.unfollowed_runs`)."""

from __future__ import annotations

from urllib.parse import quote

from github import GithubException
from pydantic import TypeAdapter

from bot.adapters.github.refusals import unless_missing
from bot.adapters.github.schema import CommitComparison, GitObject, NamedRef, Pointer, Release
from bot.adapters.github.transport import GitHubTransport
from bot.domain.errors import RefNotFound, TagTooDeep
from bot.domain.release_contents import Comparison

_TAG_LEVELS = 4
"""Tag objects followed to a commit (a tag of a tag names another tag object): a chain longer
than that is not read to its end, and its commit is unknown (an error), not absent."""


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
        return await self._github.call(
            f"read the tag {tag}", lambda: self._tag_object(tag) is not None, kind="read"
        )

    async def tags_starting(self, prefix: str) -> list[str]:
        path = f"/repos/{self._github.repository}/git/matching-refs/tags/{quote(prefix, safe='')}"

        def listed() -> list[str]:
            refs = TypeAdapter(list[NamedRef]).validate_python(self._github.get_json(path) or [])
            return [ref.ref.removeprefix("refs/tags/") for ref in refs]

        return await self._github.call(f"list the tags starting {prefix}", listed, kind="read")

    async def tag_commit(self, tag: str) -> str | None:
        def commit() -> str | None:
            found = self._tag_object(tag)
            # An annotated tag's ref names the tag object, which names the commit (a tag of a
            # tag names another tag object): GitHub's "Get a tag", a few levels at most.
            for _ in range(_TAG_LEVELS):
                if found is None or found.type != "tag":
                    break
                path = f"/repos/{self._github.repository}/git/tags/{found.sha}"
                found = Pointer.model_validate(self._github.get_json(path)).object
            if found is not None and found.type == "tag":
                raise TagTooDeep(
                    f"Could not read which commit the tag `{tag}` is at: it is a tag of a tag "
                    f"more than {_TAG_LEVELS} tag objects deep, which the bot does not follow. "
                    f"Point it at its commit: `git tag -f -a {tag} {tag}^{{commit}}`, then "
                    f"`git push -f origin {tag}`."
                )
            # A tag of a tree or a blob names no commit: no release can be at it.
            return found.sha if found is not None and found.type == "commit" else None

        return await self._github.call(f"read the tag {tag}", commit, kind="read")

    def _tag_object(self, tag: str) -> GitObject | None:
        """What the tag's ref names (`GET .../git/ref/tags/{tag}`); None when there is no such
        tag (GitHub answers 404)."""
        path = f"/repos/{self._github.repository}/git/ref/tags/{quote(tag, safe='')}"
        # GitHub: 404, no ref of that name.
        return unless_missing(lambda: Pointer.model_validate(self._github.get_json(path)).object)

    async def latest_release(self) -> str | None:
        path = f"/repos/{self._github.repository}/releases/latest"

        def latest() -> str | None:
            # GitHub: 404, the repository has no published release.
            return unless_missing(
                lambda: Release.model_validate(self._github.get_json(path)).tag_name
            )

        return await self._github.call("read the latest GitHub Release", latest, kind="read")
