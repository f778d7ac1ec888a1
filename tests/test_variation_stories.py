"""A handful of end-to-end stories again, with Slack and GitHub in their variation modes
(`sandbox/github_variation.py`, `sandbox/slack_variation.py`): short pages linked by `Link`,
lists in other orders, unknown fields, nullable fields null, lower-cased headers, a 429 on
each Slack method's first call, warnings. The stories are the ones of their own files, run
unchanged: only the doubles' answers differ, within what GitHub's and Slack's docs allow.
SQLite only, to keep the cost small; `SANDBOX_VARIATION=1 pytest tests/test_x.py` runs any
other story file so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from figures import passing_sandbox
from test_desktop_track import (
    test_a_crashing_beta_ring_trips_the_kill_switch_while_the_relay_goes_on as kill_switch,
)
from test_npm_token import test_a_clean_run_passes_every_check as npm_clean_run
from test_protection_rules import app_box
from test_protection_rules import (
    test_every_stage_held_by_the_rule_runs_to_100_percent as every_stage_by_the_rule,
)
from test_relay_rollout import (
    test_the_pass_path_reaches_100_percent_with_approvals_in_order as relay_pass_path,
)

from sandbox.harness import Sandbox

pytestmark = pytest.mark.story


@pytest.fixture(autouse=True)
def variation(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every sandbox of the test answers in the variation modes."""
    monkeypatch.setenv("SANDBOX_VARIATION", "1")
    yield


async def test_the_relay_pass_path(tmp_path: Path, sqlite_database_url: str) -> None:
    async with passing_sandbox(tmp_path, database_url=sqlite_database_url) as box:
        assert box.variation
        await relay_pass_path(box)


async def test_a_crashing_beta_ring_trips_the_kill_switch(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    await kill_switch(tmp_path, sqlite_database_url)


async def test_every_stage_held_by_the_app_s_rule(tmp_path: Path, sqlite_database_url: str) -> None:
    async with app_box(tmp_path, sqlite_database_url) as box:
        await every_stage_by_the_rule(box)


async def test_the_npm_token_walkthrough_on_a_clean_run(tmp_path: Path) -> None:
    async with Sandbox(workdir=tmp_path) as box:
        await npm_clean_run(box)
