"""The GitHub gateway against the simulator's variation mode (`sandbox/github_variation.py`):
pages of two whatever `per_page` asks (GitHub caps it and links the rest: "Using pagination
in the REST API"), lists in other orders, unknown fields, nullable fields null, header names
lower-cased. What the bot reads must not depend on the simulator's regular answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from test_github_gateway import START, WORKFLOW, open_gateway

from bot.adapters.github.gateway import PyGithubGateway
from sandbox.clock import ManualClock
from sandbox.config import GITHUB_TOKEN, REPOSITORY
from sandbox.github import GitHubSimulator
from sandbox.github_variation import UNKNOWN_FIELD, GitHubVariation

KILL_SWITCH = "Desktop/CLI kill-switch"


@pytest.fixture
async def varied() -> AsyncIterator[GitHubSimulator]:
    variation = GitHubVariation()
    clock = ManualClock(START)
    async with GitHubSimulator(clock=clock, token=GITHUB_TOKEN, variation=variation) as sim:
        yield sim


@pytest.fixture
async def gateway(varied: GitHubSimulator) -> AsyncIterator[PyGithubGateway]:
    gateway = open_gateway(varied)
    yield gateway
    await gateway.close()


async def test_the_variation_pages_reorders_and_adds_fields(varied: GitHubSimulator) -> None:
    """The simulator's side: what the variation changes, within what GitHub documents."""
    run_id = varied.create_foreign_run()
    regular = [job.name for job in varied.runs[run_id].jobs]
    url = f"{varied.api_url}/repos/{REPOSITORY}/actions/runs/{run_id}/jobs?per_page=100"
    headers = {"Authorization": f"token {GITHUB_TOKEN}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as first:
        body = await first.json()
        raw_names = {name for name, _ in first.raw_headers}
    assert len(body["jobs"]) == 2 and body["total_count"] == len(regular)
    assert b"link" in raw_names and b"Link" not in raw_names
    assert 'rel="next"' in first.headers["Link"] and 'rel="last"' not in first.headers["Link"]
    assert [job["name"] for job in body["jobs"]] == list(reversed(regular[:2]))
    assert all(UNKNOWN_FIELD in job and job["workflow_name"] is None for job in body["jobs"])


async def test_a_tag_on_a_later_page_of_the_package_versions_is_found(
    varied: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    """Three versions, two a page: the third's tag is on the second page, which `Link`
    names although the first page was shorter than the 100 asked for."""
    varied.images["relay"] = {"v1.4.0", "v1.4.1", "v1.4.2"}
    assert await gateway.image_published(package="relay", tag="v1.4.2") is True
    assert await gateway.image_published(package="relay", tag="v1.5.0") is False


async def test_a_job_on_a_later_page_of_the_runs_jobs_is_found_by_name(
    varied: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    run_id = varied.create_foreign_run()
    job = await gateway.release_job(run_id=run_id, name=KILL_SWITCH)
    assert job is not None and job.name == KILL_SWITCH


async def test_a_second_run_of_ours_on_a_later_page_keeps_the_search_ambiguous(
    varied: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    """Three runs of the bot's account since the dispatch, the newest cancelled: two are
    candidates, one on each page. Reading the first page alone would take the one there
    (another person's run, perhaps): the search must see both and take neither."""
    older, middle, newest = (
        varied.create_foreign_run(actor="release-bot", created_at=START + timedelta(seconds=n))
        for n in (1, 2, 3)
    )
    varied.engine.cancel(newest)

    found = await gateway.find_dispatched_run(
        workflow_file=WORKFLOW, ref="main", dispatched_at=START
    )

    assert found is None
    runs = await gateway.dispatched_runs(workflow_file=WORKFLOW, ref="main", dispatched_at=START)
    assert {run.run_id for run in runs} == {older, middle}


async def test_every_job_of_a_renamed_repositorys_run_is_read_once(
    varied: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    """After a rename GitHub answers the former name 301, which PyGithub follows without the
    query: `page=2` there would be the first page again. The next page is asked at the
    address the answer's `Link` gives, under the new name: every job, each page once."""
    run_id = varied.create_foreign_run()
    varied.rename("scriptum/scriptum-editor")

    snapshot = await gateway.snapshot(run_id)

    names = [job.name for job in varied.runs[run_id].jobs]
    assert set(snapshot.jobs) == set(names)
    asked = [r for r in varied.requests if r.path.endswith(f"/runs/{run_id}/jobs")]
    pages = (len(names) + 1) // 2
    assert len(asked) == pages + 1  # the first one redirected (301), then each page


async def test_the_latest_release_run_is_the_newest_whatever_the_order(
    varied: GitHubSimulator, gateway: PyGithubGateway
) -> None:
    """GitHub's reference promises no order for a workflow's runs; the variation lists them
    oldest first, and its `Link` names no last page: the latest run is the one created last,
    on the page the `next` links lead to in the end, not the first listed."""
    created = [
        varied.create_foreign_run(
            workflow="release.yml", event="push", created_at=START + timedelta(minutes=n)
        )
        for n in range(5)
    ]
    latest = await gateway.latest_run(workflow_file="release.yml")
    assert latest is not None and latest.run_id == created[-1]
