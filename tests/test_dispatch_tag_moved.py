"""A person's Dispatch looks at the release tag first: the preflight keeps the commit it read
the tag at, and a tag force-pushed between the card and the click is refused, naming both
commits (before, the click dispatched the workflow with the tag's name, which released a commit
nobody had preflighted). Signed Slack requests, the real app, the simulators."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from figures import passing_sandbox
from sandbox_views import button

from bot.domain.rollout import CheckState, Phase
from sandbox import github_json as shapes
from sandbox.config import RELEASE_MANAGER
from sandbox.github_runs import commit_sha
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story

TAG = "v1.4.2"
MOVED = commit_sha("v1.4.2 moved")


@pytest.fixture
async def box(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with passing_sandbox(tmp_path, database_url=database_url) as sandbox:
        sandbox.github.push_tag(TAG)
        yield sandbox


async def ready(box: Sandbox) -> None:
    """The preflight of TAG, every check clear, its Dispatch button on the card."""
    await box.command(f"start {TAG} --flags-ready")
    await box.slack.wait_for(lambda: "[Dispatch]" in box.card_message().rendered)
    rollout = await box.rollout()
    assert rollout.preflight.tag_commit == commit_sha(TAG)
    assert "[Re-check]" not in box.card_message().rendered  # nothing unread, nothing moved


async def dispatches_once(box: Sandbox) -> None:
    """Dispatch, once the card shows it, goes: the workflow dispatched once."""
    await box.slack.wait_for(lambda: "[Dispatch]" in box.card_message().rendered)
    assert await box.click("dispatch") is None
    await box.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert len(box.github.dispatches) == 1


async def test_a_tag_moved_since_the_preflight_refuses_the_dispatch(box: Sandbox) -> None:
    await ready(box)
    box.github.push_tag(TAG, at=MOVED)

    answer = await box.click("dispatch")

    assert answer is not None and f"`{TAG}` was moved since its preflight" in answer, answer
    assert commit_sha(TAG)[:12] in answer and MOVED[:12] in answer, answer
    assert "nothing was dispatched" in answer, answer
    assert box.github.dispatches == []
    assert (await box.rollout()).phase is Phase.PREFLIGHT
    refused = [e for e in await box.audit.list_for_actor(RELEASE_MANAGER) if e.action == "dispatch"]
    assert [e.result for e in refused] == ["refused"]


async def test_a_refused_dispatch_offers_re_check_which_reads_the_moved_tag(
    box: Sandbox,
) -> None:
    """The refusal offered only to Cancel and start again: with every check clear, the card had
    no Re-check, so a moved tag could not be read again without losing the preflight."""
    await ready(box)
    box.github.push_tag(TAG, at=MOVED)
    answer = await box.click("dispatch")
    assert answer is not None and "click Re-check on the card" in answer, answer
    await box.slack.wait_for(lambda: "[Re-check]" in box.card_message().rendered)
    shown = box.card_message().rendered
    assert f"Dispatch found `{TAG}` at `{MOVED[:12]}`" in shown, shown

    assert await box.click("recheck") is None

    await box.slack.wait_for(lambda: "now points at another commit" in box.card_message().rendered)
    rollout = await box.rollout()
    assert rollout.preflight.tag_commit == MOVED
    assert rollout.preflight.flags.state is CheckState.PENDING
    shown = box.card_message().rendered
    assert f"`{commit_sha(TAG)[:12]}` → `{MOVED[:12]}`" in shown, shown
    assert "[Re-check]" not in shown and "[Dispatch]" not in shown, shown
    assert await box.click("confirm_flags") is None
    await dispatches_once(box)


async def test_a_preflight_started_again_reads_the_moved_tag_and_dispatches(
    box: Sandbox,
) -> None:
    """What the refusal also offers: Cancel, start the tag again; its new preflight reads the
    tag where it is now, and Dispatch goes."""
    await ready(box)
    box.github.push_tag(TAG, at=MOVED)
    answer = await box.click("dispatch")
    assert answer is not None and "Cancel this preflight" in answer, answer
    await box.click("cancel_preflight")
    await box.wait_until(lambda r: r.phase is Phase.ENDED)

    await box.command(f"start {TAG} --flags-ready")
    started = await box.wait_until(lambda r: r.phase is Phase.PREFLIGHT)
    assert started.preflight.tag_commit == MOVED
    await dispatches_once(box)


async def test_a_tag_gone_since_the_preflight_refuses_the_dispatch(box: Sandbox) -> None:
    await ready(box)
    box.github.history.tags.pop(TAG)
    box.github.history.tags["v0.0.1"] = MOVED  # another tag: the repository knows tags

    answer = await box.click("dispatch")

    assert answer is not None and "gone from GitHub" in answer, answer
    assert box.github.dispatches == []


async def test_github_not_saying_where_the_tag_is_dispatches_nothing(box: Sandbox) -> None:
    await ready(box)
    box.github.fail_next("GET", "/repos/*/git/ref/tags/*", 502, times=10_000)

    answer = await box.click("dispatch")

    assert answer is not None and f"Could not check that `{TAG}` is still at" in answer, answer
    assert "Nothing was dispatched" in answer, answer
    assert box.github.dispatches == []
    assert (await box.rollout()).phase is Phase.PREFLIGHT
    assert "[Re-check]" not in box.card_message().rendered  # not known to have moved

    box.github.clear_failures()
    await dispatches_once(box)


async def test_a_tag_still_where_the_preflight_read_it_dispatches(box: Sandbox) -> None:
    await ready(box)
    await dispatches_once(box)


async def test_a_tag_the_preflight_could_not_follow_still_dispatches(
    tmp_path: Path, database_url: str
) -> None:
    """A tag of a tag too deep for the bot to follow: its preflight kept no commit, so there
    is nothing to compare at the click, and asking GitHub again answers the same. Before, each
    click was refused forever, "click Dispatch again once GitHub answers" (and the Dispatch of
    a rollout an older version preflighted was refused while GitHub failed, for nothing)."""
    async with passing_sandbox(tmp_path, database_url=database_url) as box:
        box.github.push_tag(TAG, annotated=True, levels=5)
        await box.command(f"start {TAG} --flags-ready")
        await box.slack.wait_for(lambda: "[Dispatch]" in box.card_message().rendered)
        assert (await box.rollout()).preflight.tag_commit is None

        await dispatches_once(box)


async def test_a_tag_still_gone_after_its_re_check_refuses_the_dispatch(box: Sandbox) -> None:
    """A Re-check that found the tag deleted kept "" (no such tag) with the flags asked for
    again; once they were confirmed, Dispatch compared "" with "" and dispatched a tag GitHub
    did not have (its run then failed on GitHub)."""
    await ready(box)
    box.github.history.tags.pop(TAG)
    box.github.history.tags["v0.0.1"] = MOVED  # another tag: the repository knows tags
    assert "gone from GitHub" in (await box.click("dispatch") or "")
    await box.slack.wait_for(lambda: "[Re-check]" in box.card_message().rendered)
    # The migrations folder read as not there (a plain Not Found): no check blocks.
    box.github.fail_next("GET", "/repos/*/contents/*", 404, shapes.error("Not Found", 404))
    assert await box.click("recheck") is None
    await box.wait_until(lambda r: r.preflight.tag_commit == "" and r.preflight.moved_to is None)
    assert await box.click("confirm_flags") is None
    await box.wait_until(lambda r: r.preflight.flags.state is CheckState.PASS)

    answer = await box.click("dispatch")

    assert answer is not None and f"`{TAG}` is not on GitHub" in answer, answer
    assert "nothing was dispatched" in answer and "click Re-check" in answer, answer
    assert box.github.dispatches == []
    assert (await box.rollout()).phase is Phase.PREFLIGHT
    await box.slack.wait_for(lambda: "[Re-check]" in box.card_message().rendered)
    assert f"Dispatch found `{TAG}` gone from GitHub" in box.card_message().rendered

    box.github.push_tag(TAG)  # pushed again: Re-check reads it, the starter confirms, it goes
    assert await box.click("recheck") is None
    await box.wait_until(lambda r: r.preflight.tag_commit == commit_sha(TAG))
    assert await box.click("confirm_flags") is None
    await dispatches_once(box)


async def test_a_tag_deleted_and_pushed_back_where_it_was_asks_for_the_flags_and_takes_them(
    box: Sandbox,
) -> None:
    """A Re-check that found the tag gone, then one that found it pushed back at the commit the
    starter had confirmed, asked for the flags again; their confirmation was refused as already
    done by the first one (its claim was once per commit), and Dispatch stayed blocked."""
    await box.command(f"start {TAG}")
    await box.slack.wait_for(lambda: "[Feature flags validated]" in box.card_message().rendered)
    assert await box.click("confirm_flags") is None
    await box.slack.wait_for(lambda: "[Dispatch]" in box.card_message().rendered)
    box.github.history.tags.pop(TAG)
    box.github.history.tags["v0.0.1"] = MOVED  # another tag: the repository knows tags
    assert "gone from GitHub" in (await box.click("dispatch") or "")
    await box.slack.wait_for(lambda: "[Re-check]" in box.card_message().rendered)
    assert await box.click("recheck") is None
    await box.wait_until(lambda r: r.preflight.tag_commit == "")
    await box.slack.wait_for(lambda: "[Re-check]" in box.card_message().rendered)
    box.github.push_tag(TAG)  # pushed back where it was: the flags are asked for again
    assert await box.click("recheck") is None
    rechecked = await box.wait_until(lambda r: r.preflight.tag_commit == commit_sha(TAG))
    assert rechecked.preflight.flags.state is CheckState.PENDING

    assert await box.click("confirm_flags") is None

    await box.wait_until(lambda r: r.preflight.flags.state is CheckState.PASS)
    await dispatches_once(box)


async def test_a_dispatch_github_refused_redraws_the_card_at_the_rollouts_version(
    box: Sandbox,
) -> None:
    """A Dispatch GitHub refused saved the rollout twice (dispatching, then back in its
    preflight) and left the card at the version before: once a later click on it left its claim
    unrecorded (its replica killed), every click after was refused as out of date, for good (a
    chaos run in App mode). The card now carries the version the rollout is at, and goes."""
    await ready(box)
    box.github.fail_next(
        "POST",
        "/repos/*/actions/workflows/*/dispatches",
        403,
        shapes.error("Resource not accessible by integration", 403),
    )
    answer = await box.click("dispatch")
    assert answer is not None and "Resource not accessible" in answer, answer
    rollout = await box.rollout()
    assert rollout.phase is Phase.PREFLIGHT

    def shown_version() -> int | None:
        value = button(box, "dispatch")
        return None if value is None else json.loads(value)["version"]

    await box.slack.wait_for(lambda: shown_version() == rollout.version)
    await dispatches_once(box)
