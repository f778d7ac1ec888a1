"""Many services, one fault: what fails for one service (its runs, its database rows) must not
stop the bot's work for the others. Each test's docstring says what went wrong before."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

from figures import passing_sandbox
from statement_faults import failing
from test_services_removed import BILLING, RELAY
from test_unfollowed_runs import run_cards

from sandbox.github_app import SandboxApp
from sandbox.harness import Sandbox


def kept_without_a_card(box: Sandbox, repository: str, *, failed_reads: int = 2) -> int:
    """A run started on github.com in `repository`, every environment on the App's rule, whose
    requests the webhook kept without drawing its card (GitHub answered 404 to its reads)."""
    github = box.github.repository_named(repository)
    assert github is not None
    github.protection_rule(set(github.engine.protected))
    github.push_tag("v2.0.0")
    run_id = github.create_foreign_run(actor="octocat", branch="v2.0.0")
    path = f"/repos/{repository}/actions/runs/{run_id}"
    box.github.fail_next("GET", path, 404, times=failed_reads)
    return run_id


def reads_of_the_rollout_of_run_fail(run_id: int) -> AbstractContextManager[list[str]]:
    """Every look for the rollout following the run `run_id` fails, as a statement held up by
    a lock would; the statements failed."""

    def held_up(statement: str, params: Any) -> BaseException | None:
        values = params.values() if isinstance(params, dict) else params or ()
        of_the_run = "FROM rollouts" in statement and "run_id" in statement
        return TimeoutError("statement timeout") if of_the_run and run_id in tuple(values) else None

    return failing(held_up)


async def test_one_services_failing_sweep_does_not_stop_the_next_services_sweep(
    tmp_path: Path,
) -> None:
    """The poller's sweep hands each service's kept requests without a card to the service, one
    service after another: when relay's failed (a statement of its run's failed at every poll),
    the sweep ended there, and billing-api's run, lost before its card was posted, never got it:
    its stages waited on GitHub for a card nobody would see, and its default never came."""
    async with passing_sandbox(
        tmp_path, rollout_services=[RELAY, BILLING], github_app=SandboxApp()
    ) as box:
        relay_run = kept_without_a_card(box, RELAY.repository, failed_reads=1000)
        with reads_of_the_rollout_of_run_fail(relay_run) as failed:
            box.github.clear_failures()  # relay's run reads: its statements fail from here
            billing_run = kept_without_a_card(box, BILLING.repository)
            await box.github.settle()
            await box.services.webhooks.settled()
            for _ in range(3):
                await box.pass_time(timedelta(seconds=60))
            await box.slack.wait_for(lambda: bool(run_cards(box)), timeout=30)

        assert failed, "relay's sweep did not fail"
        (card,) = run_cards(box)
        assert f"Run {billing_run} of `billing-api`'s" in card.text, card.text
