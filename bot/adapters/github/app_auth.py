"""GitHub App authentication for the bot's PyGithub client: the App's installation on the
repository, its id found on first use when GITHUB_APP_INSTALLATION_ID is not set.

PyGithub does the work: `Auth.AppAuth` makes the App's JWTs (`iat` a minute back, `exp` five
minutes ahead; signed RS256 here with the key parsed once, where PyJWT would parse the PEM text
again for every JWT) and `Auth.AppInstallationAuth` mints installation tokens and mints a new
one 20 s before the last expires. This class only adds the lookup of the installation
(`GET /repos/{owner}/{repo}/installation`, with the JWT) and the App's own reads (`GET /app`,
`GET /app/hook/config`, `GET /app/hook/deliveries`), on the same base URL, timeout and retries
as the client's requests (PyGithub's `Requester.withAuth`: GitHub Enterprise's `/api/v3` and
the sandbox alike).

PyGithub mints inside whatever call needs the token: a mint that fails is raised as
`InstallationTokenError` (before the call sent anything), never as the call's own answer.

Every token is narrowed (`POST /app/installations/{id}/access_tokens` with `repositories` and
`permissions`): to the one repository, and to what its calls need (`needed`): reads get a
read-only token, a dispatch or a re-run one that may also write Actions, a review one that may
also write Deployments; each capped to what the installation was granted (asking more is
refused), so that a token that leaks reaches less.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, BadCredentialsException, GithubException, GithubIntegration
from github.HookDelivery import HookDeliverySummary
from github.Installation import Installation
from github.PaginatedList import PaginatedList
from github.Requester import Requester, WithRequester

from bot.adapters.github.app_tokens import (
    NarrowedAuth,
    RepositoryNotIncluded,
    TokenRepository,
    needed,
)
from bot.domain.errors import GitHubError
from bot.github_credentials import GitHubApp

T = TypeVar("T")

_log = logging.getLogger(__name__)


class InstallationTokenError(Exception):
    """GitHub gave no installation token (the App's JWT refused, no such installation, an
    error or no answer): the call that needed it was not sent. `cause` is what PyGithub or
    the network raised; the message never carries a credential."""

    def __init__(self, cause: GithubException | OSError) -> None:
        super().__init__("no installation token")
        self.cause = cause


class TokenRefused(BadCredentialsException):
    """GitHub answered 401 to the installation token a call carried (status, body and headers
    as GitHub gave them). PyGithub's `BadCredentialsException`, which it raised before the bot
    renewed tokens: code and operators that catch that class still do. `renewal`: why GitHub
    gave no new token right after (None: it did), which tells a token revoked or expired from
    an App uninstalled, whose tokens GitHub revokes too (both answer 401 Bad credentials).
    `retried`: the call was sent once more with the new token, and GitHub refused that too."""

    def __init__(
        self,
        refused: GithubException,
        renewal: InstallationTokenError | None,
        *,
        retried: bool = False,
    ) -> None:
        super().__init__(refused.status, refused.data, refused.headers, refused.message)
        self.renewal = renewal
        self.retried = retried


class RepositoryInstallation(Auth.Auth, WithRequester["RepositoryInstallation"]):
    """Authenticates every request as the App's installation on `repository`."""

    def __init__(self, app: GitHubApp, repository: str) -> None:
        super().__init__()
        self.app_id = app.app_id
        self.repository = repository
        self._app = Auth.AppAuth(app.app_id, sign_func=functools.partial(_signed, app.key))
        self.configured_id = app.installation_id
        """GITHUB_APP_INSTALLATION_ID (None: found from the repository on first use)."""
        self._installation_id = app.installation_id
        self._target = TokenRepository(repository.split("/")[1])
        self._granted: dict[str, str] | None = None
        """The installation's permissions, read with its id (None: not read yet)."""
        self._tokens: dict[tuple[tuple[str, str], ...], NarrowedAuth] = {}
        """The installation's tokens in hand, by the permissions they were minted with."""
        self._refused: set[tuple[tuple[str, str], ...]] = set()
        self._calls = threading.local()
        """The endpoint of the call running in this thread (`scoped`)."""
        self._lock = threading.Lock()
        self.issued = ""
        """The last token handed out: masked in whatever GitHub's answers echo of a request."""
        self._handed: dict[tuple[tuple[str, str], ...], str] = {}

    @property
    def installation_id(self) -> int | None:
        """The installation's id: configured, or found on the first call (None until then)."""
        return self._installation_id

    def withRequester(self, requester: Requester) -> RepositoryInstallation:
        super().withRequester(requester)
        return self

    @property
    def token_type(self) -> str:
        return "token"

    def scoped(self, fn: Callable[[], T], endpoint: str) -> Callable[[], T]:
        """`fn`, whose requests (in its thread) carry a token narrowed to `endpoint`'s needs
        (`needed`)."""

        def call() -> T:
            self._calls.endpoint = endpoint
            try:
                return fn()
            finally:
                self._calls.endpoint = "read"

        return call

    @property
    def token(self) -> str:
        """The installation's current token (minted, or minted again near its expiry or after
        GitHub refused it, by PyGithub); the first call finds the installation. One thread
        mints while the others wait for its token. InstallationTokenError when GitHub gives
        none, the App not installed on the repository included (404)."""
        with self._lock:
            try:
                try:
                    return self._minted()
                except GithubException as exc:
                    if exc.status == 422:
                        # Asked for more than the installation has now (its permissions
                        # reduced since they were read), or for the repository by a name it
                        # no longer has (renamed or transferred before this process read its
                        # id): read again, asked once more.
                        try:
                            self._forget(self._installation_id)
                            if self._target.id is None:
                                self._target.id = self._repository_id(exc)
                            return self._minted()
                        except GithubException as again:
                            raise self._excluded(again)  # noqa: B904 - `again` is its context
                    if exc.status != 404 or self.configured_id is not None:
                        raise
                    if self._installation_id is None:
                        raise  # the lookup itself: no installation on the repository
                    # The installation found is gone (the App uninstalled, then installed
                    # again under a new id): found again, once, from the repository.
                    self._forget(None)
                    return self._minted()
            except (GithubException, OSError) as exc:
                raise InstallationTokenError(exc) from exc

    def _excluded(self, refused: GithubException) -> GithubException:
        """`refused`, or RepositoryNotIncluded when a mint's 422 comes with no installation of
        the App on the repository (404): taken out of the installation's repositories."""
        if refused.status == 422:
            try:
                self._looked_up()
            except GithubException as exc:
                if exc.status == 404:
                    return RepositoryNotIncluded(refused.status, refused.data, refused.headers)
            except OSError:
                pass  # GitHub did not tell: its refusal as it came
        return refused

    def _forget(self, installation_id: int | None) -> None:
        """Let the tokens in hand and the permissions read go (under the lock)."""
        self._installation_id, self._granted = installation_id, None
        self._tokens.clear()

    def _minted(self) -> str:
        """The current token for the call's endpoint, minted when there is none, it nears
        its expiry or GitHub refused it (under the lock). The installation (its id and its
        permissions) is read first: from the repository, or by its configured id."""
        endpoint = getattr(self._calls, "endpoint", "read")
        number = self._installation_id
        if number is None or self._granted is None:
            number = self._read_installation()
        permissions = needed(endpoint, self._granted or {})
        key = tuple(sorted(permissions.items()))
        held = self._tokens.get(key)
        if held is not None and (key in self._refused or held.due):
            # A token renewed: asked with the installation's permissions as they are now (its
            # owner may have granted one since, as the bot's 403s tell them to, or taken one).
            number = self._read_installation()
            permissions = needed(endpoint, self._granted or {})
            key = tuple(sorted(permissions.items()))
            self._tokens.pop(key, None)
        if key not in self._tokens or key in self._refused:
            minting = NarrowedAuth(
                self._app, number, repository=self._target, permissions=permissions
            )
            minting.withRequester(self.requester)
            self._tokens[key] = minting
            self._refused.discard(key)
        self.issued = self._handed[key] = self._tokens[key].token
        return self.issued

    def _read_installation(self) -> int:
        """The installation's id (returned) and permissions as GitHub says now: from the
        repository, or by its id (configured, or found before). GithubException as is."""
        found = (
            self._looked_up()
            if self._installation_id is None
            else self._numbered(self._installation_id)
        )
        self._installation_id, self._granted = found.id, dict(found.permissions or {})
        return found.id

    @property
    def in_hand(self) -> tuple[str, ...]:
        """The last token handed out for each set of permissions (a read's, a dispatch's...):
        each masked in whatever GitHub's answers echo of a request."""
        return tuple(self._handed.values())

    def renewed(self) -> InstallationTokenError | None:
        """GitHub answered 401 to the current token: a new one is minted now (in the calling
        thread: it blocks), so that the refusal is told truly. None when a new token is in
        hand (the old one was revoked, or expired by GitHub's clock); else why GitHub gave none
        (404: the App was uninstalled, which revoked its tokens), and the next call tries
        again."""
        self.refused()
        try:
            self.token  # noqa: B018 - the property mints
        except InstallationTokenError as exc:
            return exc
        return None

    def refused(self) -> None:
        """GitHub answered 401 to the current token (this thread's call's): the next call
        that needs it mints a new one."""
        permissions = needed(getattr(self._calls, "endpoint", "read"), self._granted or {})
        self._refused.add(tuple(sorted(permissions.items())))

    def found_again(self) -> int | None:
        """The installation on the repository as GitHub says now (`GET .../installation`, the
        App's JWT; None: the App is not installed there), in place of the one in hand, whose
        token goes when it changed (the App uninstalled, then installed again under a new id).
        The configured id is never replaced. GithubException or OSError when GitHub did not
        answer."""
        try:
            found = self._looked_up().id
        except GithubException as exc:
            if exc.status != 404:
                raise
            return None
        with self._lock:
            if self.configured_id is None and found != self._installation_id:
                self._forget(found)
        return found

    @property
    def _masked_token(self) -> str:
        return "token (removed)"

    def integration(self) -> GithubIntegration:
        """PyGithub's client for the App's own endpoints (authenticated by JWT)."""
        kwargs: dict[str, Any] = self.requester.withAuth(self._app).kwargs
        return GithubIntegration(**kwargs)

    def _repository_id(self, refused: GithubException) -> int:
        """The repository's id, read at its configured name (`GET /repos/{owner}/{repo}`,
        which GitHub redirects from a former name) with a token of the installation that may
        read metadata only, after a mint naming it (`repositories`) was `refused` (422): a mint
        is not redirected. `refused` raised again when that token cannot see it either (the
        installation does not include it). Under the lock."""
        assert self._installation_id is not None
        probe = Auth.AppInstallationAuth(
            self._app, self._installation_id, {"metadata": "read"}
        ).withRequester(self.requester)
        self._handed[(("metadata", "read"),)] = token = probe.token
        try:
            _, answer = self.requester.withAuth(Auth.Token(token)).requestJsonAndCheck(
                "GET", f"/repos/{self.repository}"
            )
        except GithubException as exc:
            if exc.status == 404:
                raise refused from exc
            raise
        found, name = answer.get("id"), answer.get("full_name")
        if not isinstance(found, int):
            raise refused
        _log.warning(
            "GitHub repository %s was renamed or transferred to %s: its installation tokens "
            "name it by its id (%s); set the service's repository to %s",
            self.repository,
            name,
            found,
            name,
        )
        return found

    def _numbered(self, number: int) -> Installation:
        """`GET /app/installations/{id}` (the App's JWT): GithubException as is."""
        with self.integration() as integration:
            return integration.get_app_installation(number)

    def _looked_up(self) -> Installation:
        """`GET /repos/{owner}/{repo}/installation` (the App's JWT): GithubException as is."""
        owner, name = self.repository.split("/")
        with self.integration() as integration:
            return integration.get_repo_installation(owner, name)

    def installation(self) -> Installation:
        """The App's installation on the repository (its id, permissions and events);
        GitHubError when the App is not installed there."""
        try:
            return self._looked_up()
        except GithubException as exc:
            if exc.status == 404:
                raise GitHubError(
                    f"The GitHub App {self.app_id} is not installed on {self.repository}: "
                    "install it there (the App's page → Install App)."
                ) from exc
            raise

    def slug(self) -> str:
        """The App's slug: its bot account on GitHub is `<slug>[bot]`."""
        with self.integration() as integration:
            return integration.get_app().slug

    def hook_config(self) -> dict[str, str]:
        """The App's webhook configuration (`GET /app/hook/config`): `url`, `content_type`,
        `insecure_ssl`, and `secret` as `********` when one is set."""
        with self.integration() as integration:
            _, config = integration.requester.requestJsonAndCheck("GET", "/app/hook/config")
        if not isinstance(config, dict):
            return {}
        return {str(k): str(v) for k, v in config.items() if v is not None}

    def hook_deliveries(self, count: int) -> list[HookDeliverySummary]:
        """The newest `count` attempts to deliver the App's webhook (`GET /app/hook/deliveries`,
        newest first; a redelivery is one more attempt with the same `guid`). PyGithub's
        GithubIntegration has no method for it: its paginated HookDeliverySummary list, as
        `Repository.get_hook_deliveries` reads a repository webhook's, on the JWT's requester."""
        with self.integration() as integration:
            deliveries = PaginatedList(
                HookDeliverySummary,
                integration.requester,
                "/app/hook/deliveries",
                {"per_page": count},
            )
            return list(itertools.islice(deliveries, count))


