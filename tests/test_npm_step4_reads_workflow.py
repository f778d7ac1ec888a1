"""Step 4 (and 5) of the NPM_TOKEN walkthrough read the release workflow themselves: a job that
publishes with npm trusted publishing only is worded for as soon as the walkthrough is drawn,
and judged as such by *Check last Release run*, without *Check secret* first. End to end
(signed Slack requests, the real app, PyGithub against the GitHub simulator)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_npm_environment import OIDC_ONLY, RELEASE_FILE
from test_npm_token import assert_no_token_reached_slack, open_walkthrough, press, step

from bot.adapters.slack.npm_views import NpmAction
from sandbox.harness import Sandbox


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(workdir=tmp_path) as sandbox:
        yield sandbox
        assert_no_token_reached_slack(sandbox)


async def test_step_4_is_worded_for_trusted_publishing_when_drawn(box: Sandbox) -> None:
    """Before, step 4 asked for the validate step's pass without the NPM_TOKEN warning until
    *Check secret* had read the workflow."""
    box.github.files["main"][RELEASE_FILE] = OIDC_ONLY
    message = await open_walkthrough(box)
    shown = step(message, 4)
    assert "publish with npm trusted publishing?" in shown
    assert "NPM_TOKEN warning" not in shown


async def test_a_token_job_is_worded_as_before(box: Sandbox) -> None:
    message = await open_walkthrough(box)
    assert "pass without the NPM_TOKEN warning" in step(message, 4)


async def test_check_last_run_reads_the_workflow_as_it_is_now(box: Sandbox) -> None:
    """The workflow moved to trusted publishing after the walkthrough was drawn: *Check last
    Release run* reads it again and judges the run by its publish step."""
    message = await open_walkthrough(box)
    assert "NPM_TOKEN warning" in step(message, 4)
    box.github.files["main"][RELEASE_FILE] = OIDC_ONLY
    box.github.create_foreign_run(workflow="release.yml", event="push", actor="octocat")
    shown = await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until="trusted publish")
    assert "secrets.NPM_TOKEN" not in shown


async def test_check_last_run_reads_a_workflow_moved_back_to_the_token(box: Sandbox) -> None:
    """Step 3 found the job publishing with trusted publishing only; the workflow then went
    back to `NPM_TOKEN` (none is set): *Check last Release run* reads it again and says to
    create the token. Before, step 3's older check kept step 4 worded for trusted publishing
    (its ENEEDAUTH sent the team to npm's trusted publisher settings)."""
    token_workflow = box.github.files["main"][RELEASE_FILE]
    box.github.files["main"][RELEASE_FILE] = OIDC_ONLY
    message = await open_walkthrough(box)
    await press(box, message, NpmAction.CHECK_SECRET, number=3, until="is not needed")
    box.github.files["main"][RELEASE_FILE] = token_workflow
    box.github.create_foreign_run(workflow="release.yml", event="push", actor="octocat")
    shown = await press(box, message, NpmAction.CHECK_LAST_RUN, number=4, until=":x: failed")
    assert "create the token and add the secret (steps 1 and 2)" in shown
    assert "trusted publish" not in shown
