"""What step 3 of the NPM_TOKEN walkthrough says about the protection rules of the publishing
job's environment (`bot.domain.npm_environment`): a wait for a required reviewer, a GitHub
App's custom rule or a timer, and a deployment branch and tag policy that refuses the branch
Run Release dispatches on, or every tag when the workflow runs on tags."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.adapters.slack.mrkdwn import escape
from bot.domain.npm import SecretCheck
from bot.domain.npm_environment import RuleFlag

if TYPE_CHECKING:  # npm_steps tells step 4 with `own_rule_line`
    from bot.adapters.slack.npm_steps import WalkthroughSetup

_POLICY = "Settings → Environments → {environment} → Deployment branches and tags"


def rules_note(check: SecretCheck, setup: WalkthroughSetup) -> str:
    if check.rules is None:
        return ""
    reviewers, wait, _ = check.rules
    flags = check.rule_flags
    npm = setup.npm
    job, environment = f"job `{npm.job}`", f"`{escape(check.environment or '')}`"
    policy = _POLICY.format(environment=environment)
    lines = []
    if flags & RuleFlag.UNREAD:
        lines.append(
            f":grey_question: The bot could not read the protection rules of the environment "
            f"{environment} (a fine-grained token needs Actions: Read, a GitHub App Actions "
            f"read): whether {job} waits for a reviewer, or may run from `{npm.ref}` and from "
            "tags, is not checked."
        )
    if reviewers:
        whom = (
            "its required reviewer approves"
            if reviewers == 1
            else (f"one of its {reviewers} required reviewers approves")
        )
        lines.append(
            f":hourglass_flowing_sand: The environment {environment} holds every run of {job} "
            f"until {whom} it (the run's page → *Review deployments*): Run Release (step 5) "
            "waits for that too."
        )
    if flags & RuleFlag.APP_RULE:
        lines.append(
            f":hourglass_flowing_sand: A GitHub App's custom deployment protection rule on "
            f"{environment} must approve every run of {job} before it runs (the App's own "
            f"service decides; the run's page shows it waiting): Run Release (step 5) waits "
            "for that App's approval too."
        )
    if flags & RuleFlag.OWN_APP_RULE:
        lines.append(own_rule_line(check.environment or "", setup))
    if wait:
        lines.append(
            f":hourglass_flowing_sand: Its wait timer holds {job} {_minutes(wait)} before it runs."
        )
    if flags & RuleFlag.REF_REFUSED:
        lines.append(
            f":warning: The environment {environment} does not let `{escape(npm.ref)}` deploy: "
            f"a run from it (Run Release, step 5, dispatches on `{escape(npm.ref)}`) fails "
            f"{job} before it publishes. Add `{escape(npm.ref)}` under {policy}."
        )
    if flags & RuleFlag.REF_UNPROTECTED:
        lines.append(
            f":warning: The environment {environment} lets protected branches only deploy, and "
            f"`{escape(npm.ref)}` is not protected: a run from it (Run Release, step 5, "
            f"dispatches on `{escape(npm.ref)}`) fails {job} before it publishes. Protect "
            f"`{escape(npm.ref)}` with a branch protection rule (Settings → Branches) or a "
            f"ruleset (Settings → Rules → Rulesets), or choose selected branches and tags under "
            f"{policy}."
        )
    if flags & RuleFlag.TAGS_REFUSED:
        lines.append(
            f":warning: The environment {environment} lets no tag deploy (protected branches "
            f"only, or branch patterns only), yet `{npm.workflow}` also runs on tags (a "
            f"release, a tag push): such a run fails {job} before it publishes. Add a tag "
            f"pattern under {policy}, or publish from a branch."
        )
    return "".join(f"\n{line}" for line in lines)


def own_rule_line(environment: str, setup: WalkthroughSetup) -> str:
    """Step 3's and step 4's words for the bot's own App's rule on the job's `environment`.

    The bot answers its rule for runs of the workflow the release plan drives only
    (docs/protection-rules.md): a run of another workflow is kept and never answered. When
    the npm job is in the plan's workflow, a run no rollout follows gets the card for runs the
    bot did not start, which lets a run from a branch only be rejected (no release tag to
    adopt: `bot.domain.unfollowed_runs`), and a run a rollout follows is answered at the plan's
    environments only."""
    npm = setup.npm
    job, shown = f"job `{npm.job}`", f"`{escape(environment)}`"
    rules = f"Settings → Environments → {shown} → Deployment protection rules"
    if not setup.publishes_from_plan_workflow:
        return (
            f":warning: The bot's own GitHub App has its custom deployment protection rule "
            f"enabled on {shown}, and the bot answers that rule for the plan's rollout stages "
            f"only, never for {job}: every run of {job} waits for an answer that never comes "
            f"(until GitHub gives up on it after 30 days), and Run Release (step 5) with it. "
            f"Disable the bot's App under {rules}: its rule belongs on the plan's rollout "
            "environments only."
        )
    workflow, ref = f"`{escape(npm.workflow)}`", f"`{escape(npm.ref)}`"
    if environment.casefold() in setup.plan_environments:
        in_rollout = (
            f"in a run a rollout follows, the bot answers it at {shown} as the plan's own "
            "environment, by that rollout's gates and clicks"
        )
        fix = f"Give {job} an environment of its own, without the bot's rule"
    else:
        in_rollout = (
            f"in a run a rollout follows, the plan names no stage at {shown}, so the bot "
            f"neither approves nor rejects it: {job} waits until someone acts (the rollout's "
            "thread is told)"
        )
        fix = f"Disable the bot's App under {rules}"
    return (
        f":warning: The bot's own GitHub App has its custom deployment protection rule enabled "
        f"on {shown}, and {workflow} is the workflow the release plan drives, so the bot does "
        f"answer that rule for {job}: a run no rollout follows (Run Release, step 5, "
        f"dispatches one on {ref}) gets the bot's card for runs it did not start, and a run "
        "from a branch (no release tag) can only be rejected there: by a click or, "
        f"unanswered, by the default (UNFOLLOWED_RUN_TIMEOUT), so {job} fails before it "
        f"publishes; {in_rollout}. {fix}, or publish from a workflow the plan does not drive."
    )


def _minutes(minutes: int) -> str:
    if minutes % 60 == 0 and minutes >= 60:
        hours = minutes // 60
        return "1 hour" if hours == 1 else f"{hours} hours"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
