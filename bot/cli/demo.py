"""`rollout-bot demo`: two rollouts in accelerated time, printed as a release manager sees them.

No credentials and no setup: the Slack test server and the GitHub Actions simulator run in
this process, and the real app (the same services and handlers as production) is driven
through signed requests. Windows last a second or two instead of 30 and 60 minutes.

`--github-app` runs the bot as a GitHub App (a JWT, installation tokens) with every
environment held by the App's custom deployment protection rule instead of a reviewer.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bot.cli.options import OperatorParser
from bot.domain.rollout import Phase, Rollout, StageState, TrackState
from sandbox.config import RELEASE_MANAGER
from sandbox.github_app import SandboxApp
from sandbox.harness import Sandbox, fast_plan, write_figures
from sandbox.render import render_message

RINGS = {"internal": {"crash_rate": "0.0009"}, "beta": {"crash_rate": "0.0011"}}


class Transcript:
    """Prints what the channel, the person and GitHub show, in the order it happens."""

    def __init__(self, box: Sandbox, out: TextIO) -> None:
        self._box = box
        self._out = out
        self._calls = 0
        box.github.on_event(self._github_event)

    def say(self, line: str = "") -> None:
        self._out.write(line + "\n")
        self._out.flush()

    def person(self, action: str) -> None:
        self.say(f"\n@release-manager {action}")

    def answer(self, text: str | None) -> None:
        if text:
            self.say(_indent("(only you) " + readable(text), "    "))

    def _github_event(self, event: str, payload: dict[str, Any]) -> None:
        if event != "workflow_job":
            return
        job = payload["workflow_job"]
        state = job["conclusion"] or payload["action"]
        if payload["action"] in ("waiting", "completed"):
            self.say(f"    GitHub  {job['name']}: {state}")

    def flush(self) -> None:
        """Print the Slack messages posted or updated since the last flush."""
        calls = self._box.slack.calls
        for call in calls[self._calls :]:
            if not call.ok:
                continue
            if call.method != "chat.postMessage":
                continue  # card updates show in the final card
            text = readable(
                render_message(str(call.args.get("text", "")), call.args.get("blocks") or [])
            )
            if call.args.get("thread_ts"):
                self.say(_indent("rollout-bot (thread): " + text, "    "))
            else:
                self.say("\n#releases  rollout-bot posted:")
                self.say(_indent(text, "    | "))
        self._calls = len(calls)

    def card(self) -> None:
        self.say("\n#releases  the rollout card now reads:")
        self.say(_indent(readable(self._box.card_message().rendered), "    | "))


_DATE = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]*)>")
_USER = re.compile(r"<@(\w+)>")


def readable(mrkdwn: str) -> str:
    """Slack markup as a terminal shows it: dates, links and mentions in plain words."""
    text = _DATE.sub(r"\1", mrkdwn)
    text = _LINK.sub(r"\2", text)
    return _USER.sub(lambda m: "@release-manager" if m[1] == RELEASE_MANAGER else f"@{m[1]}", text)


def _indent(text: str, prefix: str) -> str:
    return textwrap.indent(text, prefix, lambda _: True)


async def _until(box: Sandbox, show: Transcript, done: Any, *, skip_windows: bool) -> Rollout:
    """Let the story run (printing as it goes) until `done(rollout)` holds; with
    `skip_windows`, each window's end comes at once on the sandbox's clock."""
    while True:
        show.flush()
        current = await box.rollout()
        if done(current):
            show.flush()
            return current
        if not (skip_windows and await box.skip_to_next_timer()):
            await asyncio.sleep(0.1)


async def _promote_at(
    box: Sandbox, show: Transcript, *holding: tuple[str, str], skip_windows: bool
) -> None:
    """Once every `(track, stage)` holds at its gate, promote them as a person would."""

    def held(rollout: Rollout) -> bool:
        return all(
            rollout.track(track).stage(stage).state is StageState.HOLDING
            for track, stage in holding
        )

    await _until(box, show, held, skip_windows=skip_windows)
    show.person("types /rollout promote")
    show.answer(await box.command("promote"))


async def _story(
    box: Sandbox, show: Transcript, tag: str, *, failing_half: bool, skip_windows: bool
) -> None:
    half_error = "0.0123" if failing_half else "0.004"
    relay = {
        "canary": {"crash_rate": "0.0012", "error_rate": "0.002", "sample": 5200},
        "half": {"crash_rate": "0.0014", "error_rate": half_error, "sample": 48000},
    }
    write_figures(box.figures, "relay", relay)
    write_figures(box.figures, "desktop", RINGS)
    show.person(f"types /rollout start {tag} --flags-ready")
    show.answer(await box.command(f"start {tag} --flags-ready"))
    show.flush()
    show.person("clicks [Dispatch]")
    show.answer(await box.click("dispatch"))
    await _promote_at(
        box, show, ("relay", "canary"), ("desktop", "internal"), skip_windows=skip_windows
    )
    # A failing half gate stops relay: only desktop's beta is left to promote.
    second: list[tuple[str, str]] = [] if failing_half else [("relay", "half")]
    await _promote_at(box, show, *second, ("desktop", "beta"), skip_windows=skip_windows)
    ended = await _until(box, show, lambda r: r.phase is Phase.ENDED, skip_windows=skip_windows)
    show.card()
    outcome = "; ".join(f"{t.name}: {t.state}" for t in ended.tracks)
    show.say(f"\n== {tag}: {outcome} ==")


async def run(out: TextIO, *, github_app: bool = False, skip_windows: bool = False) -> int:
    """Both stories, printed to `out`; 0 when the second rolled back as it should. A person
    watching sees each 1-second window pass; the tests pass `skip_windows` and the windows end
    at once on the sandbox's clock (the same lines, read from the same bot, printed sooner)."""
    with tempfile.TemporaryDirectory(prefix="rollout-bot-demo-") as workdir:
        work = Path(workdir)
        plan = fast_plan(work / "figures.yml", window="1s", extension="1s")
        app = SandboxApp() if github_app else None
        async with Sandbox(workdir=work, plan_yaml=plan, poll_interval=0.05, github_app=app) as box:
            _history(box)
            show = Transcript(box, out)
            show.say("rollout-bot demo: Slack and GitHub are simulated in this process;")
            show.say("observation windows last 1 second instead of 30 and 60 minutes.")
            if app is not None:
                box.github.protection_rule(set(box.github.engine.protected))
                show.say(
                    f"The bot runs as the GitHub App {app.bot_login}: every environment holds "
                    "by the App's custom deployment protection rule."
                )
            show.say("\n=== Story 1: v1.4.2 goes to 100% ===")
            await _story(box, show, "v1.4.2", failing_half=False, skip_windows=skip_windows)
            show.say("\n=== Story 2: v1.4.3 fails its 50% gate on error rate and rolls back ===")
            await _story(box, show, "v1.4.3", failing_half=True, skip_windows=skip_windows)
            latest = await box.rollout()
            relay = latest.track("relay").state
            return 0 if relay is TrackState.ROLLED_BACK else 1


