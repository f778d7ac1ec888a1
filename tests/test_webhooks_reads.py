"""What one webhook delivery costs the database: its rollout is read once at intake (its id and
state only) and once, with its plan, under its lock for the follow-up, its note in the thread
and the reconcile. Counted, not timed (the figures of a read are in docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from test_webhooks import GitHubHook, observing

from sandbox.harness import Sandbox
from sandbox.idle import bots_database

__all__ = ["observing"]  # the fixtures this module's test uses (and conftest's http)

pytestmark = pytest.mark.story


@contextlib.contextmanager
def sent_by(box: Sandbox, delivery_id: str) -> Iterator[list[str]]:
    """The statements one delivery costs: its intake (in the caller's task) and its follow-up
    (the receiver's task `webhook <delivery id>`), not those of the bot's own loops."""
    sent: list[str] = []
    intake = asyncio.current_task()
    engine = bots_database(box).engine.sync_engine

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        task = asyncio.current_task()
        if task is intake or (task is not None and task.get_name() == f"webhook {delivery_id}"):
            sent.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def reads_of_the_rollout(sent: list[str]) -> list[str]:
    return [s for s in sent if s.startswith("SELECT rollouts.")]


@pytest.mark.database_matters
async def test_a_followed_delivery_reads_its_rollout_once_at_intake_and_once_after(
    observing: tuple[Sandbox, GitHubHook],
) -> None:
    box, hook = observing
    finished = hook.job_completed()
    webhooks = box.services.webhooks
    before = await box.rollout()

    with sent_by(box, "counted-1") as sent:
        intake = await webhooks.take(
            delivery_id="counted-1",
            event=finished.event,
            payload=json.loads(finished.body),
            body_digest="counted-1",  # not a body taken in before
        )
        await webhooks.settled()

    assert intake.taken.value == "followed"
    assert (await box.rollout()).version == before.version  # nothing changed: no save
    reads = reads_of_the_rollout(sent)
    # Intake: the id and state of the rollout following the run. Follow-up: the rollout as the
    # run is read (without its lock: a person's stop never waits for GitHub's answer), then
    # with its plan, once, under its lock, for the thread's note (posted under it) and the
    # reconcile, which acts on that read of the run only if the rollout did not change since.
    assert len(reads) == 3, "\n".join(reads)
    assert "JOIN stages" not in reads[0]
    # Before: six reads of the whole rollout, 16 statements on PostgreSQL.
    expected = {"sqlite": 22, "postgresql": 13}[bots_database(box).engine.dialect.name]
    assert len(sent) == expected, "\n".join(sent)
