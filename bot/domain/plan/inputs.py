"""The workflow_dispatch inputs of a plan and of a redeploy workflow, and their sources."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    StringConstraints,
)

from bot.domain.plan.fields import (
    InputName,
    Key,
    PlanModel,
    Text,
)


class TagInput(PlanModel):
    """The release tag being rolled out."""

    from_: Literal["tag"] = Field(alias="from")


class FeatureFlagsInput(PlanModel):
    """`"true"` once the feature flags are confirmed validated, `"false"` otherwise."""

    from_: Literal["feature_flags"] = Field(alias="from")


class BaselineInput(PlanModel):
    """A track's baseline crash rate (the bot gates live, so stage rate inputs get it too)."""

    from_: Literal["baseline"] = Field(alias="from")
    track: Key


class LiteralInput(PlanModel):
    """A fixed string."""

    from_: Literal["literal"] = Field(alias="from")
    value: Annotated[str, StringConstraints(strict=True)]


class ReplacedTagInput(PlanModel):
    """The tag being replaced by a redeploy (the rollout whose Roll back was clicked)."""

    from_: Literal["replaced_tag"] = Field(alias="from")


RedeployInputSource = Annotated[
    TagInput | ReplacedTagInput | LiteralInput, Field(discriminator="from_")
]


class Redeploy(PlanModel):
    """A rollback workflow: dispatched with the previous good tag to put it back in place."""

    workflow: Text
    """The workflow file under `.github/workflows/`."""
    ref: Text = "main"
    inputs: dict[InputName, RedeployInputSource] = Field(default_factory=dict)
    """`{from: tag}` is the tag redeployed (the previous good one), `{from: replaced_tag}`
    the tag it replaces, `{from: literal, value: ...}` a fixed string."""

    def dispatch_inputs(self, *, tag: str, replaced_tag: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for name, source in self.inputs.items():
            if isinstance(source, TagInput):
                values[name] = tag
            elif isinstance(source, ReplacedTagInput):
                values[name] = replaced_tag
            else:
                values[name] = source.value
        return values


InputSource = Annotated[
    TagInput | FeatureFlagsInput | BaselineInput | LiteralInput, Field(discriminator="from_")
]
