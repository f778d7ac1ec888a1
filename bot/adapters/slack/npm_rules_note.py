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
        lines.append(own_rule_line(environment, job))
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
            f"`{escape(npm.ref)}` (Settings → Branches), or choose selected branches and tags "
            f"under {policy}."
        )
    if flags & RuleFlag.TAGS_REFUSED:
        lines.append(
            f":warning: The environment {environment} lets no tag deploy (protected branches "
            f"only, or branch patterns only), yet `{npm.workflow}` also runs on tags (a "
            f"release, a tag push): such a run fails {job} before it publishes. Add a tag "
            f"pattern under {policy}, or publish from a branch."
        )
    return "".join(f"\n{line}" for line in lines)


def own_rule_line(environment: str, job: str) -> str:
    """Step 3's and step 4's words for the bot's own App's rule on the job's environment."""
    return (
        f":warning: The bot's own GitHub App has its custom deployment protection rule enabled "
        f"on {environment}, and the bot answers that rule for the plan's rollout stages only, "
        f"never for {job}: every run of {job} waits for an answer that never comes (until "
        f"GitHub gives up on it after 30 days), and Run Release (step 5) with it. Disable the "
        f"bot's App under Settings → Environments → {environment} → Deployment protection "
        "rules: its rule belongs on the plan's rollout environments only."
    )


def _minutes(minutes: int) -> str:
    if minutes % 60 == 0 and minutes >= 60:
        hours = minutes // 60
        return "1 hour" if hours == 1 else f"{hours} hours"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