def _history(box: Sandbox) -> None:
    """The repository's commits behind the two tags, so each preflight shows what is in its
    release (the first since v1.4.1's GitHub Release, the second since v1.4.2)."""
    history = box.github.history
    now = datetime.now(UTC)
    history.commit("Initial import", at=now, author="ana")
    history.tag("v1.4.1")
    history.publish("v1.4.1", now)
    history.squash("Faster relay handshake", 41, at=now, author="bo", files=("relay/net.rs",))
    history.squash("Retry uploads on 503", 42, at=now, author="cy", files=("desktop/up.rs",))
    history.tag("v1.4.2")
    history.squash("Batch relay writes", 43, at=now, author="bo", files=("relay/io.rs",))
    history.tag("v1.4.3")


def argument_parser() -> argparse.ArgumentParser:
    """Its one option (the README's `make demo GITHUB_APP=1`), and `--help`."""
    told = "Two rollouts in accelerated time, against a simulated Slack and GitHub."
    parser = OperatorParser(prog="rollout-bot demo", description=told)
    parser.add_argument("--github-app", action="store_true", help="run the bot as a GitHub App")
    return parser


def main(args: list[str]) -> int:
    options = argument_parser().parse_args(args)  # exits 2 with a usage line on bad arguments
    return asyncio.run(run(sys.stdout, github_app=options.github_app))
