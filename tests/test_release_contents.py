"""What is in the release: the risk rules, pull requests read from merge and squash subjects,
the card's words and the modal's limits, the last released tag in the store, the simulator's
answers against GitHub's documented fields, and the preflight end to end in the sandbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cleared import ended_rollout
from sandbox_views import value_of
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.adapters.github.schema import CommitComparison
from bot.adapters.slack.contents_view import card_blocks, contents_modal, summary
from bot.adapters.slack.limits import VIEW_BLOCKS
from bot.domain.release_contents import (
    ComparedCommit,
    Comparison,
    LastRelease,
    PullRequest,
    ReleaseContents,
    Risk,
    RiskKind,
    Since,
    pull_requests,
    release_contents,
    risks,
)
from bot.domain.release_tag import nearest_tags, tag_family
from bot.domain.rollout import TrackState
from bot.plan_file import load_plan
from bot.services.records import NewAuditEvent
from bot.services.store_ports import Rollouts
from sandbox.config import RELEASE_MANAGER
from sandbox.harness import Sandbox
from storage.rollout_store import RolloutStore

PLAN = load_plan(None)
MIGRATION = "crates/relay/src/db/migrations/0002_add_index.sql"
WORKFLOW = ".github/workflows/deployment-strategy.yml"
PULLS = "https://github.com/scriptum/scriptum/pull"
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


# -- the risk rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ((), ()),
        (("README.md", "crates/relay/src/lib.rs"), ()),
        ((MIGRATION,), (Risk(RiskKind.MIGRATION, (MIGRATION,)),)),
        # The plan's migrations are *.sql directly in its directory: nothing else is one.
        (("crates/relay/src/db/migrations/README.md",), ()),
        (("crates/relay/src/db/migrations/old/0001.sql",), ()),
        (("other/migrations/0002.sql",), ()),
        ((WORKFLOW,), (Risk(RiskKind.WORKFLOW, (WORKFLOW,)),)),
        ((".github/workflows/release.yml",), ()),  # another workflow is not the one dispatched
        (
            (WORKFLOW, MIGRATION, "crates/relay/src/db/migrations/0003_more.sql"),
            (
                Risk(
                    RiskKind.MIGRATION,
                    (MIGRATION, "crates/relay/src/db/migrations/0003_more.sql"),
                ),
                Risk(RiskKind.WORKFLOW, (WORKFLOW,)),
            ),
        ),
    ],
)
def test_risk_rules(files: tuple[str, ...], expected: tuple[Risk, ...]) -> None:
    assert risks(files, PLAN) == expected


def test_the_risk_rules_follow_the_plans_migrations_and_workflow() -> None:
    data = PLAN.model_dump(mode="json", by_alias=True)
    data["preflight"]["migrations"]["directory"] = "db/migrate"
    data["preflight"]["migrations"]["pattern"] = "*.rb"
    data["workflow"]["file"] = "deploy.yml"
    plan = type(PLAN).model_validate(data)
    files = ("db/migrate/20261204_add.rb", MIGRATION, WORKFLOW, ".github/workflows/deploy.yml")
    assert risks(files, plan) == (
        Risk(RiskKind.MIGRATION, ("db/migrate/20261204_add.rb",)),
        Risk(RiskKind.WORKFLOW, (".github/workflows/deploy.yml",)),
    )


# -- pull requests from commit subjects ---------------------------------------------------------


def test_pull_requests_from_merge_and_squash_subjects_newest_first() -> None:
    commits = [
        ComparedCommit("a1", "Tidy the README", "ana"),
        ComparedCommit("b1", "Add an index on documents", "bo"),  # on the merged branch
        ComparedCommit(
            "m1",
            "Merge pull request #12 from bo/index\n\nAdd an index on documents",
            "release-manager",
            parents=("a1", "b1"),
        ),
        ComparedCommit("s1", "Faster sync for large files (#15)", "cy"),
        ComparedCommit("s2", 'Revert "Faster sync" (#15)', "cy"),  # the same number again
        ComparedCommit("m2", "Merge pull request #16 from dee/branch", None, parents=("s2", "x")),
        ComparedCommit("n1", "Merge branch 'main' into feature", "ana"),
    ]
    assert pull_requests(commits, PULLS) == (
        # No title in the body: the branch names it; the branch head is not listed: the merger.
        PullRequest(16, "dee/branch", None, f"{PULLS}/16"),
        PullRequest(15, 'Revert "Faster sync"', "cy", f"{PULLS}/15"),
        PullRequest(12, "Add an index on documents", "bo", f"{PULLS}/12"),
    )


def test_release_contents_say_when_github_listed_less_than_it_counted() -> None:
    since = LastRelease("v1.4.1", Since.GITHUB_RELEASE)
    listed = tuple(ComparedCommit(f"c{i}", f"Change {i} (#{i})", "ana") for i in range(250))
    files = tuple(f"src/file{i}.rs" for i in range(300))
    comparison = Comparison(
        total_commits=260,
        commits=listed,
        files=files,
        html_url="https://github.com/scriptum/scriptum/compare/v1.4.1...v1.4.2",
    )
    contents = release_contents(tag="v1.4.2", since=since, comparison=comparison, plan=PLAN)
    assert contents.commits_capped and contents.files_capped
    assert len(contents.pull_requests) == 250
    assert contents.pull_requests[0].url == f"{PULLS}/249"
    assert "260 commits, at least 250 pull requests* since `v1.4.1`" in summary(contents)
    small_print = json.dumps([b.to_dict() for b in card_blocks(contents)])
    assert (
        "GitHub lists only the newest 250 commits: "
        "the pull requests of the 10 older commits before them are not shown."
    ) in small_print
    assert "only 300 changed files and more changed" in small_print
    complete = replace(comparison, total_commits=250, files=files[:10])
    whole = release_contents(tag="v1.4.2", since=since, comparison=complete, plan=PLAN)
    assert not whole.commits_capped and not whole.files_capped


# -- the card's words and the modal ------------------------------------------------------------


def _contents(pulls: int, *, title: str = "Change") -> ReleaseContents:
    return ReleaseContents(
        tag="v1.4.2",
        since=LastRelease("v1.4.1", Since.ROLLOUT),
        total_commits=12,
        pull_requests=tuple(
            PullRequest(n, f"{title} {n}", "ana", f"{PULLS}/{n}") for n in range(pulls, 0, -1)
        ),
        risks=(Risk(RiskKind.MIGRATION, (MIGRATION,)), Risk(RiskKind.WORKFLOW, (WORKFLOW,))),
        compare_url="https://github.com/scriptum/scriptum/compare/v1.4.1...v1.4.2",
    )


def test_the_summary_counts_and_flags() -> None:
    assert summary(_contents(5)) == (
        "*12 commits, 5 pull requests* since `v1.4.1` · :warning: 1 migration"
        " · :warning: workflow file changed in these commits"
    )
    first = ReleaseContents(tag="v1.0.0")
    assert "the first release (no earlier release)" in summary(first)
    failed = ReleaseContents(tag="v1.4.2", unread="GitHub answered 502 (Server Error)")
    assert "could not be read (GitHub answered 502 (Server Error))" in summary(failed)


def test_rebase_merged_pull_requests_are_not_reported_as_none() -> None:
    commits = tuple(
        ComparedCommit(sha=f"{n:040x}", message=subject, author="dev")
        for n, subject in enumerate(["Add billing export", "Fix export rounding", "Docs"])
    )
    comparison = Comparison(
        total_commits=3,
        commits=commits,
        files=("src/export.py",),
        html_url="https://github.com/o/r/compare/v1.4.1...v1.4.2",
    )
    since = LastRelease("v1.4.1", Since.ROLLOUT)
    contents = release_contents(tag="v1.4.2", since=since, comparison=comparison, plan=PLAN)
    line = summary(contents)
    assert "0 pull requests" not in line, line
    assert line == (
        "*3 commits* since `v1.4.1` (no merged pull requests found in the commit subjects)"
    )
    modal = json.dumps(contents_modal(contents))
    assert "No merged pull requests found in the commit subjects" in modal
    assert "rebase merge" in modal


def test_a_workflow_change_says_it_was_read_between_the_tags_not_at_the_dispatched_ref() -> None:
    comparison = Comparison(
        total_commits=1,
        commits=(ComparedCommit("c1", "Wait longer (#9)", "cy"),),
        files=(WORKFLOW,),
        html_url="https://github.com/o/r/compare/v1.4.1...v1.4.2",
    )
    since = LastRelease("v1.4.1", Since.ROLLOUT)
    contents = release_contents(tag="v1.4.2", since=since, comparison=comparison, plan=PLAN)
    assert contents.workflow_ref == PLAN.workflow.ref == "main"
    runs_from = "(the dispatch runs it from `main`, not from the tag)"
    assert summary(contents).endswith(
        f":warning: workflow file changed in these commits {runs_from}"
    )
    modal = json.dumps(contents_modal(contents))
    assert f"`{WORKFLOW}` changed in these commits {runs_from}" in modal


def test_an_older_release_says_how_far_behind_it_is_not_zero_commits() -> None:
    since = LastRelease("v1.5.0", Since.ROLLOUT)
    taken_back = Comparison(
        total_commits=0,
        commits=(),
        files=(),
        html_url="https://github.com/scriptum/scriptum/compare/v1.5.0...v1.4.2",
        behind_by=7,
    )
    contents = release_contents(tag="v1.4.2", since=since, comparison=taken_back, plan=PLAN)
    assert summary(contents) == (
        ":warning: *What's in it*: `v1.4.2` is *7 commits behind* `v1.5.0`: releasing it "
        "takes out what those brought."
    )


def test_a_diverged_release_lists_what_it_brings_and_what_it_takes_out() -> None:
    # The last release's tag was force-pushed, or this one was cut from another branch: GitHub
    # answers `diverged`, ahead by 2 and behind by 3. The migration it brings is still flagged.
    since = LastRelease("v1.4.1", Since.ROLLOUT)
    diverged = Comparison(
        total_commits=2,
        commits=(
            ComparedCommit("a1", "Add an index (#47)", "bo"),
            ComparedCommit("a2", "Faster sync (#46)", "dee"),
        ),
        files=(MIGRATION,),
        html_url="https://github.com/scriptum/scriptum/compare/v1.4.1...v1.4.2",
        behind_by=3,
    )
    contents = release_contents(tag="v1.4.2", since=since, comparison=diverged, plan=PLAN)
    assert summary(contents) == (
        "*2 commits, 2 pull requests* since `v1.4.1` · :warning: 1 migration · :warning: "
        "*diverged*: `v1.4.1` has 3 commits that `v1.4.2` lacks (a force-push, or a tag from "
        "another branch): releasing it takes those out"
    )
    assert "#47" in json.dumps(contents_modal(contents))


def test_titles_are_escaped_for_mrkdwn() -> None:
    contents = replace(
        _contents(1),
        pull_requests=(PullRequest(7, "<!channel> & <https://evil|click>", "a<b", f"{PULLS}/7"),),
    )
    shown = json.dumps([b.to_dict() for b in card_blocks(contents)])
    assert "&lt;!channel&gt; &amp; &lt;https://evil|click&gt; by a&lt;b" in shown
    assert "<!channel>" not in shown


def test_the_modal_lists_every_pull_request_within_slacks_limits() -> None:
    view = contents_modal(_contents(250, title="A long title " * 20))
    assert len(view["blocks"]) <= VIEW_BLOCKS
    text = json.dumps(view)
    assert "#250>" in text and "#1>" in text  # all of them, packed into sections
    assert all(len(b["text"]["text"]) <= 3000 for b in view["blocks"] if b["type"] == "section")
    card = card_blocks(_contents(250))
    assert "… and 245 more" in json.dumps([b.to_dict() for b in card], ensure_ascii=False)


# -- the last released tag in the store ---------------------------------------------------------


async def _ended(
    store: Rollouts, tag: str, rollout_id: str, at: timedelta, *ends: TrackState
) -> None:
    """A rollout of `tag` ended `at` after NOW, its tracks in the states `ends`."""
    await ended_rollout(store, PLAN, tag=tag, rollout_id=rollout_id, at=NOW + at, ends=ends)


async def _completed(store: Rollouts, *tags: str, first: timedelta = timedelta(0)) -> None:
    """Rollouts of `tags` (ids r-1, r-2, ...) completed on every track, in this order, an hour
    apart from `first` after NOW."""
    done = TrackState.COMPLETED
    for n, tag in enumerate(tags):
        await _ended(store, tag, f"r-{n + 1}", first + timedelta(hours=n), done, done)


async def test_the_last_released_tag_is_the_newest_rollout_completed_on_every_track(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    store = RolloutStore(session_factory, clock=lambda: NOW)
    assert await store.last_released() is None
    await _completed(store, "v1.4.0", "v1.4.1", first=timedelta(hours=1))
    done = TrackState.COMPLETED
    await _ended(store, "v1.4.2", "r-3", timedelta(hours=3), TrackState.ROLLED_BACK, done)
    await _ended(store, "v1.4.3", "r-4", timedelta(hours=4), done, TrackState.HALTED)
    released = await store.last_released()
    assert released is not None and released.tag == "v1.4.1"


async def test_a_release_rolled_back_after_it_completed_is_not_the_last_released(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    # v1.4.1 completed, then Roll back put v1.4.0 back through the rollback workflow: v1.4.2
    # brings v1.4.1's changes again, so it is compared with v1.4.0, not with v1.4.1.
    store = RolloutStore(session_factory, clock=lambda: NOW)
    await _completed(store, "v1.4.0", "v1.4.1", first=timedelta(hours=1))
    rolled_back = await store.get("r-2")
    assert rolled_back is not None
    redeploy = NewAuditEvent(
        at=NOW + timedelta(hours=3),
        actor="U_ANN",
        action="redeploy",
        result="ok",
        rollout_id="r-2",
        track="relay",
        detail={"tag": "v1.4.0", "replaced_tag": "v1.4.1"},
    )
    await store.save(rolled_back, audit=[redeploy])
    released = await store.last_released()
    assert released is not None and released.tag == "v1.4.0"


# -- the simulator answers as GitHub documents --------------------------------------------------

COMPARISON_FIELDS = {
    "url", "html_url", "permalink_url", "diff_url", "patch_url", "base_commit",
    "merge_base_commit", "status", "ahead_by", "behind_by", "total_commits", "commits", "files",
}  # fmt: skip
COMMIT_FIELDS = {
    "url", "sha", "node_id", "html_url", "comments_url", "commit", "author", "committer",
    "parents",
}  # fmt: skip
GIT_COMMIT_FIELDS = {"url", "author", "committer", "message", "tree", "comment_count"}
FILE_FIELDS = {
    "sha", "filename", "status", "additions", "deletions", "changes", "blob_url", "raw_url",
    "contents_url",
}  # fmt: skip
RELEASE_FIELDS = {
    "url", "html_url", "assets_url", "upload_url", "tarball_url", "zipball_url", "id",
    "node_id", "tag_name", "target_commitish", "name", "body", "draft", "prerelease",
    "created_at", "published_at", "author", "assets",
}  # fmt: skip


def _history(box: Sandbox) -> None:
    """v1.4.1 released; then a squash with a migration, a merge that changes the workflow
    (two commits), five more squashes, a plain commit (nine commits); v1.4.2 tagged on top."""
    history = box.github.history
    history.commit("Initial import", at=NOW, author="ana")
    history.tag("v1.4.1")
    history.publish("v1.4.1", NOW)
    history.squash("Add an index on documents", 20, at=NOW, author="bo", files=(MIGRATION,))
    history.merge(
        "Wait for the canary <b>longer</b>",
        21,
        at=NOW,
        author="cy",
        merger="release-manager",
        files=(WORKFLOW,),
    )
    for number in range(22, 27):
        history.squash(f"Small fix {number}", number, at=NOW, author="dee", files=("a.rs",))
    history.commit("Bump the version", at=NOW, author="ana", files=("Cargo.toml",))
    history.tag("v1.4.2")


async def _get(box: Sandbox, path: str) -> tuple[int, Any]:
    headers = {"Authorization": f"token {box.github.token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{box.github.api_url}{path}", headers=headers) as answer,
    ):
        return answer.status, await answer.json()


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(workdir=tmp_path) as sandbox:
        yield sandbox


async def test_the_simulator_answers_compare_and_latest_release_with_githubs_fields(
    box: Sandbox,
) -> None:
    repo = f"/repos/{box.github.repository}"
    status, missing = await _get(box, f"{repo}/releases/latest")
    assert status == 404 and missing["message"] == "Not Found"
    _history(box)
    status, compared = await _get(box, f"{repo}/compare/v1.4.1...v1.4.2")
    assert status == 200
    assert compared.keys() >= COMPARISON_FIELDS
    assert compared["status"] == "ahead" and compared["ahead_by"] == 9
    assert compared["total_commits"] == len(compared["commits"]) == 9
    for commit in compared["commits"]:
        assert commit.keys() >= COMMIT_FIELDS
        assert commit["commit"].keys() >= GIT_COMMIT_FIELDS
    merge = compared["commits"][2]
    assert merge["commit"]["message"].startswith("Merge pull request #21 from cy/pr-21")
    assert [p["sha"] for p in merge["parents"]][1] == compared["commits"][1]["sha"]
    assert all(file.keys() >= FILE_FIELDS for file in compared["files"])
    assert {file["filename"] for file in compared["files"]} == {
        MIGRATION, WORKFLOW, "a.rs", "Cargo.toml",
    }  # fmt: skip
    assert (await _get(box, f"{repo}/compare/v1.4.1...v9.9.9"))[0] == 404
    status, backwards = await _get(box, f"{repo}/compare/v1.4.2...v1.4.1")
    taken_back = CommitComparison.model_validate(backwards).comparison()
    assert (taken_back.total_commits, taken_back.behind_by) == (0, 9)
    status, ref = await _get(box, f"{repo}/git/ref/tags/v1.4.1")
    assert status == 200 and ref.keys() >= {"ref", "node_id", "url", "object"}
    assert ref["ref"] == "refs/tags/v1.4.1" and ref["object"]["type"] == "commit"
    assert ref["object"]["sha"] == box.github.history.tags["v1.4.1"]
    assert (await _get(box, f"{repo}/git/ref/tags/v9.9.9"))[0] == 404
    status, release = await _get(box, f"{repo}/releases/latest")
    assert status == 200 and release.keys() >= RELEASE_FIELDS
    assert release["tag_name"] == "v1.4.1"


# -- the preflight end to end -------------------------------------------------------------------


async def test_the_preflight_card_shows_whats_in_the_release_and_lists_it_all(
    box: Sandbox,
) -> None:
    _history(box)
    await box.command("start v1.4.2 --flags-ready")

    shown = box.card_message().rendered
    assert (
        "*9 commits, 7 pull requests* since `v1.4.1` · :warning: 1 migration"
        " · :warning: workflow file changed in these commits"
        " (the dispatch runs it from `main`, not from the tag)"
    ) in shown
    assert "#26> Small fix 26 by dee" in shown
    assert "#21>" not in shown  # the card shows the newest five
    assert "… and 2 more" in shown
    assert "Compared with the repository's latest GitHub Release." in shown
    assert "[Dispatch]" in shown  # the contents inform; they never block
    stored = (await box.rollout()).preflight.contents
    assert stored is not None and stored.since == LastRelease("v1.4.1", Since.GITHUB_RELEASE)

    await box.click("show_contents", value=await value_of(box, "show_contents"))
    opened = await box.slack.wait_for_call("views.open")
    modal = json.dumps(opened[-1].args["view"])
    for number in range(20, 27):
        assert f"/pull/{number}|#{number}>" in modal
    assert "Wait for the canary &lt;b&gt;longer&lt;/b&gt; by cy" in modal
    assert "Add an index on documents by bo" in modal
    assert f"`{MIGRATION}`" in modal and f"`{WORKFLOW}`" in modal


async def test_a_release_over_250_commits_lists_the_newest_and_says_the_oldest_are_left_out(
    box: Sandbox,
) -> None:
    # GitHub's reference, "Compare two commits": without a paging parameter "the returned
    # list is limited to 250 commits, and the last commit in the list is the most recent of
    # the entire comparison". The pull requests left out are the oldest ten, not the newest.
    history = box.github.history
    history.commit("Initial import", at=NOW, author="ana")
    history.tag("v1.4.1")
    history.publish("v1.4.1", NOW)
    for number in range(1, 261):
        history.squash(f"Change {number}", number, at=NOW, author="dee", files=("a.rs",))
    history.tag("v1.4.2")
    repo = f"/repos/{box.github.repository}"
    status, compared = await _get(box, f"{repo}/compare/v1.4.1...v1.4.2")
    assert status == 200 and compared["total_commits"] == 260
    assert len(compared["commits"]) == 250
    assert compared["commits"][-1]["sha"] == history.tags["v1.4.2"]

    await box.command("start v1.4.2 --flags-ready")

    shown = box.card_message().rendered
    assert "*260 commits, at least 250 pull requests* since `v1.4.1`" in shown
    assert "#260> Change 260 by dee" in shown  # the newest pull request is on the card
    assert (
        "GitHub lists only the newest 250 commits: "
        "the pull requests of the 10 older commits before them are not shown."
    ) in shown
    stored = (await box.rollout()).preflight.contents
    assert stored is not None
    assert [pull.number for pull in stored.pull_requests] == list(range(260, 10, -1))


async def test_the_first_release_has_nothing_to_compare_with(box: Sandbox) -> None:
    await box.command("start v1.0.0 --flags-ready")

    shown = box.card_message().rendered
    assert "the first release (no earlier release)" in shown
    assert "[What's in it]" not in shown and "[Dispatch]" in shown
    assert not [r for r in box.github.requests if "/compare/" in r.path]


async def test_a_failed_comparison_never_blocks_and_re_check_reads_it(box: Sandbox) -> None:
    _history(box)
    box.github.fault_next("GET", "/repos/*/compare/*", "server_error", times=5)  # every retry

    await box.command("start v1.4.2 --flags-ready")

    shown = box.card_message().rendered
    assert (
        "the changes could not be read (GitHub answered 502 (Server Error)); "
        "Re-check to read them again."
    ) in shown
    assert "[Dispatch]" in shown and "[Re-check]" in shown and "[What's in it]" not in shown

    await box.click("recheck", value=await value_of(box, "recheck"))

    await box.slack.wait_for(lambda: "7 pull requests" in box.card_message().rendered)
    shown = box.card_message().rendered
    assert "[Re-check]" not in shown and "[What's in it]" in shown


async def test_the_card_compares_with_the_last_release_the_bot_completed(box: Sandbox) -> None:
    _history(box)
    box.github.history.publish("v1.4.2", NOW)  # GitHub's latest release is not asked for
    await _completed(box.services.rollouts.effects.store, "v1.4.1")

    await box.command("start v1.4.2 --flags-ready")

    shown = box.card_message().rendered
    assert "*9 commits, 7 pull requests* since `v1.4.1`" in shown
    assert "Compared with the last release the bot completed on every track." in shown
    assert not [r for r in box.github.requests if r.path.endswith("/releases/latest")]


async def test_the_comparison_starts_at_the_commit_released_not_where_its_tag_was_moved(
    box: Sandbox,
) -> None:
    # v1.4.1 was released at its first commit, then its tag re-pointed two commits later
    # (`git tag -f v1.4.1 && git push -f`): those two never went out, and v1.4.2 brings them.
    history = box.github.history
    history.commit("Initial import", at=NOW, author="ana")
    released = history.head
    history.squash("Add an index on documents", 20, at=NOW, author="bo", files=(MIGRATION,))
    history.squash("Small fix", 21, at=NOW, author="dee", files=("a.rs",))
    history.tag("v1.4.1")
    history.squash("Faster sync", 22, at=NOW, author="cy", files=("b.rs",))
    history.tag("v1.4.2")
    store = box.services.rollouts.effects.store
    await _completed(store, "v1.4.1")
    live = await store.get("r-1")
    assert live is not None and released is not None
    await store.save(replace(live, preflight=replace(live.preflight, tag_commit=released)))

    await box.command("start v1.4.2 --flags-ready")

    shown = box.card_message().rendered
    assert "*3 commits, 3 pull requests* since `v1.4.1` · :warning: 1 migration" in shown
    assert "#20> Add an index on documents by bo" in shown
    [compared] = [r.path for r in box.github.requests if "/compare/" in r.path]
    assert compared.endswith(f"/compare/{released}...{history.tags['v1.4.2']}")


async def test_a_deleted_tag_of_the_last_release_is_compared_from_its_released_commit(
    box: Sandbox,
) -> None:
    _history(box)
    history = box.github.history
    released = history.tags.pop("v1.4.1")  # deleted after its release
    store = box.services.rollouts.effects.store
    await _completed(store, "v1.4.1")
    live = await store.get("r-1")
    assert live is not None
    await store.save(replace(live, preflight=replace(live.preflight, tag_commit=released)))

    await box.command("start v1.4.2 --flags-ready")

    shown = box.card_message().rendered
    assert "*9 commits, 7 pull requests* since `v1.4.1`" in shown
    assert "gone" not in shown


async def test_a_released_commit_github_no_longer_has_is_compared_from_its_tag(
    box: Sandbox,
) -> None:
    # The repository's history was rewritten after v1.4.1 went out (a leaked secret filtered
    # out, every tag pushed again) and GitHub purged the old commits: the commit kept with the
    # release is unknown (404), its tag is there, at the rewritten commit. Compared from the
    # tag, as before the commit was kept; not "the changes could not be read" at each Re-check.
    _history(box)
    store = box.services.rollouts.effects.store
    await _completed(store, "v1.4.1")
    live = await store.get("r-1")
    assert live is not None
    purged = "0badc0de" * 5
    await store.save(replace(live, preflight=replace(live.preflight, tag_commit=purged)))

    await box.command("start v1.4.2 --flags-ready")

    shown = box.card_message().rendered
    assert "*9 commits, 7 pull requests* since `v1.4.1`" in shown, shown
    assert "could not be read" not in shown, shown
    head = box.github.history.tags["v1.4.2"]
    compared = [r.path.rpartition("/")[2] for r in box.github.requests if "/compare/" in r.path]
    assert compared == [f"{purged}...{head}", f"v1.4.1...{head}"], compared


async def test_the_release_live_started_again_brings_nothing_new(box: Sandbox) -> None:
    # v1.4.2 completed on every track and is live: started again, it brings nothing, not
    # the changes since v1.4.1 that are already in production.
    _history(box)
    await _completed(box.services.rollouts.effects.store, "v1.4.1", "v1.4.2")

    await box.command("start v1.4.2 --flags-ready")

    shown = box.card_message().rendered
    assert (
        "*What's in it*: nothing new. `v1.4.2` is the release live now (the last the bot "
        "completed on every track): the same release, so no change is compared."
    ) in shown
    assert "since `v1.4.1`" not in shown and "pull request" not in shown
    assert not [r for r in box.github.requests if "/compare/" in r.path]
    stored = (await box.rollout()).preflight.contents
    assert stored is not None and stored.nothing_new

    await box.click("show_contents", value=await value_of(box, "show_contents"))
    opened = await box.slack.wait_for_call("views.open")
    modal = json.dumps(opened[-1].args["view"])
    assert "nothing new" in modal and "/pull/" not in modal


async def test_the_release_live_started_again_after_its_tag_moved_brings_what_it_moved_over(
    box: Sandbox,
) -> None:
    # v1.4.2 went out at its first commit; its tag was then re-pointed two commits later
    # (`git tag -f v1.4.2 && git push -f`). Started again, it ships those two commits: not
    # "nothing new, the same release".
    history = box.github.history
    history.commit("Initial import", at=NOW, author="ana")
    history.tag("v1.4.1")
    history.squash("Faster sync", 20, at=NOW, author="cy", files=("b.rs",))
    released = history.head
    history.squash("Add an index on documents", 21, at=NOW, author="bo", files=(MIGRATION,))
    history.squash("Small fix", 22, at=NOW, author="dee", files=("a.rs",))
    history.tag("v1.4.2")
    store = box.services.rollouts.effects.store
    await _completed(store, "v1.4.1", "v1.4.2")
    live = await store.get("r-2")
    assert live is not None and released is not None
    await store.save(replace(live, preflight=replace(live.preflight, tag_commit=released)))

    await box.command("start v1.4.2 --flags-ready")

    shown = box.card_message().rendered
    assert "nothing new" not in shown, shown
    assert "*2 commits, 2 pull requests* since `v1.4.2` · :warning: 1 migration" in shown, shown
    assert (
        f":warning: `v1.4.2` was moved after it was released at `{released[:7]}`: these are "
        "the commits it was moved over, which never went out"
    ) in shown, shown
    [compared] = [r.path for r in box.github.requests if "/compare/" in r.path]
    assert compared.endswith(f"/compare/{released}...{history.tags['v1.4.2']}")
    stored = (await box.rollout()).preflight.contents
    assert stored is not None and not stored.nothing_new


async def test_a_deleted_tag_of_the_last_release_falls_back_to_the_release_before_it(
    box: Sandbox,
) -> None:
    _history(box)
    history = box.github.history
    history.tags["v1.4.0"] = history.tags.pop("v1.4.1")  # v1.4.1's tag deleted
    await _completed(box.services.rollouts.effects.store, "v1.4.0", "v1.4.1")

    await box.command("start v1.4.2 --flags-ready")

    shown = box.card_message().rendered
    assert "*9 commits, 7 pull requests* since `v1.4.0`" in shown
    assert (
        ":warning: the tag of the last release, `v1.4.1`, is gone from GitHub: compared with "
        "`v1.4.0`, an earlier release, so what `v1.4.1` brought (already live) is counted too"
    ) in shown
    assert "Re-check" not in shown and "[What's in it]" in shown


async def test_a_deleted_tag_with_no_earlier_release_says_so_and_what_to_do(
    box: Sandbox,
) -> None:
    _history(box)
    sha = box.github.history.tags.pop("v1.4.1")  # the only release's tag deleted
    await _completed(box.services.rollouts.effects.store, "v1.4.1")

    await box.command("start v1.4.2 --flags-ready")

    shown = box.card_message().rendered
    assert (
        "the tag `v1.4.1` of the last release is gone from GitHub (deleted), and no earlier "
        "release's tag is there to compare `v1.4.2` with. Push the tag back to the commit it "
        "named (`git push origin &lt;commit&gt;:refs/tags/v1.4.1`), then Re-check"
    ) in shown
    assert "Re-check to read them again" not in shown and "[Dispatch]" in shown

    box.github.history.tags["v1.4.1"] = sha  # pushed back
    await box.click("recheck", value=await value_of(box, "recheck"))
    await box.slack.wait_for(lambda: "7 pull requests" in box.card_message().rendered)
    assert "since `v1.4.1`" in box.card_message().rendered


async def test_a_typo_d_tag_is_answered_to_the_starter_alone_and_starts_nothing(
    box: Sandbox,
) -> None:
    """`/rollout start v1.4.x`: the bot posted a public preflight card for a tag GitHub does
    not have (its checks and contents unread), for the whole channel to see and cancel."""
    _history(box)

    answer = await box.command("start v1.4.x --flags-ready")

    assert "GitHub has no tag `v1.4.x`" in answer, answer
    assert "nothing was started" in answer
    assert "`v1.4.2`" in answer and "`v1.4.1`" in answer  # the nearest tags
    assert box.slack.calls_to("chat.postMessage") == []
    assert await box.rollouts() == []
    trail = await box.audit.list_for_actor(RELEASE_MANAGER)
    assert [e.result for e in trail] == ["tag_not_found"]


def test_a_typo_d_tag_s_family_and_nearest_tags() -> None:
    assert (tag_family("v1.4.x"), tag_family("v2-rc"), tag_family("latest")) == (
        "v1.4.",
        "v2-",
        "l",
    )
    tags = ["v1.4.0", "v1.4.1", "v1.4.2", "v1.4.10"]
    assert nearest_tags("v1.4.x", tags)[:1] in (["v1.4.0"], ["v1.4.1"], ["v1.4.2"])
    assert nearest_tags("v1.4.12", tags)[0] in ("v1.4.1", "v1.4.2", "v1.4.10")
    assert nearest_tags("release-candidate", tags) == []


async def test_a_typo_d_tag_is_refused_when_its_nearest_tags_cannot_be_listed(
    box: Sandbox,
) -> None:
    """GitHub said the tag is not there (404), then refused the list of its neighbours: the
    card of a tag GitHub does not have went up for the whole channel all the same, the
    suggestions' failure taken for GitHub not answering whether the tag exists."""
    _history(box)
    body = {"message": "Resource not accessible by integration", "status": "403"}
    box.github.fail_next("GET", "/repos/*/git/matching-refs/*", 403, body)

    answer = await box.command("start v1.4.x --flags-ready")

    assert "GitHub has no tag `v1.4.x`" in answer and "nothing was started" in answer, answer
    assert "Did you mean" not in answer
    assert box.slack.calls_to("chat.postMessage") == []
    assert await box.rollouts() == []


async def test_a_start_is_not_refused_when_the_repository_itself_answers_404(
    box: Sandbox,
) -> None:
    """A 404 to the tag and to the list of tags is the repository the bot cannot see (a
    token without access), not a typo: the preflight goes on and its checks say so."""
    _history(box)
    box.github.fail_next("GET", "/repos/*/git/ref/tags/*", 404)
    box.github.fail_next("GET", "/repos/*/git/matching-refs/*", 404)

    answer = await box.command("start v1.4.2 --flags-ready")

    assert "GitHub has no tag" not in answer, answer
    assert len(await box.rollouts()) == 1
