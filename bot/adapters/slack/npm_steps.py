"""What each step of the NPM_TOKEN walkthrough says, from the checks a `Walkthrough` holds: how
to create the token and add the secret (steps 1 and 2), the secret's dates (3), the last Release
run's validate and publish steps with the fix for npm's refusal (4), and the run it started (5).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.adapters.slack.limits import SECTION_TEXT, clip
from bot.adapters.slack.messages import slack_time
from bot.adapters.slack.mrkdwn import escape
from bot.adapters.slack.npm_rules_note import own_rule_line
from bot.domain.npm import (
    SECRET_NAME,
    SKIP_WARNING,
    ReleaseFollow,
    ReleasePhase,
    RunCheck,
    SecretCheck,
    StepVerdict,
    Tone,
    Walkthrough,
)
from bot.domain.npm_log import NpmError
from bot.domain.npm_run import renewed_since
from bot.domain.plan import NpmRelease
from bot.domain.unfollowed_runs import of_the_plan

TOKEN_DOCS = "https://docs.npmjs.com/creating-and-viewing-access-tokens"  # noqa: S105 - a URL
TRUSTED_PUBLISHING_DOCS = "https://docs.npmjs.com/trusted-publishers"


@dataclass(frozen=True)
class WalkthroughSetup:
    """What the walkthrough says that does not change: the repository and the plan's npm keys."""

    repository: str
    web_url: str
    """GitHub's web address (https://github.com, or the Enterprise Server's host)."""
    npm: NpmRelease
    trusted_publishing: bool = True
    """npm trusted publishing takes this GitHub's OIDC tokens (github.com's, not GitHub
    Enterprise Server's: `bot.domain.npm_secrets.trusted_publishing_on`)."""
    plan_workflow: str = ""
    """The workflow file the release plan drives (its stages' jobs), whose runs the bot answers
    its own App's rule for: as a rollout's stages, or with a card when no rollout follows one."""
    plan_environments: frozenset[str] = frozenset()
    """The environments (casefolded) of the plan's stages and failure jobs: the bot answers its
    rule at these in a run a rollout follows, and at no other."""

    @property
    def publishes_from_plan_workflow(self) -> bool:
        """`npm.workflow` is the workflow the release plan drives."""
        return bool(self.plan_workflow) and of_the_plan(self.npm.workflow, self.plan_workflow)

    @property
    def environments_url(self) -> str:
        """The repository's environments (each with its secrets)."""
        return f"{self.web_url}/{self.repository}/settings/environments"

    @property
    def new_secret_url(self) -> str:
        """The repository's "New repository secret" page."""
        return f"{self.web_url}/{self.repository}/settings/secrets/actions/new"

    def run_url(self, run_id: int) -> str:
        return f"{self.web_url}/{self.repository}/actions/runs/{run_id}"

    def job_url(self, run_id: int, job_id: int) -> str:
        return f"{self.run_url(run_id)}/job/{job_id}"


def _clip(text: str) -> str:
    return clip(text, SECTION_TEXT)


# -- step 1 ----------------------------------------------------------------------------------


def create_tone(walkthrough: Walkthrough) -> Tone:
    run = walkthrough.latest_run_check()
    if run is not None and run.tone is Tone.OK:
        return Tone.OK
    secret = walkthrough.secret
    if secret is not None and secret.oidc_only:
        return Tone.OK  # trusted publishing: no token to create
    if secret is not None and secret.found and secret.tone is not Tone.BLOCKED:
        return secret.tone
    return Tone.TODO


NO_TRUSTED_PUBLISHING = (
    f"npm <{TRUSTED_PUBLISHING_DOCS}|trusted publishing> (OIDC) does not take GitHub Enterprise "
    f"Server's OIDC tokens: a job with `id-token: write` needs `{SECRET_NAME}` all the same."
)


def create_text(setup: WalkthroughSetup) -> str:
    npm = setup.npm
    text = (
        f"On npmjs.com, <{TOKEN_DOCS}|generate a *granular access token*> with *Read and write* "
        f"access to the `{npm.scope}` scope's packages. Granular write tokens expire after at "
        "most 90 days: note the date. Classic tokens were revoked in December 2025, so do not "
        "look for one. When publishing requires two-factor authentication, enable the token's "
        "option to bypass it. Copy the token straight into GitHub (step 2), never into Slack.\n"
    )
    if not setup.trusted_publishing:
        return text + NO_TRUSTED_PUBLISHING
    return text + (
        f"Token-free alternative: npm <{TRUSTED_PUBLISHING_DOCS}|trusted publishing> (OIDC) lets "
        "the workflow publish without any secret."
    )


