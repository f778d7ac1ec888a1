"""requirements.lock (the image's dependencies with their hashes, written by `make lock`) against
pyproject.toml: a dependency added to pyproject.toml but not locked, locked at a version
pyproject.toml no longer allows, or still locked for the bot after pyproject.toml dropped it
fails here, before an image is built from a stale lock. No network: both files are read as
they are."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
PINNED = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")
FOR_THE_BOT = "rollout-bot (pyproject.toml)"
"""How the lock's `# via` comment names a dependency pyproject.toml asks for itself."""


@dataclass(frozen=True)
class Pin:
    version: Version
    for_the_bot: bool
    """pyproject.toml asks for it (not only another locked package)."""


def pins(lock: str) -> dict[NormalizedName, Pin]:
    """Each locked package: an entry starts at the margin, its hashes and `# via` lines indented."""
    found: dict[NormalizedName, Pin] = {}
    for entry in re.split(r"\n(?=[^\s#])", lock):
        pinned = PINNED.match(entry)
        if pinned is not None:
            found[canonicalize_name(pinned["name"])] = Pin(
                Version(pinned["version"]), FOR_THE_BOT in entry
            )
    return found


def image_extras() -> list[str]:
    """The extras `make lock` locks with the dependencies (those the image installs)."""
    return re.findall(r"--extra (\S+)", (ROOT / "Makefile").read_text(encoding="utf-8"))


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def disagreements(project: dict[str, Any], lock: str, extras: list[str]) -> list[str]:
    """What `make lock` would change in `lock` for `project`, one line each."""
    listed = project["project"]["dependencies"] + [
        dependency
        for extra in extras
        for dependency in project["project"]["optional-dependencies"][extra]
    ]
    wanted = [Requirement(dependency) for dependency in listed]
    locked = pins(lock)
    found = []
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        pin = locked.get(name)
        if pin is None:
            found.append(f"{requirement}: in pyproject.toml, not in requirements.lock")
        elif not pin.for_the_bot:
            found.append(
                f"{requirement}: in pyproject.toml, in requirements.lock only as another"
                " package's dependency"
            )
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            found.append(f"{requirement}: requirements.lock pins {name} {pin.version}")
    asked = {canonicalize_name(requirement.name) for requirement in wanted}
    found.extend(
        f"{name} {pin.version}: locked for the bot, no longer in pyproject.toml"
        for name, pin in locked.items()
        if pin.for_the_bot and name not in asked
    )
    return found


def lock() -> str:
    return LOCK.read_text(encoding="utf-8")


def test_the_lock_holds_what_pyproject_asks_for_and_nothing_it_dropped() -> None:
    found = disagreements(pyproject(), lock(), image_extras())
    assert found == [], "requirements.lock is stale, run `make lock`:\n" + "\n".join(found)
    assert pins(lock())["matplotlib"].for_the_bot  # the `charts` extra the image installs


def test_a_dependency_added_to_pyproject_but_not_locked_is_named() -> None:
    project = pyproject()
    transitive = next(name for name, pin in pins(lock()).items() if not pin.for_the_bot)
    project["project"]["dependencies"] += ["left-out-of-the-lock>=1", transitive]
    assert disagreements(project, lock(), image_extras()) == [
        "left-out-of-the-lock>=1: in pyproject.toml, not in requirements.lock",
        f"{transitive}: in pyproject.toml, in requirements.lock only as another package's"
        " dependency",
    ]


def test_a_dependency_dropped_from_pyproject_but_still_locked_for_the_bot_is_named() -> None:
    project = pyproject()
    (dateutil,) = [
        dependency
        for dependency in project["project"]["dependencies"]
        if dependency.startswith("python-dateutil")
    ]
    project["project"]["dependencies"].remove(dateutil)
    pinned = pins(lock())["python-dateutil"].version
    assert disagreements(project, lock(), image_extras()) == [
        f"python-dateutil {pinned}: locked for the bot, no longer in pyproject.toml"
    ]


def test_a_pin_outside_the_range_pyproject_asks_for_is_named() -> None:
    project = pyproject()
    pinned = pins(lock())["slack-bolt"].version
    dependencies = project["project"]["dependencies"]
    (bolt,) = [
        index
        for index, dependency in enumerate(dependencies)
        if dependency.startswith("slack-bolt")
    ]
    dependencies[bolt] = f"slack-bolt>{pinned}"
    assert disagreements(project, lock(), image_extras()) == [
        f"slack-bolt>{pinned}: requirements.lock pins slack-bolt {pinned}"
    ]
