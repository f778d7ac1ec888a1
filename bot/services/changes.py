"""The port of what the release contents read on GitHub: a comparison of two refs, whether
a tag exists, and the latest GitHub Release (part of `ports.GitHubGateway`, kept here for
its size)."""

from __future__ import annotations

from typing import Protocol

from bot.domain.release_contents import Comparison


class ChangesSource(Protocol):
    """GitHub's history of the repository; raises `GitHubError` when GitHub refuses or fails."""

    async def compare(self, *, base: str, head: str) -> Comparison:
        """The commits and changed files from `base` to `head` (GitHub lists at most 250
        commits and 300 files; `total_commits` counts them all)."""
        ...

    async def tag_exists(self, tag: str) -> bool:
        """Whether the repository has the tag `tag` (`GET .../git/ref/tags/{tag}`)."""
        ...

    async def tags_starting(self, prefix: str) -> list[str]:
        """The repository's tags whose names start with `prefix` (GitHub's first page of
        `GET .../git/matching-refs/tags/{prefix}`)."""
        ...

    async def tag_commit(self, tag: str) -> str | None:
        """The commit the repository's tag `tag` is at (an annotated tag's, followed to it);
        None when there is no such tag (or it names no commit: a tree's tag). GitHubError
        when that is not known: GitHub failed, or a tag of a tag too deep to follow."""
        ...

    async def latest_release(self) -> str | None:
        """The tag of the repository's latest published GitHub Release; None when none."""
        ...
