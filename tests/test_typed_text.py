"""People's words go through the bot as typed: a kill reason `a & b <c>` typed in `/rollout kill`
reached GitHub's review comment as `a &amp; b &lt;c&gt;`.

Slack sends a slash command's text escaped (`&amp;`, `&lt;`, `&gt;`; links and mentions as
`<...>`), a form's value raw. The Slack edge decodes the command's text once; the rollout, the
lane and the audit trail keep plain text; GitHub gets it plain, and Slack's messages escape it
once. Signed requests through the real app (the sandbox Slack escapes a command's text as Slack
does), PyGithub against the GitHub simulator. A story on SQLite (tests/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from figures import running_sandbox
from hypothesis import given
from hypothesis import strategies as st
from sandbox_views import dispatched, held, stage_state
from test_freeze_sandbox import (
    OTHER,
    open_override,
    refused_dispatch,
    sandbox,
    typed_reason,
)
from test_protection_rules import app_box

from bot.adapters.slack import messages
from bot.adapters.slack.mrkdwn import as_typed, escape_quoted, plain_answer
from bot.domain.rollout import Phase, StageState, StopKind, StopReason, TrackState
from sandbox.config import RELEASE_CHANNEL, RELEASE_MANAGER
from sandbox.harness import Sandbox
from sandbox.signing import slash_command_payload

__all__ = ["sandbox"]  # the fixture the override stories use

pytestmark = pytest.mark.story

TYPED = "a & b <c>"
SHOWN = "a &amp; b &lt;c&gt;"
"""`TYPED` in a Slack message: escaped once."""


def sent_by_slack(typed: str) -> str:
    """The `text` of a slash command as Slack sends what was typed."""
    return slash_command_payload(text=typed, user_id="U1", channel_id="C1", response_url="x")[
        "text"
    ]


@pytest.mark.parametrize(
    ("sent", "typed"),
    [
        ("kill a &amp; b &lt;c&gt;", "kill a & b <c>"),
        ("&amp;amp; stays &amp;", "&amp; stays &"),  # decoded once: a typed `&amp;` stays
        ("<https://x.example/runs/7>", "https://x.example/runs/7"),
        ("<https://x.example/?a=1&amp;b=2>", "https://x.example/?a=1&b=2"),
        ("see <http://x.example|x.example>", "see x.example"),
        ("ask <@U0ANN|ann> or <@U0BOB>", "ask @ann or @U0BOB"),
        ("in <#C0REL|releases> or <#C0OPS>", "in #releases or #C0OPS"),
        ("<!subteam^S0REL|@release-managers>, <!subteam^S0OPS>", "@release-managers, @S0OPS"),
        ("<!here> <!channel> <!everyone|@everyone>", "@here @channel @everyone"),
        ("at <!date^1765000000^{time}|09:00 UTC>", "at 09:00 UTC"),
        ("a && b; c -> d", "a && b; c -> d"),  # nothing Slack would send, kept as it is
    ],
)
def test_what_slack_sends_is_read_back_as_typed(sent: str, typed: str) -> None:
    assert as_typed(sent) == typed


@given(st.text())
def test_any_typed_text_comes_back_as_typed(typed: str) -> None:
    assert as_typed(sent_by_slack(typed)) == typed


async def test_a_kill_reason_reaches_github_as_typed_and_slack_escaped_once(
    tmp_path: Path, database_url: str
) -> None:
    async with running_sandbox(tmp_path, database_url, window="4s") as box:
        await dispatched(box)
        await box.wait_until(
            lambda r: stage_state(r, "desktop", "internal") is StageState.OBSERVING
        )
        answer = await box.command(f"kill {TYPED}")
        assert "Kill-switch tripped for `v1.4.2`" in answer
        halted = await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
        (rejected,) = [r for r in box.github.reviews if "desktop-beta" in r.environments]
        assert (rejected.state, rejected.comment) == (
            "rejected",
            f"rollout-bot: kill-switch by Slack user {RELEASE_MANAGER}: {TYPED}",
        )
        assert halted.track("desktop").ended_reason == StopReason(
            StopKind.KILL_SWITCH, actor=RELEASE_MANAGER, detail=TYPED
        )

        said = await box.wait_for_thread(f"kill-switch by <@{RELEASE_MANAGER}>")
        assert f"kill-switch by <@{RELEASE_MANAGER}>: {SHOWN}." in said
        await box.slack.wait_for(lambda: SHOWN in box.card_message().rendered)
        for message in (box.card_message(), *box.card_message().replies):
            sent = json.dumps([message.text, message.blocks], ensure_ascii=False)
            assert TYPED not in sent and "&amp;amp;" not in sent and "&amp;lt;" not in sent

        # The audit trail (and `rollout-bot audit`, which exports it) keeps it as typed; the
        # timeline in Slack escapes it once.
        events = await box.audit.list_for_rollout(halted.id)
        assert [(e.detail or {}).get("reason") for e in events if e.action == "abort_desktop"] == [
            TYPED
        ]
        timeline = await box.command("history v1.4.2")
        assert f"reason: {SHOWN}" in timeline and TYPED not in timeline


async def test_a_kill_reason_reaches_the_app_s_protection_rule_answer_as_typed(
    tmp_path: Path, database_url: str
) -> None:
    async with app_box(tmp_path, database_url) as box:
        await dispatched(box)
        await held(box, "desktop", "internal")
        await box.command(f"kill {TYPED}")
        await box.wait_until(lambda r: r.track("desktop").state is TrackState.HALTED)
        (rejected,) = [
            r for r in box.github.engine.rule_reviews if "desktop-beta" in r.environments
        ]
        assert (rejected.state, rejected.comment) == (
            "rejected",
            f"rollout-bot: kill-switch by Slack user {RELEASE_MANAGER}: {TYPED}",
        )


async def test_a_command_quoted_back_in_a_refusal_still_reads_as_typed(sandbox: Sandbox) -> None:
    refused = await sandbox.command("start <tag>")  # copied from the help as it stands
    assert "`&lt;tag&gt;` is not a valid release tag" in refused, refused
    unknown = await sandbox.command("<!channel> & co")
    assert unknown.startswith(":warning: `&lt;!channel&gt;` is not a /rollout subcommand.")
    # The domain's usage quotes its placeholders: escaped where Slack shows them.
    option = await sandbox.command("start v1.4.2 --force")
    assert '`--at "&lt;time&gt;"` and `--override-freeze "&lt;reason&gt;"`' in option, option


def test_a_quote_the_slack_words_escaped_already_is_not_escaped_again() -> None:
    """An error's message may quote a placeholder the Slack words wrote escaped (a lane
    refusal's `/rollout start &lt;tag&gt;`): escaped once, as a raw one is."""
    assert escape_quoted("`start <tag> &lt;reason&gt; a & b` <@U1> & c") == (
        "`start &lt;tag&gt; &lt;reason&gt; a &amp; b` <@U1> & c"
    )


