"""Which build is running: the package's version and the git commit it was built from.

The commit is `ROLLOUT_BOT_COMMIT` (set when the image is built), else the checkout's HEAD
when the bot runs from one, else "unknown". Shown by `rollout-bot --version`, the
App Home, the start-up log line and the `rollout_bot_build_info` series.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Build:
    version: str
    commit: str

    def __str__(self) -> str:
        return f"rollout-bot {self.version} (commit {self.commit})"


@functools.cache
def build() -> Build:
    """This process's build (read once)."""
    try:
        installed = version("rollout-bot")
    except PackageNotFoundError:
        installed = UNKNOWN
    return Build(version=installed, commit=_commit())


def _commit() -> str:
    given = os.environ.get("ROLLOUT_BOT_COMMIT", "").strip()
    if given:
        return given
    git = shutil.which("git")
    if git is None:
        return UNKNOWN
    try:
        found = subprocess.run(  # noqa: S603 - a fixed command, no input from outside
            [git, "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else UNKNOWN
