"""The doctor's look at the timers given up (`RolloutBotTimerDeadLettered`): each one whose
rollout has not ended holds its stage for a person, and one of a service taken out of the
services file is followed by nobody: the line says how to clear it."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from sqlalchemy.exc import SQLAlchemyError

from bot.config import Settings
from bot.domain.rollout import EARLY_GATE_TIMER
from bot.services.effects import TIMER_KINDS, WINDOW_TIMER
from bot.services.failures import error_summary
from bot.services.findings import Finding, failed, warned
from bot.services.records import Timer
from storage.db import create_session_factory, engine_for_one_task
from storage.timers import TimerStore

HELD = (
    "its stage holds for a person (the thread says why): fix the cause (the log's `timer … "
    "dead-lettered` line), then Re-evaluate, Extend, Promote or Roll back from its card; "
    "RolloutBotTimerDeadLettered lasts until the rollout ends"
)

EARLY_GATE = (
    "it held nothing: a Re-evaluate's failing verdict was not taken again; the window's own "
    "timer gates the stage at its end, or Re-evaluate from its card runs the gate now; "
    "RolloutBotTimerDeadLettered lasts until the rollout ends"
)

NOT_FOLLOWED = (
    "nobody follows that rollout, so its stage waits, on GitHub too, and "
    "RolloutBotTimerDeadLettered lasts for ever: put `{service}` back in the services file "
    "(ROLLOUT_SERVICES) and restart the replicas, then Extend its window (its gate runs at "
    "the new end) or Roll back from its card; once the rollout ends the alert clears, and "
    "the service may go again"
)


def dead_timer_findings(settings: Settings, *, reachable: bool) -> list[Finding]:
    """One warning per timer given up whose rollout has not ended, by what clears it; nothing
    when the database does not answer (its own finding says so)."""
    if not reachable:
        return []
    configured = {service.name for service in settings.services()}
    try:
        dead = asyncio.run(_dead_timers(settings.database_url))
    except (OSError, SQLAlchemyError) as error:
        return [failed("timers given up", f"not read ({error_summary(error)}): try again")]
    return [_finding(timer, configured) for timer in dead]


async def _dead_timers(database_url: str) -> list[Timer]:
    async with engine_for_one_task(database_url) as engine:
        timers = TimerStore(create_session_factory(engine))
        return await timers.dead_of_active(kinds=TIMER_KINDS)


def _finding(timer: Timer, configured: Collection[str]) -> Finding:
    payload = timer.payload or {}
    what = "the window timer" if timer.kind == WINDOW_TIMER else f"the {timer.kind} timer"
    where = f" of {payload['stage']} ({payload['track']})" if "stage" in payload else ""
    given_up = f"given up at {timer.dead_at:%Y-%m-%d %H:%M} UTC" if timer.dead_at else "given up"
    rollout = f"rollout {timer.rollout_id} (service `{timer.service}`)"
    check = f"{what}{where} of {rollout} was {given_up}"
    if timer.service not in configured:
        return warned(
            f"{check}; the services file no longer names `{timer.service}`",
            NOT_FOLLOWED.format(service=timer.service),
        )
    return warned(check, EARLY_GATE if timer.kind == EARLY_GATE_TIMER else HELD)
