"""How the GitHub adapter talks to GitHub: PyGithub in a bounded thread pool, retried reads,
conditional GETs, and GitHub's refusals and network failures turned into `GitHubError`.

PyGithub is synchronous. Every call runs in a thread pool (`GitHubWorkers`, one for every
service of the app) through `loop.run_in_executor`. Reads (GET, HEAD) are retried by
PyGithub's own `GithubRetry` on 5xx, timeouts, resets and rate limits, with backoff and
jitter, honouring `Retry-After` and `X-RateLimit-Reset` up to a bound (a longer wait fails the
read at once, `retry.ReadRetry`); writes are never
repeated by the library: `unclear_answer` tells the caller when a write's outcome is unknown,
so that it looks instead of sending again.
Error messages say what a release engineer can do and never carry the token.

The poller's calls (`bot.services.polling.is_polling`) may hold all but one of the pool's
workers: one is always free for a person's call, which never queues behind polls.
Each answer's rate limit is handed to the `RequestBudget` of the credentials, which every
transport on them shares; while a secondary rate limit holds them back (`SecondaryBackoff`), a
call is refused without being sent, whoever makes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypedDict, TypeVar
from urllib.parse import urlencode

from github import Auth, Github, GithubException
from github.Repository import Repository
from pydantic import SecretStr, ValidationError

from bot.adapters.github.app_auth import (
    InstallationTokenError,
    RepositoryInstallation,
    TokenRefused,
    renewing,
)
from bot.adapters.github.budget import RequestBudget, rate_limit_seen
from bot.adapters.github.clock import AnswerClock
from bot.adapters.github.kept import KeptAnswers
from bot.adapters.github.pages import page_links
from bot.adapters.github.redirects import checked, get
from bot.adapters.github.refusals import (
    APP_HINTS,
    app_credentials_fix,
    held_back,
    hint,
    message,
    network_failure,
    never_sent,
    no_token_reason,
    rate_limited,
    rate_wait,
    reset_hint,
    secondary_seen,
)
from bot.adapters.github.retry import read_retry
from bot.adapters.github.workers import GitHubWorkers
from bot.domain.errors import GitHubError, GitHubRateLimited
from bot.domain.service import DEFAULT_SERVICE
from bot.domain.text import TOKEN_SHAPE
from bot.github_credentials import GitHubApp
from bot.services.polling import is_polling
from bot.services.ports import Clock
from bot.services.telemetry import UNTRACKED, Telemetry

T = TypeVar("T")
_log = logging.getLogger(__name__)


class GitHubTransport:
    """One repository's PyGithub client, the threads its calls run in (`GitHubWorkers`, the
    app's shared ones), and the conditional GETs' memory."""

    def __init__(
        self,
        *,
        api_url: str,
        token: str | None = None,
        app: GitHubApp | None = None,
        repository: str,
        service: str = DEFAULT_SERVICE,
        workers: GitHubWorkers | None = None,
        max_workers: int = 4,
        actor: str | None = None,
        timeout: int = 15,
        retries: int = 4,
        backoff: float = 0.5,
        rate_limit_wait: float = 30.0,
        telemetry: Telemetry = UNTRACKED,
        budget: RequestBudget | None = None,
        clock: Clock | None = None,
    ) -> None:
        if repository.count("/") != 1:
            raise ValueError("repository must be owner/name")
        if (token is None) == (app is None):
            raise ValueError("give a token or a GitHub App")
        self._token = token or ""
        self.repository = repository
        self.service = service
        """The service whose repository this is: its calls are counted under its name."""
        self.api_url = api_url.rstrip("/")
        self._actor = actor
        self._telemetry = telemetry
        self.dates = AnswerClock(self.api_url, telemetry, clock)
        """GitHub's clock, off each answer (a requester of another repository, watched too)."""
        self.budget = budget
        """The rate limit shared with the other transports on these credentials."""
        self.installation = RepositoryInstallation(app, repository) if app is not None else None
        """The GitHub App's installation (App mode), None with a token."""
        self.client = Github(
            base_url=api_url.rstrip("/"),
            auth=self.installation or Auth.Token(self._token),
            timeout=timeout,
            retry=read_retry(total=retries, backoff=backoff, rate_limit_wait=rate_limit_wait),
            seconds_between_requests=None,
            seconds_between_writes=None,
            per_page=100,
            pool_size=(workers.max_workers if workers is not None else max_workers),
            lazy=True,
        )
        self.repo: Repository = self.client.get_repo(repository)
        self.dates.watch(self.client.requester, self.repo.requester)
        self._own_workers = workers is None
        self._workers = workers or GitHubWorkers(max_workers)
        """Where the calls run: the app's, shared by every service, or this transport's own
        (`max_workers` of them)."""
        self.repository_id: int | None = None
        """GitHub's id of the repository, once read (`repository.learn_repository_id`)."""
        self._answers = KeptAnswers()

    async def close(self) -> None:
        """Wait for the calls in flight, then release the HTTP connections (and the threads,
        unless they are shared: their owner closes them)."""
        if self._own_workers:
            await self._workers.close()
        self.client.close()

    def runs_path(self, run_id: int) -> str:
        return f"/repos/{self.repository}/actions/runs/{run_id}"

    async def actor_login(self) -> str:
        """The login the bot acts as (GET /user once, then cached); in App mode the App's bot
        account `<slug>[bot]`, which runs and reviews on GitHub name (GET /app once)."""
        if self._actor is None:
            if (installation := self.installation) is not None:
                slug = await self.call("read the GitHub App", installation.slug, kind="app")
                self._actor = f"{slug}[bot]"
            else:
                self._actor = await self.call(
                    "read the token's account", lambda: self.client.get_user().login
                )
        return self._actor

    # -- running calls --------------------------------------------------------------------------

    async def run(self, fn: Callable[[], T], *, endpoint: str, operation: str) -> T:
        """`fn` in the pool, its exceptions as they are (for writes, which look them over),
        except that no installation token (App mode) is a GitHubError: `fn` sent nothing.
        Each call is counted by the service, `endpoint` (the area of GitHub's API) and how it
        ended; a call that got no installation token is counted as the token's request
        (`app_token`) with GitHub's answer to it (401: the App's credentials refused, 404: not
        installed). In App mode a 401 to the installation token renews it and sends `fn` once more
        (`renewing`, counted by `github_token_renewal`); a 401 left is a `TokenRefused`.
        While a secondary rate limit holds the credentials back, nothing is sent: the call is
        refused at once (GitHubRateLimited, with the wait), never slept on."""
        if (held := held_back(self.budget, operation)) is not None:
            raise held
        if self.installation is not None and endpoint != "app":  # the App's own go with its JWT
            fn = renewing(fn, self.installation, renewed=self._renewed)
            fn = self.installation.scoped(fn, endpoint)  # a token narrowed to what it needs
        try:
            if is_polling():
                async with self._workers.polls:
                    result = await asyncio.get_running_loop().run_in_executor(
                        self._workers.pool, fn
                    )
            else:
                result = await asyncio.get_running_loop().run_in_executor(self._workers.pool, fn)
        except InstallationTokenError as exc:
            self._count("app_token", exc.cause)
            raise self.no_token(operation, exc) from exc.cause
        except (GithubException, OSError) as exc:
            self._count(endpoint, exc)
            raise
        self._count(endpoint, None)
        return result

    def _renewed(self, renewed: bool) -> None:
        self._telemetry.github_token_renewal(service=self.service, renewed=renewed)

    def _count(self, endpoint: str, failure: GithubException | OSError | None) -> None:
        if failure is None:
            status = "2xx"
        elif isinstance(failure, OSError):
            status = "no_answer"
        else:
            status = "rate_limited" if rate_limited(failure) else str(failure.status)
        if self.budget is not None and not isinstance(failure, OSError):
            secondary_seen(self.budget, failure)
        self._telemetry.github_request(service=self.service, endpoint=endpoint, status=status)
        rate_limit_seen(self.client.requester, self.budget, self._telemetry)

    async def call(
        self,
        operation: str,
        fn: Callable[[], T],
        *,
        run_id: int | None = None,
        kind: str = "read",
    ) -> T:
        """Run `fn` in the pool; turn GitHub's refusals and network failures into GitHubError."""
        try:
            return await self.run(fn, endpoint=kind, operation=operation)
        except GithubException as exc:
            raise self.explain(operation, exc, run_id=run_id, kind=kind) from exc
        except OSError as exc:  # requests' errors are OSErrors
            raise self.unreachable(operation, exc, run_id=run_id) from exc
        except UnicodeDecodeError as exc:
            raise GitHubError(f"Could not {operation}: it is not UTF-8 text.") from exc
        except ValidationError as exc:
            raise GitHubError(
                f"Could not {operation}: GitHub answered in an unknown shape."
            ) from exc

    def authenticated(self, fn: Callable[[], T]) -> Callable[[], T]:
        """`fn` once the App's installation token is in hand (minted first if due), in the
        same thread: for a write that must not be mistaken for sent when only the mint failed
        (PyGithub would mint inside the call). Token mode: `fn` itself."""
        installation = self.installation
        if installation is None:
            return fn

        def call() -> T:
            installation.token  # noqa: B018 - the property mints: InstallationTokenError
            return fn()

        return call

    def get_json(self, path: str, parameters: dict[str, Any] | None = None) -> Any:
        """GET `path` (in the pool's thread), following a temporary redirection
        (`redirects`); GithubException on a refusal."""
        requester = self.client.requester
        return checked(requester, get(requester, self.api_url, path, parameters))

    def get_conditional(self, path: str, parameters: dict[str, Any] | None = None) -> Any:
        """GET with `If-None-Match` set to the ETag of the last answer for this URL. GitHub
        answers 304 Not Modified when nothing changed (not counted against the rate limit);
        the answer kept from last time is returned then."""
        return self.conditional_page(path, parameters)[0]

    def conditional_page(
        self, path: str, parameters: dict[str, Any] | None
    ) -> tuple[Any, dict[str, str]]:
        """`get_conditional`'s answer, and its `Link`'s pages (`pages.page_links`)."""
        key = path + (f"?{urlencode(sorted(parameters.items()))}" if parameters else "")
        kept = self._answers.get(key)
        headers = {"If-None-Match": kept[0]} if kept is not None else {}
        requester = self.client.requester
        answer = get(requester, self.api_url, path, parameters, headers)
        if answer[0] == 304 and kept is not None:
            self._telemetry.github_not_modified()
            return kept[1], kept[2]
        data = checked(requester, answer)
        more = page_links(self.api_url, answer[1])
        etag = answer[1].get("etag")
        if etag:
            self._answers.keep(key, (str(etag), data, more))
        return data, more

    # -- what went wrong, in words --------------------------------------------------------------

    def unclear_answer(
        self,
        operation: str,
        exc: GithubException | OSError,
        *,
        run_id: int | None = None,
        kind: str,
    ) -> str:
        """What GitHub answered a write when it may have carried it out (a 5xx, a timeout, a
        reset), for the caller to look before acting again; raises GitHubError when it
        certainly did not (a refusal, or no connection at all)."""
        if isinstance(exc, GithubException):
            if exc.status < 500:
                raise self.explain(operation, exc, run_id=run_id, kind=kind) from exc
            return f"GitHub answered {exc.status} ({self.scrub(message(exc))})"
        if never_sent(exc):
            raise self.unreachable(operation, exc, run_id=run_id) from exc
        return f"GitHub gave no answer ({network_failure(exc)})"

    def explain(
        self, operation: str, exc: GithubException, *, run_id: int | None = None, kind: str
    ) -> GitHubError:
        status, text = exc.status, self.scrub(message(exc))
        if status == 401 and (installation := self.installation) is not None and kind == "app":
            text = (
                f"GitHub rejected the App's credentials (401 {text}) when asked to "
                f"{operation}: {app_credentials_fix(installation)}"
            )
        elif isinstance(exc, TokenRefused):
            # The App's JWT was good (it got the token): GitHub refuses the token itself.
            text = f"GitHub refused the App's installation token (401 {text}) when asked to "
            if exc.retried:
                text += (
                    f"{operation}, and refused the new one the bot minted at once too; the bot "
                    "mints another for its next call."
                )
            elif exc.renewal is None:
                text += (
                    f"{operation}: it was revoked, or it expired by GitHub's clock (check this "
                    "machine's clock, NTP); the bot has a new token for its next call."
                )
            else:
                text += f"{operation}, and gave no new one: {self._why_no_token(exc.renewal)}"
        elif status == 401 and self.installation is None:
            text = (
                f"GitHub rejected the token (401 {text}) when asked to {operation}: "
                "check GITHUB_TOKEN."
            )
        elif rate_limited(exc):
            text = (
                f"GitHub rate limited the bot ({status}: {text}) when asked to {operation}; "
                f"{reset_hint(exc, self.budget)}"
            )
        elif status >= 500:
            # Only reads come here: an unclear answer to a write is looked up by the caller.
            text = f"GitHub answered {status} ({text}) when asked to {operation}; try again."
        else:
            fix = hint(kind, status, text, APP_HINTS if self.installation is not None else {})
            text = f"GitHub refused to {operation} ({status}: {text})"
            text = f"{text}: {fix}." if fix else f"{text}."
        _log.warning("GitHub: run %s: %s", run_id if run_id is not None else "-", text)
        if rate_limited(exc):
            return GitHubRateLimited(text, retry_after=rate_wait(exc, self.budget))
        return GitHubError(text, status=status)

    def no_token(self, operation: str, exc: InstallationTokenError) -> GitHubError:
        """GitHub gave the App no installation token, so nothing was sent to `operation`."""
        text = (
            f"Could not get an installation token for the GitHub App, so nothing was sent to "
            f"{operation}: {self._why_no_token(exc)}"
        )
        _log.warning("GitHub: %s", text)
        cause = exc.cause
        if isinstance(cause, GithubException) and rate_limited(cause):
            return GitHubRateLimited(text, retry_after=rate_wait(cause, self.budget))
        return GitHubError(text)

    def _why_no_token(self, exc: InstallationTokenError) -> str:
        installation = self.installation
        assert installation is not None
        return no_token_reason(exc.cause, installation, budget=self.budget, scrub=self.scrub)

    def unreachable(
        self, operation: str, exc: OSError, *, run_id: int | None = None
    ) -> GitHubError:
        text = (
            f"GitHub could not be reached when asked to {operation} "
            f"({network_failure(exc)}); try again."
        )
        _log.warning("GitHub: run %s: %s", run_id if run_id is not None else "-", text)
        return GitHubError(text)

    def scrub(self, text: str) -> str:
        """`text` without the bot's token (a proxy's error page may echo the request)."""
        return _masked(text, self._token, *(self.installation.in_hand if self.installation else ()))


def _masked(text: str, *secrets: str) -> str:
    """`text` without `secrets`, nor anything shaped as a GitHub token (an installation token
    minted before the one in hand, which a request still in flight carried)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return TOKEN_SHAPE.sub("***", text)


class Credentials(TypedDict):
    token: str | None
    app: GitHubApp | None


def github_auth(credentials: SecretStr | GitHubApp) -> Credentials:
    """The transport's keyword arguments for a token (token mode) or a GitHub App."""
    if isinstance(credentials, GitHubApp):
        return Credentials(token=None, app=credentials)
    return Credentials(token=credentials.get_secret_value(), app=None)
