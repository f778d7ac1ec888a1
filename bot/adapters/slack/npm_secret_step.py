"""What steps 2 and 3 of the NPM_TOKEN walkthrough say: where to add the secret, and which one
the publishing job reads. GitHub reads the job's environment's secret first, then the
repository's, then the organization's (`bot.domain.npm_secrets`); what the bot could not check
is said as such, never as missing."""

from __future__ import annotations

from bot.adapters.slack.messages import slack_time
from bot.adapters.slack.mrkdwn import escape
from bot.adapters.slack.npm_rules_note import rules_note
from bot.adapters.slack.npm_steps import NO_TRUSTED_PUBLISHING, WalkthroughSetup
from bot.domain.npm import SECRET_NAME, SecretCheck, SecretLevel, StepVerdict, Tone, Walkthrough

# -- step 2 -------------------------------------------------------------------------------------


def add_title(walkthrough: Walkthrough) -> str:
    secret = walkthrough.secret
    where = "an environment" if secret is not None and secret.environment else "a repository"
    return f"Add it as {where} secret"


def add_tone(walkthrough: Walkthrough) -> Tone:
    secret = walkthrough.secret
    if secret is not None and secret.oidc_only:
        return Tone.OK  # nothing to add: the job publishes without the secret
    if secret is not None and secret.tone is not Tone.BLOCKED:
        if secret.found:
            return Tone.OK
        return Tone.TODO if secret.oidc else Tone.FAILED
    run = walkthrough.latest_run_check()
    # Only a log read shows that the validate step passed without the NPM_TOKEN warning.
    if run is not None and run.validate_step is StepVerdict.PASSED and not run.log_unavailable:
        return Tone.OK
    return Tone.TODO


def add_text(setup: WalkthroughSetup, secret: SecretCheck | None) -> str:
    if secret is not None and secret.oidc_only:
        return (
            f"Not needed: job `{setup.npm.job}` publishes with npm trusted publishing, without "
            f"`{SECRET_NAME}` (step 3)."
        )
    if secret is not None and secret.environment:
        return (
            f"<{setup.environments_url}|Open Environments> (Settings → Environments) of "
            f"`{setup.repository}`, open `{escape(secret.environment)}` (job `{setup.npm.job}` "
            f"runs in it), and under *Environment secrets* add one named exactly `{SECRET_NAME}`, "
            "with the token as its value. The job reads it before a repository or organization "
            "secret of that name."
        )
    return (
        f"<{setup.new_secret_url}|Open New repository secret> (Settings → Secrets and variables "
        f"→ Actions) of `{setup.repository}`, name it exactly `{SECRET_NAME}`, paste the token "
        "as its value and save."
    )


# -- step 3 -------------------------------------------------------------------------------------


def secret_text(check: SecretCheck | None, setup: WalkthroughSetup) -> str:
    if check is None:
        return (
            f"*Check secret* finds where job `{setup.npm.job}` reads `{SECRET_NAME}` (its "
            "environment, the repository, the organization) and reads its name and dates from "
            "GitHub, never its value."
        )
    if check.oidc_only:
        return _not_needed(check, setup) + rules_note(check, setup)
    if check.error is not None:
        return escape(check.error)
    if not check.found or check.updated_at is None or check.created_at is None:
        return _missing(check, setup) + _notes(check, setup)
    dates = (
        f"created {slack_time(check.created_at)}, last updated {slack_time(check.updated_at)} "
        f"({_ago(check.age_days or 0)})"
    )
    job, environment = f"job `{setup.npm.job}`", _quoted(check.environment)
    if check.environment_secret:
        text = (
            f"`{SECRET_NAME}` is a secret of the environment {environment}, where {job} runs, "
            f"and the job reads this one: {dates}."
        )
    elif check.organization:
        text = (
            f"`{SECRET_NAME}` is an organization secret shared with `{setup.repository}` (the "
            f"repository has none of its own): {dates}. A repository secret of that name "
            "would take its place."
        )
    else:
        text = f"`{SECRET_NAME}` is set: {dates}."
    if check.environment and not check.environment_secret and not check.unchecked:
        level = SecretLevel.ORGANIZATION if check.organization else SecretLevel.REPOSITORY
        text = (
            f"The environment {environment}, where {job} runs, has no `{SECRET_NAME}` of its "
            f"own, so the job reads the {level.value}'s.\n{text}"
        )
    if check.shadowed:
        text += (
            f"\n:information_source: It takes the place of the {_levels(check.shadowed)} "
            f"`{SECRET_NAME}`, which the job does not read: update this one when the token "
            "changes."
        )
    if check.unchecked and check.environment:
        text += (
            f"\n:no_entry: The bot could not check the environment {environment}, where {job} "
            f"runs: {escape(check.unchecked)} If {environment} has its own `{SECRET_NAME}`, the "
            "job reads that one instead."
        )
    elif check.unchecked:
        text += (
            f"\n:grey_question: The bot could not tell which environment {job} runs in: "
            f"{escape(check.unchecked)} A secret of that environment would take this one's place."
        )
    if check.age_days is not None and check.age_days > check.max_age_days:
        text += (
            f"\n:warning: It is older than {check.max_age_days} days, and granular write tokens "
            "expire after at most 90: create a new token (step 1) and update the secret (step 2)."
        )
    return text + _notes(check, setup)


