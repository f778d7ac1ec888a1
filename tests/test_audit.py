"""The audit trail: every command, click, verdict and GitHub call of a rollout, in order with
its actor, exported by `rollout-bot audit <tag> --json` and shown by `/rollout history <tag>`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from command_line import run_here
from figures import CANARY_OK, RINGS_OK, passing_sandbox, running_sandbox
from sandbox_views import dispatched, finish, window_timer_of
from sqlalchemy import text

from bot.adapters.slack.audit_views import event_line, timeline_blocks
from bot.adapters.slack.limits import MESSAGE_BLOCKS as MAX_BLOCKS
from bot.adapters.slack.limits import SECTION_TEXT as MAX_TEXT
from bot.domain.rollout import Phase, StageState
from bot.services.audit import Timeline
from bot.services.records import AuditEvent
from sandbox.config import BYSTANDER, RELEASE_MANAGER
from sandbox.harness import Sandbox, write_figures
from sandbox.slack_markup import problems_in
from storage.db import create_engine
from storage.timers import TimerStore


def audit_cli(
    database_url: str, *args: str, own_process: bool = False
) -> subprocess.CompletedProcess[str]:
    """`rollout-bot audit ARGS` on the database, in this process (`run_here`) or as a process
    of its own."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env |= {"DATABASE_URL": database_url}
    if not own_process:
        code, out, err = run_here(["audit", *args], env=env, cwd=Path.cwd())
        return subprocess.CompletedProcess(["audit", *args], code, out, err)
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "bot.cli", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def position(events: list[dict[str, Any]], **wanted: object) -> int:
    """The index of the first event with these fields (detail keys prefixed `detail_`)."""
    for index, event in enumerate(events):
        detail = event.get("detail") or {}
        if all(
            (detail.get(key[7:]) if key.startswith("detail_") else event.get(key)) == value
            for key, value in wanted.items()
        ):
            return index
    raise AssertionError(f"no event with {wanted}")


async def test_the_audit_export_of_a_finished_rollout_lists_every_step_in_order(
    tmp_path: Path, database_url: str
) -> None:
    async with running_sandbox(tmp_path, database_url, window="1s") as box:
        await box.command("promote", user=BYSTANDER)  # refused before anything started
        done = await finish(box, "v1.4.2")

    exported = await asyncio.to_thread(
        audit_cli, database_url, "v1.4.2", "--json", own_process=True
    )

    assert exported.returncode == 0, exported.stderr
    timeline = json.loads(exported.stdout)
    assert timeline["rollout"]["id"] == done.id
    assert timeline["rollout"]["started_by"] == RELEASE_MANAGER
    events = timeline["events"]
    times = [datetime.fromisoformat(event["at"]) for event in events]
    assert times == sorted(times)
    assert all(event["actor"] for event in events)
    me, bot = RELEASE_MANAGER, "rollout-bot"
    steps = [
        position(events, action="start", result="ok", actor=me),
        position(events, action="command:start", result="ok", actor=me),
        position(events, action="dispatch", result="ok", actor=me),
        position(events, action="github_approved", actor=bot, detail_environment="relay-canary-5"),
        position(events, action="click:dispatch", result="ok", actor=me),
        position(events, action="gate", result="PASS", actor="metrics:static", stage="canary"),
        position(
            events, action="github_approved", actor=bot, detail_environment="relay-rollout-50"
        ),
        position(events, action="promote", result="ok", actor=me, track="relay"),
        position(events, action="gate", result="PASS", actor="metrics:static", stage="half"),
        position(
            events, action="github_approved", actor=bot, detail_environment="relay-rollout-100"
        ),
    ]
    assert steps == sorted(steps)
    rings = [
        position(events, action="github_approved", detail_environment=environment)
        for environment in ("desktop-internal", "desktop-beta", "desktop-ga")
    ]
    assert rings == sorted(rings)
    promotes = [e for e in events if e["action"] == "command:promote"]
    assert promotes and all(e["actor"] == me and e["result"] == "ok" for e in promotes)
    assert not any(e["actor"] == BYSTANDER for e in events)  # refused before any rollout


async def test_the_audit_command_without_json_prints_one_line_per_event(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    async with Sandbox(workdir=tmp_path, database_url=sqlite_database_url) as box:
        await box.command("start v1.4.2")
        await box.click("cancel_preflight")
        await box.wait_until(lambda r: r.phase is Phase.ENDED)

    printed = await asyncio.to_thread(audit_cli, sqlite_database_url, "v1.4.2")

    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0].startswith("v1.4.2 (r-") and "started by U0RELMGR01" in lines[0]
    assert any("click:cancel" in line and "ok" in line for line in lines[1:])
    assert any(" cancel " in line for line in lines[1:])


async def test_the_audit_of_an_unknown_tag_exits_2_with_a_message(
    sqlite_database_url: str,
) -> None:
    missing = await asyncio.to_thread(audit_cli, sqlite_database_url, "v9.9.9", "--json")

    assert missing.returncode == 2
    assert missing.stdout == ""
    assert "No rollout of v9.9.9 is on record" in missing.stderr


