"""GitHub's refusals and network failures, in words a release engineer can act on: GitHub's
own message, what each refusal usually means (by operation kind and status), rate limits and
when they reset, and whether a failed request ever reached GitHub."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from github import GithubException, RateLimitExceededException
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

from bot.adapters.github.app_auth import RepositoryInstallation

_WEBHOOKS_READ = (
    "the token needs read access to the repository's webhooks (fine-grained token: "
    "Webhooks: Read; classic token: admin:repo_hook)"
)
# What each refusal usually means, by operation kind and status: the fix a person can make.
HINTS: Mapping[tuple[str, int], str] = {
    ("dispatch", 403): "the token needs the Actions write permission on the repository",
    ("dispatch", 404): "check GITHUB_REPOSITORY and the workflow file name",
    ("review", 403): "the token needs a reviewer's rights on the environment",
    ("review", 404): "check GITHUB_REPOSITORY and that the run exists",
    ("read", 403): "the token needs read access to the repository's contents and Actions",
    ("read", 404): "check GITHUB_REPOSITORY and that the token can see the repository",
    ("link", 404): "GitHub has no run of that number in this repository; check the run's page",
    ("secret", 403): (
        "the bot's GitHub token may not read the repository's Actions secrets: a fine-grained "
        "token needs the repository permission Secrets: Read, a classic token the repo scope, "
        "a GitHub App the Secrets read permission, and the account collaborator access"
    ),
    ("hooks", 403): _WEBHOOKS_READ,
    ("hooks", 404): _WEBHOOKS_READ,
    ("release", 403): (
        "the bot's GitHub token needs read access to Actions on the repository "
        "(fine-grained token: Actions: Read)"
    ),
    ("release", 404): (
        "check that the workflow file exists in .github/workflows on the default branch "
        "(the plan's npm.workflow) and GITHUB_REPOSITORY"
    ),
}


def message(exc: GithubException) -> str:
    """GitHub's own words for a refusal (its JSON `message`, else the start of the body:
    PyGithub keeps a body that is not JSON as `{"data": text}` when it mints a token)."""
    data = exc.data
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"]).strip()
    if isinstance(data, dict) and isinstance(data.get("data"), str):
        data = data["data"]
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    return str(data or exc.message or "no message")[:200].strip()


def app_credentials_fix(installation: RepositoryInstallation) -> str:
    return (
        f"check that GITHUB_APP_ID is the App's id ({installation.app_id} now) and that the "
        "private key is one of that App's keys (compare the fingerprint check-config prints "
        "with the App's settings)."
    )


def never_sent(exc: OSError) -> bool:
    """Whether the request certainly never reached GitHub (no connection could be made), as
    opposed to a timeout or a reset after it was sent, when it may have been carried out."""
    return isinstance(exc, requests.exceptions.ConnectTimeout) or isinstance(
        _cause(exc), NewConnectionError | ConnectTimeoutError
    )


def network_failure(exc: OSError) -> str:
    """What went wrong on the network, in words (never the URL: it may name the host)."""
    if isinstance(exc, requests.exceptions.Timeout) or isinstance(_cause(exc), ReadTimeoutError):
        return "no answer in time"
    if never_sent(exc):
        return "no connection could be made"
    return "the connection was closed without an answer"


def _cause(exc: OSError) -> object:
    reason = exc.args[0] if exc.args else None
    return getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause


def _headers(exc: GithubException) -> dict[str, Any]:
    return {k.lower(): v for k, v in (exc.headers or {}).items()}


def rate_limited(exc: GithubException) -> bool:
    if isinstance(exc, RateLimitExceededException) or exc.status == 429:
        return True
    return exc.status == 403 and (
        _headers(exc).get("x-ratelimit-remaining") == "0" or "rate limit" in message(exc).lower()
    )


UNSAID_WAIT = 60.0
"""Seconds to wait after a rate limit that says nothing of when to try again. GitHub's REST
docs ("Rate limits for the REST API", exceeding the rate limit): use `retry-after` when
present; else, with `x-ratelimit-remaining` 0, wait until `x-ratelimit-reset`; "Otherwise, wait
for at least one minute before retrying" (a secondary rate limit)."""


def retry_after(exc: GithubException) -> float:
    """Seconds a rate limit asks to wait: `Retry-After`, or until `X-RateLimit-Reset` when no
    requests are left, or else GitHub's one minute (`UNSAID_WAIT`)."""
    headers = _headers(exc)
    if (retry_after := str(headers.get("retry-after", ""))).isdigit():
        return float(retry_after)
    reset = str(headers.get("x-ratelimit-reset", ""))
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(0.0, int(reset) - time.time())
    return UNSAID_WAIT


def reset_hint(exc: GithubException) -> str:
    headers = _headers(exc)
    if (retry_after := headers.get("retry-after", "")).isdigit():
        return f"try again in {retry_after} s."
    reset = str(headers.get("x-ratelimit-reset", ""))
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        at = datetime.fromtimestamp(int(reset), UTC)
        return f"the limit resets at {at:%H:%M:%S} UTC."
    return "try again in a minute."
