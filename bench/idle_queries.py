"""Database statements per idle tick: the bot's scheduler (firing due timers), its poller
(following each running rollout's run on GitHub) and its outbox loop, one pass each per
GITHUB_POLL_INTERVAL (15 s), while every rollout sits in a long window and nothing happens.

For each size (1 rollout, then SIZES more), a bot on a fresh database (`Sandbox`, GitHub and
Slack on loopback) drives one two-track rollout until both tracks observe (1 h windows), then
copies it straight into the database (each copy on tracks of its own, following the same run).
After two warm-up ticks (each rollout's first look), SQLAlchemy's `before_cursor_execute`
counts every statement over TICKS ticks of the loops on a clock of their own (the poller's
back-off plays out: a rollout found unchanged is looked at less and less often, every 8th tick
at most). The goal: a constant, not one per rollout.

Usage: python bench/idle_queries.py [sqlite|postgres] [TICKS] [SIZES...]
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
import tempfile
from pathlib import Path

from databases import fresh_database

from sandbox.harness import Sandbox
from sandbox.idle import IdleLoops, bots_database, copy_rollout, observing, statements
from sandbox.plans import fast_plan, write_figures

WARM_UP = 2


async def per_tick(backend: str, copies: int, ticks: int) -> tuple[float, collections.Counter[str]]:
    """Statements per idle tick with 1 + `copies` rollouts, and how many of each kind."""
    with tempfile.TemporaryDirectory() as workdir:
        figures = Path(workdir) / "figures.yml"
        async with (
            fresh_database(backend) as url,
            Sandbox(
                workdir=Path(workdir),
                database_url=url,
                poll_interval=3600,  # the bot's own loops stay asleep: these are stepped
                plan_yaml=fast_plan(figures, window="1h"),
            ) as box,
        ):
            write_figures(box.figures, "relay", {})
            write_figures(box.figures, "desktop", {})
            await copy_rollout(box, await observing(box), copies)
            loops = IdleLoops(box)
            for _ in range(WARM_UP):
                await loops.tick()
            with statements(bots_database(box).engine) as sent:
                for _ in range(ticks):
                    await loops.tick()
    kinds = collections.Counter(statement.split(None, 1)[0].upper() for statement in sent)
    return len(sent) / ticks, kinds


async def main(backend: str, ticks: int, sizes: list[int]) -> None:
    for size in sizes:
        count, kinds = await per_tick(backend, size - 1, ticks)
        shown = ", ".join(f"{kind} {n / ticks:.1f}" for kind, n in kinds.most_common())
        print(
            f"{backend}: {size} two-track rollouts ({2 * size} tracks) in long windows: "
            f"{count:.1f} statements per idle tick over {ticks} ticks ({shown})"
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    arguments = sys.argv[1:]
    backend = arguments[0] if arguments else "sqlite"
    ticks = int(arguments[1]) if len(arguments) > 1 else 40
    sizes = [int(size) for size in arguments[2:]] or [1, 200]
    asyncio.run(main(backend, ticks, sizes))
