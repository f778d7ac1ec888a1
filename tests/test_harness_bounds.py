"""The harness's waits end: a loop that died or hangs fails the test with what was waited for
instead of hanging the run (a `rollout-bot serve` whose start fails: tests/test_cli.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from figures import quiet_sandbox, running_sandbox
from sandbox_views import both_held, finish
from test_app_tokens import app_jwt
from test_npm_token import open_walkthrough

from bot.adapters.slack.npm_views import NpmAction
from sandbox.clock import ManualClock
from sandbox.config import BYSTANDER, GITHUB_TOKEN, REPOSITORY
from sandbox.github import GitHubSimulator
from sandbox.github_app import SandboxApp
from sandbox.harness import Sandbox
from sandbox.harness_slack import ANSWER_WAIT

NOW = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
AUTHORIZED = {"Authorization": f"token {GITHUB_TOKEN}"}
TRIPS = 0.05
"""Seconds of a bound that is meant to trip: nothing the test waits for would come."""


async def test_until_sleeping_fails_saying_how_many_loops_sleep() -> None:
    clock = ManualClock(NOW)
    clock.loops_wait = TRIPS
    with pytest.raises(TimeoutError, match=rf"^after {TRIPS} s, only 0 of 1 loops sleep on"):
        await clock.until_sleeping(1)


async def test_settle_fails_saying_how_many_woken_loops_did_not_sleep_again() -> None:
    clock = ManualClock(NOW)
    wake = asyncio.Event()
    loop = asyncio.create_task(clock.sleep_until(NOW + timedelta(hours=1), wake))
    await clock.until_sleeping(1)
    clock.advance(timedelta(minutes=1))
    await loop  # woken, it looked and, as a loop that died, never sleeps again
    clock.loops_wait = TRIPS
    with pytest.raises(
        TimeoutError, match=rf"^after {TRIPS} s, 1 of the 1 loops the clock's moves woke did not"
    ):
        await clock.settle()


async def test_restart_bot_fails_when_fewer_loops_go_round_than_the_bot_had(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    """Loops of the bot's that went to sleep once and then ended (died) are loops the bot
    started again does not have: the restart fails within its bound, saying so. Eight of
    them, more than the bot has (four: the scheduler's two, the outbox's, the refusals' log),
    so that it falls short whichever of its own loops had gone round before the restart."""
    async with quiet_sandbox(tmp_path, sqlite_database_url) as box:
        for _ in range(8):
            ended = asyncio.Event()
            ended.set()  # it sleeps once and returns at once
            await box.clock.sleep_until(box.clock() + timedelta(hours=1), ended)
        box.clock.loops_wait = 1.0
        with pytest.raises(TimeoutError) as failed:
            await box.restart_bot({})
    assert re.fullmatch(
        r"after 1\.0 s, only \d of \d+ loops sleep on the clock",
        str(failed.value),
    ), failed.value


async def answered_on_stop(
    github: GitHubSimulator, path: str, headers: dict[str, str], waiting: Callable[[], bool]
) -> None:
    """GET `path` of the started `github`, stop it once `waiting()` says the request is held,
    and check the request was answered."""
    async with aiohttp.ClientSession() as http:
        asked = asyncio.create_task(http.get(f"{github.api_url}{path}", headers=headers))
        async with asyncio.timeout(30):  # nothing to be woken by: the count is looked at again
            while not waiting():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await github.stop()
        async with await asked as answer:
            assert answer.status == 200


async def test_the_github_simulators_stop_answers_the_requests_it_holds() -> None:
    """A test that ends (or fails) before it releases a `hold` does not leave the request
    waiting: aiohttp's stop would wait a minute for it, and for ever while its client waits."""
    github = GitHubSimulator(repository=REPOSITORY, token=GITHUB_TOKEN)
    await github.start()
    github.hold("GET", f"/repos/{REPOSITORY}")
    await answered_on_stop(github, f"/repos/{REPOSITORY}", AUTHORIZED, lambda: github.holding > 0)


async def test_the_github_simulators_stop_answers_the_installation_lookups_it_stalls() -> None:
    """As for a hold: a test that ends before it sets `stall_lookups`'s event does not leave
    the bot's installation lookup waiting on the server's stop."""
    app = SandboxApp()
    github = GitHubSimulator(repository=REPOSITORY, token=GITHUB_TOKEN, app=app)
    await github.start()
    app.stall_lookups()
    headers = {"Authorization": f"Bearer {app_jwt(app)}"}
    path = f"/repos/{REPOSITORY}/installation"
    await answered_on_stop(github, path, headers, lambda: app.jwts_seen > 0)


async def test_finish_fails_saying_so_when_a_promote_changes_nothing(
    tmp_path: Path, sqlite_database_url: str
) -> None:
    """`finish` promotes each held gate; a promote after which the same stages still hold
    is not sent again for ever."""
    async with running_sandbox(tmp_path, sqlite_database_url) as box:
        command = box.command

        async def promote_lost(text: str, **place: Any) -> str:
            if text == "promote":
                # Once both tracks hold: what `finish` sees held then stays so (a track late to
                # its gate on a loaded machine would be a change, and name one track only).
                await both_held(box)
                return "(the promote was lost on its way)"
            return await command(text, **place)

        box.command = promote_lost  # type: ignore[method-assign]
        with pytest.raises(TimeoutError) as failed:
            await finish(box, "v1.4.2", changed_within=TRIPS * 20)
    assert str(failed.value) == (
        "after 1.0 s, v1.4.2: `/rollout promote` changed nothing: desktop internal, relay "
        "canary still held"
    ), failed.value


async def test_a_click_on_a_serve_process_waits_for_the_answer_it_counts_not_a_moment(
    tmp_path: Path, database_url: str
) -> None:
    """A `rollout-bot serve` process counts a click on its `/metrics` once it answered: the
    click waits for that count, however long past `ANSWER_WAIT` a loaded machine makes it."""
    async with Sandbox(workdir=tmp_path, database_url=database_url, in_process=False) as box:
        message = await open_walkthrough(box)
        released = box.slack.hold_responses()  # the answer is late: Slack slow to take it
        clicked = asyncio.create_task(
            box.click(str(NpmAction.RUN_RELEASE), message=message, user=BYSTANDER)
        )
        await box.slack.wait_for(lambda: box.slack.responses_held > 0, timeout=30)
        # Well past the moment a click once waited at most (which it measured between its
        # looks at the process's count, each a scrape of /metrics).
        await asyncio.sleep(2 * ANSWER_WAIT)
        released.set()
        answer = await clicked
    assert answer is not None and "Only release approvers may run the npm Release" in answer