# -- steps 4 and 5 ------------------------------------------------------------------------------


def last_run_text(
    check: RunCheck | None, secret: SecretCheck | None, setup: WalkthroughSetup, *, oidc_only: bool
) -> str:
    """Step 4; `oidc_only`: the job publishes with npm trusted publishing only
    (`Walkthrough.oidc_only`: known from the workflow before step 3 has run)."""
    npm = setup.npm
    if check is None and oidc_only:
        return (
            f"*Check last Release run* reads the newest run of `{npm.workflow}`: did "
            f"*{npm.publish_step}* publish with npm trusted publishing?"
        )
    if check is None:
        return (
            f"*Check last Release run* reads the newest run of `{npm.workflow}`: did "
            f"*{npm.validate_step}* pass without the {SECRET_NAME} warning, and did "
            f"*{npm.publish_step}* publish?"
        )
    text = _run_text(check, setup, oidc_only=oidc_only)
    run = check.run
    if run is not None and run.status == "waiting" and secret is not None and secret.own_app_rule:
        # Step 3 found the bot's own App's rule on the job's environment: that is what a run
        # that waits may wait for (`own_rule_line` says who answers it, if anyone).
        text += "\n" + own_rule_line(secret.environment or "", setup)
    # A green run too: it used the value before, so it does not verify the secret now.
    if renewed_since(run, secret, oidc_only=oidc_only) and check.tone in (
        Tone.OK,
        Tone.WARNING,
        Tone.FAILED,
    ):
        text += (
            f"\n:information_source: `{SECRET_NAME}` was updated after this run: run Release "
            "again (step 5) to verify it."
        )
    return _clip(text)


def _run_text(check: RunCheck, setup: WalkthroughSetup, *, oidc_only: bool) -> str:
    npm = setup.npm
    if check.error is not None:
        return escape(check.error)
    run = check.run
    if run is None:
        return f"`{npm.workflow}` has never run: run it (step 5) or push to `{npm.ref}`."
    title = (
        f"<{setup.run_url(run.id)}|Run #{run.number}> ({escape(run.event)} on "
        f"`{escape(run.branch)}`, {slack_time(run.created_at)})"
    )
    if not run.completed:
        return f"{title} is {run.status.replace('_', ' ')}: check again when it has ended."
    lines = [f"{title}: {run.conclusion or 'completed'}."]
    if not check.job_found:
        lines.append(f":x: The run has no job `{npm.job}`: check the plan's `npm.job`.")
        return _clip("\n".join(lines))
    log = "the job's log"
    if check.job_id is not None:
        log = f"<{setup.job_url(run.id, check.job_id)}|the job's log>"
    if oidc_only:
        lines.append(oidc_validate_line(check, npm, log))
        lines.append(oidc_publish_line(check, setup, log))
    else:
        lines.append(_validate_line(check, npm, log))
        lines.append(_publish_line(check, npm, log))
    if check.log_unavailable:
        lines.append(
            f":grey_question: {escape(check.log_unavailable)} "
            "The verdict rests on the steps' results"
            + (
                ", and green steps do not show that npm accepts the token (they pass after the "
                "NPM_TOKEN warning, or having published nothing): Run Release again (step 5)."
                if check.validate_step is StepVerdict.PASSED
                and check.publish_step is StepVerdict.PASSED
                and not oidc_only
                else "."
            )
        )
    return _clip("\n".join(lines))


def _validate_line(check: RunCheck, npm: NpmRelease, log: str) -> str:
    step = f"*{npm.validate_step}*"
    verdict = check.validate_step
    if verdict is StepVerdict.PASSED:
        return f":white_check_mark: {step} passed without the {SECRET_NAME} warning."
    if verdict is StepVerdict.WARNED:
        return (
            f":warning: {step} printed “{SKIP_WARNING}”: the run had no token, so nothing was "
            "published. Fix: create the token and add the secret (steps 1 and 2), then run "
            "Release again (step 5)."
        )
    if verdict is StepVerdict.FAILED:
        return f":x: {step} failed: see {log}."
    if verdict is StepVerdict.MISSING:
        return f":x: The job has no step {step}: check the plan's `npm.validate_step`."
    return f":white_circle: {step} did not run."


