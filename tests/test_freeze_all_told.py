"""`/rollout freeze --all` and `unfreeze --all` tell every other release channel (docs/freezes.md,
"Every service at once"): one notice a channel, written with the holds, posted once across a
crash, a retry and two replicas; a channel that refuses the bot is told to the asker instead.
The store and the outbox on SQLite and PostgreSQL; the command end to end in the sandbox
(relay and billing-api release in RELEASE_CHANNEL, search in SEARCH_CHANNEL)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import pytest
from test_freeze_all import box, outbox_emptied  # noqa: F401 - fixture
from test_outbox import CHANNEL, Scene, scene, slack  # noqa: F401 - fixtures
from test_services import SEARCH_CHANNEL

from bot.domain.freeze import LANE_FREEZE, LaneHold
from bot.domain.freeze_all import elsewhere, frozen_elsewhere, unfrozen_elsewhere
from bot.services import outbox_messages, outbox_send
from bot.services.outbox_messages import LANES, lanes_notice
from bot.services.records import NewAuditEvent, NewMessage
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox
from storage.lane_holds import LaneHoldStore

SEARCH, DOCS = "C0SEARCH01", "C0DOCS0001"
CHANNELS = elsewhere(
    [("relay", (CHANNEL,)), ("billing-api", (CHANNEL,)), ("search", (SEARCH,)), ("docs", (DOCS,))],
    CHANNEL,
)


def fine(asked: LaneHold, *_: LaneHold) -> NewAuditEvent:
    """Each service's audit event, as written (not what these tests look at)."""
    return NewAuditEvent(at=asked.since, actor=asked.actor, action="command:freeze", result="ok")


async def frozen_every_lane(world: Scene) -> list[LaneHold]:
    """`/rollout freeze --all` typed in CHANNEL, as `FreezeAll` stores it: the holds, their
    events and the notices to SEARCH and DOCS in one transaction. Nothing posts them: the
    replica that wrote them dies here."""
    now = world.clock()
    until = now + timedelta(hours=2)
    asked = [
        LaneHold(LANE_FREEZE, "U1", "INC-9 outage", now, until, service=name)
        for name in ("relay", "billing-api", "search", "docs")
    ]

    def told(stored: list[LaneHold]) -> list[NewMessage]:
        notices = frozen_elsewhere(CHANNELS, CHANNEL, asked, stored)
        return [lanes_notice(channel, notice) for channel, notice in notices.items()]

    return await LaneHoldStore(world.sessions).take_all(asked, fine, now=now, told=told)


def posted(world: Scene, channel: str) -> list[str]:
    return [message.text for message in world.slack.messages(channel)]


async def test_a_freeze_that_cannot_be_saved_tells_nobody(
    scene: Scene,  # noqa: F811
) -> None:
    now = scene.clock()
    asked = [LaneHold(LANE_FREEZE, "U1", "x", now, now + timedelta(hours=1), service="search")]

    def broken(*_: LaneHold) -> NewAuditEvent:
        raise RuntimeError("the database went away")

    def told(stored: list[LaneHold]) -> list[NewMessage]:
        notices = frozen_elsewhere(CHANNELS, CHANNEL, asked, stored)
        return [lanes_notice(channel, notice) for channel, notice in notices.items()]

    with pytest.raises(RuntimeError):
        await LaneHoldStore(scene.sessions).take_all(asked, broken, now=now, told=told)
    assert await scene.store.pending() == []


async def test_a_crash_after_the_freeze_still_tells_each_channel_once(
    scene: Scene,  # noqa: F811
) -> None:
    """The replica that froze every lane died before posting: the notices were written with
    the freeze, and two other replicas deliver them side by side, each channel's once, even
    when Slack's answer to a post is lost (the retry finds it by its marker)."""
    await frozen_every_lane(scene)
    scene.slack.lose_next_answer("chat.postMessage")

    await scene.deliver_all([scene.replica("b"), scene.replica("c")])

    for channel, service in ((SEARCH, "search"), (DOCS, "docs")):
        (notice,) = posted(scene, channel)
        assert "<@U1> froze deploys of every service until" in notice, notice
        assert f"`/rollout freeze --all` in <#{CHANNEL}>" in notice and "INC-9 outage" in notice
        assert f"refused for `{service}`;" in notice
    assert posted(scene, CHANNEL) == []  # the channel typed in has the answer
    assert await scene.store.pending() == []


