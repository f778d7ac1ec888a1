"""`rollout-bot audit <tag> [--service NAME] [--json]`: the audit timeline of a release's
newest rollout (of one service)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from sqlalchemy.exc import SQLAlchemyError

from bot.bootstrap import audit_trail
from bot.cli.options import OperatorParser
from bot.cli.settings import load, release_tag
from bot.config import DatabaseSettings
from bot.domain.service import SERVICE_NAME
from bot.services.audit import Timeline, UnknownTag
from storage.db import create_session_factory, engine_for_one_task, mask_database_url


def argument_parser() -> argparse.ArgumentParser:
    """The command's arguments (tests/test_docs.py reads the docs' examples with them)."""
    parser = OperatorParser(
        prog="rollout-bot audit",
        description="Print the audit timeline of a release's newest rollout.",
    )
    parser.add_argument("tag", type=release_tag, help="the release tag, as given to /rollout start")
    parser.add_argument(
        "--service", metavar="NAME", help="the service that released it (default: any)"
    )
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON")
    return parser


def main(args: list[str]) -> int:
    """The timeline as lines or as JSON on stdout; exit 2 with a message for an unknown tag."""
    parser = argument_parser()
    options = parser.parse_args(args)  # exits 2 with a usage line on bad arguments
    if options.service is not None and not SERVICE_NAME.fullmatch(options.service):
        parser.error(
            f"--service {options.service!r} is not a service name (lower case letters, digits "
            "and dashes, starting with a letter, at most 63)"
        )
    settings = load(DatabaseSettings)
    if settings is None:
        return 2
    try:
        timeline = asyncio.run(
            _read_timeline(settings.database_url, options.tag, service=options.service)
        )
    except UnknownTag as error:
        sys.stderr.write(f"rollout-bot audit: {error.message.replace('`', '')}\n")
        return 2
    except (SQLAlchemyError, OSError) as error:
        where = mask_database_url(settings.database_url)
        sys.stderr.write(f"rollout-bot audit: cannot read {where}: {type(error).__name__}\n")
        return 1
    if options.json:
        json.dump(timeline.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    sys.stdout.write(
        f"{timeline.tag} ({timeline.rollout_id}) of {timeline.service}, "
        f"started by {timeline.started_by}\n"
    )
    for event in timeline.events:
        where = "/".join(part for part in (event.track, event.stage) if part)
        why = (event.detail or {}).get("why")
        sys.stdout.write(
            f"{event.at.isoformat()}  {event.actor:<16} {event.action:<24} {event.result}"
            + (f"  [{where}]" if where else "")
            + (f"  why: {' '.join(str(why).split())}" if why else "")
            + "\n"
        )
    return 0


async def _read_timeline(database_url: str, tag: str, *, service: str | None) -> Timeline:
    async with engine_for_one_task(database_url) as engine:
        return await audit_trail(create_session_factory(engine)).timeline(tag, service=service)
