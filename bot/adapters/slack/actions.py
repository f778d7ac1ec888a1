"""Typed interactivity: the action and callback ids of the rollout cards, and the values their
buttons and modals carry (pydantic models, never free strings parsed by hand)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from bot.domain.controls import Hold
from bot.domain.errors import RolloutError
from bot.domain.release_tag import TAG_RULE

# Bounds that keep every encoded value far below Slack's limits and within what storage holds
# (rollout and channel ids 32 characters, plan keys at most 32), in characters it can store.
_Id = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_-]{1,32}$")]
_Commit = Annotated[str, StringConstraints(strict=True, pattern=r"^([0-9a-f]{40}|[0-9a-f]{64})?$")]
"""A commit's full SHA (SHA-1 or SHA-256), or "" (no such tag)."""


class Action(StrEnum):
    """The action_id of every button on the preflight and rollout cards."""

    CONFIRM_FLAGS = "confirm_flags"
    DISPATCH = "dispatch"
    CANCEL_PREFLIGHT = "cancel_preflight"
    CANCEL_SCHEDULE = "cancel_schedule"
    """Cancels the dispatch scheduled for later (the preflight stays)."""
    RECHECK = "recheck"
    """Runs the preflight checks that GitHub failed to answer again."""
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    KILL = "kill"
    EXTEND_WINDOW = "extend_window"
    EXTEND_CUSTOM = "extend_custom"
    """Opens the modal in which a person types how much longer the window should run."""
    REEVALUATE = "reevaluate"
    ENTER_FIGURES = "enter_figures"
    REDEPLOY = "redeploy"
    """Roll back after a completed track: opens the confirm dialog naming both tags."""
    LINK_RUN = "link_run"
    """Opens the form asking for the run to follow, when the dispatch's run is not known."""
    OVERRIDE_FREEZE = "override_freeze"
    """Opens the form asking an approver's reason to override a freeze for this dispatch."""
    SHOW_CONTENTS = "show_contents"
    """Opens the modal that lists every pull request of the release (it changes nothing)."""
    ADOPT_RUN = "adopt_run"
    """On the card of a run the bot did not start: follow it as a rollout from here."""
    REJECT_RUN = "reject_run"
    """On the card of a run the bot did not start: reject it through the App's rule."""
    OVERRIDE_ADOPT = "override_adopt"
    """Under an Adopt refused by a freeze: opens the form asking an approver's reason to
    override the freeze and adopt the run."""
    RERUN_FAILURE_JOB = "rerun_failure_job"
    """Under a failed rollback (or kill-switch) job, and on its lane: re-run it on GitHub."""


class Callback(StrEnum):
    """The callback_id of every modal."""

    FIGURES = "figures"
    EXTEND = "extend_window"
    REDEPLOY = "redeploy"
    LINK_RUN = "link_run"
    OVERRIDE_FREEZE = "override_freeze"
    OVERRIDE_ADOPT = "override_adopt"


class InvalidPayload(RolloutError):
    """A button value or modal metadata the bot did not make (forged, or from another version)."""

    code = "invalid_payload"


NOT_OURS = (
    "This button or form does not carry a value the bot made. "
    "Run `/rollout status` for the current rollouts and use a fresh card."
)
NEWER = (
    "This button or form was made by a newer version of the bot (an upgrade is under way) "
    "and nothing was done: try again in a minute"
)
"""Said instead when the value only has fields this version does not know: a replica of the
previous version answers a click on a message a new one drew during a rolling upgrade."""


def from_newer_version(error: ValidationError) -> bool:
    """Whether the value failed only by fields this version does not know."""
    details = error.errors()
    return bool(details) and all(detail["type"] == "extra_forbidden" for detail in details)


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def encode(self) -> str:
        """Compact JSON, without the fields left unset."""
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def decode(cls, raw: str) -> Self:
        """The payload in `raw`; raises InvalidPayload (never a pydantic error) on anything else."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError as error:
            if from_newer_version(error):
                raise InvalidPayload(f"{NEWER}, or use a fresh card (`/rollout status`).") from None
            raise InvalidPayload(NOT_OURS) from None


class ButtonValue(_Payload):
    """What a rollout card's button acts on; `version` is the rollout version the card showed."""

    rollout_id: _Id
    track: _Id | None = None
    stage: _Id | None = None
    version: Annotated[int, Field(ge=0, strict=True, lt=2**63)] | None = None
    hold: Hold | None = None
    """On Promote: the hold the card was drawn for, so a click confirms exactly that one."""
    attempt: Annotated[int, Field(gt=0, strict=True, lt=2**31)] | None = None
    """On Re-run: the run attempt whose failure job failed, as the button was drawn."""
    commit: _Commit | None = None
    """On Confirm flags: the commit the card's preflight read the tag at ("": no such tag), so
    a click confirms the flags for that commit only."""


class RunValue(_Payload):
    """What Adopt and Reject act on: the run the card is about."""

    run_id: Annotated[int, Field(gt=0, strict=True, lt=2**63)]


class FiguresMetadata(_Payload):
    """The manual-figures modal's private_metadata: which stage the figures are for."""

    rollout_id: _Id
    track: _Id
    stage: _Id
    channel_id: _Id | None = None
    """Where to answer when the submission is refused after Slack took it."""
    window: Annotated[int, Field(ge=0, strict=True, lt=2**63)] | None = None
    """The evaluation the form was opened for: the end of the stage's window then, in epoch
    seconds (`window_key`; 0: no end). None: a form a 38840bf replica opened."""


class ExtendMetadata(_Payload):
    """The custom-extension modal's private_metadata: the window, as the card showed it."""

    rollout_id: _Id
    track: _Id
    stage: _Id
    version: Annotated[int, Field(ge=0, strict=True, lt=2**63)]
    channel_id: _Id


class RedeployMetadata(_Payload):
    """The redeploy confirm dialog's private_metadata: the tags it named."""

    rollout_id: _Id
    track: _Id
    tag: Annotated[str, StringConstraints(strict=True, pattern=f"^{TAG_RULE}$")]
    channel_id: _Id


class LinkMetadata(_Payload):
    """The Link a run… form's private_metadata: the rollout waiting for its run."""

    rollout_id: _Id
    channel_id: _Id


class OverrideMetadata(_Payload):
    """The Override freeze… form's private_metadata: the preflight card it was opened from."""

    rollout_id: _Id
    version: Annotated[int, Field(ge=0, strict=True, lt=2**63)]
    channel_id: _Id


class AdoptOverrideMetadata(_Payload):
    """The Override freeze… form of a refused Adopt: the run it adopts."""

    run_id: Annotated[int, Field(gt=0, strict=True, lt=2**63)]
    channel_id: _Id
