"""The `rollout-bot` command line.

`gate` is dispatched before anything else is imported: it is a drop-in for CI shell scripts
and must start fast, so nothing from Slack, aiohttp, pydantic or SQLAlchemy loads on its path.
"""

from __future__ import annotations

import sys

USAGE = """usage: rollout-bot COMMAND [ARGS]

commands:
  serve          run the bot over HTTP (POST /slack/events, POST /github/webhook, GET /healthz)
  socket         run the bot over Slack Socket Mode (needs SLACK_APP_TOKEN)
  migrate        apply the database migrations to DATABASE_URL
  gate           evaluate a rollback gate, a drop-in for CI scripts (rollout-bot gate --help)
  check-config   print the effective configuration with secrets masked, or every problem
  demo           two rollouts in accelerated time against simulated Slack and GitHub
  metrics        what a stage's gate would read now: rollout-bot metrics <stage> --tag <tag>
  audit          a release's audit timeline: rollout-bot audit <tag> [--json]
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "gate":
        from bot.gate_cli import main as gate_main

        return gate_main(args[1:])
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "metrics":
        from bot.commands import metrics

        return metrics(rest)
    if command == "audit":
        from bot.commands import audit

        return audit(rest)
    if rest:
        sys.stderr.write(f"rollout-bot {command}: unexpected arguments: {' '.join(rest)}\n")
        return 2
    if command == "demo":
        from bot.demo import main as demo_main

        return demo_main()
    from bot import commands

    runners = {
        "serve": commands.serve,
        "socket": commands.socket,
        "migrate": commands.migrate,
        "check-config": commands.check_config,
    }
    runner = runners.get(command)
    if runner is None:
        sys.stderr.write(f"rollout-bot: unknown command {command!r}\n{USAGE}")
        return 2
    return runner()


if __name__ == "__main__":
    sys.exit(main())