def _missing(check: SecretCheck, setup: WalkthroughSetup) -> str:
    job, environment = f"job `{setup.npm.job}`", _quoted(check.environment)
    nowhere = f"`{setup.repository}`, nor shared with it by its organization"
    if check.unchecked and check.environment:
        return (
            f"The bot could not check the environment {environment}, where {job} runs: "
            f"{escape(check.unchecked)} `{SECRET_NAME}` is not set in {nowhere}, so the job has "
            f"a token only if {environment} has one: look there (Settings → Environments), or "
            "give the bot's token that permission and check again."
        )
    if check.unchecked:
        return (
            f"`{SECRET_NAME}` is not set in {nowhere}, and the bot could not tell which "
            f"environment {job} runs in: {escape(check.unchecked)} If it runs in one, look at "
            "that environment's secrets; otherwise add it (step 2)."
        )
    if check.environment:
        return (
            f"`{SECRET_NAME}` is not set in the environment {environment}, where {job} runs, "
            f"nor in {nowhere}: add it to {environment} (step 2)."
        )
    if check.oidc:  # the note that follows says when it needs none
        return f"`{SECRET_NAME}` is not set in {nowhere}."
    return f"`{SECRET_NAME}` is not set in {nowhere}: add it (step 2)."


def _not_needed(check: SecretCheck, setup: WalkthroughSetup) -> str:
    """The job publishes with trusted publishing only: no NPM_TOKEN is read, wherever kept."""
    npm = setup.npm
    text = (
        f"`{SECRET_NAME}` is not needed: job `{npm.job}` publishes with npm trusted publishing "
        f"(it may request an OIDC token, `id-token: write`, on a GitHub-hosted runner, and "
        f"hands npm no `{SECRET_NAME}`). "
        f"Each `{npm.scope}` package must trust `{npm.workflow}` of `{setup.repository}` on "
        "npmjs.com; step 4 tells whether the last run published."
    )
    if not check.found:
        return text
    if check.environment_secret:
        first = f"environment {_quoted(check.environment)}'s"
    else:
        level = SecretLevel.ORGANIZATION if check.organization else SecretLevel.REPOSITORY
        first = f"{level.value}'s"
    unused = [first, *(f"{level.value}'s" for level in check.shadowed or ())]
    verb = "is" if len(unused) == 1 else "are"
    return text + (
        f"\n:information_source: The {' and the '.join(unused)} `{SECRET_NAME}` {verb} unused "
        "(the job does not read it): delete it once nothing else reads it, so that a leaked "
        "or expired token does not linger."
    )


def _notes(check: SecretCheck, setup: WalkthroughSetup) -> str:
    if not setup.trusted_publishing:  # the job's `id-token: write` was not taken for it
        return f"\n:information_source: {NO_TRUSTED_PUBLISHING}" + rules_note(check, setup)
    return _oidc_note(check, setup) + rules_note(check, setup)


def _oidc_note(check: SecretCheck, setup: WalkthroughSetup) -> str:
    if not check.oidc:
        return ""
    job, scope = f"job `{setup.npm.job}`", f"`{setup.npm.scope}`"
    if check.found:
        return (
            f"\n:information_source: {job.capitalize()} may also request an OIDC token "
            "(`id-token: write`) for npm trusted publishing: once every "
            f"{scope} package trusts `{setup.npm.workflow}` on npmjs.com, remove "
            f"`{SECRET_NAME}` from the job and delete the secret, so that npm is not handed "
            "a token instead."
        )
    return (
        f"\n:information_source: {job.capitalize()} may request an OIDC token (`id-token: "
        f"write`): with npm trusted publishing (each {scope} package trusts "
        f"`{setup.npm.workflow}` of `{setup.repository}` on npmjs.com) it needs no "
        f"`{SECRET_NAME}` at all, and step 4 tells whether it published. Otherwise add the "
        "token (step 2)."
    )


def _quoted(environment: str | None) -> str:
    return f"`{escape(environment or '')}`"


def _levels(levels: tuple[SecretLevel, ...]) -> str:
    return " and the ".join(f"{level.value}'s" for level in levels)


def _ago(days: int) -> str:
    if days == 0:
        return "today"
    return "1 day ago" if days == 1 else f"{days} days ago"