def _publish_line(check: RunCheck, npm: NpmRelease, log: str, *, oidc_only: bool = False) -> str:
    step = f"*{npm.publish_step}*"
    verdict = check.publish_step
    if verdict is StepVerdict.PASSED and check.published_nothing and oidc_only:
        return (
            f":warning: {step} passed but published nothing (every version was on npm "
            "already, or changesets opened its “Version Packages” pull request): npm never "
            "checked the trusted publisher. The next run that publishes new versions from "
            f"`{npm.ref}` shows it (step 4)."
        )
    if verdict is StepVerdict.PASSED and check.published_nothing:
        return (
            f":warning: {step} passed but published nothing: every version was on npm "
            "already (“No unpublished projects to publish”), or changesets had changesets to "
            "version and opened or updated its “Version Packages” pull request instead. npm "
            "never used the token, so this run does not show that it can publish: an expired "
            "or wrong-scope token passes too. The next run that publishes new versions from "
            f"`{npm.ref}` checks it (step 4)."
        )
    if verdict is StepVerdict.PASSED:
        return f":white_check_mark: {step} passed."
    if verdict is StepVerdict.MISSING:
        return f":x: The job has no step {step}: check the plan's `npm.publish_step`."
    if verdict is StepVerdict.SKIPPED:
        return f":white_circle: {step} was skipped: nothing was published."
    if verdict is not StepVerdict.FAILED:
        return f":white_circle: {step} did not run."
    if check.npm_error is None:
        return (
            f":x: {step} failed, and its log shows no npm credentials error (ENEEDAUTH, E401, "
            f"E403, E404): see {log}."
        )
    shown = "E403" if check.npm_error is NpmError.TWO_FACTOR else check.npm_error.value
    fix = _fix(check.npm_error, npm, warned=check.validate_step is StepVerdict.WARNED)
    return f":x: {step} failed with `{shown}`. {fix}"


def _fix(error: NpmError, npm: NpmRelease, *, warned: bool) -> str:
    """What to do about npm's refusal (the fixes docs/npm-token.md lists)."""
    if error is NpmError.NEED_AUTH and warned:
        return (
            "npm had no credentials because the secret is missing or empty: create the token "
            "and add the secret (steps 1 and 2), then run Release again."
        )
    if error is NpmError.NEED_AUTH:
        return (
            f"npm got no credentials although the validate step saw a token: make sure the "
            f"publish step passes it to npm (`NPM_TOKEN: ${{{{ secrets.{SECRET_NAME} }}}}` in "
            "its `env`), then run Release again."
        )
    if error is NpmError.UNAUTHORIZED:
        return (
            "npm rejected the token: it expired, was revoked (classic tokens were revoked in "
            "December 2025) or was pasted incompletely. Create a new granular access token "
            "(step 1), update the secret (step 2) and run Release again."
        )
    if error is NpmError.TWO_FACTOR:
        return (
            "npm requires two-factor authentication to publish and the token cannot give it: "
            "create a granular access token that bypasses two-factor authentication (step 1), "
            "or switch to trusted publishing (OIDC)."
        )
    if error is NpmError.FORBIDDEN:
        return (
            f"npm refused the publish: the token has no write access to `{npm.scope}` or to the "
            f"package. Give the token Read and write on `{npm.scope}` (step 1) and update the "
            "secret."
        )
    return (
        f"npm answered 404 to the publish: the token cannot see the `{npm.scope}` scope (npm "
        "hides what a token may not write to), or the scope does not exist. Give the token "
        f"Read and write on `{npm.scope}` (step 1) and check the package names."
    )


def oidc_validate_line(check: RunCheck, npm: NpmRelease, log: str) -> str:
    """The validate step of a job that publishes with trusted publishing only: it checks a
    secret the job does not need, so only its failure counts."""
    step = f"*{npm.validate_step}*"
    verdict = check.validate_step
    if verdict is StepVerdict.FAILED:
        return f":x: {step} failed: see {log}."
    if verdict is StepVerdict.MISSING:
        return f":white_circle: The job has no step {step}: none is needed with trusted publishing."
    passed = check.publish_step is StepVerdict.PASSED and not check.published_nothing
    if passed and check.skip_unproven(oidc_only=True):  # the publish step shows no package
        return (
            f":warning: {step} printed “{SECRET_NAME} secret not configured — skipping npm "
            f"publish”, and *{npm.publish_step}* passed without {log} showing packages "
            "published: if the job skips publishing on that warning, it never publishes "
            "with trusted publishing. Remove the step or its condition."
        )
    if verdict is StepVerdict.WARNED:
        return (
            f":white_circle: {step} printed the {SECRET_NAME} warning, as expected: the job "
            f"publishes with trusted publishing, without {SECRET_NAME}."
        )
    if verdict is StepVerdict.PASSED:
        return f":white_check_mark: {step} passed."
    return f":white_circle: {step} did not run."


