"""A refusal's reason is kept as data: nothing the bot stores carries Slack markup (a mention,
a channel link, a Slack date, a link to a message); `/rollout history` marks the people,
channels, times and cards again, and `rollout-bot audit` prints the words as they read."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from figures import every_gate_passes
from sandbox_views import begun, dispatched, held, value_of, window_timer_of
from sqlalchemy import select
from test_audit import audit_cli

from bot.adapters.slack import messages
from bot.adapters.slack.audit_reasons import reason_mrkdwn, recorded
from bot.adapters.slack.audit_views import event_line
from bot.adapters.slack.mrkdwn import escape_quoted
from bot.domain.controls import Control
from bot.domain.permissions import TwoPersonRefusal
from bot.domain.reasons import Reason
from bot.domain.rollout import StageState
from bot.services.records import AuditEvent
from sandbox.config import BYSTANDER, OTHER_CHANNEL, RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox, fast_plan
from sandbox.slack_markup import problems_in
from storage.db import create_engine
from storage.models import Base

pytestmark = pytest.mark.story

SLACK_MARKUP = re.compile(r"<[@#!]|slack\.com/archives")
"""A mention (`<@U1>`), a channel (`<#C1>`), a Slack date or `<!here>`, a link to a message."""
SECOND = "U0SECOND01"
WINDOW_ENDS = timedelta(minutes=2)
"""Past a window of the plan (1 minute: the waits do not skip it, so a test sees it open)."""
AT = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)


async def stored_markup(database_url: str) -> list[str]:
    """Every value of every table that carries Slack markup, as `table: value`."""
    engine = create_engine(database_url)
    found = []
    try:
        async with engine.connect() as connection:
            for table in Base.metadata.sorted_tables:
                for row in (await connection.execute(select(table))).all():
                    for value in row:
                        shown = value if isinstance(value, str) else json.dumps(value, default=str)
                        if SLACK_MARKUP.search(shown):
                            found.append(f"{table.name}: {shown}")
    finally:
        await engine.dispose()
    return found


def two_person_sandbox(tmp_path: Path, database_url: str) -> Sandbox:
    plan = yaml.safe_load(fast_plan(tmp_path / "figures.yml", window="1m"))
    plan["two_person"] = ["promote_to_last"]
    return Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        plan_yaml=yaml.safe_dump(plan, sort_keys=False),
        extra_env={"ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{SECOND}"},
    )


async def test_refusals_are_stored_without_slack_markup_and_history_marks_them_again(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    async with two_person_sandbox(tmp_path, sqlite_database_url) as box:
        every_gate_passes(box)
        not_approver = await box.command("promote", user=BYSTANDER)
        await dispatched(box)
        in_progress = await box.command("start v1.4.3 --flags-ready")
        await box.wait_until(
            lambda r: r.track("relay").stage("canary").state is StageState.OBSERVING
        )
        extend = await value_of(box, "extend_window", "relay")
        nothing = await box.command("promote")
        await box.pass_time(WINDOW_ENDS)
        await held(box, "relay", "canary")
        stale = await box.click("extend_window", value=extend)
        canary = await value_of(box, "promote", "relay")
        elsewhere = await box.click("promote", value=canary, channel=OTHER_CHANNEL)
        assert await box.click("promote", value=canary) is None
        await begun(box, "relay", "half")
        await box.pass_time(WINDOW_ENDS)
        await held(box, "relay", "half")
        already = await box.click("promote", value=canary, user=SECOND)
        two_person = await box.click(
            "promote", value=await value_of(box, "promote", "relay", stage="half")
        )
        history = await box.command("history v1.4.2")
        rollout = await box.rollout()
        events = await box.audit.list_for_rollout(rollout.id)

    # What each person was answered names people, channels, times and cards in Slack's markup.
    assert "Only release approvers" in not_approver
    assert (
        elsewhere is not None
        and f"<#{RELEASE_CHANNEL}>" in elsewhere
        and f"<#{OTHER_CHANNEL}>" in elsewhere
    )
    assert f"<@{RELEASE_MANAGER}>" in in_progress and "slack.com/archives" in in_progress
    assert "Nothing is waiting for a Promote" in nothing and "<!date^" in nothing
    assert stale is not None and "This card is out of date" in stale
    assert already is not None and f"Already done by <@{RELEASE_MANAGER}> at <!date^" in already
    assert two_person is not None and f"<@{RELEASE_MANAGER}> started `v1.4.2`" in two_person
    # None of it is stored so.
    assert await stored_markup(sqlite_database_url) == []
    reasons: dict[tuple[str, str], list[Reason]] = {}
    for event in events:
        reason = Reason.from_detail(event.detail or {})
        if reason is not None:
            reasons.setdefault((event.action, event.result), []).append(reason)
    channel, said = reasons[("click:promote", "refused")]
    assert channel.channels == (RELEASE_CHANNEL, OTHER_CHANNEL)
    assert said.people == (RELEASE_MANAGER,)
    assert f"@{RELEASE_MANAGER} started `v1.4.2`" in said.text
    (waiting,) = reasons[("promote", "refused")]
    assert waiting.text.startswith("Nothing is waiting for a Promote.") and waiting.times
    (done,) = reasons[("click:promote", "duplicate")]
    assert done.people == (RELEASE_MANAGER,) and len(done.times) == 1
    (out_of_date,) = reasons[("click:extend", "stale")]
    assert out_of_date.text.startswith("This card is out of date: Hosted relay: 5% canary")
    # `/rollout history` shows each refusal as the person was answered: with its marks.
    refused = [line for line in history.splitlines() if "`click:promote` → *refused*" in line]
    assert len(refused) == 2
    assert f"this came from <#{OTHER_CHANNEL}>" in refused[0]
    assert f"why: The plan's two-person rule: <@{RELEASE_MANAGER}> started `v1.4.2`" in refused[1]
    assert f"Already done by <@{RELEASE_MANAGER}> at <!date^" in history
    assert problems_in({"text": history}) == []
    # The command line prints the words, with no markup.
    printed = await asyncio.to_thread(audit_cli, sqlite_database_url, "v1.4.2")
    assert printed.returncode == 0, printed.stderr
    assert f"why: Already done by @{RELEASE_MANAGER} at " in printed.stdout
    assert not SLACK_MARKUP.search(printed.stdout)


def answers() -> list[str]:
    """Answers as the Slack words write them, with every kind of mark they make."""
    person, channel = messages.person(RELEASE_MANAGER), messages.channel(RELEASE_CHANNEL)
    card = messages.message_link(RELEASE_CHANNEL, "1764590400.123456", "r-0123456789ab")
    refused = TwoPersonRefusal(RELEASE_MANAGER, "v1.4.2", Control.DISPATCH)
    return [
        messages.two_person_text(refused),
        f"`v1.4.2` is already rolling out ({card}, started by {person}) in {channel}.",
        f"Already done by {person} at {messages.slack_time(AT)}; `/rollout start <tag>` &amp; b.",
        "Nothing is waiting for a Promote.",
        # Two windows ending within one minute, a second apart (a loaded replica saw the
        # second job complete a moment later): the same words for two times. Each was marked
        # in the other's label, `<!date^…|<!date^…|…>>`, which Slack shows broken.
        f"Nothing is waiting for a Promote. Hosted relay: 5% canary observing until "
        f"{messages.slack_time(AT + timedelta(seconds=1))}; Desktop app and CLI: internal ring "
        f"observing until {messages.slack_time(AT + timedelta(seconds=2))}.",
    ]


@pytest.mark.parametrize("answer", answers())
def test_an_answer_kept_as_data_reads_again_as_it_was_answered(answer: str) -> None:
    reason = recorded(answer)

    assert not SLACK_MARKUP.search(json.dumps(reason.detail()))
    assert Reason.from_detail(json.loads(json.dumps(reason.detail()))) == reason
    assert escape_quoted(reason_mrkdwn(reason)) == escape_quoted(answer)
    line = event_line(
        AuditEvent(
            id=1,
            at=AT,
            actor=SECOND,
            action="click:dispatch",
            result="refused",
            detail=reason.detail(),
        )
    )
    assert escape_quoted(answer) in line
    assert problems_in({"text": line}) == []


def test_the_words_kept_read_as_plain_text() -> None:
    card = messages.message_link(RELEASE_CHANNEL, "1764590400.123456", "r-0123456789ab")
    answer = (
        f"{messages.person(SECOND)} in {messages.channel(OTHER_CHANNEL)} at "
        f"{messages.slack_time(AT)}, see {card}: `/rollout start <tag>`, a &amp; b"
    )

    reason: Any = recorded(answer)

    assert reason.text == (
        f"@{SECOND} in #{OTHER_CHANNEL} at 2026-12-01 12:30 UTC, see r-0123456789ab: "
        "`/rollout start <tag>`, a & b"
    )
    assert reason.detail()["names"] == {
        "people": [SECOND],
        "channels": [OTHER_CHANNEL],
        "times": ["2026-12-01T12:30:00+00:00"],
        "cards": [
            {"channel_id": RELEASE_CHANNEL, "ts": "1764590400.123456", "label": "r-0123456789ab"}
        ],
    }


async def test_a_window_timer_that_gave_up_keeps_its_reason_as_data(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    """A known error's message (the thread is told it) may name a person or a time: the
    audit event of the dead timer and the thread's message in the outbox keep the words and
    the ids, not the mention (a held schedule and `timers.last_error`:
    tests/test_scheduled_corners.py)."""
    reason = f"a hold by {messages.person(SECOND)} until {messages.slack_time(AT)}"
    async with two_person_sandbox(tmp_path, sqlite_database_url) as box:
        every_gate_passes(box)
        await dispatched(box)
        observing = await box.wait_until(
            lambda r: r.track("relay").stage("canary").state is StageState.OBSERVING
        )
        key = window_timer_of(observing, "relay", "canary")
        # Written with the save that started the window (`EffectRunner.apply`).
        timer = await box.wait_for_timer(key, lambda _: True)

        await box.services.rollouts.on_timer_dead(timer, reason=recorded(reason))

        held_now = await held(box, "relay", "canary")
        events = await box.audit.list_for_rollout(held_now.id)
        said = await box.wait_for_thread("could not run")
    assert await stored_markup(sqlite_database_url) == []
    assert f"(last: a hold by <@{SECOND}> until <!date^" in said
    (dead,) = [e for e in events if e.action == "window_timer"]
    assert dead.result == "dead" and dead.detail == {
        "why": f"a hold by @{SECOND} until 2026-12-01 12:30 UTC",
        "names": {"people": [SECOND], "times": ["2026-12-01T12:30:00+00:00"]},
    }
