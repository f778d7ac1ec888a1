"""GitHub does not let the bot read a followed run for a long time (the token revoked, the App
uninstalled, GitHub down): the rollout's thread is told once, after GITHUB_UNREADABLE_SECONDS
(default 5 minutes), and once again when a read succeeds; not before, not twice, not again
after a restart or from a second replica.

The bot's own poller sleeps (the `quiet` sandbox); a second `Scheduler` on its services looks
at the run by hand (`test_polling.Poller`), while the test moves the bot's clock: nothing
waits through the five minutes.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from figures import two_serve_processes
from sandbox_views import dispatched
from test_exactly_once import APPROVERS_ENV
from test_polling import Poller, canary_poller

from sandbox.config import GITHUB_TOKEN
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story

UNREADABLE = "The bot cannot read"
READ_AGAIN = "reads the run on GitHub again"
MINUTE = timedelta(minutes=1)
LOOK_EVERY = 0.05
"""The two replicas' poll interval (the sandbox's is 0.1 s): while the App is uninstalled,
each look is one refused installation lookup, one every 0.4 s instead of 0.8 s, so that the
forty looks after the thread was told take half as long."""


def told(box: Sandbox) -> tuple[list[str], list[str]]:
    """The thread's lines saying the run cannot be read, and that it is read again."""
    lines = box.thread()
    return [x for x in lines if UNREADABLE in x], [x for x in lines if READ_AGAIN in x]


async def look(box: Sandbox, poller: Poller, run_id: int, after: timedelta) -> bool:
    """Move the bot's clock and the poller's by `after`, and look at the run once: whether
    GitHub refused it (the bot's own poller may look too, on a change of the rollout)."""
    box.clock.advance(after)
    return any(r.status == 401 for r in await poller.look(run_id, after=after))


async def test_told_once_after_five_minutes_once_when_back_and_not_again_after_a_restart(
    quiet: Sandbox,
) -> None:
    poller, run_id = await canary_poller(quiet)
    await poller.look(run_id)
    quiet.github.fail_next(
        "GET", f"/repos/*/actions/runs/{run_id}", 401, {"message": "Bad credentials"}, times=99
    )

    # The first failed look, then four minutes of them: since when is remembered, nobody told.
    assert [await look(quiet, poller, run_id, MINUTE) for _ in range(5)] == [True] * 5
    failing = await quiet.rollout()
    assert failing.unread_since is not None and not failing.told_unread
    assert told(quiet) == ([], [])

    # The fifth minute: told once, and not again at the next looks.
    assert await look(quiet, poller, run_id, MINUTE)
    line = await quiet.wait_for_thread(UNREADABLE)
    assert "since <!date^" in line
    assert "GitHub rejected the token (401 Bad credentials)" in line
    assert "check GITHUB_TOKEN" in line
    assert "cannot approve or reject a stage" in line
    assert "still end on time" in line
    assert GITHUB_TOKEN not in line
    assert [await look(quiet, poller, run_id, MINUTE) for _ in range(2)] == [True] * 2

    # A restart: the next process knows the thread was told.
    await quiet.stop_bot()
    await quiet.start_bot()
    poller = Poller(quiet, clock=poller.clock)
    assert [await look(quiet, poller, run_id, MINUTE) for _ in range(2)] == [True] * 2
    assert (await quiet.rollout()).told_unread

    # GitHub answers again: told once that it is back.
    quiet.github.clear_failures()
    assert not await look(quiet, poller, run_id, MINUTE)
    await quiet.wait_for_thread(READ_AGAIN)
    assert [await look(quiet, poller, run_id, MINUTE) for _ in range(2)] == [False] * 2
    back = await quiet.rollout()
    assert (back.unread_since, back.told_unread) == (None, False)
    unreadable, again = told(quiet)
    assert (len(unreadable), len(again)) == (1, 1)
    assert "after 10m" in again[0]


async def test_a_short_outage_is_not_told(quiet: Sandbox) -> None:
    poller, run_id = await canary_poller(quiet)
    await poller.look(run_id)
    quiet.github.fail_next("GET", f"/repos/*/actions/runs/{run_id}", 401, times=99)

    assert [await look(quiet, poller, run_id, 2 * MINUTE) for _ in range(3)] == [True] * 3
    quiet.github.clear_failures()  # back after four minutes
    assert [await look(quiet, poller, run_id, 3 * MINUTE) for _ in range(2)] == [False] * 2

    rollout = await quiet.rollout()
    assert (rollout.unread_since, rollout.told_unread) == (None, False)
    assert told(quiet) == ([], [])


async def test_a_rate_limit_that_lasts_beyond_five_minutes_is_told_at_once(quiet: Sandbox) -> None:
    """GitHub says when its rate limit resets (within the hour): the poller waits until then,
    so the thread is told at the first refusal rather than after the next look."""
    poller, run_id = await canary_poller(quiet)
    await poller.look(run_id)
    quiet.github.fail_next("GET", f"/repos/*/actions/runs/{run_id}", 403)

    assert [r.status for r in await poller.look(run_id, after=MINUTE)] == [403]

    line = await quiet.wait_for_thread(UNREADABLE)
    assert "GitHub rate limited the bot (403" in line
    assert "Wait for GitHub's rate limit to reset" in line


async def requests_pass(box: Sandbox, count: int) -> None:
    """Until GitHub has been asked `count` more times (the replicas look at the run every
    `LOOK_EVERY` seconds while it changes, up to 8 times that apart while it does not)."""
    until = len(box.github.requests) + count
    async with asyncio.timeout(60):
        while True:  # the sandbox GitHub records each request: looked at, not waited on
            if len(box.github.requests) >= until:
                return
            await asyncio.sleep(0.1)


@pytest.mark.postgres
async def test_two_replicas_tell_an_uninstalled_app_once_and_its_return_once(
    tmp_path: Path, postgres_database_url: str
) -> None:
    """Both `serve` processes follow the run as the GitHub App, which is uninstalled from the
    repository's owner (GitHub: 404 for its installation token) for a while."""
    env = {
        **APPROVERS_ENV,
        "GITHUB_UNREADABLE_SECONDS": "1",
        "GITHUB_POLL_INTERVAL": str(LOOK_EVERY),
    }
    async with two_serve_processes(tmp_path, postgres_database_url, env, app_rule=True) as (
        box,
        _,
    ):
        await dispatched(box)
        assert box.github.app is not None
        box.github.app.uninstall("scriptum")

        line = await box.wait_for_thread(UNREADABLE)
        assert "the App is not installed on scriptum/scriptum (404)" in line
        await requests_pass(box, 40)
        box.github.app.install("scriptum")
        await box.wait_for_thread(READ_AGAIN)
        await requests_pass(box, 12)

        unreadable, again = told(box)
        assert (len(unreadable), len(again)) == (1, 1)
