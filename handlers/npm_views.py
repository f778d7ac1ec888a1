"""Block Kit of the NPM_TOKEN walkthrough, built by pure functions from a `Walkthrough`.

One message, five steps, each with a status; three steps have a button. Every button carries
the whole `Walkthrough` as its value (compact JSON), so a click redraws the message from what
it showed, with no table. Nothing here offers a place to type a token: no input anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from bot.domain.npm import (
    SECRET_NAME,
    SKIP_WARNING,
    NpmError,
    ReleaseFollow,
    ReleasePhase,
    RunCheck,
    SecretCheck,
    StepVerdict,
    Tone,
    Walkthrough,
)
from bot.domain.plan import NpmRelease
from bot.domain.rollout import slack_time
from handlers.actions import InvalidPayload
from handlers.views import Block

MAX_TEXT = 3000
TOKEN_DOCS = "https://docs.npmjs.com/creating-and-viewing-access-tokens"  # noqa: S105 - a URL
TRUSTED_PUBLISHING_DOCS = "https://docs.npmjs.com/trusted-publishers"


class NpmAction(StrEnum):
    """The action_id of each button of the walkthrough."""

    CHECK_SECRET = "npm_check_secret"  # noqa: S105 - an action id
    CHECK_LAST_RUN = "npm_check_last_run"
    RUN_RELEASE = "npm_run_release"


@dataclass(frozen=True)
class WalkthroughSetup:
    """What the walkthrough says that does not change: the repository and the plan's npm keys."""

    repository: str
    web_url: str
    """GitHub's web address (https://github.com, or the Enterprise Server's host)."""
    npm: NpmRelease

    @property
    def new_secret_url(self) -> str:
        """The repository's "New repository secret" page."""
        return f"{self.web_url}/{self.repository}/settings/secrets/actions/new"

    def run_url(self, run_id: int) -> str:
        return f"{self.web_url}/{self.repository}/actions/runs/{run_id}"

    def job_url(self, run_id: int, job_id: int) -> str:
        return f"{self.run_url(run_id)}/job/{job_id}"


_TONES: Mapping[Tone, str] = {
    Tone.TODO: ":white_circle: to do",
    Tone.OK: ":white_check_mark: done",
    Tone.WARNING: ":warning: needs attention",
    Tone.FAILED: ":x: failed",
    Tone.PENDING: ":hourglass_flowing_sand: in progress",
    Tone.BLOCKED: ":no_entry: cannot check",
}


# -- button values ------------------------------------------------------------------------------


def encode_state(walkthrough: Walkthrough) -> str:
    """The walkthrough as a button value (within Slack's 2000 characters: every free text in
    it is bounded)."""
    return walkthrough.model_dump_json(exclude_none=True)


def decode_state(raw: str) -> Walkthrough:
    """The walkthrough a button carries; InvalidPayload for anything the bot did not make."""
    try:
        return Walkthrough.model_validate_json(raw)
    except ValidationError:
        raise InvalidPayload(
            "This button does not carry a walkthrough the bot made. "
            "Run `/rollout npm-token` for a fresh one."
        ) from None


# -- the message --------------------------------------------------------------------------------


def walkthrough_text(setup: WalkthroughSetup) -> str:
    """The plain-text fallback (notifications, screen readers)."""
    return f"Set up and verify {SECRET_NAME} for the npm Release workflow of {setup.repository}"


