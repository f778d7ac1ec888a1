"""The `rollout-bot` command line.

`gate` is dispatched before anything else is imported: it is a drop-in for CI shell scripts
and must start fast, so nothing from Slack, aiohttp, pydantic or SQLAlchemy loads on its path.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "gate":
        from bot.gate_cli import main as gate_main

        return gate_main(args[1:])
    sys.stderr.write("usage: rollout-bot {serve,socket,migrate,gate,demo,check-config} ...\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