def test_an_answer_in_a_form_s_field_error_reads_as_plain_text() -> None:
    """Slack shows a form's field error as written: the person and the channel an answer names
    read as their ids (a raw `<@U1>` would show), its quotes and escapes as written."""
    answer = (
        f"Locked by {messages.person('U1')} in {messages.channel('C1')}: ask them to "
        "`/rollout unlock <reason>`, or see `/rollout link &lt;run URL&gt;`, a &lt;b&gt;."
    )
    assert plain_answer(answer) == (
        "Locked by @U1 in #C1: ask them to `/rollout unlock <reason>`, or see "
        "`/rollout link <run URL>`, a <b>."
    )


async def overrides_by(box: Sandbox, actor: str) -> list[object]:
    """The reasons `actor` gave to override a freeze, as the audit trail keeps them."""
    events = await box.audit.list_for_actor(actor)
    return [reason for e in events if (reason := (e.detail or {}).get("override_freeze"))]


async def test_a_reason_typed_in_a_form_is_kept_as_typed_and_shown_escaped_once(
    sandbox: Sandbox,
) -> None:
    _, value = await refused_dispatch(sandbox)
    form = await open_override(sandbox, value)
    assert await sandbox.submit_view(form, typed_reason(TYPED)) == {}
    await sandbox.wait_until(lambda r: r.phase is Phase.RUNNING)
    first = sandbox.slack.messages(RELEASE_CHANNEL)[0]  # the card, before the freeze's note
    (told,) = [reply for reply in first.replies if "overrode the freeze" in reply.rendered]
    said = json.dumps([told.text, told.blocks], ensure_ascii=False)
    assert f"overrode the freeze for `v1.4.2`: {SHOWN}." in said
    assert TYPED not in said and "&amp;amp;" not in said
    assert await overrides_by(sandbox, RELEASE_MANAGER) == [TYPED]


async def test_a_reason_typed_in_a_command_is_kept_as_a_forms_is_and_shown_escaped_once(
    sandbox: Sandbox,
) -> None:
    froze = await sandbox.command(f"freeze 2h {TYPED}", user=OTHER)
    assert "froze deploys until" in froze and f": {SHOWN}." in froze
    status = await sandbox.command("status")
    assert f"Deploys are frozen by <@{OTHER}>" in status and f": {SHOWN}" in status
    answer = await sandbox.command(f'start v1.4.2 --flags-ready --override-freeze "{TYPED}"')
    assert f"overrode the freeze for `v1.4.2`: {SHOWN}." in answer
    for said in (froze, status, answer):
        assert TYPED not in said and "&amp;amp;" not in said

    assert await overrides_by(sandbox, RELEASE_MANAGER) == [TYPED]  # as the form's is kept
    (freeze,) = [
        e for e in await sandbox.audit.list_for_actor(OTHER) if e.action == "command:freeze"
    ]
    assert (freeze.detail or {}).get("reason") == TYPED
    held = await sandbox.services.lane.state()
    assert held.freeze is not None and held.freeze.reason == TYPED
