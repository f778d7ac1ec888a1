"""GitHub's refusals and network failures, in words a release engineer can act on: GitHub's
own message, what each refusal usually means (by operation kind and status), rate limits and
when they reset, and whether a failed request ever reached GitHub."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
from github import GithubException, RateLimitExceededException
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

from bot.adapters.github.app_auth import RepositoryInstallation
from bot.adapters.github.app_tokens import RepositoryNotIncluded
from bot.adapters.github.budget import UNSAID_WAIT, RequestBudget
from bot.adapters.github.retry import retry_after_wait
from bot.domain.errors import GitHubRateLimited
from bot.domain.text import whole_number
from bot.services.doctor_app import UNSUSPEND

T = TypeVar("T")

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
    ("environment_secret", 403): (  # short: it is said within a check's 300 characters
        "a fine-grained token needs the repository permission Environments: Read, a GitHub "
        "App Environments read, a classic token the repo scope"
    ),
    ("environment", 403): (  # short: the rules' note says it in a line
        "a fine-grained token needs the repository permission Actions: Read"
    ),
    ("team", 403): (
        "the token needs to see the organisation's teams (fine-grained token: the "
        "organisation permission Members: Read; classic token: read:org)"
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


_GRANT = (
    " (the App's settings → Permissions & events; then accept the new permissions on the "
    "installation: Settings → GitHub Apps → Configure)"
)
# The same refusals for a GitHub App: "Resource not accessible by integration" names no
# permission, so say which one the call needs (GitHub's REST reference, per endpoint).
APP_HINTS: Mapping[tuple[str, int], str] = {
    ("dispatch", 403): "the GitHub App needs the permission Actions: Read and write" + _GRANT,
    ("review", 403): "the GitHub App needs the permission Deployments: Read and write" + _GRANT,
    ("read", 403): (
        "the GitHub App needs the permissions Actions: Read and Contents: Read" + _GRANT
    ),
    ("secret", 403): "the GitHub App needs the permission Secrets: Read" + _GRANT,
    ("release", 403): "the GitHub App needs the permission Actions: Read" + _GRANT,
}


# GitHub's words for a ref it has no commit for (the contents API's 404 for a missing tag,
# branch or commit); a repository it cannot find, or a file not there, is a plain "Not Found".
_NO_COMMIT = "No commit found for the ref"
_MISSING_REF = (
    "the repository is there, but not this tag or commit: it was deleted from GitHub or never "
    "pushed; push it again, or release a tag GitHub has"
)


# GitHub's words for the 403 to a suspended installation's token mint and tokens ("This
# installation has been suspended", sometimes followed by a link): no permission is missing.
_SUSPENDED = "installation has been suspended"


def suspended(status: int, text: str) -> bool:
    """Whether GitHub refused a call (or a mint) because the App's installation is suspended."""
    return status == 403 and _SUSPENDED in text.casefold()


def hint(kind: str, status: int, text: str, app_hints: Mapping[tuple[str, int], str]) -> str:
    """What a refusal (`status`, GitHub's words `text`) of an operation of `kind` usually
    means, as a fix ("" when nothing is known): a missing ref is told as one whatever the
    kind, and a suspended installation as one (not as a permission to grant); else the App's
    hint (`app_hints`, empty in token mode), else the token's."""
    if status == 404 and text.startswith(_NO_COMMIT):
        return _MISSING_REF
    if suspended(status, text):
        return UNSUSPEND
    return app_hints.get((kind, status)) or HINTS.get((kind, status)) or ""


def unless_missing(read: Callable[[], T]) -> T | None:
    """`read()`, or None when GitHub answers 404 (no such thing); any other refusal raises."""
    try:
        return read()
    except GithubException as exc:
        if exc.status == 404:
            return None
        raise


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


