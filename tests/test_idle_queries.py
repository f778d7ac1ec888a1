"""While rollouts sit in their windows, a pass of the bot's loops (the scheduler, its poller,
the outbox) costs the database the same statements for one rollout as for many: the poller
reads every running rollout in one statement and, while a run and its rollout stay as they
were, looks only at GitHub; a pass with looks due claims all of them in one statement, after
one read of whose webhook deliveries arrive. Which ticks have looks due depends on each
rollout's pace, so each tick's cost is compared, not their mean. Counted, not timed
(`bench/idle_queries.py` has the figures)."""

from __future__ import annotations

from sandbox.harness import Sandbox
from sandbox.idle import IdleLoops, copy_rollout, observing, statements_of_each_tick


async def test_an_idle_tick_costs_as_many_statements_for_nine_rollouts_as_for_one(
    quiet: Sandbox,
) -> None:
    first = await observing(quiet)
    loops = IdleLoops(quiet)
    for _ in range(2):  # the first looks, which reconcile
        await loops.tick()
    alone = await statements_of_each_tick(quiet, loops, ticks=12)

    await copy_rollout(quiet, first, 8)
    for _ in range(2):
        await loops.tick()
    many = await statements_of_each_tick(quiet, loops, ticks=12)

    assert len(await quiet.services.rollouts.active()) == 9
    # A tick with nothing due, and one with looks due (two transactions more: the read of
    # the deliveries, the claim), each as dear for nine rollouts as for one.
    assert len(set(alone)) == 2
    assert set(many) == set(alone)
