"""The protection rules of the environment the npm Release job runs in, as step 3 of the
NPM_TOKEN walkthrough tells them: a wait for a required reviewer or a timer, and a deployment
branch and tag policy that refuses the branch Run Release dispatches on, or every tag while
the workflow runs on tags (GitHub fails the job then). End to end against the GitHub simulator
(`GET /repos/{owner}/{repo}/environments/{name}` and its deployment branch policies), and the
matching of GitHub's name patterns on its own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest
import yaml
from test_npm_environment import check_secret, days_ago, publish_in_npm_environment
from test_npm_token import assert_no_token_reached_slack, press
from test_unfollowed_runs import run_cards

from bot.adapters.github.workflow_jobs import publish_job
from bot.adapters.slack.npm_rules_note import own_rule_line
from bot.adapters.slack.npm_steps import WalkthroughSetup
from bot.adapters.slack.npm_views import NpmAction, decode_state, encode_state
from bot.domain.npm import SecretCheck, Tone, Walkthrough
from bot.domain.npm_environment import (
    EnvironmentProtection,
    RefPattern,
    RuleFlag,
    ref_matches,
    rules_of,
)
from bot.domain.npm_secrets import PublishJob, SecretLevels, assess_secret
from bot.domain.plan import NpmRelease
from sandbox.github_app import SandboxApp
from sandbox.github_environment_rules import EnvironmentRules
from sandbox.github_rulesets import BranchRuleset
from sandbox.harness import Sandbox


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(workdir=tmp_path) as sandbox:
        publish_in_npm_environment(sandbox)
        sandbox.github.environment_secrets["npm"] = {"NPM_TOKEN": days_ago(3)}
        yield sandbox
        assert_no_token_reached_slack(sandbox)


async def test_a_required_reviewer_and_a_wait_timer_are_told(box: Sandbox) -> None:
    """Before, step 3 said nothing of them: Run Release then sat waiting with no word why."""
    box.github.engine.protected.add("npm")
    box.github.environment_rules["npm"] = EnvironmentRules(wait_minutes=30)
    shown, _ = await check_secret(box, ":white_check_mark: done")
    assert (
        "The environment `npm` holds every run of job `changesets` until its required reviewer "
        "approves it (the run's page → *Review deployments*): Run Release (step 5) waits for "
        "that too."
    ) in shown
    assert "Its wait timer holds job `changesets` 30 minutes before it runs." in shown


async def test_the_bots_own_app_rule_is_told_as_never_answered(tmp_path: Path) -> None:
    """The bot's own App (App mode) has its custom deployment protection rule enabled on `npm`
    (GitHub lists it apart from `protection_rules`, with the App's id). The bot answers its rule
    for the plan's rollout stages only, never for the npm job: Run Release would wait until
    GitHub gives up. Before, step 3 said "Run Release waits for that App's approval" (done) and
    step 4 that the waiting run was waiting, nobody saying the answer never comes."""
    async with Sandbox(workdir=tmp_path, github_app=SandboxApp()) as app_box:
        publish_in_npm_environment(app_box)
        app_box.github.environment_secrets["npm"] = {"NPM_TOKEN": days_ago(3)}
        app_box.github.protection_rule(["npm"], reviewers=True)
        shown, message = await check_secret(app_box, ":warning: needs attention")
        own = (
            "The bot's own GitHub App has its custom deployment protection rule enabled on "
            "`npm`, and the bot answers that rule for the plan's rollout stages only, never for "
            "job `changesets`"
        )
        assert own in shown
        assert "Settings → Environments → `npm` → Deployment protection rules" in shown
        assert "waits for that App's approval too" not in shown  # no other App's rule
        # A Release run now waits at `npm`: step 4 says for what.
        app_box.github.create_foreign_run(workflow="release.yml", event="push", actor="octocat")
        shown = await press(
            app_box, message, NpmAction.CHECK_LAST_RUN, number=4, until="is waiting"
        )
        assert own in shown
        assert_no_token_reached_slack(app_box)


async def test_the_bots_own_rule_in_the_plans_own_workflow_is_told_as_answered(
    tmp_path: Path,
) -> None:
    """`npm.workflow` is the workflow the release plan drives (here `release.yml` for both),
    and the bot's own App's rule is on `npm`, which the plan names no stage at. The bot does
    answer that rule for the npm job then: a Release run no rollout follows gets the card for
    runs the bot did not start, which on `main` (no release tag) offers Reject alone. Before,
    step 3 said the bot never answers it and the run waits 30 days, while the card came and its
    default rejected the job."""
    plan = yaml.safe_load(resources.files("bot.domain").joinpath("default_plan.yml").read_text())
    plan["workflow"].update(file="release.yml", name="Release")
    async with Sandbox(
        workdir=tmp_path, github_app=SandboxApp(), plan_yaml=yaml.safe_dump(plan)
    ) as app_box:
        publish_in_npm_environment(app_box)
        app_box.github.environment_secrets["npm"] = {"NPM_TOKEN": days_ago(3)}
        app_box.github.protection_rule(["npm"], reviewers=True)
        shown, message = await check_secret(app_box, ":warning: needs attention")
        assert (
            "`release.yml` is the workflow the release plan drives, so the bot does answer that "
            "rule for job `changesets`"
        ) in shown
        assert "can only be rejected there" in shown and "fails before it publishes" in shown
        assert "the plan names no stage at `npm`" in shown
        assert "Settings → Environments → `npm` → Deployment protection rules" in shown
        assert "never for job `changesets`" not in shown and "30 days" not in shown
        # What step 3 says happens: the Release run from `main` gets the card, Reject alone.
        app_box.github.create_foreign_run(workflow="release.yml", actor="octocat")
        await app_box.slack.wait_for(lambda: len(run_cards(app_box)) == 1, timeout=30)
        (card,) = run_cards(app_box)
        assert "waits at `npm`" in card.rendered and "No rollout follows it" in card.rendered
        assert "[Reject]" in card.rendered and "[Adopt]" not in card.rendered
        shown = await press(
            app_box, message, NpmAction.CHECK_LAST_RUN, number=4, until="is waiting"
        )
        assert "so the bot does answer that rule for job `changesets`" in shown
        assert_no_token_reached_slack(app_box)


def test_the_bots_own_rule_at_a_plan_environment_is_answered_by_the_rollout() -> None:
    """The npm job runs in an environment the plan names (its 5% canary's): in a run a rollout
    follows the bot answers it as that stage, and taking the bot's rule off it would ungate the
    stage, so step 3 asks for an environment of the job's own instead."""
    npm = NpmRelease(workflow="deployment-strategy.yml")
    setup = WalkthroughSetup(
        repository="acme/scriptum",
        web_url="https://github.com",
        npm=npm,
        plan_workflow="deployment-strategy.yml",
        plan_environments=frozenset({"relay-canary-5"}),
    )
    said = own_rule_line("Relay-Canary-5", setup)
    assert "the bot answers it at `Relay-Canary-5` as the plan's own environment" in said
    assert "Give job `changesets` an environment of its own, without the bot's rule" in said
    assert "Disable the bot's App" not in said
    other = own_rule_line("npm", replace(setup, npm=NpmRelease()))  # release.yml: not the plan's
    assert "never for job `changesets`" in other and "Disable the bot's App" in other


async def test_another_apps_custom_protection_rule_is_told_in_token_mode(box: Sandbox) -> None:
    """The bot has a token, and another App's rule is enabled on `npm`: GitHub lists it to any
    token that reads Actions ("Get all deployment protection rules for an environment"). Before,
    the simulator answered 404 without an App, so this was never checked."""
    publish_in_npm_environment(box)
    box.github.environment_secrets["npm"] = {"NPM_TOKEN": days_ago(3)}
    box.github.protection_rule(["npm"], app="change-gate[bot]", reviewers=True)
    shown, _ = await check_secret(box, ":white_check_mark: done")
    assert "A GitHub App's custom deployment protection rule on `npm` must approve" in shown


async def test_a_branch_policy_without_the_release_branch_needs_attention(box: Sandbox) -> None:
    """Only `release/*` branches may deploy to `npm`: Run Release on `main` would fail the job,
    and so would a run from a tag (the workflow runs on `release` too)."""
    box.github.environment_rules["npm"] = EnvironmentRules(patterns=[("release/*", "branch")])
    shown, _ = await check_secret(box, ":warning: needs attention")
    assert "The environment `npm` does not let `main` deploy" in shown
    assert "fails job `changesets` before it publishes" in shown
    assert "lets no tag deploy" in shown and "`release.yml` also runs on tags" in shown


async def test_protected_branches_only_refuses_every_tag(box: Sandbox) -> None:
    """No branch of the repository is protected: GitHub then lets every branch deploy
    ("Deployments and environments"), `main` too, but no tag."""
    box.github.environment_rules["npm"] = EnvironmentRules(protected_branches=True)
    shown, _ = await check_secret(box, ":warning: needs attention")
    assert "lets no tag deploy (protected branches only, or branch patterns only)" in shown
    assert "does not let `main` deploy" not in shown
    assert "`main` is not protected" not in shown


async def test_protected_branches_only_refuses_an_unprotected_release_branch(
    box: Sandbox,
) -> None:
    """`release` is protected, `main` (where Run Release dispatches) is not: GitHub fails the
    job of a run from `main`. Before, whether `main` was protected was not read, and step 3
    said nothing of it."""
    box.github.environment_rules["npm"] = EnvironmentRules(protected_branches=True)
    box.github.protected_branches.add("release")
    shown, _ = await check_secret(box, ":warning: needs attention")
    assert "lets protected branches only deploy, and `main` is not protected" in shown
    assert "Protect `main` with a branch protection rule (Settings → Branches)" in shown


async def test_protected_branches_only_lets_a_protected_release_branch_deploy(
    box: Sandbox,
) -> None:
    box.github.environment_rules["npm"] = EnvironmentRules(protected_branches=True)
    box.github.protected_branches.update({"main", "release"})
    shown, _ = await check_secret(box, ":warning: needs attention")  # its tags, as below
    assert "`main` is not protected" not in shown
    assert "lets no tag deploy" in shown


async def test_protected_branches_only_lets_a_branch_a_ruleset_protects_deploy(
    box: Sandbox,
) -> None:
    """`main` has no branch protection rule, but an active ruleset targets it (the default
    branch): GitHub's API counts it protected ("List branches": "protected by branch
    protections or rulesets"), and so does the bot. Before, the simulator knew no rulesets,
    so this was never checked."""
    box.github.environment_rules["npm"] = EnvironmentRules(protected_branches=True)
    box.github.refs.add("release")
    box.github.protected_branches.add("release")
    box.github.rulesets.append(BranchRuleset("Default branch", include=("~DEFAULT_BRANCH",)))
    shown, _ = await check_secret(box, ":warning: needs attention")  # its tags, as above
    assert "`main` is not protected" not in shown
    assert "lets no tag deploy" in shown


async def test_only_an_enforced_ruleset_makes_a_branch_protected(box: Sandbox) -> None:
    """An active ruleset protects `release/*` and only a ruleset in `evaluate` mode targets
    `main`: `main` is not protected (an evaluated ruleset enforces nothing), another branch is,
    so GitHub fails a run from `main`, and step 3 names both ways to protect it."""
    box.github.environment_rules["npm"] = EnvironmentRules(protected_branches=True)
    box.github.refs.add("release/2.x")
    box.github.rulesets += [
        BranchRuleset("Releases", include=("refs/heads/release/*",)),
        BranchRuleset("Main, trial", include=("refs/heads/main",), enforcement="evaluate"),
    ]
    shown, _ = await check_secret(box, ":warning: needs attention")
    assert "lets protected branches only deploy, and `main` is not protected" in shown
    assert (
        "Protect `main` with a branch protection rule (Settings → Branches) or a ruleset "
        "(Settings → Rules → Rulesets)"
    ) in shown


async def test_a_policy_that_lets_main_and_tags_deploy_is_no_concern(box: Sandbox) -> None:
    box.github.environment_rules["npm"] = EnvironmentRules(
        patterns=[("main", "branch"), ("v*", "tag")]
    )
    shown, _ = await check_secret(box, ":white_check_mark: done")
    assert "deploy" not in shown


async def test_a_pattern_no_regular_expression_takes_is_matched_as_github_does(
    box: Sandbox,
) -> None:
    """GitHub keeps a pattern with a range backwards (Ruby: it holds nothing). Before, the
    bot compiled patterns into regular expressions: this one raised, and Check secret
    failed with an unexpected error, the walkthrough unchanged."""
    box.github.environment_rules["npm"] = EnvironmentRules(
        patterns=[("release/[z-a]*", "branch"), ("main", "branch"), ("v*", "tag")]
    )
    shown, _ = await check_secret(box, ":white_check_mark: done")
    assert "deploy" not in shown


# -- the rules on their own ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "pattern", "matches"),
    [
        ("main", "main", True),
        ("release/1.4", "release/*", True),
        ("release/1.4/hotfix", "release/*", False),  # `*` stops at a `/` (FNM_PATHNAME)
        ("release/1.4/hotfix", "release/*/*", True),
        ("release/1.4/hotfix", "release/**/*", True),
        ("v1.4.2", "v[0-9]*", True),
        ("vx", "v[!0-9]*", True),
        ("v1", "v?", True),
        ("main", "mai", False),
        ("a.b", "a?b", True),
        ("axb", "a.b", False),  # a dot is a dot
        # GitHub keeps any pattern: Ruby matches these (or not) where a regular expression
        # would not compile, and so does the bot.
        ("vb", "v[z-a]", False),  # a range backwards holds nothing
        ("ax", "[!]x", True),  # an empty negated class: any one character
        ("a", "[]a]", False),  # an empty class: nothing
        ("a[b", "a[b", False),  # a class never closed: no match
        # `**/` spans segments only at a segment's start; elsewhere `**` is a `*`.
        ("a/x/b", "a**/b", False),
        ("ax/b", "a**/b", True),
        ("main", "**/main", True),
        ("c-t", "c[a\\-]t", True),  # an escaped `-` in a class is a `-`
        # GitHub names FNM_PATHNAME alone, not FNM_EXTGLOB: braces are no alternatives.
        ("release/a", "release/{a,b}", False),
        ("v1.4", "v{1,2}.*", False),
        ("release/{a,b}", "release/{a,b}", True),
    ],
)
def test_githubs_name_patterns_are_matched_as_ruby_fnmatch(
    name: str, pattern: str, matches: bool
) -> None:
    assert ref_matches(name, pattern) is matches


def test_nothing_to_tell_is_left_out_and_what_is_told_is_bounded() -> None:
    assert rules_of(EnvironmentProtection(), ref="main", on_tags=True) is None
    held = EnvironmentProtection(reviewers=9, wait_minutes=10**6, protected_branches=True)
    reviewers, wait, flags = rules_of(held, ref="main", on_tags=True) or (0, 0, 0)
    assert (reviewers, wait, RuleFlag(flags)) == (6, 43_200, RuleFlag.TAGS_REFUSED)
    # A workflow that never runs on tags is not held to a policy that refuses them.
    branches_only = EnvironmentProtection(patterns=(RefPattern("main", "branch"),))
    assert rules_of(branches_only, ref="main", on_tags=False) is None
    # Unread rules are said, and change no verdict.
    unread = SecretCheck(max_age_days=80, rules=(0, 0, int(RuleFlag.UNREAD)))
    assert unread.tone is Tone.FAILED  # not found: as without the rules


def workflow(on: str) -> str:
    return f"name: Release\non: {on}\njobs:\n  changesets:\n    runs-on: x\n"


@pytest.mark.parametrize(
    ("on", "tags"),
    [
        ("push", True),  # a tag push runs it too
        ("[push, workflow_dispatch]", True),
        ("{push: {branches: [main]}}", False),
        ("{push: {branches: [main], tags: ['v*']}}", True),
        ("{push: {paths: ['packages/**']}}", True),  # paths are not evaluated for tags
        ("{release: {types: [published]}}", True),
        ("workflow_dispatch", False),
        ("{create: null}", True),
    ],
)
def test_whether_the_workflow_runs_on_tags_is_read(on: str, tags: bool) -> None:
    assert publish_job(workflow(on), "changesets").on_tags is tags


def test_the_simulator_holds_one_deployment_branch_policy_as_github_does() -> None:
    """GitHub's API takes `protected_branches` or `custom_branch_policies`, never both: the
    simulator refuses what GitHub would (before, it reported both true)."""
    with pytest.raises(ValueError, match="422"):
        EnvironmentRules(protected_branches=True, patterns=[("main", "branch")])
    assert EnvironmentRules(protected_branches=True).patterns is None


def test_this_versions_new_kinds_reach_an_e248966_replica_as_a_newer_versions() -> None:
    """A custom protection rule, an unprotected `npm.ref` and a job read as trusted publishing
    only ride in fields e248966 does not know (which it tells as a newer version's), never in
    a greater `rules` flag number, which it would refuse as no walkthrough of the bot's."""
    app_rule = EnvironmentProtection(
        protected_branches=True,
        ref_protected=False,
        rule_apps=("ok", "rollout-bot"),
        own_app="rollout-bot",
    )
    levels = SecretLevels(job=PublishJob(environment="npm"), repository=None, organization=None)
    check = assess_secret(
        replace(levels, protection=app_rule), now=datetime.now(UTC), max_age_days=80, ref="main"
    )
    assert check.rule_flags == (
        RuleFlag.APP_RULE | RuleFlag.REF_UNPROTECTED | RuleFlag.OWN_APP_RULE
    )
    value = json.loads(encode_state(Walkthrough(secret=check, trusted_publishing=True)))
    assert value.pop("trusted_publishing") is True
    secret = value["secret"]
    new_fields = (secret.pop("app_rule"), secret.pop("ref_unprotected"), secret.pop("own_app_rule"))
    assert new_fields == (True, True, True)
    assert value["secret"]["rules"] == [0, 0, 0]  # within e248966's bound (flags 1 to 4)
    assert decode_state(json.dumps(value)).secret == check.model_copy(
        update={"app_rule": None, "ref_unprotected": None, "own_app_rule": None}
    )


def test_the_bots_own_rule_is_told_apart_from_another_apps() -> None:
    """Only the bot's own App's rule is one it never answers for the npm job; another App's on
    the same environment still waits for that App (the step needs attention for the first)."""
    both = EnvironmentProtection(rule_apps=("change-gate", "rollout-bot"), own_app="rollout-bot")
    assert rules_of(both, ref="main", on_tags=False) == (
        0,
        0,
        int(RuleFlag.APP_RULE | RuleFlag.OWN_APP_RULE),
    )
    own = replace(both, rule_apps=("rollout-bot",))
    assert rules_of(own, ref="main", on_tags=False) == (0, 0, int(RuleFlag.OWN_APP_RULE))
    other = replace(both, own_app=None)
    assert rules_of(other, ref="main", on_tags=False) == (0, 0, int(RuleFlag.APP_RULE))
    assert RuleFlag.OWN_APP_RULE.refusing and not RuleFlag.APP_RULE.refusing
