"""Which NPM_TOKEN the npm Release workflow's publishing job reads.

GitHub keeps a secret at three levels, and when several have it the lowest one wins: the job's
environment (when the job runs in one), then the repository, then the organization (a secret it
shares with the repository) (GitHub's docs, "Using secrets in GitHub Actions"). The walkthrough
reads the job's environment from the workflow file and the secret's metadata at each level; this
module says which one the job reads and which ones it shadows. Pure: GitHub's answers come in as
values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlsplit

from bot.domain.npm import SecretCheck, SecretLevel, SecretMetadata, clip_error
from bot.domain.npm_environment import (
    CARRIED_FLAGS,
    EnvironmentProtection,
    RuleFlag,
    Rules,
    rules_of,
    unread_rules,
)


@dataclass(frozen=True)
class PublishJob:
    """What the workflow file says about the job that publishes."""

    environment: str | None = None
    """The environment it runs in (`environment:`, a name or a mapping with one)."""
    unknown: str | None = None
    """Why its environment cannot be told from the file (None: it was told, or it has none)."""
    oidc: bool = False
    """It may request an OIDC token (`id-token: write`), as npm trusted publishing needs."""
    oidc_only: bool = False
    """It may request an OIDC token and never refers to NPM_TOKEN (nor to every secret at
    once): it publishes with npm trusted publishing only, and no NPM_TOKEN is read."""
    on_tags: bool = False
    """The workflow runs on tags too (`release`, `create`, or a `push` not limited to
    branches): the job then runs from a tag, which its environment's policy may refuse."""


def trusted_publishing_on(api_url: str) -> bool:
    """Whether npm trusted publishing takes the OIDC tokens of the GitHub at `api_url`: npm
    trusts one GitHub Actions issuer, github.com's (`token.actions.githubusercontent.com`), so
    not GitHub Enterprise Server's (its REST API under `/api/v3`) nor GHE.com's (`*.ghe.com`)."""
    parts = urlsplit(api_url)
    enterprise_server = parts.path.rstrip("/").endswith("/api/v3")
    return not (enterprise_server or (parts.hostname or "").endswith(".ghe.com"))


def with_trusted_publishing(job: PublishJob, *, available: bool) -> PublishJob:
    """The job as steps 1-3 judge it: where npm trusted publishing is not `available`, its
    `id-token: write` publishes nothing, and it needs NPM_TOKEN like any other job."""
    return job if available else replace(job, oidc=False, oidc_only=False)


@dataclass(frozen=True)
class SecretLevels:
    """The secret at each level GitHub reads it from, for the publishing job."""

    job: PublishJob
    repository: SecretMetadata | None
    organization: SecretMetadata | None
    environment: SecretMetadata | None = None
    environment_refused: str | None = None
    """GitHub's refusal to show the environment's secret (the bot cannot tell if it has one)."""
    protection: EnvironmentProtection | None = None
    """The environment's protection rules (None: no environment, or not read)."""
    protection_unread: bool = False
    """GitHub would not show the environment's protection rules."""


def assess_secret(
    levels: SecretLevels, *, now: datetime, max_age_days: int, ref: str
) -> SecretCheck:
    """The secret the job reads (the lowest level that has it), the levels above it that it
    shadows, and its age; what could not be checked is said, never taken for missing. With
    what the job's environment's protection rules hold it to, for a run from `ref` (the
    branch Run Release dispatches on) or from a tag."""
    job = levels.job
    unchecked = levels.environment_refused or job.unknown
    if levels.protection_unread:
        rules: Rules | None = unread_rules()
    elif levels.protection is not None:
        rules = rules_of(levels.protection, ref=ref, on_tags=job.on_tags)
    else:
        rules = None
    flags = RuleFlag(rules[2]) if rules else RuleFlag(0)
    about_job = SecretCheck(
        max_age_days=max_age_days,
        environment=job.environment,
        unchecked=clip_error(unchecked) if unchecked else None,
        oidc=True if job.oidc else None,
        oidc_only=True if job.oidc_only else None,
        rules=(rules[0], rules[1], int(flags & CARRIED_FLAGS)) if rules else None,
        app_rule=True if flags & RuleFlag.APP_RULE else None,
        ref_unprotected=True if flags & RuleFlag.REF_UNPROTECTED else None,
        own_app_rule=True if flags & RuleFlag.OWN_APP_RULE else None,
    )
    found = [
        (level, secret)
        for level, secret in (
            (SecretLevel.ENVIRONMENT, levels.environment),
            (SecretLevel.REPOSITORY, levels.repository),
            (SecretLevel.ORGANIZATION, levels.organization),
        )
        if secret is not None
    ]
    if not found:
        return about_job
    (level, secret), rest = found[0], found[1:]
    return about_job.model_copy(
        update={
            "found": True,
            "created_at": secret.created_at,
            "updated_at": secret.updated_at,
            "age_days": max((now - secret.updated_at).days, 0),
            "organization": True if level is SecretLevel.ORGANIZATION else None,
            "environment_secret": True if level is SecretLevel.ENVIRONMENT else None,
            "shadowed": tuple(shadowed for shadowed, _ in rest) or None,
        }
    )
