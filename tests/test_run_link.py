"""The rules of linking a run by hand (`bot.domain.run_link`), table-driven and without I/O:
how a run is named, which rollouts wait for a run, and which rule refuses a run."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.adapters.slack.mrkdwn import as_typed
from bot.domain.errors import InvalidCommand
from bot.domain.rollout import (
    Check,
    CheckState,
    Phase,
    Preflight,
    Rollout,
    begin_dispatch,
    new_rollout,
)
from bot.domain.run_link import (
    LinkableRun,
    RunReference,
    link_refusal,
    may_link,
    parse_run_reference,
    reference_refusal,
)
from bot.plan_file import load_plan

PLAN = load_plan(None)
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
SITE = "https://github.test"
PAGE = f"{SITE}/scriptum/scriptum/actions/runs"


def rollout() -> Rollout:
    return new_rollout(
        rollout_id="r-1",
        tag="v1.4.2",
        channel_id="C1",
        started_by="U1",
        plan=PLAN,
        preflight=Preflight(
            flags=Check(CheckState.PASS, confirmed_by="U1"),
            migrations=Check(CheckState.PASS),
            image=Check(CheckState.PASS),
        ),
        now=T0,
    )


def run(**changes: object) -> LinkableRun:
    made = LinkableRun(
        run_id=7001,
        html_url=f"{PAGE}/7001",
        workflow_path=".github/workflows/deployment-strategy.yml",
        head_branch="main",
        status="in_progress",
        created_at=T0 + timedelta(minutes=1),
        event="workflow_dispatch",
    )
    return replace(made, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "reference"),
    [
        ("7001", RunReference(7001)),
        (f"{PAGE}/7001", RunReference(7001, SITE, "scriptum/scriptum")),
        (f"{PAGE}/7001/", RunReference(7001, SITE, "scriptum/scriptum")),
        (f"{PAGE}/7001/attempts/2", RunReference(7001, SITE, "scriptum/scriptum")),
        # Where a person reading the run copies its address from: a job's page, a query, a tab.
        (f"{PAGE}/7001/job/5", RunReference(7001, SITE, "scriptum/scriptum")),
        (f"{PAGE}/7001?check_suite_focus=true", RunReference(7001, SITE, "scriptum/scriptum")),
        (f"{PAGE}/7001?pr=12#summary", RunReference(7001, SITE, "scriptum/scriptum")),
        (f"{PAGE}/7001/job/5#step:4:12", RunReference(7001, SITE, "scriptum/scriptum")),
        (
            "https://GHE.example:8443/a/b/actions/runs/9",
            RunReference(9, "https://ghe.example:8443", "a/b"),
        ),
    ],
)
def test_a_run_is_named_by_its_number_or_its_page(text: str, reference: RunReference) -> None:
    assert parse_run_reference(text) == reference


def test_a_page_slack_sent_as_a_link_is_a_run_once_the_slack_edge_read_it() -> None:
    sent = f"<{PAGE}/7001>"  # `/rollout link https://...` as Slack may send it
    assert parse_run_reference(as_typed(sent)) == RunReference(7001, SITE, "scriptum/scriptum")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0",
        "-5",
        "12a",
        "run 12",
        "ftp://github.test/a/b/actions/runs/1",
        f"{PAGE}/7001/attempts/0",
        f"{PAGE}/7001/job/0",
        f"{PAGE}/7001/jobs/5",
        f"{SITE}/scriptum/scriptum/pull/12",
        f"{SITE}/scriptum/actions/runs/12",
        "https://user:secret@github.test/a/b/actions/runs/1",
        "https://[github.test/a/b/actions/runs/1",
    ],
)
def test_anything_else_is_not_a_run(text: str) -> None:
    with pytest.raises(InvalidCommand, match="is not a run") as refused:
        parse_run_reference(text)
    assert "secret" not in refused.value.message  # credentials typed in a URL are not repeated


@given(st.text(max_size=80))
def test_parsing_never_fails_otherwise(text: str) -> None:
    try:
        reference = parse_run_reference(text)
    except InvalidCommand as error:
        assert error.message.count("`") % 2 == 0  # the quote of the text cannot be broken
    else:
        assert reference.run_id > 0


def test_only_a_rollout_waiting_for_its_run_may_be_linked() -> None:
    fresh = rollout()
    dispatching = begin_dispatch(fresh, now=T0)
    assert not may_link(fresh)
    assert may_link(dispatching)
    assert may_link(replace(fresh, gave_up_at=T0))
    assert not may_link(replace(dispatching, phase=Phase.RUNNING, run_id=1))
    assert not may_link(replace(fresh, phase=Phase.ENDED, gave_up_at=T0))


def test_a_url_of_another_repository_is_refused_before_github_is_asked() -> None:
    assert reference_refusal(RunReference(1), "scriptum/scriptum") is None
    assert (
        reference_refusal(RunReference(1, SITE, "Scriptum/Scriptum"), "scriptum/scriptum") is None
    )
    refused = reference_refusal(RunReference(1, SITE, "someone/fork"), "scriptum/scriptum")
    assert refused is not None and "`someone/fork`" in refused


OTHER = replace(rollout(), id="r-0", tag="v1.4.1")


@pytest.mark.parametrize(
    ("reference", "named", "followed_by", "rule"),
    [
        (RunReference(7001), run(), None, None),
        (RunReference(7001, SITE, "scriptum/scriptum"), run(), None, None),
        (
            RunReference(7001),
            run(workflow_path=".github/workflows/deployment-strategy.yml@refs/heads/main"),
            None,
            None,
        ),
        (
            RunReference(7001, "https://github.com", "scriptum/scriptum"),
            run(),
            None,
            "is on `https://github.com`",
        ),
        (
            RunReference(7001),
            run(workflow_path=".github/workflows/release.yml"),
            None,
            "is of `release.yml`",
        ),
        (
            RunReference(7001),
            run(head_branch="hotfix"),
            None,
            "runs on `hotfix`, not on the plan's ref `main`",
        ),
        (
            RunReference(7001),
            run(event="pull_request"),
            None,
            "was started by `pull_request`, not dispatched",
        ),
        (
            RunReference(7001),
            run(created_at=T0 - timedelta(seconds=1)),
            None,
            "created before the preflight",
        ),
        (RunReference(7001), run(created_at=T0), None, None),
        (RunReference(7001), run(status="completed"), None, "has already completed"),
        (RunReference(7001), run(), OTHER, "already followed by the rollout of `v1.4.1`"),
        (RunReference(7001), run(), rollout(), None),
    ],
)
def test_each_rule_refuses_in_one_line(
    reference: RunReference, named: LinkableRun, followed_by: Rollout | None, rule: str | None
) -> None:
    refused = link_refusal(rollout(), PLAN, reference, named, followed_by=followed_by)
    if rule is None:
        assert refused is None
    else:
        assert refused is not None and rule in refused and "\n" not in refused


@pytest.mark.parametrize(
    ("event", "is_the_tags"),
    [
        # GitHub's "Events that trigger workflows": GITHUB_SHA is the ref's (the tag's) commit.
        ("push", True),
        ("create", True),
        ("release", True),
        ("workflow_dispatch", True),
        ("deployment", True),
        ("deployment_status", True),
        ("registry_package", True),
        # The merge commit, the base branch's, the default branch's: not what head_sha says.
        ("pull_request", False),
        ("pull_request_review", False),
        ("pull_request_target", False),
        ("workflow_run", False),
        ("merge_group", False),
        # The default branch's last commit: a run of theirs is never on a tag.
        ("schedule", False),
        ("repository_dispatch", False),
        # Not a run's event: a reusable workflow runs under its caller's.
        ("workflow_call", False),
        ("dynamic", False),
        ("", False),
    ],
)
def test_only_a_run_of_its_refs_own_commit_can_be_a_tags_release(
    event: str, is_the_tags: bool
) -> None:
    """A run named as the tag at the tag's commit is its release only when its event runs the
    ref's own commit: a pull request's reports its head's sha but runs a merge with its base."""
    at_tag = run(head_branch="v1.4.2", head_sha="a" * 40, event=event)
    assert at_tag.runs_commit("a" * 40) is is_the_tags
    assert at_tag.runs_commit("b" * 40) is False
    assert at_tag.runs_commit(None) is False
