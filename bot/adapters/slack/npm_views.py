"""Block Kit of the NPM_TOKEN walkthrough, built by pure functions from a `Walkthrough`.

One message, five steps, each with a status; three steps have a button. Every button carries
the whole `Walkthrough` as its value (compact JSON), so a click redraws the message from what
it showed, with no table. Nothing here offers a place to type a token: no input anywhere.
What each step says is `bot.adapters.slack.npm_steps`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from slack_sdk.models.blocks import ButtonElement, DividerBlock, SectionBlock

from bot.adapters.slack.actions import NEWER, InvalidPayload, from_newer_version
from bot.adapters.slack.blocks import (
    BlockJson,
    as_json,
    button,
    confirm,
    context,
    header,
    section,
)
from bot.adapters.slack.limits import BUTTON_VALUE
from bot.adapters.slack.npm_secret_step import add_text, add_title, add_tone, secret_text
from bot.adapters.slack.npm_steps import (
    WalkthroughSetup,
    create_text,
    create_tone,
    last_run_text,
    release_text,
)
from bot.domain.npm import SECRET_NAME, Tone, Walkthrough, clip_error
from bot.domain.npm_run import renewed_since
from bot.domain.plan import NpmRelease


class NpmAction(StrEnum):
    """The action_id of each button of the walkthrough."""

    CHECK_SECRET = "npm_check_secret"  # noqa: S105 - an action id
    CHECK_LAST_RUN = "npm_check_last_run"
    RUN_RELEASE = "npm_run_release"


_TONES: Mapping[Tone, str] = {
    Tone.TODO: ":white_circle: to do",
    Tone.OK: ":white_check_mark: done",
    Tone.WARNING: ":warning: needs attention",
    Tone.FAILED: ":x: failed",
    Tone.PENDING: ":hourglass_flowing_sand: in progress",
    Tone.BLOCKED: ":no_entry: cannot check",
}

# -- button values ------------------------------------------------------------------------------


_SHORTER_ERROR = 60
"""Characters (as JSON writes them) each error text keeps in a value that would not fit (60:
room for the fields since e248966, `trusted_publishing`, `app_rule`, `ref_unprotected`,
`own_app_rule`)."""


def encode_state(walkthrough: Walkthrough) -> str:
    """The walkthrough as a button value, within Slack's 2000 characters: every free text in
    it is bounded, and when all are at their longest at once (GitHub's error texts in step 3
    and in both run checks, a long service name) those texts are kept shorter in the value
    (the message shows them in full until a click redraws it from the value)."""
    value = walkthrough.model_dump_json(exclude_none=True)
    if len(value) <= BUTTON_VALUE:
        return value
    release = _shorter(walkthrough.release, "error")
    if release is not None:
        release = release.model_copy(
            update={"check": _shorter(release.check, "error", "log_unavailable")}
        )
    shorter = walkthrough.model_copy(
        update={
            "secret": _shorter(walkthrough.secret, "error", "unchecked"),
            "last_run": _shorter(walkthrough.last_run, "error", "log_unavailable"),
            "release": release,
        }
    )
    return shorter.model_dump_json(exclude_none=True)


_Check = TypeVar("_Check", bound=BaseModel)


def _shorter(check: _Check | None, *texts: str) -> _Check | None:
    if check is None:
        return check
    return check.model_copy(
        update={
            name: clip_error(text, most=_SHORTER_ERROR)
            for name in texts
            if (text := getattr(check, name)) is not None
        }
    )


def decode_state(raw: str) -> Walkthrough:
    """The walkthrough a button carries; InvalidPayload for anything the bot did not make."""
    try:
        return Walkthrough.model_validate_json(raw)
    except ValidationError as error:
        if from_newer_version(error):
            raise InvalidPayload(f"{NEWER}, or run `/rollout npm-token` for a fresh one.") from None
        raise InvalidPayload(
            "This button does not carry a walkthrough the bot made. "
            "Run `/rollout npm-token` for a fresh one."
        ) from None


# -- the message --------------------------------------------------------------------------------


def walkthrough_text(setup: WalkthroughSetup) -> str:
    """The plain-text fallback (notifications, screen readers)."""
    return f"Set up and verify {SECRET_NAME} for the npm Release workflow of {setup.repository}"


def walkthrough_blocks(walkthrough: Walkthrough, setup: WalkthroughSetup) -> list[BlockJson]:
    """The whole walkthrough message."""
    npm = setup.npm
    value = encode_state(walkthrough)
    blocks = [
        header(f"npm Release: set up {SECRET_NAME}"),
        context(
            f"`{setup.repository}` · workflow `{npm.workflow}`, job `{npm.job}` · "
            f"scope `{npm.scope}`"
        ),
        DividerBlock(),
        _step(1, "Create an npm token", create_tone(walkthrough), create_text(setup)),
        _step(
            2,
            add_title(walkthrough),
            add_tone(walkthrough),
            add_text(setup, walkthrough.secret),
        ),
        _step(
            3,
            "Check the secret",
            walkthrough.secret.tone if walkthrough.secret else Tone.TODO,
            secret_text(walkthrough.secret, setup),
            button("Check secret", NpmAction.CHECK_SECRET, value),
        ),
        _step(
            4,
            "Check the last Release run",
            _last_run_tone(walkthrough),
            last_run_text(
                walkthrough.last_run,
                walkthrough.secret,
                setup,
                oidc_only=walkthrough.oidc_only,
            ),
            button("Check last Release run", NpmAction.CHECK_LAST_RUN, value),
        ),
        _step(
            5,
            "Run Release now",
            walkthrough.release_tone,
            release_text(walkthrough.release, setup, oidc_only=walkthrough.oidc_only),
            _run_button(value, npm),
        ),
        context(
            ":lock: The bot never asks for, receives or shows a token value: never paste a token "
            "into Slack. It reads only the secret's name and dates."
        ),
    ]
    return as_json(blocks)


def _last_run_tone(walkthrough: Walkthrough) -> Tone:
    """Step 4's: a run that passed before the secret was last updated (step 3) used the value
    before it, and verifies nothing of the one now (the step says so)."""
    tone, check = walkthrough.last_run_tone, walkthrough.last_run
    run = check.run if check is not None else None
    if tone is Tone.OK and renewed_since(run, walkthrough.secret, oidc_only=walkthrough.oidc_only):
        return Tone.WARNING
    return tone


# -- blocks -------------------------------------------------------------------------------------


def _step(
    number: int, title: str, tone: Tone, text: str, accessory: ButtonElement | None = None
) -> SectionBlock:
    text = f"*{number}. {title}*   {_TONES[tone]}\n{text}"
    return section(text, block_id=f"npm_step_{number}", accessory=accessory)


def _run_button(value: str, npm: NpmRelease) -> ButtonElement:
    dialog = confirm(
        "Run Release now?",
        f"This runs the Release workflow ({npm.workflow}) on {npm.ref}. It may publish "
        f"packages of {npm.scope} to npm.",
        "Run Release",
        danger=True,
    )
    return button("Run Release now", NpmAction.RUN_RELEASE, value, style="danger", confirm=dialog)
