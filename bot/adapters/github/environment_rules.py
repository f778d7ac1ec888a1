"""The protection rules of the npm Release job's environment, as GitHub's REST API reports them.

`GET /repos/{owner}/{repo}/environments/{environment_name}` ("Get an environment"; a
fine-grained token or App needs Actions read) lists its `protection_rules` (`required_reviewers`
with their `reviewers`, `wait_timer` with its minutes, `branch_policy`) and its
`deployment_branch_policy` (`protected_branches`, `custom_branch_policies`); with custom
policies, `GET .../environments/{environment_name}/deployment-branch-policies` lists their name
patterns, each of `type` `branch` or `tag`. Custom deployment protection rules are not among
`protection_rules` (whose entries are of those three types): `GET .../environments/
{environment_name}/deployment_protection_rules` lists them, each with its App. An environment
GitHub has not created yet (404) has no rules: GitHub creates it, unprotected, when a job that
names it first runs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from bot.adapters.github.pages import every_page
from bot.adapters.github.protection_rules import enabled_rule_apps
from bot.adapters.github.refusals import unless_missing
from bot.adapters.github.transport import GitHubTransport
from bot.domain.npm_environment import EnvironmentProtection, RefPattern

_POLICY_PAGES = 10
"""Pages of an environment's deployment branch and tag policies read at most (a thousand)."""


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Rule(_Answer):
    type: str = ""
    wait_timer: int = 0
    reviewers: list[Any] = Field(default_factory=list)


class _BranchPolicy(_Answer):
    protected_branches: bool = False
    custom_branch_policies: bool = False


class _Environment(_Answer):
    protection_rules: list[_Rule] = Field(default_factory=list)
    deployment_branch_policy: _BranchPolicy | None = None


class _Branch(_Answer):
    protected: bool = False


class _Pattern(_Answer):
    name: str
    type: Literal["branch", "tag"] = "branch"  # left out by GitHub before tag policies


class _PatternsPage(_Answer):
    branch_policies: list[_Pattern] = Field(default_factory=list)


class EnvironmentRulesReads:
    """Reads one environment's protection rules (for the NPM_TOKEN walkthrough)."""

    def __init__(self, github: GitHubTransport) -> None:
        self._github = github

    async def read(self, environment: str, *, ref: str) -> EnvironmentProtection | None:
        """The environment's rules, with whether the branch `ref` may deploy under "protected
        branches only" (None: GitHub has no such environment yet); GitHubError when GitHub
        refuses or fails."""
        path = f"/repos/{self._github.repository}/environments/{quote(environment, safe='')}"

        def read() -> EnvironmentProtection | None:
            answer = unless_missing(
                lambda: _Environment.model_validate(self._github.get_json(path))
            )
            if answer is None:
                return None
            apps = enabled_rule_apps(self._github, environment) or {}
            protection = self._protection(path, answer, tuple(sorted(apps.values())))
            if (installation := self._github.installation) is not None:
                # The bot's own App (by its id, as the App's settings show it): its rule is
                # answered for the plan's rollout stages only.
                protection = replace(protection, own_app=apps.get(installation.app_id))
            if protection.protected_branches:
                protection = replace(protection, ref_protected=self._deploys_as_protected(ref))
            return protection

        operation = f"read the protection rules of the environment {environment}"
        return await self._github.call(operation, read, kind="environment")

    def _deploys_as_protected(self, branch: str) -> bool | None:
        """Whether `branch` may deploy under "protected branches only": it is protected
        (`GET .../branches/{branch}`: `protected`), or no branch of the repository is (`GET
        .../branches?protected=true`), when GitHub lets every branch deploy. GitHub counts a
        branch an active ruleset targets as protected there, as one with a branch protection
        rule ("List branches": "protected by branch protections or rulesets"), so both count.
        None: no such branch (its dispatch fails before any policy)."""
        branches = f"/repos/{self._github.repository}/branches"
        found = unless_missing(
            lambda: _Branch.model_validate(self._github.get_json(f"{branches}/{quote(branch)}"))
        )
        if found is None:
            return None
        if found.protected:
            return True
        protected = self._github.get_json(branches, {"protected": "true", "per_page": 1})
        return not protected

    def _protection(
        self, path: str, answer: _Environment, rule_apps: tuple[str, ...]
    ) -> EnvironmentProtection:
        rules = answer.protection_rules
        policy = answer.deployment_branch_policy
        patterns = None
        if policy is not None and policy.custom_branch_policies:
            pages = every_page(
                self._github,
                f"{path}/deployment-branch-policies",
                {"per_page": 100},
                most=_POLICY_PAGES,
            )
            patterns = tuple(
                RefPattern(name=pattern.name, kind=pattern.type)
                for page in pages
                for pattern in _PatternsPage.model_validate(page).branch_policies
            )
        return EnvironmentProtection(
            reviewers=sum(
                len(rule.reviewers) for rule in rules if rule.type == "required_reviewers"
            ),
            wait_minutes=max(
                (rule.wait_timer for rule in rules if rule.type == "wait_timer"), default=0
            ),
            protected_branches=policy is not None and policy.protected_branches,
            patterns=patterns,
            rule_apps=rule_apps,
        )
