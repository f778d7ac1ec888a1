"""The `rollout-bot` command line.

`gate` is dispatched before anything else is imported: it is a drop-in for CI shell scripts
and must start fast, so nothing from Slack, aiohttp, pydantic or SQLAlchemy loads on its path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

USAGE = """usage: rollout-bot COMMAND [ARGS]
       rollout-bot --version

commands:
  serve          run the bot over HTTP (/slack/events, /github/webhook, /healthz, /readyz)
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "gate":
        from bot.cli.gate import main as gate_main

        return gate_main(args[1:])
    if args == ["--version"]:
        from bot.version import build

        sys.stdout.write(f"{build()}\n")
        return 0
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "metrics":
        from bot.cli.metrics import main as metrics

        return metrics(rest)
    if command == "audit":
        from bot.cli.audit import main as audit

        return audit(rest)
    if command == "backtest":
        from bot.cli.backtest import main as backtest

        return backtest(rest)
    if command == "doctor":
        from bot.cli.doctor import main as doctor

        return doctor(rest)
    if command == "demo":
        from bot.cli.demo import main as demo

        return demo(rest)
    if rest:
        sys.stderr.write(f"rollout-bot {command}: unexpected arguments: {' '.join(rest)}\n")
        return 2
    runner = _runner(command)
    if runner is None:
        sys.stderr.write(f"rollout-bot: unknown command {command!r}\n{USAGE}")
        return 2
    return runner()


def _runner(command: str) -> Callable[[], int] | None:
    """The command that takes no arguments, imported only when it is the one run."""
    if command == "serve":
        from bot.cli.serve import main as serve

        return serve
    if command == "socket":
        from bot.cli.socket import main as socket

        return socket
    if command == "migrate":
        from bot.cli.migrate import main as migrate

        return migrate
    if command == "check-config":
        from bot.cli.check_config import main as check_config

        return check_config
    return None
