"""A person re-runs the run on GitHub while the bot's rejection of a stage, decided on a
stopped track (a kill-switch), is on its way: GitHub took the rejection, but its review names
no attempt, and the re-run's job at that environment waits again, on an attempt the bot does
not follow. The bot reads the run's attempt back after GitHub took the rejection, as after an
approval: the track being stopped, it rejects the re-run's wait there too (read before it acts
again), and the thread is told, once, that the re-run overtook the rejection and what the bot
did. Through the whole bot and the GitHub simulator, in token mode (in App mode the re-run's
wait is held by the App's rule, its request told on the run's card in the release channel)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_desktop_track import ga_held_by_github
from test_github_faults import REVIEWS
from test_rerun_while_approving import token_box

from bot.domain.rollout import Phase, Rollout
from sandbox.harness import Sandbox

pytestmark = pytest.mark.story

GA = "desktop-cli-ring-ga"


def rerun_once_rejected(
    box: Sandbox, run_id: int, *, again: Callable[[int], object]
) -> Callable[..., Any]:
    """The bot's reviews, a person cancelling the run and re-running its GA job (attempt 2,
    waiting at the GA ring again) once GitHub took the bot's first rejection there, before the
    bot reads the run's attempt back; `again` (of the run's id) done just before the bot's
    review of attempt 2."""
    effects = box.services.rollouts.effects
    review = effects.github.review
    done: list[bool] = []

    async def reviewed(**kwargs: Any) -> bool:
        if kwargs["attempt"] == 2:
            again(run_id)
        sent = await review(**kwargs)
        if sent and kwargs["state"] == "rejected" and not done:
            done.append(True)
            run = box.github.run(run_id)
            box.github.engine.cancel(run_id)
            box.github.engine.rerun_job(run_id, run.job(GA).id, by="octocat")
            box.github.engine.process()
            assert (run.attempt, run.job(GA).status) == (2, "waiting")
        return sent

    return reviewed


async def killed_as_re_run(
    box: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    *,
    again: Callable[[int], object] = lambda _: None,
) -> Rollout:
    """GitHub failing the bot's approval of the GA ring, which waits, a person trips the
    kill-switch; the bot rejects GA, and GitHub takes it on attempt 1 just before a person
    re-runs GA (`rerun_once_rejected`, `again` before the bot's review of attempt 2). The
    rollout once it ended."""
    await ga_held_by_github(box, REVIEWS)
    run_id = (await box.rollout()).run_id or 0
    effects = box.services.rollouts.effects
    monkeypatch.setattr(effects.github, "review", rerun_once_rejected(box, run_id, again=again))
    answer = await box.command("kill crash spike in beta")
    assert "Kill-switch tripped" in answer, answer
    box.github.clear_faults()
    return await box.wait_until(lambda r: r.phase is Phase.ENDED)


async def test_a_kill_whose_rejection_a_re_run_overtook_rejects_the_re_runs_wait_too(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub failed the bot's approval of the GA ring, which waits; a person trips the
    kill-switch, and the bot rejects GA. GitHub takes the rejection on attempt 1, and a person
    then cancels the run and re-runs GA (attempt 2, waiting at the GA ring again) before the bot
    reads the attempt back. The kill must not leave GA to deploy: the bot rejects attempt 2's
    GA too, and the thread says the re-run overtook its rejection and that it rejected it on
    attempt 2 as well, once."""
    async with token_box(tmp_path, database_url) as box:
        ended = await killed_as_re_run(box, monkeypatch)
        run = box.github.run(ended.run_id or 0)

        assert ended.attempt == 2
        told = await box.wait_for_thread("rejection of *GA ring*")
        assert (run.job(GA).status, run.job(GA).conclusion) == ("completed", "failure")
        assert "rejected it on attempt 2 as well" in told, told
        # The re-run's kill-switch job waits too, nobody to answer it: the stop's own job did
        # not run on attempt 1 (cancelled), which the line must not leave people to assume.
        assert run.job("desktop-cli-kill-switch").status == "waiting", run.job(
            "desktop-cli-kill-switch"
        )
        assert "waits at `desktop-kill-switch` too" in told, told
        assert "Where each track ended in attempt 1" in told, told
        await box.pass_time(timedelta(minutes=2))  # later looks tell nothing more of it
        thread = box.thread()
        # A look that read attempt 2 first may have ended the rollout as a plain re-run (its
        # line then says GA waits): the overtaken line follows it, once.
        assert sum("rejection of *GA ring*" in line for line in thread) == 1, thread
        assert sum("does not follow a re-run" in line for line in thread) <= 2, thread


async def test_a_re_runs_wait_a_person_approved_before_the_bots_rejection_is_not_rejected(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, but a person approves attempt 2's GA wait on GitHub just before the bot's
    rejection of it goes: nothing of it waits any more, so the bot sends nothing (a person's
    answer stands), and the thread does not say the bot rejected it: the run read again, it
    says the job went past the stopped stage, and that the run is to be cancelled."""
    async with token_box(tmp_path, database_url) as box:

        def a_person_approves(run_id: int) -> None:
            box.github.review(run_id, ["desktop-ga"], "approved", actor="octocat")
            box.github.engine.process()

        ended = await killed_as_re_run(box, monkeypatch, again=a_person_approves)
        run = box.github.run(ended.run_id or 0)
        told = await box.wait_for_thread("rejection of *GA ring*")
        assert run.attempt == 2 and run.job(GA).conclusion != "failure", run.job(GA)
        assert "rejected it on attempt 2" not in told, told
        assert "went past it: it deploys" in told, told


async def test_a_re_runs_wait_github_fails_to_reject_is_told_still_to_be_rejected(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, but GitHub fails the bot's rejection of attempt 2's GA wait (a 502, then a
    422 while it waits): the job still waits there, and the thread says the bot's rejection
    did not go through and that a person must reject it (or cancel the run)."""
    async with token_box(tmp_path, database_url) as box:

        def github_fails(_: int) -> None:
            box.github.fault_next("POST", REVIEWS, "server_error", times=10_000)

        ended = await killed_as_re_run(box, monkeypatch, again=github_fails)
        run = box.github.run(ended.run_id or 0)
        told = await box.wait_for_thread("rejection of *GA ring*")
        assert (run.attempt, run.job(GA).status) == (2, "waiting")
        assert "rejected it on attempt 2" not in told, told
        assert "reject it if it still waits" in told, told
