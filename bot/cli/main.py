"""The `rollout-bot` command line.

`gate` is dispatched before anything else is imported: it is a drop-in for CI shell scripts
and must start fast, so nothing from Slack, aiohttp, pydantic or SQLAlchemy loads on its path.
"""

from __future__ import annotations

import gc
import importlib
import re
import sys
from collections.abc import Callable

USAGE = """usage: rollout-bot COMMAND [ARGS]
       rollout-bot --version

commands:
  serve          run the bot over HTTP (/slack/events, /github/webhook, /healthz, /readyz,
                 /metrics)
  socket         run the bot over Slack Socket Mode (needs SLACK_APP_TOKEN; HTTP without
                 /slack/events)
  migrate        apply the database migrations to DATABASE_URL
  gate           evaluate a rollback gate, a drop-in for CI scripts (rollout-bot gate --help)
  check-config   print the effective configuration with secrets masked, or every problem
  demo           two rollouts in accelerated time against simulated Slack and GitHub
                 (--github-app: as a GitHub App, stages held by its protection rule)
  metrics        what a stage's gate would read now: rollout-bot metrics <stage> --tag <tag>
  audit          a release's audit timeline: rollout-bot audit <tag> [--json]
  backtest       replay the plan's gates over past Prometheus data (rollout-bot backtest --help)
  doctor         check a live install: Slack, GitHub, the metrics source (one line per check)
"""


TAKES_ARGUMENTS = {
    "gate": "gate",
    "metrics": "metrics",
    "audit": "audit",
    "backtest": "backtest",
    "doctor": "doctor",
    "demo": "demo",
}
"""Commands that read their own arguments: the command's name to its module in `bot.cli`."""
NO_ARGUMENTS = {
    "serve": "serve",
    "socket": "socket",
    "migrate": "migrate",
    "check-config": "check_config",
}
"""Commands that take none (their settings come from the environment)."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in TAKES_ARGUMENTS:
        return _load(TAKES_ARGUMENTS[args[0]])(args[1:])
    if args == ["--version"]:
        from bot.version import build

        sys.stdout.write(f"{build()}\n")
        return 0
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in NO_ARGUMENTS:
        sys.stderr.write(f"rollout-bot: unknown command {command!r}\n{USAGE}")
        return 2
    if rest in (["-h"], ["--help"]):
        sys.stdout.write(_usage_of(command))
        return 0
    if rest:
        sys.stderr.write(f"rollout-bot {command}: unexpected arguments: {' '.join(rest)}\n")
        return 2
    return _load(NO_ARGUMENTS[command])()


def _usage_of(command: str) -> str:
    """A command's lines of USAGE, as its `--help` (an operator tries that first)."""
    found = re.search(rf"^  {command} +(.*\n(?: {{10,}}.*\n)*)", USAGE, re.MULTILINE)
    assert found is not None, command
    described = " ".join(line.strip() for line in found[1].splitlines())
    return (
        f"usage: rollout-bot {command}\n\n{described}\nIt takes no arguments: its settings come "
        "from the environment (README, Configuration).\n"
    )


def _load(module: str) -> Callable[..., int]:
    """The command's `main`, imported only when it is the one run (`gate` loads nothing heavy).

    The cyclic collector is off while its modules load: they make many objects and few cycles,
    and collections that walk them again and again took about a seventh of `serve`'s start.
    What they made is then frozen out of later collections, which a long-running `serve` pays
    for at every one (see `gc.freeze`)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        run: Callable[..., int] = importlib.import_module(f"bot.cli.{module}").main
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
    return run
