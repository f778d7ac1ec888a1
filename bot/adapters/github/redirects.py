"""GitHub's redirections, for the requests the bot sends through PyGithub's requester itself.

GitHub's REST docs ("HTTP redirects"): 301 is a permanent redirection; 302 and 307 are
temporary ones: "the request should be repeated verbatim to the URI specified in the Location
header field but clients should continue to use the original URI for future requests". A
renamed or transferred repository's former name answers a read 301 and a write 307. PyGithub
follows a 301 only (a 302 when asked), and passes any other status below 400 as a success: a
review answered 307 would read as applied, a read answered 307 as an answer of an unknown
shape. These requests follow 302, 307 and 308 on the bot's own GitHub API (never elsewhere:
the token goes with them), and take any other redirection as a refusal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from github.Requester import Requester

_log = logging.getLogger(__name__)

Answer = tuple[int, Mapping[str, Any], str]
"""An answer as `Requester.requestJson` gives it: status, headers (lower-cased), body."""

TEMPORARY = frozenset({302, 307, 308})
"""Redirections to repeat the request at (308 is 301's verbatim twin)."""

_HOPS = 3
"""Redirections followed at most for one request (GitHub's rename redirect is one)."""


def followed(api_url: str, answer: Answer, again: Callable[[str], Answer], *, what: str) -> Answer:
    """`answer`, or, when it redirects to the bot's GitHub API (302, 307, 308), the answer to
    the same request sent there by `again(url)`, up to a few times."""
    for _ in range(_HOPS):
        status, headers, _ = answer
        location = on_api(api_url, headers.get("location"))
        if status not in TEMPORARY or location is None:
            break
        _log.info("GitHub: %s: redirected (%s); sent again at its Location", what, status)
        answer = again(location)
    return answer


def get(
    requester: Requester,
    api_url: str,
    path: str,
    parameters: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """GitHub's answer to `GET path`, its temporary redirections followed (`followed`)."""
    return followed(
        api_url,
        requester.requestJson("GET", path, dict(parameters or {}) or None, dict(headers or {})),
        lambda url: requester.requestJson("GET", url, None, dict(headers or {})),
        what=f"GET {path}",
    )


def checked(requester: Requester, answer: Answer) -> Any:
    """The JSON of a 2xx answer (None when empty); GithubException for any other status."""
    status, headers, text = answer
    data = parsed(text)
    if not 200 <= status < 300:
        output = data if isinstance(data, dict) else {"message": str(text)[:200]}
        raise requester.createException(status, dict(headers), output)
    return data


def parsed(text: str) -> Any:
    """A body's JSON; None when empty; its start as GitHub's `message` when not JSON (an
    error page from a proxy or load balancer)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"message": str(text)[:200]}


def on_api(api_url: str, location: object) -> str | None:
    """`location` as an absolute URL when it is on the bot's GitHub API (scheme, host and
    port, under its path), else None: a request is never sent, with the token, elsewhere."""
    if not isinstance(location, str) or not location:
        return None
    target = urlsplit(urljoin(f"{api_url}/", location))
    base = urlsplit(api_url)
    if (target.scheme, target.netloc.lower()) != (base.scheme, base.netloc.lower()):
        return None
    if not (target.path + "/").startswith(base.path.rstrip("/") + "/"):
        return None
    return target.geturl()
