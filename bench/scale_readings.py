"""What the many-services benchmark (`services_scale.py`) reads of its run: the replicas'
memory and CPU (their chart workers' apart), the GitHub requests the simulator answered, and
from the database how late each window's gate came."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ack_latency import cpu_seconds
from sqlalchemy import text

from sandbox.harness import Sandbox
from storage.db import engine_for_one_task

ANY_REPOSITORY_OR_ID = re.compile(r"/repos/[^/]+/[^/]+|/\d+")


def memory_kb(pid: int, key: str) -> int:
    """A `/proc/<pid>/status` figure in kB (`VmRSS`, `VmHWM`)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


def children(pid: int) -> list[int]:
    """The processes `pid` started, by the parent field of `/proc/<pid>/stat`: a replica's
    chart worker (from its first chart on) and multiprocessing's resource tracker beside it."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended while we looked
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


def chart_cpu_seconds(pid: int) -> float:
    """CPU seconds so far of the processes replica `pid` started (its chart worker): its own
    `/proc/<pid>/stat` counts them nowhere while they run. A worker that died and was
    replaced between two readings takes its seconds with it."""
    total = 0.0
    for child in children(pid):
        with contextlib.suppress(FileNotFoundError):  # ended since `children` found it
            total += cpu_seconds(child)
    return total


def chart_rss_kb(pid: int) -> int:
    """kB resident (VmRSS) in the processes replica `pid` started (its chart worker)."""
    total = 0
    for child in children(pid):
        with contextlib.suppress(FileNotFoundError):  # ended since `children` found it
            total += memory_kb(child, "VmRSS")
    return total


def pids(box: Sandbox) -> list[int]:
    found = [replica.pid for replica in box.replicas]
    assert all(pid is not None for pid in found), "a replica is not running"
    return [pid for pid in found if pid is not None]


def count_requests(box: Sandbox, since: int) -> Counter[str]:
    """The simulator's requests from index `since`: `counted` (against the rate limit) and
    `not_modified` (304, free)."""
    return Counter(
        "not_modified" if r.status == 304 else "counted" for r in box.github.requests[since:]
    )


def request_kinds(box: Sandbox, since: int) -> Counter[str]:
    """The simulator's requests from index `since` by method, path (numbers and the
    repository's name left out) and whether the answer was a 304."""
    return Counter(
        f"{r.method} {ANY_REPOSITORY_OR_ID.sub('', r.path) or '/'}"
        + (" 304" if r.status == 304 else "")
        for r in box.github.requests[since:]
    )


async def wait_for(database: str, query: str, wanted: int, *, timeout: float) -> None:  # noqa: ASYNC109
    """Until `query` (one count) reaches `wanted`; says how far it got if it never does."""
    async with engine_for_one_task(database) as engine:
        deadline = time.monotonic() + timeout
        while (found := await scalar(engine, query)) < wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{found} of {wanted} after {timeout:.0f} s: {query}")
            await asyncio.sleep(1)


async def scalar(engine: Any, query: str) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text(query))).scalar_one())


async def lateness(database: str) -> dict[str, list[float]]:
    """Per window that ended, seconds from its timer's due time to the gate verdict's save
    (`recorded`: the audit event written with it) and to the verdict's post in the thread
    (`posted`: the outbox); `written`: how long after its due time the timer was written (a
    window whose start the bot learned late, e.g. by a poll, is due before it is written);
    `known`: from the later of the due time and the timer's write to the verdict's save (the
    part of the lateness that is the bot's own, not how late it learned that a window began)."""
    async with engine_for_one_task(database) as engine, engine.connect() as connection:
        timers = (
            await connection.execute(
                text(
                    "SELECT rollout_id, payload, due_at, created_at FROM timers "
                    "WHERE kind = 'window'"
                )
            )
        ).all()
        due = {(rollout, *stage_of(payload)): when for rollout, payload, when, _ in timers}
        written = {(rollout, *stage_of(payload)): at for rollout, payload, _, at in timers}
        gates = await connection.execute(
            text("SELECT rollout_id, track, stage, at FROM audit_events WHERE action = 'gate'")
        )
        recorded = {(rollout, track, stage): at for rollout, track, stage, at in gates}
        posts = await connection.execute(
            text(
                "SELECT rollout_id, payload, delivered_at FROM outbox "
                "WHERE kind = 'gate' AND delivered_at IS NOT NULL"
            )
        )
        posted = {(rollout, *stage_of(payload)): at for rollout, payload, at in posts}
    return {
        "recorded": seconds_after(due, recorded),
        "posted": seconds_after(due, posted),
        "written": seconds_after(due, written),
        "known": seconds_after({key: max(due[key], written[key]) for key in due}, recorded),
    }


def stage_of(payload: str | dict[str, Any]) -> tuple[str, str]:
    """The track and stage a timer's or a message's payload names."""
    value = json.loads(payload) if isinstance(payload, str) else payload
    return value["track"], value["stage"]


def seconds_after(due: Mapping[Any, datetime], happened: Mapping[Any, datetime]) -> list[float]:
    return [(happened[key] - when).total_seconds() for key, when in due.items() if key in happened]
