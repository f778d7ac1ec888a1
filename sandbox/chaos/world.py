"""What a chaos run stands on: a PostgreSQL database of its own (made, its connections
terminated, dropped) and the services it releases, each in a lane of its own."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.pool import NullPool

from sandbox.chaos.script import Scenario
from sandbox.config import SandboxService, numbered_services
from sandbox.plans import fast_plan
from storage.db import engine_for_one_task

APP_TOKEN_LIFETIME = timedelta(seconds=30)
"""In App mode, installation tokens last 30 s instead of an hour: each replica mints new ones
every few seconds under the faults, and a token expires in a process's hands."""


async def admin(url: str, statement: str, **parameters: str) -> int:
    """Run one statement outside a transaction (CREATE/DROP DATABASE need that); returns how
    many rows it gave."""
    async with (
        engine_for_one_task(url, poolclass=NullPool, isolation_level="AUTOCOMMIT") as engine,
        engine.connect() as connection,
    ):
        result = await connection.execute(text(statement), parameters)
        return len(result.fetchall()) if result.returns_rows else 0


async def terminate_connections(admin_url: str, database: str) -> int:
    """`pg_terminate_backend` on every connection to `database`; how many there were."""
    return await admin(
        admin_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = :database AND pid <> pg_backend_pid()",
        database=database,
    )


@dataclass(frozen=True)
class Lane:
    """One service's release channel and the figures file its gates read: its rollouts run
    one after another, beside the other services' (a bot of one service has one lane)."""

    channel: str
    figures: Path


@dataclass(frozen=True)
class Played:
    """A rollout the run started (or tried to), its script and its service's lane."""

    tag: str
    scenario: Scenario
    lane: Lane


def service_lanes(workdir: Path, count: int, window: str) -> list[tuple[SandboxService, Lane]]:
    """`count` services (`numbered_services`), each in a repository of an owner of its own
    (`org-1/svc-001`, `org-2/svc-002`...: as a GitHub App, each its own installation and
    tokens) with a plan reading figures of its own; and each one's lane."""
    lanes = []
    for number, service in enumerate(numbered_services(count), start=1):
        plan = workdir / f"plan-{service.name}.yml"
        figures = workdir / f"figures-{service.name}.yml"
        plan.write_text(fast_plan(figures, window=window, extension=window), encoding="utf-8")
        owned = replace(service, repository=f"org-{number}/{service.name}", plan=plan)
        lanes.append((owned, Lane(service.release_channels[0], figures)))
    return lanes
