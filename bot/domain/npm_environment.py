"""The protection rules of the environment the npm Release workflow's publishing job runs in.

GitHub holds a job that names an environment until that environment's deployment protection
rules pass ("Deployments and environments"): a *required reviewer* must approve it (one of up to
six people or teams), a *wait timer* delays it (0 to 43,200 minutes), a *custom deployment
protection rule* waits for its GitHub App to approve it, and the *deployment
branches and tags* policy lets only some refs run it at all: "Protected branches only" (branches
GitHub's API reports `protected`: by a branch protection rule or an active ruleset; no tag), or
"Selected branches and tags" (name patterns, each for
branches or for tags, matched as Ruby's `File.fnmatch` with `FNM_PATHNAME`: `*` stops at a `/`).
A run from a ref the policy refuses fails the job. The walkthrough tells the team what the
publishing job will meet: a wait for a reviewer, a timer, and a policy that refuses the branch
Run Release dispatches on (`npm.ref`) or, when the workflow runs on tags, every tag.

GitHub's API holds one deployment branch policy or none: "protected branches only"
(`protected_branches` true, `custom_branch_policies` false) or "selected branches and tags"
(the reverse), never both ("Create or update an environment").

Pure: GitHub's answer comes in as an `EnvironmentProtection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag
from typing import Literal

from bot.domain.ruby_fnmatch import fnmatch_pathname

MAX_REVIEWERS = 6
"""GitHub's limit on an environment's required reviewers."""
MAX_WAIT_MINUTES = 43_200
"""GitHub's limit on an environment's wait timer (30 days)."""


@dataclass(frozen=True)
class RefPattern:
    """One of an environment's deployment branch or tag policies."""

    name: str
    kind: Literal["branch", "tag"]


@dataclass(frozen=True)
class EnvironmentProtection:
    """An environment's protection rules as GitHub reports them."""

    reviewers: int = 0
    """How many people or teams are required reviewers (one of them must approve)."""
    wait_minutes: int = 0
    protected_branches: bool = False
    """Only protected branches may deploy (no tag): by a branch protection rule or an active
    ruleset, as GitHub's API reports them; when no branch of the repository is, every branch
    may ("Deployments and environments")."""
    ref_protected: bool | None = None
    """With "protected branches only": whether the branch Run Release dispatches on may deploy
    as a protected branch (it is one, or the repository protects none); None: not read."""
    patterns: tuple[RefPattern, ...] | None = None
    """Selected branches and tags: only refs matching one of these may deploy (None: no such
    policy)."""
    rule_apps: tuple[str, ...] = ()
    """The GitHub Apps (slugs) whose custom deployment protection rule is enabled: each must
    approve the job before it runs."""
    own_app: str | None = None
    """The slug of the bot's own GitHub App (App mode), when its rule is one of `rule_apps`:
    the bot answers its rule for the plan's rollout stages only, never for the npm job."""


class RuleFlag(IntFlag):
    """What the protection rules refuse, carried as one number (see `rules_of`)."""

    REF_REFUSED = 1
    """The branch Run Release dispatches on may not run the job."""
    TAGS_REFUSED = 2
    """No tag may run the job, and the workflow runs on tags."""
    UNREAD = 4
    """GitHub would not show the rules (they were not checked)."""
    APP_RULE = 8
    """A GitHub App's custom deployment protection rule must approve the job."""
    REF_UNPROTECTED = 16
    """Only protected branches may run the job, and the branch Run Release dispatches on is
    not one (while another branch of the repository is)."""
    OWN_APP_RULE = 32
    """The bot's own App's custom rule is enabled on the environment: the bot never answers it
    for the npm job, so every run of the job waits until GitHub gives up on it."""

    @property
    def refusing(self) -> bool:
        """Some run of the workflow will be refused (the job fails before it publishes) or
        never runs (it waits for an answer that never comes)."""
        refusals = (
            RuleFlag.REF_REFUSED
            | RuleFlag.TAGS_REFUSED
            | RuleFlag.REF_UNPROTECTED
            | RuleFlag.OWN_APP_RULE
        )
        return bool(self & refusals)


CARRIED_FLAGS = RuleFlag.REF_REFUSED | RuleFlag.TAGS_REFUSED | RuleFlag.UNREAD
"""The flags a check's `rules` carry, as e248966 did: an older replica refuses a greater number
as no walkthrough of the bot's, so the later flags ride in fields of their own
(`SecretCheck.app_rule`, `ref_unprotected`, `own_app_rule`), which it tells as a newer version's."""

Rules = tuple[int, int, int]
"""(required reviewers, wait timer in minutes, `RuleFlag`s): short, as it rides in the
walkthrough's button values beside everything else (Slack's 2000 characters)."""


def rules_of(protection: EnvironmentProtection, *, ref: str, on_tags: bool) -> Rules | None:
    """What the publishing job will meet in its environment (None: nothing)."""
    flags = RuleFlag(0)
    if not may_deploy(protection, ref, kind="branch", protected=protection.ref_protected):
        flags |= RuleFlag.REF_UNPROTECTED if protection.protected_branches else RuleFlag.REF_REFUSED
    if on_tags and not _any_tag(protection):
        flags |= RuleFlag.TAGS_REFUSED
    if any(app != protection.own_app for app in protection.rule_apps):
        flags |= RuleFlag.APP_RULE
    if protection.own_app is not None and protection.own_app in protection.rule_apps:
        flags |= RuleFlag.OWN_APP_RULE
    reviewers = min(max(protection.reviewers, 0), MAX_REVIEWERS)
    wait = min(max(protection.wait_minutes, 0), MAX_WAIT_MINUTES)
    if not (reviewers or wait or flags):
        return None
    return reviewers, wait, int(flags)


def unread_rules() -> Rules:
    return 0, 0, int(RuleFlag.UNREAD)


def may_deploy(
    protection: EnvironmentProtection,
    name: str,
    *,
    kind: Literal["branch", "tag"],
    protected: bool | None,
) -> bool:
    """Whether the ref `name` (a branch or a tag) may run a job in the environment. With
    "protected branches only", a branch whose protection is not known (`protected` None) is
    not said to be refused; a tag always is (a tag is no protected branch, and GitHub refuses
    one named as a protected branch too)."""
    if protection.protected_branches:
        return kind == "branch" and protected is not False
    if protection.patterns is None:
        return True
    return any(
        pattern.kind == kind and ref_matches(name, pattern.name) for pattern in protection.patterns
    )


def _any_tag(protection: EnvironmentProtection) -> bool:
    """Whether some tag may deploy (which tag a run is for is known only when it runs)."""
    if protection.protected_branches:
        return False
    patterns = protection.patterns
    return patterns is None or any(pattern.kind == "tag" for pattern in patterns)


def ref_matches(name: str, pattern: str) -> bool:
    """Whether the branch or tag `name` matches the policy's name pattern, as GitHub matches
    it (Ruby's `File.fnmatch` with `FNM_PATHNAME`: `bot.domain.ruby_fnmatch`)."""
    return fnmatch_pathname(pattern, name)
