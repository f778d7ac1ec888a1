"""GitHub's paginated lists, page after page at the addresses its `Link` header gives.

GitHub may answer fewer items than `per_page` asks (it caps it at 100) and still have more:
only `Link: <...>; rel="next"` says another page follows, and its address is the one to ask
("Using pagination in the REST API": use the link header rather than constructing URLs). A
short page is no sign of the last. Nor is `page=2` of the address first asked always the
second page: after a rename, PyGithub follows GitHub's 301 without the query, so it would
answer the first page again (and name a next one, over and over); the `Link` of an answer
names the repository as it is now.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from requests.utils import parse_header_links

from bot.adapters.github.redirects import on_api

if TYPE_CHECKING:
    from bot.adapters.github.transport import GitHubTransport


def every_page(
    github: GitHubTransport, path: str, parameters: dict[str, Any] | None, *, most: int
) -> Iterator[Any]:
    """Each page's JSON while the last one's `Link` names a next page, at most `most` pages;
    each a conditional GET (in the pool's thread)."""
    address: str | None = path
    query: dict[str, Any] | None = parameters
    for _ in range(most):
        assert address is not None
        data, links = github.conditional_page(address, query)
        yield data
        address = links.get("next")
        if address is None:
            return
        query = None  # the next page's address carries its query


def page_links(api_url: str, headers: Mapping[str, Any]) -> dict[str, str]:
    """The addresses an answer's `Link` header gives (`next`, `last`, ...), those on the
    bot's GitHub API only (the token goes with the request); no `next` on the last page."""
    links = {}
    for link in parse_header_links(str(headers.get("link") or "")):
        address = on_api(api_url, link.get("url"))
        if address is not None and link.get("rel"):
            links[link["rel"]] = address
    return links


def first_and_last(
    github: GitHubTransport, path: str, parameters: dict[str, Any], *, most: int
) -> list[Any]:
    """The first page's JSON, and the last one's when there are more: where a list whose
    order GitHub does not promise has its newest items, whichever way it is sorted. When the
    first page's `Link` names a next page but no last one (GitHub leaves out a link it cannot
    calculate), every page up to the last, at most `most` pages in all."""
    first, links = github.conditional_page(path, parameters)
    if (last := links.get("last")) is not None:
        return [first, github.conditional_page(last, None)[0]]
    if (following := links.get("next")) is None:
        return [first]
    return [first, *every_page(github, following, None, most=most - 1)]