def walkthrough_blocks(walkthrough: Walkthrough, setup: WalkthroughSetup) -> list[Block]:
    """The whole walkthrough message."""
    npm = setup.npm
    value = encode_state(walkthrough)
    return [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"npm Release: set up {SECRET_NAME}"},
        },
        _context(
            f"`{setup.repository}` · workflow `{npm.workflow}`, job `{npm.job}` · "
            f"scope `{npm.scope}`"
        ),
        {"type": "divider"},
        _step(1, "Create an npm token", _create_tone(walkthrough), _create_text(npm)),
        _step(2, "Add it as a repository secret", _add_tone(walkthrough), _add_text(setup)),
        _step(
            3,
            "Check the secret",
            walkthrough.secret.tone if walkthrough.secret else Tone.TODO,
            _secret_text(walkthrough.secret, setup),
            _button("Check secret", NpmAction.CHECK_SECRET, value),
        ),
        _step(
            4,
            "Check the last Release run",
            walkthrough.last_run.tone if walkthrough.last_run else Tone.TODO,
            _last_run_text(walkthrough.last_run, walkthrough.secret, setup),
            _button("Check last Release run", NpmAction.CHECK_LAST_RUN, value),
        ),
        _step(
            5,
            "Run Release now",
            walkthrough.release.tone if walkthrough.release else Tone.TODO,
            _release_text(walkthrough.release, setup),
            _run_button(value, npm),
        ),
        _context(
            ":lock: The bot never asks for, receives or shows a token value: never paste a token "
            "into Slack. It reads only the secret's name and dates."
        ),
    ]


# -- steps 1 and 2 ------------------------------------------------------------------------------


def _create_tone(walkthrough: Walkthrough) -> Tone:
    run = walkthrough.latest_run_check()
    if run is not None and run.tone is Tone.OK:
        return Tone.OK
    secret = walkthrough.secret
    if secret is not None and secret.found:
        return secret.tone
    return Tone.TODO


def _add_tone(walkthrough: Walkthrough) -> Tone:
    secret = walkthrough.secret
    if secret is not None and secret.error is None:
        return Tone.OK if secret.found else Tone.FAILED
    run = walkthrough.latest_run_check()
    if run is not None and run.validate_step is StepVerdict.PASSED:
        return Tone.OK
    return Tone.TODO


def _create_text(npm: NpmRelease) -> str:
    return (
        f"On npmjs.com, <{TOKEN_DOCS}|generate a *granular access token*> with *Read and write* "
        f"access to the `{npm.scope}` scope's packages. Granular write tokens expire after at "
        "most 90 days: note the date. Classic tokens were revoked in December 2025, so do not "
        "look for one. When publishing requires two-factor authentication, enable the token's "
        "option to bypass it. Copy the token straight into GitHub (step 2), never into Slack.\n"
        f"Token-free alternative: npm <{TRUSTED_PUBLISHING_DOCS}|trusted publishing> (OIDC) lets "
        "the workflow publish without any secret."
    )


def _add_text(setup: WalkthroughSetup) -> str:
    return (
        f"<{setup.new_secret_url}|Open New repository secret> (Settings → Secrets and variables "
        f"→ Actions) of `{setup.repository}`, name it exactly `{SECRET_NAME}`, paste the token "
        "as its value and save."
    )


# -- step 3 -------------------------------------------------------------------------------------


def _secret_text(check: SecretCheck | None, setup: WalkthroughSetup) -> str:
    if check is None:
        return (
            f"*Check secret* reads `{SECRET_NAME}`'s name and dates from GitHub, never its value."
        )
    if check.error is not None:
        return check.error
    if not check.found or check.updated_at is None or check.created_at is None:
        return (
            f"`{SECRET_NAME}` is not set in `{setup.repository}`: add it (step 2). An "
            "organization secret shared with the repository does not show here; step 4 tells "
            "whether the workflow got a token."
        )
    text = (
        f"`{SECRET_NAME}` is set: created {slack_time(check.created_at)}, last updated "
        f"{slack_time(check.updated_at)} ({_ago(check.age_days or 0)})."
    )
    if check.tone is Tone.WARNING:
        text += (
            f"\n:warning: It is older than {check.max_age_days} days, and granular write tokens "
            "expire after at most 90: create a new token (step 1) and update the secret (step 2)."
        )
    return text


def _ago(days: int) -> str:
    if days == 0:
        return "today"
    return "1 day ago" if days == 1 else f"{days} days ago"


# -- steps 4 and 5 ------------------------------------------------------------------------------


