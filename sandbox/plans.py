"""Plans and figures for the sandboxed bot: the built-in plan with short windows, and the
figures its static metrics source reads."""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sandbox.yaml_text import yaml_text


def fast_plan(
    figures_file: Path,
    *,
    window: str = "2s",
    extension: str = "2s",
    promote: str = "manual",
    check_image: bool = False,
    manual_tracks: tuple[str, ...] = (),
) -> str:
    """The built-in plan as YAML, accelerated: every window `window`, static figures from
    `figures_file` (one per track, see `write_figures`), or asked of the approvers for the
    `manual_tracks`."""
    plan = copy.deepcopy(_default_plan())
    plan["preflight"]["check_image_published"] = check_image
    for name, track in plan["tracks"].items():
        for stage in track["stages"]:
            if "observe" in stage:
                stage["observe"].update(
                    window=window, inconclusive_extension=extension, promote=promote
                )
        track["metrics"] = (
            {"source": "manual", "baseline_crash_rate": "0.001"}
            if name in manual_tracks
            else {
                "source": "static",
                "baseline_crash_rate": "0.001",
                "file": str(figures_file.with_name(f"{figures_file.stem}-{name}.yml")),
            }
        )
    return yaml_text(plan, sort_keys=False)


@functools.cache
def _default_plan() -> dict[str, Any]:
    """The built-in plan, read once (copied before it is changed)."""
    text = resources.files("bot.domain").joinpath("default_plan.yml").read_text(encoding="utf-8")
    plan: dict[str, Any] = yaml.safe_load(text)
    return plan


SENTRY_RINGS: dict[str, str] = {
    "source": "sentry",
    "baseline_crash_rate": "0.001",
    "release": "scriptum-desktop@$tag",
    "environment": "$stage",
}
"""The desktop track's `metrics` read from Sentry, each ring an environment of its own."""


def write_figures(
    figures_file: Path,
    track: str,
    stages: Mapping[str, Mapping[str, Any]],
    *,
    baseline: str = "0.001",
) -> None:
    """Set the figures the static source reads for one track at its next gate."""
    path = figures_file.with_name(f"{figures_file.stem}-{track}.yml")
    content = {"baseline_crash_rate": baseline, "stages": {k: dict(v) for k, v in stages.items()}}
    path.write_text(yaml_text(content), encoding="utf-8")
