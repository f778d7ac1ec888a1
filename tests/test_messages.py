"""The domain speaks events and the Slack edge words them: no Slack markup in the domain, every
event survives the outbox's JSON, and reasons are data the edge renders with mentions."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from event_samples import AT, EVENTS, review_rejected
from pydantic import ValidationError

import bot.domain
from bot.adapters.slack.blocks import as_json
from bot.adapters.slack.limits import clip
from bot.adapters.slack.messages import (
    check_text,
    reason_text,
    render,
    stop_put_back_answer,
    two_person_text,
)
from bot.adapters.slack.unfollowed_card import unfollowed_card
from bot.domain.controls import Control
from bot.domain.github_events import GitHubReported, RunEvent
from bot.domain.permissions import TwoPersonRefusal
from bot.domain.reasons import Reason
from bot.domain.rollout import (
    Check,
    CheckState,
    StopKind,
    StopReason,
    event_from_json,
    event_to_json,
    reason_from_json,
    reason_to_json,
)
from bot.domain.rollout import events as told
from bot.domain.schedule import Held
from bot.domain.unfollowed_runs import RunFate, UnfollowedRun
from sandbox.harness_slack import button
from sandbox.render import render_blocks
from sandbox.slack_markup import markup_problems, problems_in

DOMAIN = Path(bot.domain.__file__).parent
SLACK_MARKUP = re.compile(
    r"(?<!\(\?)<[@!#]"  # mentions, dates, channels (not a regex's look-behind)
    r"|<https?:|<\{"  # links
    r"|(?<![\w:]):[a-z_]+:(?![\w/])"  # emoji
    r"|(?<![\w(])\*(?:\{|[A-Za-z][^*\n]{0,60}\*)"  # bold (not an unpacking)
)


def _strings(tree: ast.Module, source: str) -> list[tuple[int, str]]:
    """Every string literal and f-string in the module, docstrings left out."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    inner = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    return [
        (node.lineno, ast.get_source_segment(source, node) or "")
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant | ast.JoinedStr)
        and (isinstance(node, ast.JoinedStr) or isinstance(node.value, str))
        and id(node) not in docstrings | inner
    ]


def _markup_in(path: Path) -> list[str]:
    source = path.read_text("utf-8")
    return [
        f"{path.name}:{line}: {text}"
        for line, text in _strings(ast.parse(source), source)
        if SLACK_MARKUP.search(text)
    ]


def test_the_domain_writes_no_slack_markup() -> None:
    found = [hit for path in sorted(DOMAIN.rglob("*.py")) for hit in _markup_in(path)]
    assert found == []


def test_the_markup_scan_finds_what_the_domain_used_to_write(tmp_path: Path) -> None:
    old = tmp_path / "old.py"
    old.write_text(
        'def f(actor, label, url):\n    """A *docstring* may say <@U1>."""\n'
        '    return f"<@{actor}> promoted to *{label}* :rocket: <{url}|run>"\n'
    )
    assert len(_markup_in(old)) == 1


@pytest.mark.parametrize("event", EVENTS, ids=lambda event: type(event).__name__)
def test_every_event_survives_the_outbox_and_is_worded(event: told.Event) -> None:
    assert event_from_json(event_to_json(event)) == event
    assert render(event_from_json(event_to_json(event))) == render(event)
    assert markup_problems(render(event)) == []  # `/rollout link &lt;run URL&gt;`, not a link


def test_a_timers_reason_is_stored_as_data_and_worded_with_its_mentions() -> None:
    """A timer that gave up keeps what failed as words and ids (the outbox, the rollout's held
    schedule); the thread and the card mention the person. Slack text an earlier version stored
    is read no more (migration 0014 converted it)."""
    why = Reason(f"Already being done by @U1 since {AT:%Y-%m-%d %H:%M} UTC", ("U1",), times=(AT,))
    missed = told.GateMissed("Relay", "5%", AT, 3, why, manual=False)
    held = told.ScheduleHeld(AT, Held(error=why))

    for event in (missed, held):
        stored = event_to_json(event)
        assert "<@" not in str(stored) and "<!date" not in str(stored)
        assert "Already being done by <@U1> since <!date^" in render(event)
        fields = stored["fields"]
        fields.get("held", fields)["error"] = "held by <@U1>"
        with pytest.raises(ValidationError):  # Slack text, as an earlier version stored it
            event_from_json(stored)