def _last_run_text(
    check: RunCheck | None, secret: SecretCheck | None, setup: WalkthroughSetup
) -> str:
    npm = setup.npm
    if check is None:
        return (
            f"*Check last Release run* reads the newest run of `{npm.workflow}`: did "
            f"*{npm.validate_step}* pass without the {SECRET_NAME} warning, and did "
            f"*{npm.publish_step}* publish?"
        )
    text = _run_text(check, setup)
    changed = secret.updated_at if secret is not None and secret.found else None
    run = check.run
    if (
        run is not None
        and changed is not None
        and changed > run.created_at
        and check.tone in (Tone.WARNING, Tone.FAILED)
    ):
        text += (
            f"\n:information_source: `{SECRET_NAME}` was updated after this run: run Release "
            "again (step 5) to verify it."
        )
    return _clip(text)


def _run_text(check: RunCheck, setup: WalkthroughSetup) -> str:
    npm = setup.npm
    if check.error is not None:
        return check.error
    run = check.run
    if run is None:
        return f"`{npm.workflow}` has never run: run it (step 5) or push to `{npm.ref}`."
    title = (
        f"<{setup.run_url(run.id)}|Run #{run.number}> ({run.event} on `{run.branch}`, "
        f"{slack_time(run.created_at)})"
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
    lines.append(_validate_line(check, npm, log))
    lines.append(_publish_line(check, npm, log))
    if check.log_unavailable:
        lines.append(
            f":grey_question: {check.log_unavailable} The verdict rests on the steps' results."
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


def _publish_line(check: RunCheck, npm: NpmRelease, log: str) -> str:
    step = f"*{npm.publish_step}*"
    verdict = check.publish_step
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


def _release_text(release: ReleaseFollow | None, setup: WalkthroughSetup) -> str:
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
            f"and the bot is looking for it (no second run meanwhile). {release.error}"
        )
    if release.phase is ReleasePhase.DISPATCHING:
        return f"Dispatching `{npm.workflow}` on `{npm.ref}` for {who}…"
    if release.phase is ReleasePhase.NOT_STARTED:
        return f"Could not start Release for {who}: {release.error}"
    if release.phase is ReleasePhase.UNFOLLOWED:
        return (
            f"{run}, started by {who}, took too long to follow: check it with step 4 once it "
            "has ended."
        )
    if release.phase is ReleasePhase.RUNNING:
        status = (release.status or "queued").replace("_", " ")
        text = f"{run}, started by {who}, is {status}…"
        if release.error:
            text += f"\nStill following, although GitHub just failed: {release.error}"
        return text
    assert release.check is not None
    return _clip(f"Started by {who}.\n{_run_text(release.check, setup)}")


# -- blocks -------------------------------------------------------------------------------------


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text)}]}


def _step(
    number: int, title: str, tone: Tone, text: str, button: dict[str, Any] | None = None
) -> Block:
    block: Block = {
        "type": "section",
        "block_id": f"npm_step_{number}",
        "text": {
            "type": "mrkdwn",
            "text": _clip(f"*{number}. {title}*   {_TONES[tone]}\n{text}"),
        },
    }
    if button is not None:
        block["accessory"] = button
    return block


def _button(label: str, action: NpmAction, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": str(action),
        "text": {"type": "plain_text", "text": label},
        "value": value,
    }


def _run_button(value: str, npm: NpmRelease) -> dict[str, Any]:
    button = _button("Run Release now", NpmAction.RUN_RELEASE, value)
    button["style"] = "danger"
    button["confirm"] = {
        "title": {"type": "plain_text", "text": "Run Release now?"},
        "text": {
            "type": "plain_text",
            "text": (
                f"This runs the Release workflow ({npm.workflow}) on {npm.ref}. It may publish "
                f"packages of {npm.scope} to npm."
            )[:300],
        },
        "confirm": {"type": "plain_text", "text": "Run Release"},
        "deny": {"type": "plain_text", "text": "Cancel"},
        "style": "danger",
    }
    return button
