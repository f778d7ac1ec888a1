"""An environment's wait timer and deployment branch and tag policy in the GitHub simulator, as
GitHub's REST API reports them ("Get an environment", "List deployment branch policies").

Reported only: the simulated runs do not wait for the timer nor refuse a ref (the bot only
reads them, for the NPM_TOKEN walkthrough). Required reviewers are the engine's protected
environments (`SimRepository.engine.protected`), which the runs do wait for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sandbox.github_json import node_id

Json = dict[str, Any]


@dataclass
class EnvironmentRules:
    """What a test sets on an environment (Settings → Environments → the environment)."""

    wait_minutes: int = 0
    protected_branches: bool = False
    """"Protected branches only"."""
    patterns: list[tuple[str, Literal["branch", "tag"]]] | None = None
    """"Selected branches and tags": (name pattern, type); None: no such policy."""

    def __post_init__(self) -> None:
        # GitHub's API takes one policy or the other ("Create or update an environment":
        # `protected_branches` true requires `custom_branch_policies` false, and the reverse),
        # so it never reports both.
        if self.protected_branches and self.patterns is not None:
            raise ValueError(
                "GitHub refuses protected_branches with custom_branch_policies (422): "
                "choose one deployment branch policy"
            )


def rules_json(rules: EnvironmentRules | None, env_id: int) -> list[Json]:
    """The `wait_timer` and `branch_policy` entries of the environment's `protection_rules`."""
    if rules is None:
        return []
    entries: list[Json] = []
    if rules.wait_minutes:
        entries.append(
            {
                "id": env_id + 2,
                "node_id": node_id("ProtectionRule", env_id + 2),
                "type": "wait_timer",
                "wait_timer": rules.wait_minutes,
            }
        )
    if rules.protected_branches or rules.patterns is not None:
        entries.append(
            {
                "id": env_id + 3,
                "node_id": node_id("ProtectionRule", env_id + 3),
                "type": "branch_policy",
            }
        )
    return entries


def policy_json(rules: EnvironmentRules | None) -> Json | None:
    """`deployment_branch_policy`: null when any branch or tag may deploy."""
    if rules is None or not (rules.protected_branches or rules.patterns is not None):
        return None
    return {
        "protected_branches": rules.protected_branches,
        "custom_branch_policies": rules.patterns is not None,
    }


def patterns_json(rules: EnvironmentRules | None, env_id: int) -> list[Json]:
    """The items of `GET .../deployment-branch-policies`."""
    patterns = [] if rules is None else rules.patterns or []
    return [
        {
            "id": env_id * 100 + index,
            "node_id": node_id("DeploymentBranchPolicy", env_id * 100 + index),
            "name": name,
            "type": kind,
        }
        for index, (name, kind) in enumerate(patterns, start=1)
    ]