async def test_a_freeze_of_every_lane_is_left_to_the_newer_replicas_by_a_d6098d4_one(
    scene: Scene,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rolling upgrade: a replica of d6098d4, whose outbox is this one's without the kind
    (`KINDS` and the delivery of LANES: nothing else there changed since), claims a notice
    first. It does not post it nor give it up: it gives it back, no attempt counted, and a
    replica of this version posts it."""
    await frozen_every_lane(scene)
    with monkeypatch.context() as old:
        old.setattr(outbox_messages, "KINDS", outbox_messages.KINDS - {LANES})
        old.setattr(outbox_send, "LANES", "not a kind d6098d4 has")
        with caplog.at_level(logging.WARNING, logger="bot.services"):
            assert await scene.replica("old").deliver_due() == 0
        waiting = await scene.store.pending()
        assert [(m.kind, m.attempts) for m in waiting] == [(LANES, 0), (LANES, 0)]
        assert "messages of kind 'freeze_all' are due: left to a newer version's replicas" in [
            record.getMessage() for record in caplog.records
        ]

    scene.clock.advance(outbox_messages.LEFT_TO_NEWER)
    await scene.deliver_all([scene.replica("new")])
    assert [len(posted(scene, channel)) for channel in (SEARCH, DOCS)] == [1, 1]


async def test_an_unfreeze_tells_the_channels_whose_freeze_it_lifted(
    scene: Scene,  # noqa: F811
) -> None:
    """Typed in SEARCH, lifting relay's and docs' freezes (billing-api's stays): CHANNEL and
    DOCS are told, each of its own service."""
    await frozen_every_lane(scene)
    channels = elsewhere(
        [("relay", (CHANNEL,)), ("billing-api", (CHANNEL,)), ("search", (SEARCH,))], SEARCH
    )
    channels[DOCS] = ("docs",)

    def told(removed: list[LaneHold]) -> Sequence[NewMessage]:
        notices = unfrozen_elsewhere(channels, SEARCH, "U2", removed)
        return [lanes_notice(channel, notice) for channel, notice in notices.items()]

    await LaneHoldStore(scene.sessions).release_all(
        LANE_FREEZE, ["relay", "docs"], fine, now=scene.clock(), told=told
    )
    await scene.deliver_all([scene.replica("a")])

    (relay,) = posted(scene, CHANNEL)
    assert "<@U2> lifted the freeze of `relay` (by <@U1>: INC-9 outage)" in relay, relay
    assert f"(`/rollout unfreeze --all` in <#{SEARCH}>)" in relay
    assert "lifted the freeze of `docs` (by <@U1>" in posted(scene, DOCS)[-1]
    assert "billing-api" not in relay
    assert len(posted(scene, SEARCH)) == 1  # the freeze's notice: the unfreeze was typed there


# -- end to end ------------------------------------------------------------------------------


async def test_freeze_all_tells_the_other_release_channel_once_and_unfreeze_all_too(
    box: Sandbox,  # noqa: F811
) -> None:
    said = await box.command("freeze --all 2h INC-9 payments outage")
    assert f"Telling <#{SEARCH_CHANNEL}> too" in said, said
    await outbox_emptied(box)

    said = await box.command("unfreeze --all")
    assert f"Telling <#{SEARCH_CHANNEL}> too" in said, said
    await outbox_emptied(box)

    froze, lifted = (message.rendered for message in box.slack.messages(SEARCH_CHANNEL))
    assert f"<@{RELEASE_MANAGER}> froze deploys of every service until" in froze, froze
    assert "INC-9 payments outage" in froze and f"<#{RELEASE_CHANNEL}>" in froze
    assert "refused for `search`;" in froze
    assert f"<@{RELEASE_MANAGER}> lifted the freeze of `search`" in lifted, lifted
    answers = [message.text for message in box.slack.messages(RELEASE_CHANNEL)]
    assert len(answers) == 2 and all("Telling" in answer for answer in answers)  # no notice


async def test_a_channel_the_bot_is_not_in_is_told_to_the_asker_not_retried(
    box: Sandbox,  # noqa: F811
) -> None:
    box.slack.shut_out[SEARCH_CHANNEL] = "not_in_channel"

    said = await box.command("freeze --all 2h INC-9 payments outage")
    # Said before the notice is posted: it does not claim the channel was told.
    assert f"Told in <#{SEARCH_CHANNEL}>" not in said, said
    assert f"Telling <#{SEARCH_CHANNEL}> too (a channel that refuses" in said, said

    def refused() -> list[str]:
        found = box.slack.ephemerals(user=RELEASE_MANAGER, channel=RELEASE_CHANNEL)
        return [e.rendered for e in found if e.via == "chat.postEphemeral"]

    await box.slack.wait_for(lambda: bool(refused()))
    (told,) = refused()
    assert f"<#{SEARCH_CHANNEL}> was not told of your `/rollout freeze --all`" in told, told
    assert "`not_in_channel`" in told and "/invite" in told
    await outbox_emptied(box)
    tries = [
        call
        for call in box.slack.calls_to("chat.postMessage")
        if call.args.get("channel") == SEARCH_CHANNEL
    ]
    assert len(tries) == 1
