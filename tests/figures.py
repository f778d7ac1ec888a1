"""Figures the sandbox's metrics files give the end-to-end tests (every gate passes on these),
and sandboxes running on them (one where nothing moves by itself; one with a second approver,
for the tests that need two people)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sandbox.config import RELEASE_MANAGER
from sandbox.github_app import SandboxApp
from sandbox.harness import Sandbox, fast_plan, write_figures

CANARY_OK = {"crash_rate": "0.001", "error_rate": "0.002", "sample": 5000}
HALF_OK = {"crash_rate": "0.0015", "error_rate": "0.004", "sample": 40000}
RELAY_OK = {"canary": CANARY_OK, "half": HALF_OK}
CANARY_CRASHING = {"crash_rate": "0.0021", "error_rate": "0.001", "sample": 5000}
"""A canary crashing at 0.0021, over twice the sandbox's 0.001 baseline: its gate rolls back."""
RINGS_OK = {"internal": {"crash_rate": "0.001"}, "beta": {"crash_rate": "0.0012"}}
SECOND_APPROVER = "U0SECOND01"
TWO_APPROVERS = {"ROLLOUT_APPROVERS": f"{RELEASE_MANAGER},{SECOND_APPROVER}"}
"""The environment that makes SECOND_APPROVER an approver besides the release manager."""


def every_gate_passes(box: Sandbox) -> None:
    """Passing figures for every stage of both tracks."""
    write_figures(box.figures, "relay", RELAY_OK)
    write_figures(box.figures, "desktop", RINGS_OK)


@asynccontextmanager
async def passing_sandbox(workdir: Path, **options: Any) -> AsyncIterator[Sandbox]:
    """A sandbox (`options`: the rest of `Sandbox`'s) with every gate passing."""
    async with Sandbox(workdir=workdir, **options) as box:
        every_gate_passes(box)
        yield box


@asynccontextmanager
async def running_sandbox(
    tmp_path: Path,
    database_url: str,
    *,
    window: str = "1s",
    relay: Mapping[str, Mapping[str, Any]] | None = None,
    desktop: Mapping[str, Mapping[str, Any]] | None = None,
) -> AsyncIterator[Sandbox]:
    """A sandbox with every window `window` and the figures given (passing ones by default)."""
    plan = fast_plan(tmp_path / "figures.yml", window=window, extension=window)
    async with Sandbox(workdir=tmp_path, database_url=database_url, plan_yaml=plan) as box:
        write_figures(box.figures, "relay", relay or RELAY_OK)
        write_figures(box.figures, "desktop", desktop or RINGS_OK)
        yield box


@asynccontextmanager
async def quiet_sandbox(
    tmp_path: Path, database_url: str, *, extra_env: Mapping[str, str] | None = None
) -> AsyncIterator[Sandbox]:
    """The bot with hour-long windows and its own poller asleep: nothing moves by itself
    (the `quiet` fixture); `extra_env`: more of its settings."""
    plan = fast_plan(tmp_path / "figures.yml", window="1h")
    async with Sandbox(
        workdir=tmp_path,
        database_url=database_url,
        poll_interval=3600,
        plan_yaml=plan,
        extra_env=extra_env,
    ) as box:
        write_figures(box.figures, "relay", {"canary": CANARY_OK})
        write_figures(box.figures, "desktop", {"internal": RINGS_OK["internal"]})
        yield box


@asynccontextmanager
async def two_approvers_sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    """A sandbox with every gate passing and SECOND_APPROVER an approver too."""
    async with passing_sandbox(tmp_path, extra_env=TWO_APPROVERS) as box:
        yield box


@asynccontextmanager
async def two_serve_processes(
    tmp_path: Path,
    database_url: str,
    env: Mapping[str, str],
    *,
    app_rule: bool = False,
    plan_yaml: str | None = None,
) -> AsyncIterator[tuple[Sandbox, str]]:
    """A sandbox whose bot runs as a `rollout-bot serve` process on `database_url` with every
    gate passing (with `app_rule`: as a GitHub App, every protected environment on its rule;
    `plan_yaml`: its plan, else the sandbox's), and the URL of a second such replica on the
    same database."""
    async with passing_sandbox(
        tmp_path,
        database_url=database_url,
        in_process=False,
        extra_env=dict(env),
        github_app=SandboxApp() if app_rule else None,
        **({} if plan_yaml is None else {"plan_yaml": plan_yaml}),
    ) as box:
        second = await box.start_replica()
        if app_rule:
            box.github.protection_rule(set(box.github.engine.protected))
        yield box, second
