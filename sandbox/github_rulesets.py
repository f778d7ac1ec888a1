"""Repository rulesets in the GitHub simulator, as far as GitHub's REST API shows them on a
branch. "List branches" documents its `protected` filter as "branches protected by branch
protections or rulesets", so a branch that an active ruleset targets is `protected` in "Get a
branch" and "List branches" like one with a branch protection rule. A ruleset whose
enforcement is `evaluate` or `disabled` enforces nothing ("About rulesets"; "Get rules for a
branch" leaves such rulesets out) and protects no branch here.

Reported only: the simulated pushes and runs do not check a ruleset's rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from bot.domain.ruby_fnmatch import fnmatch_pathname

DEFAULT_BRANCH = "~DEFAULT_BRANCH"
EVERY_BRANCH = "~ALL"


@dataclass(frozen=True)
class BranchRuleset:
    """A branch ruleset (Settings → Rules → Rulesets): the refs it targets, by its `ref_name`
    condition's `include` and `exclude` (full refs such as `refs/heads/main` as fnmatch
    patterns, `~DEFAULT_BRANCH` or `~ALL`), and its enforcement."""

    name: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    enforcement: Literal["active", "evaluate", "disabled"] = "active"

    def protects(self, branch: str, *, default_branch: str) -> bool:
        """Whether the ruleset is enforced on the branch `branch`."""

        def named(patterns: Iterable[str]) -> bool:
            return any(
                pattern == EVERY_BRANCH
                or (pattern == DEFAULT_BRANCH and branch == default_branch)
                or fnmatch_pathname(pattern, f"refs/heads/{branch}")
                for pattern in patterns
            )

        return self.enforcement == "active" and named(self.include) and not named(self.exclude)
