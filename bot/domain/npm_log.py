"""What a Release job's log says about npm's credentials: the lines its steps printed (not the
scripts GitHub echoes), the NPM_TOKEN warning, npm's refusals, and a publish that published
nothing. Pure: the log comes in as text, and none of it is ever quoted back."""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum

# Matched without the dash, which a workflow may print as "--" or "-".
_SKIP_MARK = "NPM_TOKEN secret not configured"
_LOG_TIMESTAMP = re.compile(r"^\ufeff?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ?")
_NPM_CODE = re.compile(
    r"\bnpm (?:ERR!|error) code (E[A-Z0-9]+)\b"
    # `changeset publish` runs `npm publish --json` and gives npm's code in its own words.
    r"|\b[Aa]n error occurred while publishing \S+: (E[A-Z0-9]+)\b"
)
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
"""A colour code, which a tool told to colour (npm's `--color always`, changesets' logger in
GitHub Actions) writes into the log between the words."""
_NEED_AUTH = re.compile(r"\bENEEDAUTH\b")
_TWO_FACTOR = re.compile(r"two-factor|\b2fa\b|one-time password|\bEOTP\b", re.IGNORECASE)
_NOTHING_PUBLISHED = "No unpublished projects to publish"
_PUBLISHED = "packages published successfully"
_PUBLISH_BRANCH = "attempting to publish any unpublished packages"
"""changesets/action taking its publish branch ("No changesets found. Attempting ..." or, in
older versions, "No changesets found, attempting ...")."""
_NOT_PUBLISHING = (
    "creating pull request",
    "updating found pull request",
    "All changesets are empty; not creating PR",
    "Not publishing because no publish script found",
)
"""changesets/action's branches that never run the publish: changesets still to version open
or update its "Version Packages" pull request; empty changesets or no publish script stop."""


class NpmError(StrEnum):
    """npm's refusal in the publish step's log, each with its own fix."""

    NEED_AUTH = "ENEEDAUTH"
    UNAUTHORIZED = "E401"
    TWO_FACTOR = "E403-2FA"
    FORBIDDEN = "E403"
    NOT_FOUND = "E404"


def output_lines(log: str) -> list[str]:
    """The lines a job's steps printed, without timestamps and without the `##[group]Run ...`
    blocks in which GitHub echoes each step's script (a script that *would* print the warning
    must not count as having printed it). A log kept from its end only may begin inside such
    a block: what comes before a first `##[endgroup]` met before any `##[group]` is left out."""
    lines: list[str] = []
    echo = False
    grouped = False
    for raw in log.splitlines():
        line = _COLOUR.sub("", _LOG_TIMESTAMP.sub("", raw, count=1))
        if line.startswith("##[group]"):
            echo = line.removeprefix("##[group]").startswith("Run ")
            grouped = True
            continue
        if line.startswith("##[endgroup]"):
            if not grouped:
                lines.clear()  # the block's start was cut off: it may have been a script
            echo = False
            grouped = True
            continue
        if not echo:
            lines.append(line)
    return lines


def printed_skip_warning(lines: Sequence[str]) -> bool:
    return any(_SKIP_MARK in line for line in lines)


def published_some(lines: Sequence[str]) -> bool:
    """The publish step's log shows packages published (changesets' own words)."""
    return _PUBLISHED in " ".join(lines)


def npm_error(lines: Sequence[str]) -> NpmError | None:
    """npm's first credential refusal in the log: ENEEDAUTH, E401, E403 (two-factor or not),
    E404; None when the log shows none of them."""
    for index, line in enumerate(lines):
        if _NEED_AUTH.search(line):
            return NpmError.NEED_AUTH
        match = _NPM_CODE.search(line)
        if match is None:
            continue
        code = match.group(1) or match.group(2)
        if code == "EOTP":
            return NpmError.TWO_FACTOR
        if code == "E401":
            return NpmError.UNAUTHORIZED
        if code == "E404":
            return NpmError.NOT_FOUND
        if code == "E403":
            # npm prints the registry's reason on the lines after the code.
            reason = " ".join(lines[index : index + 6])
            return NpmError.TWO_FACTOR if _TWO_FACTOR.search(reason) else NpmError.FORBIDDEN
    return None


def published_nothing(lines: Sequence[str]) -> bool:
    """The publish step published nothing, so the run shows nothing about what the token may
    do: `changeset publish` said every version is on npm already (it read npm without the
    token), or changesets/action took a branch that never publishes (the "Version Packages"
    pull request, with changesets still to version: most pushes to the branch)."""
    said = " ".join(lines)
    if _PUBLISHED in said:
        return False
    if _NOTHING_PUBLISHED in said:
        return True
    if _PUBLISH_BRANCH in said.lower():
        return False  # the publish branch: what publish printed decides, above
    return any(mark in said for mark in _NOT_PUBLISHING)
