"""The house's layer contracts (import-linter, run by `make lint`) catch an import against them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("bot", "handlers", "storage", "sandbox")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )


@pytest.fixture
def copy_of_the_house(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_house_keeps_its_layers(copy_of_the_house: Path) -> None:
    done = _lint(copy_of_the_house)
    assert done.returncode == 0, done.stdout
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "back_import", "contract"),
    [
        ("bot/domain/gate.py", "import storage.db", "domain is pure"),
        ("bot/services/gating.py", "import bot.adapters.slack.messages", "services use"),
        ("handlers/home.py", "import storage.timers", "handlers are thin"),
        ("bot/adapters/slack/views.py", "import bot.adapters.github.runs", "adapters do not know"),
        ("storage/timers.py", "import handlers.home", "storage knows the domain"),
        ("bot/adapters/slack/views.py", "import bot.wiring", "adapters are leaves"),
    ],
)
def test_an_import_against_the_layers_fails_the_lint(
    copy_of_the_house: Path, module: str, back_import: str, contract: str
) -> None:
    path = copy_of_the_house / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{back_import}\n", encoding="utf-8")
    done = _lint(copy_of_the_house)
    assert done.returncode == 1, done.stdout
    broken = [line for line in done.stdout.splitlines() if " BROKEN" in line]
    assert any(line.startswith(contract) for line in broken), done.stdout


SLACK_MENTION = re.compile(r"<[@#]|slack\.com/archives")
"""Slack's mrkdwn for a person (`<@U123>`) or a channel (`<#C123>`), or a link to a message."""


def test_the_domain_and_the_services_never_write_slack_mentions() -> None:
    """A person or a channel an answer names is rendered at the Slack edge (the services' `Words`
    port: `person`, `channel`, `message_link`), so only the edge knows Slack's syntax for them."""
    written = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for room in ("bot/domain", "bot/services")
        for path in sorted((REPO / room).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if SLACK_MENTION.search(line)
    ]
    assert written == [], "\n".join(written)