def test_every_kind_of_event_is_covered() -> None:
    kinds = {*told.Event.__args__}  # type: ignore[attr-defined]
    assert kinds == {type(event) for event in EVENTS}


def test_the_edge_mentions_the_people_a_reason_and_an_event_name() -> None:
    stopped = StopReason(StopKind.KILL_SWITCH, actor="U9", detail="crash reports")
    assert reason_text(stopped) == "kill-switch by <@U9>: crash reports"
    assert render(told.StagePromoted("U1", "Relay", "*50%*")).startswith("<@U1> promoted")
    refused = TwoPersonRefusal("U1", "v1.4.2", Control.DISPATCH)
    assert "<@U1> started `v1.4.2`, so another approver must dispatch `v1.4.2`" in (
        two_person_text(refused)
    )
    assert check_text(Check(CheckState.PASS, confirmed_by="U2")) == "confirmed by <@U2>"


def test_a_stop_says_what_it_left_and_what_to_do_about_each_track() -> None:
    relay, desktop = (e for e in EVENTS if isinstance(e, told.TracksLeft))
    assert render(relay).splitlines() == [
        ":warning: Not rolled back by this Roll back:",
        "• *API* completed (100%) and stays on `v1.4.2`: to go back, click *Roll back to the "
        "previous release…* on its lane of the card.",
        "• *Web* is already deploying its last stage (100%), which GitHub cannot stop: once it "
        "completes, click *Roll back to the previous release…* on its lane of the card.",
        "• *CDN* is already rolled back.",
        "• *Edge* is already being stopped.",
        "• *DB* keeps running (nothing deployed yet) on its own gate: click *Roll back* to stop "
        "it too.",
    ]
    assert render(desktop) == (
        ":warning: The failed gate stops its own track only; not stopped:\n"
        "• *CLI* completed (GA) and stays on `v1.4.2`: the kill-switch cannot take a ring back; "
        "ship a fixed release (`/rollout start &lt;tag&gt;`)."
    )


def test_a_stop_put_back_is_told_to_who_waited_and_to_who_is_answered_it_was_done() -> None:
    """The thread's line names who was told it was being done; an answer that it was done
    (`Words.stop_put_back_answer`) says the same of the stop, with nobody named."""
    nothing, relay = (e for e in EVENTS if isinstance(e, told.StopPutBack))
    assert render(nothing) == (
        ":warning: <@U2>, <@U3>: the Kill-switch of `v1.4.2` by <@U1>, which you were told was "
        "being done, is put back: GitHub had already approved the last stage, which it cannot "
        "stop. Nothing was stopped.\n• *CLI* is already deploying its last stage (beta), which "
        "GitHub cannot stop: ship a fixed release (`/rollout start &lt;tag&gt;`) once it lands."
    )
    assert stop_put_back_answer(relay) == (
        ", put back on *Web*: GitHub had already approved the last stage, which it cannot stop. "
        "It stopped *API* only. Nothing more was done.\n• *Web* is already deploying its last "
        "stage (50%), which GitHub cannot stop: once it completes, click *Roll back to the "
        "previous release…* on its lane of the card."
    )


def test_a_reason_nests_its_cause_and_survives_storage() -> None:
    gate = StopReason(
        StopKind.GATE_FAILED, subject="5% canary", outcome="ROLLBACK", detail="crash_rate"
    )
    failed = StopReason(StopKind.FAILURE_JOB_FAILED, subject="rb", outcome="failure", cause=gate)
    assert reason_from_json(reason_to_json(failed)) == failed
    assert reason_text(failed) == "rb ended `failure` (5% canary gate ROLLBACK: crash rate)"


def test_a_reason_stored_as_text_before_reads_as_it_was() -> None:
    legacy = reason_from_json("cancelled by <@U1>")
    assert legacy == StopReason(StopKind.LEGACY, detail="cancelled by <@U1>")
    assert reason_text(legacy) == "cancelled by <@U1>"


