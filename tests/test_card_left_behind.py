"""A card left behind its rollout: a replica saved the rollout and died before redrawing its
card (or a path saved without a durable redraw). Every click on that card was refused "This card
is out of date: ... Use the buttons on the updated card", and no updated card existed: the
release was stuck until someone typed a command. A click refused as out of date on a card
behind the stored rollout now draws the card again at the stored version, once, before the
answer. Signed Slack requests, the real app, the simulators."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from figures import passing_sandbox
from held_calls import hold_calls
from sandbox_views import button

from bot.bootstrap import create_app
from bot.domain.controls import CardRef, Control, effect_key
from bot.domain.rollout import Phase
from sandbox.config import RELEASE_CHANNEL
from sandbox.harness import CHARTS, Sandbox
from storage.claims import ClaimStore

pytestmark = pytest.mark.story

TAG = "v1.4.2"
LEASE = timedelta(seconds=1)
KILLED = "U0KILLED"
"""Who clicked on the replica that died."""


@asynccontextmanager
async def tag_pushed(
    tmp_path: Path, database_url: str, *, lease: timedelta | None
) -> AsyncIterator[Sandbox]:
    """The sandbox with the release tag pushed; a click's claim lasts `lease` (None: as by
    default)."""
    env = {} if lease is None else {"CLAIM_LEASE_SECONDS": str(int(lease.total_seconds()))}
    async with passing_sandbox(tmp_path, database_url=database_url, extra_env=env) as sandbox:
        sandbox.github.push_tag(TAG)
        yield sandbox


@pytest.fixture
async def box(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    async with tag_pushed(tmp_path, database_url, lease=LEASE) as sandbox:
        yield sandbox


@pytest.fixture
async def held(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    """Claims held as long as by default: one outlasts the test."""
    async with tag_pushed(tmp_path, database_url, lease=None) as sandbox:
        yield sandbox


def shown_version(box: Sandbox) -> int | None:
    """The version the card's Dispatch button was drawn at (None: the card shows none)."""
    value = button(box, "dispatch")
    return None if value is None else int(json.loads(value)["version"])


async def left_behind(box: Sandbox) -> int:
    """The preflight's card with its Dispatch; then a replica's click on it claimed the
    dispatch, saved the rollout (no redraw) and died, its claim never recorded and lapsed.
    Returns the version the card still shows."""
    await box.command(f"start {TAG} --flags-ready")
    await box.slack.wait_for(lambda: shown_version(box) is not None)
    rollout = await box.rollout()
    shown = shown_version(box)
    assert shown == rollout.version
    claims = ClaimStore(box.services.database.sessions, lease=LEASE)
    card = CardRef(rollout.id, version=shown)
    claimed = await claims.claim(
        key=effect_key(Control.DISPATCH, card),
        action=Control.DISPATCH.value,
        actor=KILLED,
        now=box.clock(),
        rollout_id=rollout.id,
    )
    assert claimed is not None
    saved = await box._store.save(rollout)  # as the dead replica did: no card in its outbox
    assert saved.version > shown
    await box.pass_time(LEASE * 2)
    assert shown_version(box) == shown, "nothing redrew the card"
    return shown


async def test_a_click_refused_on_a_card_left_behind_redraws_it_and_the_next_click_goes(
    box: Sandbox,
) -> None:
    shown = await left_behind(box)

    answer = await box.click("dispatch")

    assert answer is not None and "This card is out of date:" in answer, answer
    assert "could not record whether that was done" in answer, answer
    assert "Use the buttons on the updated card" in answer, answer
    stored = await box.rollout()
    await box.slack.wait_for(lambda: shown_version(box) == stored.version)
    assert shown_version(box) != shown
    assert len(box.slack.messages(RELEASE_CHANNEL)) == 1, "the card was posted again"
    assert box.github.dispatches == []

    assert await box.click("dispatch") is None
    await box.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert len(box.github.dispatches) == 1


@asynccontextmanager
async def served_replica(box: Sandbox) -> AsyncIterator[str]:
    """A second bot on the sandbox's database, clock and Slack, in this process, served on a
    port of its own: its base URL, for a click through it."""
    runner = web.AppRunner(create_app(box.settings(), clock=box.clock, charts=CHARTS))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_two_replicas_refusing_one_card_left_behind_draw_it_once_at_the_stored_version(
    box: Sandbox,
) -> None:
    """Two clicks on the same card left behind, through two replicas at once, both refused:
    neither saves, both draw the one card (never a second post) at the version stored."""
    await left_behind(box)
    stored = await box.rollout()
    card = box.card_message()
    async with served_replica(box) as other:
        answers = await asyncio.gather(box.click("dispatch"), box.click("dispatch", replica=other))
        for answer in answers:
            assert answer is not None and "This card is out of date:" in answer, answer
        await box.slack.wait_for(lambda: shown_version(box) == stored.version)
    assert (await box.rollout()).version == stored.version, "drawing the card saved the rollout"
    assert box.slack.messages(RELEASE_CHANNEL) == [card], "the card was posted again"
    assert box.github.dispatches == []


@asynccontextmanager
async def dispatch_held(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """The preflight's card with its Dispatch, clicked: the rollout saved as dispatching, and
    this bot's GitHub asked, its answer held until the block ends (then the rollout runs)."""
    await box.command(f"start {TAG} --flags-ready")
    await box.slack.wait_for(lambda: shown_version(box) is not None)
    held = hold_calls(monkeypatch, box.services.rollouts.effects.github, "dispatch")
    await box.click("dispatch", wait=False)
    await asyncio.wait_for(held.asked.wait(), timeout=30)
    try:
        yield
    finally:
        held.go_on.set()
    await box.wait_until(lambda r: r.phase is Phase.RUNNING)
    assert len(box.github.dispatches) == 1


async def test_a_dispatch_under_way_has_its_card_redraw_written_with_its_save(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dispatch saves the rollout as dispatching, then asks GitHub: the card's redraw was
    written only once GitHub answered, so a replica dying while it asked left the card offering
    Dispatch at the version before. The redraw is written with the save: any replica's outbox
    draws the card as dispatching (its run looked for, Link a run offered) while GitHub is
    asked."""
    async with dispatch_held(box, monkeypatch):
        # The outbox loop looks (not `pass_time`: the poller's look waits for the lock the
        # dispatch holds, so the loops it wakes do not all sleep again until GitHub answers).
        box.clock.advance(timedelta(seconds=10))
        await box.slack.wait_for(lambda: "· dispatching…" in box.card_message().rendered)
        assert shown_version(box) is None, box.card_message().rendered


async def test_a_run_linked_on_another_replica_while_github_is_asked_is_refused(
    held: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The card drawn as dispatching offers Link a run… while the dispatching replica still
    waits for GitHub (its lock holds on that replica only). A run linked through another
    replica then was followed (a run someone started by hand, here), not the run the
    dispatch started: the dispatch's own save came second. Now the link is refused while the
    dispatch's claim holds; the rollout follows the run GitHub answers with."""
    async with dispatch_held(held, monkeypatch), served_replica(held) as other:
        started = (await held.rollout()).created_at + timedelta(seconds=1)
        by_hand = held.github.create_foreign_run(actor="octo-release", created_at=started)
        answer = await held.command(f"link {by_hand}", replica=other)
        assert "asking GitHub to dispatch `v1.4.2` right now" in answer, answer
        assert "nothing was linked" in answer, answer
        assert (await held.rollout()).phase is Phase.DISPATCHING
    rollout = await held.rollout()
    assert rollout.run_id is not None and rollout.run_id != by_hand
