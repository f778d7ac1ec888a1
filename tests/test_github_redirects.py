"""A repository renamed or transferred while the bot knows it by its former name: GitHub keeps
answering the old name by redirect, 301 to a read and 307 to a write, which is to be repeated
verbatim at `Location` (docs.github.com/rest/using-the-rest-api/best-practices-for-using-the-
rest-api, "Follow any redirects that the API sends you"). The sandbox's `rename` does so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sandbox_views import begun, dispatched, value_of
from test_github_gateway import (  # noqa: F401 - fixtures
    CANARY,
    INPUTS,
    clock,
    dispatch,
    gateway,
    gh,
    statuses,
)
from test_protection_rules import answers, app_box

from bot.adapters.github.gateway import PyGithubGateway
from bot.domain.errors import GitHubError
from bot.domain.rollout import StageState
from sandbox.config import REPOSITORY
from sandbox.github import GitHubSimulator

RENAMED = "scriptum/scriptum-editor"


async def test_an_approval_at_a_renamed_repositorys_former_name_is_applied_at_its_new_one(
    gh: GitHubSimulator,  # noqa: F811
    gateway: PyGithubGateway,  # noqa: F811
) -> None:
    run_id = await dispatch(gateway)
    gh.rename(RENAMED)

    approved = await gateway.review(
        run_id=run_id, environments=["relay-canary-5"], state="approved", comment="go"
    )

    assert approved is True
    [review] = gh.reviews
    assert (review.environments, review.state) == (("relay-canary-5",), "approved")
    assert [r.status for r in gh.requests if r.method == "POST"][-2:] == [307, 200]
    assert (await gateway.snapshot(run_id)).jobs[CANARY].succeeded


async def test_a_dispatch_at_a_renamed_repositorys_former_name_starts_one_run_there(
    gh: GitHubSimulator,  # noqa: F811
    gateway: PyGithubGateway,  # noqa: F811
) -> None:
    gh.rename(RENAMED)

    run_id = await dispatch(gateway)

    [recorded] = gh.dispatches
    assert recorded.run_id == run_id
    assert recorded.inputs == INPUTS
    assert (await gateway.snapshot(run_id)).is_waiting("relay-canary-5")


async def test_a_write_redirected_where_the_bot_does_not_follow_is_refused_never_applied(
    gh: GitHubSimulator,  # noqa: F811
    gateway: PyGithubGateway,  # noqa: F811
) -> None:
    run_id = await dispatch(gateway)
    gh.fail_next(
        "POST",
        "/repos/*/actions/runs/*/pending_deployments",
        307,
        {"message": "Moved Permanently", "url": "https://elsewhere.example/x"},
    )

    with pytest.raises(GitHubError, match="307"):
        await gateway.review(
            run_id=run_id, environments=["relay-canary-5"], state="approved", comment="go"
        )

    assert gh.reviews == []


@pytest.mark.story  # GitHub's redirect is the point; the database only keeps the rollout
async def test_the_apps_answer_at_a_renamed_repositorys_former_name_is_applied_at_its_new_one(
    tmp_path: Path, database_url: str
) -> None:
    """App mode: the rule's callback is posted at the name the bot knows; GitHub's 307 is
    followed, so the request is answered (closing it on a 307 would hold the stage forever)."""
    async with app_box(tmp_path, database_url) as box:
        await dispatched(box)
        await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.HOLDING)
        promote = await value_of(box, "promote", "relay")
        box.github.rename(RENAMED)

        assert await box.click("promote", value=promote) is None

        await begun(box, "relay", "half")
        assert answers(box, "relay-rollout-50") == [("relay-rollout-50", "approved")]
        assert [
            r.status
            for r in box.github.requests
            if r.method == "POST" and r.path.endswith("/deployment_protection_rule")
        ][-2:] == [307, 204]
        # The next stage asks after the rename: GitHub names the repository anew in the
        # request, and the bot knows it by its id.
        await box.github.settle()
        [asked] = [
            d
            for d in box.github.app_hook.deliveries
            if d.event == "deployment_protection_rule"
            and json.loads(d.body)["environment"] == "relay-rollout-100"
        ]
        assert json.loads(asked.body)["repository"]["full_name"] == RENAMED
        assert asked.result == "followed"


# -- temporary redirections and error pages (GitHub's REST docs, "HTTP redirects") ---------------


async def test_a_read_redirected_temporarily_is_read_again_where_github_said(
    gh: GitHubSimulator,  # noqa: F811
    gateway: PyGithubGateway,  # noqa: F811
) -> None:
    run_id = await dispatch(gateway)
    gh.redirect_next("GET", f"/repos/{REPOSITORY}/actions/runs/{run_id}", 307)

    snapshot = await gateway.snapshot(run_id)

    assert snapshot.is_waiting("relay-canary-5")
    assert statuses(gh, "GET", f"/repos/{REPOSITORY}/actions/runs/{run_id}")[-2:] == [307, 200]


async def test_a_review_redirected_with_302_is_repeated_verbatim_and_applied(
    gh: GitHubSimulator,  # noqa: F811
    gateway: PyGithubGateway,  # noqa: F811
) -> None:
    run_id = await dispatch(gateway)
    gh.redirect_next("POST", "/repos/*/actions/runs/*/pending_deployments", 302)

    approved = await gateway.review(
        run_id=run_id, environments=["relay-canary-5"], state="approved", comment="go"
    )

    assert approved is True
    [review] = gh.reviews
    assert (review.environments, review.comment) == (("relay-canary-5",), "go")
    path = f"/repos/{REPOSITORY}/actions/runs/{run_id}/pending_deployments"
    assert statuses(gh, "POST", path) == [302, 200]


async def test_an_error_page_that_is_not_json_is_githubs_error_not_a_crash(
    gh: GitHubSimulator,  # noqa: F811
    gateway: PyGithubGateway,  # noqa: F811
) -> None:
    run_id = await dispatch(gateway)
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    gh.fail_next_with_text("GET", f"/repos/*/actions/runs/{run_id}/jobs", 502, page, times=5)

    with pytest.raises(GitHubError, match="502"):
        await gateway.snapshot(run_id)

    assert (await gateway.snapshot(run_id)).is_waiting("relay-canary-5")


async def test_a_review_whose_read_of_the_waits_is_redirected_is_applied(
    gh: GitHubSimulator,  # noqa: F811
    gateway: PyGithubGateway,  # noqa: F811
) -> None:
    run_id = await dispatch(gateway)
    path = f"/repos/{REPOSITORY}/actions/runs/{run_id}/pending_deployments"
    gh.redirect_next("GET", path, 307)

    assert await gateway.review(
        run_id=run_id, environments=["relay-canary-5"], state="approved", comment=""
    )

    assert statuses(gh, "GET", path) == [307, 200]
    assert [r.environments for r in gh.reviews] == [("relay-canary-5",)]
