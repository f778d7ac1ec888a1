"""A GitHub App registered on the GitHub simulator: its RSA key pair, its installation on the
repositories, its JWTs and its installation tokens, answered as GitHub documents them.

- A JWT (`Authorization: Bearer`) is accepted on the App's endpoints only (`GET /app`,
  `GET /repos/{owner}/{repo}/installation`, `POST /app/installations/{id}/access_tokens`,
  the App's webhook, `GET /app/hook/config` and `GET /app/hook/deliveries`, in
  `github_app_hook`): RS256, signed by the App's key, `iss` the App's id, `iat` not in the
  future and `exp` in the future but at most 10 minutes ahead; otherwise 401 with GitHub's
  message. An installation token there is not a JWT: 401 "A JSON web token could not be
  decoded".
- An installation token (`ghs_…`, longer than 40 characters as GitHub's newer tokens are)
  lasts `token_lifetime` (an hour on GitHub; seconds in tests, so a rollout outlives several)
  and then answers 401 "Bad credentials" (so does a token `revoke`d). It acts as the App's bot
  account `<slug>[bot]` and may do what the installation's permissions allow: else 403
  "Resource not accessible by integration" (the permission each path needs:
  `github_app_paths.needed_permission`). A token minted with `permissions` has those only (422
  for one the installation was not granted); with `repositories` (names) or `repository_ids`,
  it reaches those repositories only (404 for another, as for one its installation cannot
  see; 422 at the mint for one the installation does not include).
- GitHub's packages API takes only a personal access token (classic): an installation token
  gets 404 "Not Found" there, as if the package did not exist, whatever its permissions.
- The App has one installation per account (an organisation or a user), as on GitHub: the
  simulator installs it on each owner of the repositories it serves (`install`), each under an
  id of its own, with its own tokens, permissions and repositories (all the account's, or the
  `repositories` chosen: "Only select repositories"). `GET /repos/{owner}/{repo}/installation`
  answers the owner's installation, and an installation token's calls answer 404 "Not Found"
  for a repository its installation does not include (another account's, or one not chosen),
  as GitHub does for a repository the installation cannot see. An installation removed
  (`uninstall`) is gone: 404 for it and for its token mint, 401 for the tokens it had.
- An installation suspended (`suspend`: the App's owner, or the account's, blocks the App's
  access to the account) is still there (`GET` answers it with `suspended_at` and
  `suspended_by`), but its token mint answers 403 "This installation has been suspended", as
  do the calls of the tokens it had, and the App receives no webhook event from the account;
  `unsuspend` gives its access back.

Times are the wall clock (`time.time`, moved by `advance`): PyGithub signs and refreshes by
the wall clock, not by the simulator's Actions clock.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import timedelta

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.services.doctor_app import APP_EVENTS, APP_PERMISSIONS, grants
from sandbox import github_json as shapes
from sandbox.github_app_paths import (
    CLASSIC_TOKEN_ONLY,
    NO_INSTALLATION_TOKEN,
    is_app_path,
    needed_permission,
    path_matches,
)
from sandbox.github_routes import ACTOR, json_response

APP_ID = 1_040_337
INSTALLATION_ID = 61_000_001
NOT_A_JWT = "A JSON web token could not be decoded"
IAT_MESSAGE = (
    "'Issued at' claim ('iat') must be an Integer representing the time that the assertion "
    "was issued"
)
EXP_PAST = (
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at "
    "which the assertion expires"
)
EXP_TOO_FAR = "'Expiration time' claim ('exp') is too far in the future"
NOT_ACCESSIBLE = "Resource not accessible by integration"
SUSPENDED = "This installation has been suspended"
"""GitHub's 403 to a suspended installation's token mint and tokens (its "Suspend an app
installation": "the app's access to the GitHub API or webhook events is blocked")."""
MAX_JWT_SECONDS = 600

# The bot's App is registered with what github-app.yml asks for; a test may install it with less.
BOT_PERMISSIONS = dict(APP_PERMISSIONS)
BOT_EVENTS = tuple(sorted(APP_EVENTS))


@functools.cache
def session_key() -> rsa.RSAPrivateKey:
    """One RSA key pair for the whole test session (2048 bits, as GitHub generates)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    """The key as GitHub's downloaded .pem file has it (PKCS#1, `BEGIN RSA PRIVATE KEY`)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


@dataclass(frozen=True)
class InstallationToken:
    token: str
    installation_id: int
    expires_at: float
    permissions: dict[str, str]
    repositories: frozenset[int] | None = None
    """The ids of the repositories the token was narrowed to (`repositories`, by name, or
    `repository_ids`: GitHub keeps the ids, so a rename keeps the token's reach); None: every
    repository of its installation."""


@dataclass
class SandboxInstallation:
    """The App's installation on one account: its id, the repositories it was given and the
    permissions it accepted. Its tokens reach its repositories only."""

    id: int
    account: str
    repositories: set[str] | None = None
    """The repositories (`owner/name`) the installation was given; None: all the account's."""
    permissions: dict[str, str] = field(default_factory=lambda: dict(BOT_PERMISSIONS))
    """The installation's permissions (fewer than the bot needs: calls answer 403)."""
    events: tuple[str, ...] = BOT_EVENTS
    installed: bool = True
    """False once removed (`SandboxApp.uninstall`): GitHub answers 404 for it."""
    suspended_at: float | None = None
    """When it was suspended (`SandboxApp.suspend`, the App's clock); None: it is not."""
    suspended_by: str = ""
    """The login that suspended it."""

    def covers(self, repository: str) -> bool:
        """Whether the installation includes `repository` (`owner/name`, any case)."""
        owner = repository.split("/")[0]
        if not self.installed or owner.casefold() != self.account.casefold():
            return False
        chosen = self.repositories
        return chosen is None or repository.casefold() in {name.casefold() for name in chosen}


@dataclass
class SandboxApp:
    """The App (its id, slug, key pair) and its installations, one per account. Where one
    account is enough, `installation_id`, `installed`, `repositories` and `permissions` are
    those of the first installation (the simulator's first repository's owner)."""

    app_id: int = APP_ID
    slug: str = "rollout-bot"
    installations: dict[str, SandboxInstallation] = field(default_factory=dict)
    """Every installation, by account (casefolded), in the order they were made."""
    hook_url: str = ""
    hook_content_type: str = "json"
    hook_secret: bool = True  # GitHub shows a webhook's secret as `********`
    rule_environments: set[str] = field(default_factory=set)
    """Environments of the first repository with the App's custom deployment protection rule
    enabled (another repository's are its handle's `app_rule_environments`)."""
    token_lifetime: timedelta = timedelta(hours=1)
    key: rsa.RSAPrivateKey = field(default_factory=session_key)
    offset: float = 0.0
    """Seconds the App's wall clock is ahead of the real one (`advance`)."""
    issued: list[InstallationToken] = field(default_factory=list)
    """Every installation token minted, oldest first."""
    revoked: set[str] = field(default_factory=set)
    jwts_seen: int = 0
    lookups_answered: asyncio.Event | None = None
    """While an unset event, `GET /repos/{owner}/{repo}/installation` waits for it (GitHub slow
    to tell the App's installation): `stall_lookups`, then set it."""

    def stall_lookups(self) -> asyncio.Event:
        """Hold every installation lookup until the returned event is set."""
        self.lookups_answered = asyncio.Event()
        return self.lookups_answered

    # -- installations --------------------------------------------------------------------------

    def install(self, account: str) -> SandboxInstallation:
        """The installation on `account`, made unless there is one: with the next id, as
        GitHub gives an App installed again a new one."""
        key, known = account.casefold(), self.installations.values()
        if key not in self.installations or not self.installations[key].installed:
            number = max((i.id for i in known), default=INSTALLATION_ID - 1) + 1
            self.installations[key] = SandboxInstallation(id=number, account=account)
        return self.installations[key]

    def uninstall(self, account: str) -> SandboxInstallation:
        """Remove the installation on `account` (its *Uninstall*): 404 for it from now on."""
        removed = self.installations[account.casefold()]
        removed.installed = False
        return removed

    def suspend(self, account: str, *, by: str = "") -> SandboxInstallation:
        """Suspend the installation on `account` (its owner's *Suspend*, or the App's owner's
        `PUT /app/installations/{id}/suspended`): 403 for its mint and its tokens."""
        suspended = self.installations[account.casefold()]
        suspended.suspended_at, suspended.suspended_by = self.now(), by or account
        return suspended

    def unsuspend(self, account: str) -> SandboxInstallation:
        """Lift the suspension of the installation on `account`."""
        lifted = self.installations[account.casefold()]
        lifted.suspended_at, lifted.suspended_by = None, ""
        return lifted

    def installation_of(self, repository: str) -> SandboxInstallation | None:
        """The installation that includes `repository`, or None (GitHub: 404)."""
        return next((i for i in self.installations.values() if i.covers(repository)), None)

    def installation_numbered(self, number: int) -> SandboxInstallation | None:
        """The installation with id `number` still in place, or None (GitHub: 404)."""
        return next(
            (i for i in self.installations.values() if i.id == number and i.installed), None
        )

    @property
    def first(self) -> SandboxInstallation:
        """The first installation made (on the simulator's first repository's owner)."""
        return next(iter(self.installations.values()))

    @property
    def installation_id(self) -> int:
        return self.first.id

    @installation_id.setter
    def installation_id(self, number: int) -> None:
        self.first.id = number

    @property
    def installed(self) -> bool:
        return self.first.installed

    @installed.setter
    def installed(self, value: bool) -> None:
        self.first.installed = value

    @property
    def repositories(self) -> set[str] | None:
        return self.first.repositories

    @repositories.setter
    def repositories(self, chosen: set[str] | None) -> None:
        self.first.repositories = chosen

    @property
    def permissions(self) -> dict[str, str]:
        return self.first.permissions

    @property
    def private_key(self) -> str:
        return pem(self.key)

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the App's clock ahead (installation tokens expire, a JWT ages)."""
        self.offset += seconds

    # -- authentication -------------------------------------------------------------------------

    def check_jwt(self, token: str) -> str | None:
        """Why GitHub refuses this JWT (its 401 message), or None when it is good."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return NOT_A_JWT
        if str(claims.get("iss")) != str(self.app_id) or header.get("alg") != "RS256":
            return NOT_A_JWT
        try:
            jwt.decode(
                token,
                key=self.key.public_key(),
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            return NOT_A_JWT
        now = self.now()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or iat > now + 60:  # GitHub allows a minute of drift
            return IAT_MESSAGE
        if not isinstance(exp, int | float) or exp <= now:
            return EXP_PAST
        if exp > now + MAX_JWT_SECONDS:
            return EXP_TOO_FAR
        self.jwts_seen += 1
        return None

    def check_token(
        self, token: str, method: str, path: str, repository_id: int | None = None
    ) -> tuple[int, str] | None:
        """(status, GitHub's message) refusing an installation token here; None: allowed.
        Unknown tokens are not the App's (the caller answers them). `repository_id`: the id of
        the repository the path names (None: none the simulator serves)."""
        issued = self.minted(token)
        if issued is None or issued.expires_at <= self.now() or token in self.revoked:
            return 401, "Bad credentials"
        installation = self.installation_numbered(issued.installation_id)
        if installation is None:  # removed: its tokens went with it
            return 401, "Bad credentials"
        if installation.suspended_at is not None:
            return 403, SUSPENDED
        if path in NO_INSTALLATION_TOKEN:
            return 403, NOT_ACCESSIBLE
        repository = "/".join(path.split("/")[2:4])
        if path_matches(path, "/repos/*/*/**") and not (
            installation.covers(repository)
            and (issued.repositories is None or repository_id in issued.repositories)
        ):
            return 404, "Not Found"
        if any(path_matches(path, pattern) for pattern in CLASSIC_TOKEN_ONLY):
            return 404, "Not Found"
        needed = needed_permission(method, path)
        if needed is not None and not grants(issued.permissions, *needed):
            return 403, NOT_ACCESSIBLE
        return None

    def minted(self, token: str) -> InstallationToken | None:
        """The token as minted, or None (not one of the App's)."""
        return next((t for t in self.issued if t.token == token), None)

    def carried(self, authorization: str) -> int | None:
        """The installation whose token an `Authorization` header carries, expired, revoked
        or not (None: no token of the App's)."""
        minted = self.minted(authorization.partition(" ")[2].strip())
        return None if minted is None else minted.installation_id

    def owns(self, token: str) -> bool:
        return token.startswith(f"ghs_{self.app_id}_")

    def revoke(self, token: str) -> None:
        """Refuse the token from now on, unexpired (as `DELETE /installation/token` does)."""
        self.revoked.add(token)

    def mint(
        self,
        installation: SandboxInstallation,
        requested: dict[str, str],
        repositories: frozenset[int] | None = None,
    ) -> InstallationToken:
        """A new token of `installation` with `requested` permissions (all of its own when
        empty), for `repositories` (their ids; None: all of its own)."""
        permissions = dict(requested or installation.permissions)
        # GitHub's tokens are letters, digits and `_` after the prefix.
        body = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
        issued = InstallationToken(
            token=f"ghs_{self.app_id}_{body}",
            installation_id=installation.id,
            expires_at=float(int(self.now() + self.token_lifetime.total_seconds())),
            permissions=permissions,
            repositories=repositories,
        )
        self.issued.append(issued)
        return issued


def authenticate_app(
    sandbox_app: SandboxApp,
    request: web.Request,
    path: str,
    scheme: str,
    credential: str,
    repository_id: int | None = None,
) -> web.Response | None:
    """The pipeline's check of an App credential; sets the request's actor when it passes."""
    if is_app_path(path):
        if scheme.lower() != "bearer" or sandbox_app.owns(credential):
            return json_response(shapes.error(NOT_A_JWT, 401), 401)
        refused = sandbox_app.check_jwt(credential)
        if refused is not None:
            return json_response(shapes.error(refused, 401), 401)
        request[ACTOR] = sandbox_app.slug
        return None
    refusal = sandbox_app.check_token(credential, request.method, path, repository_id)
    if refusal is not None:
        status, message = refusal
        return json_response(shapes.error(message, status), status)
    request[ACTOR] = sandbox_app.bot_login
    return None
