"""`OutboxStore.told_once` on SQLite: the notice that a release channel refuses the bot is
written once, even while other writers commit around it; `add_once` on both backends."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.outbox_messages import REFUSED
from bot.services.records import NewMessage
from storage.db import create_session_factory, engine_for_one_task
from storage.outbox import OutboxStore

REFUSING = "C0RELEASES"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def test_a_refusal_notice_is_written_while_another_writer_commits_meanwhile(
    sqlite_database_url: str,
) -> None:
    """Another replica (or this one's delivery to another channel) commits while the notice
    looks for the last message delivered in the refusing channel. Read and written in one
    transaction, the write then failed at once, "database is locked" (SQLite refuses a write
    on a snapshot older than the last commit), and the notice was not written."""
    path = sqlite_database_url.split("///", 1)[1]
    interposed: list[str] = []

    def meanwhile(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "max(outbox.id)" in statement and not interposed:
            other = sqlite3.connect(path, timeout=5)
            with other:  # another connection's write, committed
                other.execute(
                    "INSERT INTO outbox (channel_id, kind, payload, created_at, due_at, attempts)"
                    " VALUES ('C0ELSEWHERE', 'thread', '{}', '2026-12-06', '2026-12-06', 0)"
                )
            other.close()
            interposed.append(statement)

    notice = NewMessage(
        kind=REFUSED,
        channel_id="C0FAILURES",
        payload={"channel": REFUSING, "refusal": "not_in_channel"},
    )
    async with engine_for_one_task(sqlite_database_url) as engine:
        event.listen(engine.sync_engine, "after_cursor_execute", meanwhile)
        store = OutboxStore(create_session_factory(engine))

        assert await store.told_once(notice, refusing=REFUSING, now=NOW)

        assert interposed
        (written,) = [m for m in await store.pending() if m.kind == REFUSED]
        assert written.payload["after"] == 0
        assert not await store.told_once(notice, refusing=REFUSING, now=NOW)  # once


async def test_messages_written_once_are_written_by_the_first_of_two_writers_alone(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """`add_once` (a freeze's end told by two replicas, or a timer fired again after its
    holder died): the first writer of the key writes, the others write nothing (both
    backends)."""
    store = OutboxStore(session_factory)
    message = NewMessage(kind="thread", channel_id=REFUSING, rollout_id=None, payload={})
    written = await asyncio.gather(
        *(store.add_once([message], once="freeze_end:r-1:2026-12-07", now=NOW) for _ in range(3))
    )
    assert sorted(written) == [False, False, True]
    assert len(await store.pending()) == 1
    assert await store.add_once([message], once="freeze_end:r-1:2026-12-08", now=NOW)


async def test_each_group_is_written_by_its_first_writer_alone_and_none_after_add_once(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    """`add_each_once` (a freeze's end told per stage it held: by its timer, a second timer of
    a hold saved late, an unfreeze): each group is written once, by whichever call claims its
    keys first; a call that finds a key of `unless` claimed (a previous version's `add_once`)
    writes nothing and claims nothing (both backends)."""
    store = OutboxStore(session_factory)

    def saying(groups: list[str]) -> list[NewMessage]:
        payload = {"groups": groups}
        return [NewMessage(kind="thread", channel_id=REFUSING, rollout_id=None, payload=payload)]

    canary = {"relay:canary": ["w1:told:relay:canary"]}
    both = {**canary, "desktop:internal": ["w1:told:desktop:internal", "w2:told:desktop:internal"]}
    written = await asyncio.gather(
        *(store.add_each_once(canary, saying, now=NOW) for _ in range(3))
    )
    assert sorted(written) == [[], [], ["relay:canary"]]
    assert await store.add_each_once(both, saying, now=NOW) == ["desktop:internal"]
    assert await store.add_each_once(both, saying, now=NOW) == []
    told = [message.payload["groups"] for message in await store.pending()]
    assert told == [["relay:canary"], ["desktop:internal"]]

    assert await store.add_once([], once="w3", now=NOW)
    other = {"relay:half": ["w3:told:relay:half"]}
    assert await store.add_each_once(other, saying, now=NOW, unless=["w3"]) == []
    assert await store.add_each_once(other, saying, now=NOW) == ["relay:half"]  # not claimed


async def test_each_hold_is_written_once_by_three_replicas_racing(database_url: str) -> None:
    """Three replicas, each its own engine, tell the same holds at once: an unfreeze claiming
    under both watches of the rollout, and the first watch's timer fired on two (its lease ran
    out on the first) claiming under its own. Each hold is written
    once in all, by one of them, and none fails (no deadlock, no lock refused) on either
    backend."""
    holds = ("relay:canary", "desktop:internal", "dispatch")

    def under(*watches: str) -> dict[str, list[str]]:
        return {hold: [f"{watch}:told:{hold}" for watch in watches] for hold in holds}

    def saying(groups: list[str]) -> list[NewMessage]:
        payload = {"groups": groups}
        return [NewMessage(kind="thread", channel_id=REFUSING, rollout_id=None, payload=payload)]

    async with AsyncExitStack() as stack:
        stores = [
            OutboxStore(create_session_factory(await stack.enter_async_context(replica)))
            for replica in (engine_for_one_task(database_url) for _ in "abc")
        ]
        for round_ in range(5):
            w1, w2 = f"w1-{round_}", f"w2-{round_}"
            asked = [under(w1, w2), under(w1), under(w1)]
            written = await asyncio.gather(
                *(
                    store.add_each_once(groups, saying, now=NOW)
                    for store, groups in zip(stores, asked, strict=True)
                )
            )
            assert sorted(hold for each in written for hold in each) == sorted(holds), written
        told = [h for message in await stores[0].pending() for h in message.payload["groups"]]
        assert sorted(told) == sorted(holds * 5)