def renewing(
    fn: Callable[[], T],
    installation: RepositoryInstallation,
    *,
    renewed: Callable[[bool], None] = lambda _: None,
) -> Callable[[], T]:
    """`fn`, after whose 401 to the installation's token a new token is minted at once, in the
    same thread, and `fn` is sent once more with it. GitHub answers 401 Bad credentials alike
    to a token revoked or expired and to the tokens of an App uninstalled, and only the mint
    (404) tells the second, so the first call after an uninstall says so (`TokenRefused`), not
    only the next one. A 401 means GitHub did not take the request as anyone's, so it acted on
    none of it (RFC 9110, 15.5.2: the request may be repeated with new credentials): sending a
    dispatch or a review again cannot do it twice. Once only: a second 401 is `TokenRefused`
    (`retried`), and the call after it mints again. `renewed(True)` when a new token came,
    `renewed(False)` when GitHub gave none (called in the worker's thread)."""

    def call() -> T:
        try:
            return fn()
        except GithubException as exc:
            if exc.status != 401:
                raise
            renewal = installation.renewed()
            renewed(renewal is None)
            if renewal is not None:
                raise TokenRefused(exc, renewal) from exc
        try:
            return fn()
        except GithubException as exc:
            if exc.status != 401:
                raise
            installation.refused()
            raise TokenRefused(exc, None, retried=True) from exc

    return call


def _signed(key: rsa.RSAPrivateKey, payload: dict[str, Any]) -> str:
    """The App's JWT: `payload` signed RS256, as GitHub asks."""
    return jwt.encode(payload, key=key, algorithm="RS256")
