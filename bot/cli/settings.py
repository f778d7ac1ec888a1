"""The settings of an operator command: loaded from the environment, or every problem printed."""

from __future__ import annotations

import sys

from bot.config import ConfigError, S, load_settings


def load(kind: type[S]) -> S | None:
    """The settings of `kind`; None after printing every problem (the command exits 2)."""
    try:
        return load_settings(kind)
    except ConfigError as error:
        report(error)
        return None


def report(error: ConfigError) -> int:
    """Print every configuration problem; the exit status to return (2)."""
    sys.stderr.write("configuration problems:\n")
    for problem in error.problems:
        sys.stderr.write(f"  - {problem}\n")
    return 2