def test_what_github_sends_is_shown_as_typed_never_as_a_mention() -> None:
    """A reviewer's comment, a job's or an environment's name come from GitHub: a `<!channel>`
    in them reads as typed in the thread instead of notifying everyone."""
    loud = "<!channel> see <https://evil.example|the fix>"
    rejected = told.RejectedOnGitHub(
        "Relay", "50%", "octocat", loud, "5%", desktop=False, failure_job="rb"
    )
    reviewed = review_rejected(loud)
    job = GitHubReported(RunEvent("workflow_job", "completed", "o/r", 7001, job=loud), None)
    outside = told.WaitsOutsidePlan(loud, 7001, "https://github.com/o/r/actions/runs/7001")
    for event in (rejected, reviewed, job, outside):
        shown = render(event)
        assert "<!channel>" not in shown and "<https://evil" not in shown, shown
        assert "&lt;!channel&gt;" in shown


def run_card(
    *,
    ref: str,
    tag: str = "",
    sender: str = "octocat",
    environment: str = "relay-canary-5",
    **rest: Any,
) -> UnfollowedRun:
    """The card of run 42 of the Deployment Strategy, on `ref` (release tag `tag`)."""
    return UnfollowedRun(
        run_id=42,
        workflow="Deployment Strategy",
        run_url="https://github.com/o/r/actions/runs/42",
        ref=ref,
        tag=tag,
        event="push",
        sender=sender,
        environment=environment,
        asked_at=AT,
        due_at=AT,
        **rest,
    )


def test_a_run_nobody_follows_shows_what_github_sent_as_typed() -> None:
    """A branch may be named `x<!channel>` (git accepts it): the card of its run must not
    notify the release channel."""
    loud = "x<!channel>"
    card = run_card(ref=loud, sender=loud, environment=loud)
    shown = render_blocks(as_json(unfollowed_card(card)))
    assert "<!channel>" not in shown and "&lt;!channel&gt;" in shown


@pytest.mark.parametrize("dispatch_by_two", [False, True])
def test_a_run_card_s_placeholder_reads_as_typed(dispatch_by_two: bool) -> None:
    """A run on a branch: `/rollout start <tag>` as the help writes it, not a broken link."""
    blocks = as_json(unfollowed_card(run_card(ref="main", dispatch_by_two=dispatch_by_two)))
    assert "`/rollout start &lt;tag&gt;`" in render_blocks(blocks)
    assert problems_in({"blocks": blocks}) == []


def test_a_run_nobody_may_adopt_is_offered_reject_only_even_once_its_default_failed() -> None:
    """Under the two-person rule on dispatch an Adopt can only be refused: the card never
    offers it, while it waits or after its default answer failed."""
    card = run_card(ref="v2.0.0", tag="v2.0.0", dispatch_by_two=True)
    assert UnfollowedRun.from_json(card.to_json()) == card
    for fate in (RunFate.WAITING, RunFate.UNANSWERED):
        blocks = as_json(unfollowed_card(card.decided(fate)))
        shown = render_blocks(blocks)
        assert button(blocks, "adopt_run") is None and button(blocks, "reject_run") is not None
        assert "Adopt" not in shown and "`/rollout start v2.0.0` so that another approver" in shown
    assert "still waits on GitHub. Reject it here" in shown


@pytest.mark.parametrize(
    ("text", "limit", "clipped"),
    [
        ("see <https://github.com/o/r/actions/runs/7|run 7> now", 20, "see …"),
        ("<@U0ALICE> said: more", 6, "…"),
        ("a &amp; b and so on", 5, "a …"),
        ("a &lt; b and so on", 7, "a &lt;…"),
        ("<https://x|x> and more text", 17, "<https://x|x> an…"),
        ("short", 5, "short"),
    ],
)
def test_a_clipped_text_never_ends_inside_a_link_a_mention_or_an_entity(
    text: str, limit: int, clipped: str
) -> None:
    assert clip(text, limit) == clipped
    assert len(clipped) <= limit
