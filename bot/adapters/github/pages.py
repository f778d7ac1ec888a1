"""GitHub's paginated lists, page after page as its `Link` header says.

GitHub may answer fewer items than `per_page` asks (it caps it at 100; "Using pagination in
the REST API") and still have more: only `Link: <...>; rel="next"` says another page
follows, so a short page is no sign of the last, nor a full one of more.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.adapters.github.transport import GitHubTransport


def every_page(
    github: GitHubTransport, path: str, parameters: dict[str, Any], *, most: int
) -> Iterator[Any]:
    """Each page's JSON (`page` 1, 2, ...) while the last one's `Link` names a next page, at
    most `most` pages; each a conditional GET (in the pool's thread)."""
    for page in range(1, most + 1):
        query = parameters | ({"page": page} if page > 1 else {})
        data, more = github.conditional_page(path, query)
        yield data
        if not more:
            return