def no_token_reason(
    cause: GithubException | OSError,
    installation: RepositoryInstallation,
    *,
    budget: RequestBudget | None,
    scrub: Callable[[str], str],
) -> str:
    """Why GitHub gave the App no installation token (`cause`: its answer to the mint or the
    installation's lookup, or the network's failure), and what to do, in words; `scrub`
    masks the credentials in GitHub's own words."""
    repository = installation.repository
    if isinstance(cause, OSError):
        return f"GitHub could not be reached ({network_failure(cause)}); try again."
    if cause.status == 401:
        return (
            f"GitHub rejected the App's credentials (401 {scrub(message(cause))}): "
            f"{app_credentials_fix(installation)}"
        )
    if cause.status == 404 and installation.configured_id is not None:
        return (
            f"GitHub has no installation {installation.configured_id} of the App (404): "
            f"set GITHUB_APP_INSTALLATION_ID to the App's installation on {repository}, or "
            "unset it to have the bot find it."
        )
    if cause.status == 404:  # no installation on the owner's account (one per account)
        return (
            f"the App is not installed on {repository} (404): install it on "
            f"{repository.split('/')[0]} with this repository (the App's page → Install App); "
            "the bot finds the installation on its next call."
        )
    if isinstance(cause, RepositoryNotIncluded):
        owner = repository.split("/")[0]
        return (
            f"the App's installation on {owner} does not include {repository} (422 "
            f"{scrub(message(cause))}): give it back (the account's Settings → GitHub Apps → "
            f"the App → Configure → Repository access: add {repository}); the bot's next call "
            "gets a token for it."
        )
    if cause.status == 422 and installation.configured_id is not None:
        # The token is asked for the one repository: another installation's is refused.
        return (
            f"GitHub refused a token of installation {installation.configured_id} for "
            f"{repository} (422 {scrub(message(cause))}): GITHUB_APP_INSTALLATION_ID must be "
            f"the App's installation on {repository}; set it so, or unset it to have the bot "
            "find it."
        )
    if suspended(cause.status, message(cause)):
        return (
            f"the App's installation on {repository.split('/')[0]} is suspended (403 "
            f"{scrub(message(cause))}): {UNSUSPEND}."
        )
    if rate_limited(cause):
        return f"GitHub rate limited the bot ({cause.status}); {reset_hint(cause, budget)}"
    if cause.status >= 500:
        return f"GitHub answered {cause.status} ({scrub(message(cause))}); try again."
    return f"GitHub refused it ({cause.status}: {scrub(message(cause))})."


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


def said_wait(exc: GithubException) -> float | None:
    """Seconds a rate limit asks to wait: `Retry-After`, or until `X-RateLimit-Reset` when no
    requests are left; None when it says neither (a secondary rate limit: `SecondaryBackoff`)."""
    headers = _headers(exc)
    if (retry_after := retry_after_wait(headers)) is not None:
        return retry_after
    reset = whole_number(str(headers.get("x-ratelimit-reset", "")))
    if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
        return max(0.0, reset - time.time())
    return None


def reset_hint(exc: GithubException, budget: RequestBudget | None = None) -> str:
    """When to try again: as GitHub said, or when `budget`'s hold ends (`unsaid_wait`)."""
    headers = _headers(exc)
    if (retry_after := retry_after_wait(headers)) is not None:
        return f"try again in {math.ceil(retry_after)} s."
    reset = whole_number(str(headers.get("x-ratelimit-reset", "")))
    if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
        at = datetime.fromtimestamp(reset, UTC)
        return f"the limit resets at {at:%H:%M:%S} UTC."
    return f"try again in {wait_words(unsaid_wait(budget))}."


def wait_words(seconds: float) -> str:
    """A wait in words: "45 s", "3 min 20 s"."""
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def secondary_seen(budget: RequestBudget, answer: GithubException | None) -> None:
    """Tell `budget`'s `SecondaryBackoff` of an answer: a secondary rate limit holds the
    credentials back (for its `Retry-After`, or longer each time when it says no wait); any
    answer but a rate limit ends the run of them."""
    if answer is None or not rate_limited(answer):
        budget.secondary.answered()
    elif _headers(answer).get("x-ratelimit-remaining") != "0":  # not the primary limit
        if (wait := said_wait(answer)) is not None:
            budget.secondary.said(wait)
        else:
            budget.secondary.limited()


def held_back(budget: RequestBudget | None, operation: str) -> GitHubRateLimited | None:
    """The refusal of a call while secondary rate limits hold `budget` back (None: it goes)."""
    wait = budget.secondary.wait() if budget is not None else None
    if wait is None:
        return None
    return GitHubRateLimited(
        f"GitHub's secondary rate limit holds the bot's requests back, so nothing was sent to "
        f"{operation}: try again in {wait_words(wait)}.",
        retry_after=wait,
    )


def unsaid_wait(budget: RequestBudget | None) -> float:
    """Seconds the secondary rate limits hold `budget` back (GitHub's minute without one)."""
    held = budget.secondary.wait() if budget is not None else None
    return held if held is not None else UNSAID_WAIT


def rate_wait(exc: GithubException, budget: RequestBudget | None) -> float:
    """Seconds to wait after the rate limit `exc`: as GitHub said, else `unsaid_wait`."""
    said = said_wait(exc)
    return said if said is not None else unsaid_wait(budget)