async def test_history_with_a_tag_shows_the_rollouts_timeline(
    tmp_path: Path, database_url: str
) -> None:
    async with passing_sandbox(tmp_path, database_url=database_url) as box:
        await dispatched(box)
        await box.wait_until(lambda r: r.track("relay").stage("canary").state is StageState.HOLDING)

        shown = await box.command("history v1.4.2")
        unknown = await box.command("history v0.0.1")
        again = await box.command("history v1.4.2")

    assert "Timeline of v1.4.2" in shown
    assert "<@U0RELMGR01> `click:dispatch` → *ok*" in shown
    assert "_metrics:static_ `gate` → *PASS* (relay/canary)" in shown
    assert "_rollout-bot_ `github_approved` → *ok* (relay)" in shown
    assert "No rollout of `v0.0.1` is on record" in unknown
    assert "command:history" not in again  # looking at a timeline does not add to it


def test_a_refusal_s_words_are_shown_with_their_quotes_escaped_once() -> None:
    """The domain quotes a usage as typed (`/rollout start <tag>`), the Slack words one they
    escaped already; a reason is a person's own words: each reads as written, once."""
    why = (
        "There is no rollout in progress. Start one with `/rollout start <tag>`; "
        'or `/rollout start &lt;tag&gt; --override-freeze "&lt;reason&gt;"`'
    )
    event = AuditEvent(
        id=1,
        at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        actor="U0RELMGR01",
        action="click:promote",
        result="refused",
        rollout_id="r-1",
        detail={"why": why, "reason": "a `<b>` & c"},
    )
    line = event_line(event)
    assert (
        "Start one with `/rollout start &lt;tag&gt;`; or `/rollout start &lt;tag&gt; "
        '--override-freeze "&lt;reason&gt;"`'
    ) in line
    assert "reason: a `&lt;b&gt;` &amp; c" in line
    assert problems_in({"text": line}) == []


def test_a_long_timeline_keeps_its_newest_events_within_slacks_limits() -> None:
    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    events = tuple(
        AuditEvent(
            id=i,
            at=start + timedelta(seconds=i),
            actor="U0RELMGR01",
            action="click:extend",
            result="ok",
            rollout_id="r-1",
            track="relay",
            stage="canary",
            detail={"why": "x" * 200},
        )
        for i in range(600)
    )
    timeline = Timeline(
        rollout_id="r-1",
        tag="v1.4.2",
        service="default",
        channel_id="C0RELEASES",
        started_by="U0RELMGR01",
        state="running",
        created_at=start,
        ended_at=None,
        events=events,
    )

    blocks = timeline_blocks(timeline)

    assert len(blocks) <= MAX_BLOCKS
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(text) <= MAX_TEXT for text in texts)
    assert "earlier events not shown: `rollout-bot audit v1.4.2 --json`" in str(blocks[2])
    last_epoch = int((start + timedelta(seconds=599)).timestamp())
    assert f"<!date^{last_epoch}^" in texts[-1]
    shown = sum(text.count("\n") + 1 for text in texts)
    hidden = int(str(blocks[2]).split("_")[1].split(" ")[0])
    assert shown + hidden == 600


async def test_a_verdict_whose_save_fails_leaves_no_gate_reading_and_the_retry_records_one(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    # The database refuses the canary's verdict, as when the replica dies between reading the
    # figures and saving what they decide: the window's timer fails and is retried (its
    # first retry waits up to 10 s).
    refuse = (
        "CREATE TRIGGER refuse_verdict BEFORE UPDATE OF verdict ON stages "
        "WHEN NEW.verdict IS NOT NULL AND OLD.verdict IS NULL AND NEW.key = 'canary' "
        "BEGIN SELECT RAISE(ABORT, 'the replica died'); END"
    )
    engine = create_engine(sqlite_database_url)
    async with engine.begin() as connection:
        await connection.execute(text(refuse))
    async with Sandbox(workdir=tmp_path, database_url=sqlite_database_url) as box:
        write_figures(box.figures, "relay", {"canary": CANARY_OK})
        write_figures(box.figures, "desktop", RINGS_OK)
        timers = TimerStore(box.services.database.sessions)
        await dispatched(box)
        rollout = await box.wait_until(
            lambda r: r.track("relay").stage("canary").state is StageState.EVALUATING
        )
        key = window_timer_of(rollout, "relay", "canary")

        async with asyncio.timeout(30):
            while True:
                timer = await timers.get(key=key)
                if timer is not None and timer.attempts >= 1:
                    break
                await asyncio.sleep(0.1)
        gates = [e for e in await box.audit.list_for_rollout(rollout.id) if e.action == "gate"]
        assert [e.stage for e in gates if e.track == "relay"] == []
        async with engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER refuse_verdict"))
        rollout = await box.wait_until(
            lambda r: r.track("relay").stage("canary").state is StageState.HOLDING, timeout=40
        )
        events = await box.audit.list_for_rollout(rollout.id)
        assert [
            (e.track, e.stage) for e in events if e.action == "gate" and e.track == "relay"
        ] == [("relay", "canary")]
    await engine.dispose()