def oidc_publish_line(check: RunCheck, setup: WalkthroughSetup, log: str) -> str:
    """The publish step of a job that publishes with trusted publishing only: npm's refusal
    comes from the trusted publisher or the toolchain, never from a token."""
    npm = setup.npm
    step = f"*{npm.publish_step}*"
    if check.publish_step is not StepVerdict.FAILED:
        return _publish_line(check, npm, log, oidc_only=True)
    lead = {
        None: f":x: {step} failed, and its log shows no npm credentials error: see {log}.",
        NpmError.NEED_AUTH: f":x: {step} failed with `ENEEDAUTH`: npm published without "
        "credentials, so it did not exchange the job's OIDC token.",
        NpmError.NOT_FOUND: f":x: {step} failed with `E404`: npm older than 11.5.1 never tries "
        "OIDC and publishes unauthenticated, or no trusted publisher matches the run.",
    }.get(check.npm_error)
    if lead is None:
        shown = "E403" if check.npm_error is NpmError.TWO_FACTOR else str(check.npm_error)
        lead = f":x: {step} failed with `{shown}`: npm refused the trusted publish."
    if check.npm_error is None:
        return lead
    return f"{lead} {_oidc_fix(setup)}"


def _oidc_fix(setup: WalkthroughSetup) -> str:
    """What npm's trusted publishing needs (npm's docs, "Trusted publishing for npm
    packages"), since the job hands npm no token."""
    npm = setup.npm
    return (
        f"Check on npmjs.com that each `{npm.scope}` package's <{TRUSTED_PUBLISHING_DOCS}|trusted "
        f"publisher> names `{setup.repository}` and the workflow file `{npm.workflow}` (and the "
        f"job's environment, if it runs in one); that job `{npm.job}` has `id-token: write` and "
        "a GitHub-hosted runner; and that it publishes with npm 11.5.1 or later on Node 22.14 "
        f"or later. Then run Release again. The job hands npm no `{SECRET_NAME}`: adding the "
        "secret alone changes nothing."
    )


def release_text(
    release: ReleaseFollow | None, setup: WalkthroughSetup, *, oidc_only: bool = False
) -> str:
    npm = setup.npm
    about = (
        f"Dispatches `{npm.workflow}` on `{npm.ref}` and follows the run; step 4's checks appear "
        "here when it ends. It may publish packages. Release approvers only."
    )
    if release is None:
        return about
    who = f"<@{release.requested_by}>"
    run = "The run"
    if release.run_id is not None:
        run = f"<{setup.run_url(release.run_id)}|Run {release.run_id}>"
    if release.phase is ReleasePhase.DISPATCHING and release.error:
        # Sent, but GitHub's answer was unclear: Release may be running. Never "not started".
        return _clip(
            f"Sent `{npm.workflow}` on `{npm.ref}` for {who}; its run is not identified yet, "
            f"and the bot is looking for it (no second run meanwhile). {escape(release.error)}"
        )
    if release.phase is ReleasePhase.DISPATCHING:
        return f"Dispatching `{npm.workflow}` on `{npm.ref}` for {who}…"
    if release.phase is ReleasePhase.NOT_STARTED:
        return f"Could not start Release for {who}: {escape(release.error or 'no reason given')}"
    if release.phase is ReleasePhase.UNFOLLOWED and release.error:
        # Its looks failed every attempt (the database, most likely): the log has the rest.
        return _clip(
            f"The bot stopped following {run.lower() if release.run_id is None else run}, "
            f"started by {who}: {escape(release.error)} Check it with step 4 once it has ended."
        )
    if release.phase is ReleasePhase.UNFOLLOWED:
        return (
            f"{run}, started by {who}, took too long to follow: check it with step 4 once it "
            "has ended."
        )
    if release.phase is ReleasePhase.RUNNING:
        status = (release.status or "queued").replace("_", " ")
        text = f"{run}, started by {who}, is {status}…"
        if release.error:
            text += f"\nStill following, although GitHub just failed: {escape(release.error)}"
        return text
    assert release.check is not None
    return _clip(f"Started by {who}.\n{_run_text(release.check, setup, oidc_only=oidc_only)}")
